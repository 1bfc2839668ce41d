"""The simulator's core: virtual children make fixes and ground truth, with no I/O.

``FixGenerator(world, config, start_ts).advance(until)`` returns every fix made up to ``until``
(simulated Unix seconds), in time order, and the truth records of incidents that ended by then.
Each child has its own random streams (seeded by the run's seed and the child's tag) and is driven
by its own events (fixes, incidents), so a seed reproduces a run exactly whatever the step size.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec
import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString

from simulator.gps import GpsConfig, GpsModel
from simulator.incidents import (
    IncidentClock,
    IncidentConfig,
    IncidentSchedule,
    RouteGeometry,
    TruthRecord,
    ZoneSet,
    plan_enter_zone,
    plan_leave_route,
)
from simulator.messages import Fix, GateSighting, Position
from simulator.projection import LocalProjection
from simulator.rng import Rng
from simulator.walker import XY, Path, WalkConfig, Walker
from simulator.world import ChildSpec, Route, World

SEQ_MODULO = 2**32


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    seed: int = 1
    interval_s: float = 15.0
    """a child's fix interval"""
    interval_jitter: float = 0.2
    """each interval is interval_s × U(1 − jitter, 1 + jitter)"""
    children: int | None = None
    """None: every child in the world; fewer: the first ones in file order; more: replicas"""
    walk: WalkConfig = field(default_factory=WalkConfig)
    gps: GpsConfig = field(default_factory=GpsConfig)
    incidents: IncidentConfig = field(default_factory=IncidentConfig)
    duplicate_probability: float = 0.0
    """chance that a fix is sent again (a tag that missed the broker's acknowledgement)"""
    duplicate_delay_s: tuple[float, float] = (1.0, 10.0)
    """the copy goes this long after the original"""
    late_probability: float = 0.0
    """chance that a fix is held back and sent late, after fixes made later (out of order)"""
    late_delay_s: tuple[float, float] = (20.0, 120.0)
    gap_probability: float = 0.0
    """chance that a due fix starts a gap (subway, tunnel, a building): no fix for gap_s"""
    gap_s: tuple[float, float] = (20.0, 90.0)
    schedule: IncidentSchedule | None = None
    """one child's incidents at fixed moments (the demo's), instead of random ones"""
    rfid_gates: bool = False
    """children also carry an RFID card that their school's gate reader ('sim-gate-{school id}') sees
    when they arrive at school and when they leave"""

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError("interval_s must be positive")
        for name in ("duplicate_probability", "late_probability", "gap_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")
        for name in ("duplicate_delay_s", "late_delay_s", "gap_s"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < low <= high")
        if not 0.0 <= self.interval_jitter < 1.0:
            raise ValueError("interval_jitter must lie in [0, 1)")
        if self.children is not None and self.children < 0:
            raise ValueError("children must not be negative")


@dataclass(frozen=True, slots=True)
class SimChild:
    spec: ChildSpec
    tag: str
    route_index: int
    replica: int
    """0: the child of the world; k > 0: its k-th copy, tag suffixed '-r{k}'"""


class Step(NamedTuple):
    sim_time: float
    fixes: list[Fix]
    truth: list[TruthRecord]
    """incidents that ended by sim_time"""
    sightings: Sequence[GateSighting] = ()
    """RFID gate sightings (rfid_gates), in time order"""


def select_children(world: World, count: int | None) -> list[SimChild]:
    """The world's children in file order; the first ``count`` of them, or replicas beyond."""
    base = [(c, i) for i, route in enumerate(world.routes) for c in route.children]
    if not base and count:  # a world of routes without children: invent them, round robin
        base = [(ChildSpec(id=0, name="", tag=f"sim-route{r.id}"), i) for i, r in enumerate(world.routes)]
    if count is None:
        count = len(base)
    if count and not base:
        raise ValueError("the world has no route to put children on")
    chosen: list[SimChild] = []
    for k in range(count):
        spec, route_index = base[k % len(base)]
        replica = k // len(base)
        tag = spec.tag if replica == 0 else f"{spec.tag}-r{replica}"
        chosen.append(SimChild(spec, tag, route_index, replica))
    return chosen


def gate_reader_id(route: Route) -> str | None:
    """The RFID reader at the gate of a route's school (rfid_gates)."""
    return f"sim-gate-{route.school_id}" if route.school_id is not None else None


def gateway_id(route: Route) -> str:
    """The gateway a child's fixes go through in batch mode: one per school."""
    return f"sim-school-{route.school_id}" if route.school_id is not None else f"sim-route-{route.id}"


def _walk_path(parts: Sequence[Sequence[XY]], school: XY | None, corridor_m: float) -> Path:
    """The line a child walks. Parts that meet (within the corridor) are chained; of disjoint
    chains the longest is walked. It runs home → school: reversed if the school is nearer its start."""
    chains: list[list[XY]] = []
    for part in parts:
        pts = list(part)
        if chains:
            end = chains[-1][-1]
            if math.dist(end, pts[-1]) < math.dist(end, pts[0]):
                pts.reverse()
            if math.dist(end, pts[0]) <= corridor_m:
                chains[-1].extend(pts)
                continue
        chains.append(pts)
    longest = max((Path(c) for c in chains if len(set(c)) >= 2), key=lambda p: p.length)
    if school is not None:
        pts = longest.points
        if math.dist(school, pts[0]) < math.dist(school, pts[-1]):
            longest = Path(pts[::-1])
    return longest


def build_route_geometry(world: World, route: Route) -> RouteGeometry:
    proj = world.projection
    parts = [[proj.to_xy(lon, lat) for lon, lat in part] for part in route.parts]
    school = world.school(route.school_id)
    school_xy = proj.to_xy(school.lon, school.lat) if school is not None else None
    line = LineString(parts[0]) if len(parts) == 1 else MultiLineString(parts)
    return RouteGeometry(route.id, _walk_path(parts, school_xy, route.corridor_m), line, route.corridor_m)


def build_zone_set(world: World) -> ZoneSet:
    proj = world.projection

    def to_metres(coords: np.ndarray) -> np.ndarray:
        x, y = proj.to_xy_arrays(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return ZoneSet.build(
        [z.id for z in world.zones], [shapely.transform(z.polygon, to_metres) for z in world.zones]
    )


class VirtualChild:
    """One tag: its walker, its GPS, its incidents. Driven by ``step(t)`` at ``next_time()``."""

    def __init__(
        self,
        child: SimChild,
        route: RouteGeometry,
        zones: ZoneSet,
        projection: LocalProjection,
        gateway: str,
        config: SimConfig,
        t0: float,
        scripted_incidents: Sequence[float] = (),
        reader: str | None = None,
        schedule: IncidentSchedule | None = None,
    ) -> None:
        seed = f"{config.seed}:{child.tag}"
        self.child = child
        self.tag = child.tag
        self._route = route
        self._zones = zones
        self._proj = projection
        self._gateway = gateway
        self._cfg = config
        self._rng_fix = Rng(f"{seed}:fix")
        self._rng_inc = Rng(f"{seed}:incidents")
        self._rng_net = Rng(f"{seed}:network")
        self.walker = Walker(route.path, Rng(f"{seed}:walk"), config.walk, t0)
        self.gps = GpsModel(Rng(f"{seed}:gps"), config.gps, t0)
        self.clock = IncidentClock(self._rng_inc, config.incidents, t0, scripted_incidents, schedule)
        # a scheduled excursion's own stay (IncidentSchedule.stay_s), else the run's
        self._scheduled_cfg = (
            config.incidents
            if schedule is None
            else dataclasses.replace(config.incidents, stay_s=schedule.stay_s)
        )
        self.next_fix_t = t0 + self._rng_fix.uniform(0.0, config.interval_s)
        self.seq = 0
        self.last_fix_ts: float | None = None
        self._busy_until = -math.inf
        self._pending: list[tuple[float, TruthRecord]] = []
        self._reader = reader if config.rfid_gates else None
        self._gap = False
        self._day_phase = "start"

    def next_time(self) -> float:
        return min(self.next_fix_t, self.clock.next_time)

    def step(self, t: float, truth: list[TruthRecord], started: Counter[str]) -> Fix | None:
        if self.clock.next_time <= self.next_fix_t:
            fix = self._incident(t, started)
        else:
            cfg = self._cfg
            jitter = cfg.interval_jitter
            self.next_fix_t = t + cfg.interval_s * self._rng_fix.uniform(1.0 - jitter, 1.0 + jitter)
            if cfg.gap_probability and not self._gap and self._rng_net.random() < cfg.gap_probability:
                fix = None  # a tunnel: this fix and those due in the gap are never made
                self.next_fix_t = t + self._rng_net.uniform(*cfg.gap_s)
                self._gap = True
            else:
                fix = self._fix(t, sos=False)  # out of a gap, the first fix always comes
                self._gap = False
        if self._pending and self._pending[0][0] <= t:
            truth.extend(r for end, r in self._pending if end <= t)
            self._pending = [(end, r) for end, r in self._pending if end > t]
        return fix

    def gate(self, t: float) -> GateSighting | None:
        """The school's gate reader sees the card when the child arrives at school or leaves it."""
        if self._reader is None:
            return None
        phase, since = self.walker.phase(t)
        last, self._day_phase = self._day_phase, phase
        if phase == last or "at_school" not in (phase, last):
            return None
        event = "arrive" if phase == "at_school" else "leave"
        return GateSighting(
            reader=self._reader, tag=self.tag, child_id=self.child.spec.id, ts=since, event=event
        )

    def resends(self, fix: Fix) -> list[tuple[float, Fix]]:
        """(when, fix) of what the network does to a fix just made: (t, fix) itself, or later (late);
        and a second copy (duplicate)."""
        cfg, rng, t = self._cfg, self._rng_net, fix.ts
        out: list[tuple[float, Fix]] = []
        if cfg.late_probability and rng.random() < cfg.late_probability:
            out.append((t + rng.uniform(*cfg.late_delay_s), msgspec.structs.replace(fix, delivery="late")))
        else:
            out.append((t, fix))
        if cfg.duplicate_probability and rng.random() < cfg.duplicate_probability:
            copy = msgspec.structs.replace(fix, delivery="duplicate")
            out.append((out[0][0] + rng.uniform(*cfg.duplicate_delay_s), copy))
        return out

    def open_incidents(self) -> list[TruthRecord]:
        """Incidents not over yet, as records with end_ts None and their planned end."""
        return [msgspec.structs.replace(r, end_ts=None, planned_end_ts=r.end_ts) for _, r in self._pending]

    def _fix(self, t: float, *, sos: bool) -> Fix:
        x, y = self.walker.position(t)
        reading = self.gps.read(t)
        lon, lat = self._proj.to_lonlat(x + reading.dx, y + reading.dy)
        true_lon, true_lat = self._proj.to_lonlat(x, y)
        position = Position(
            ts=round(t, 3),
            lat=round(lat, 7),
            lon=round(lon, 7),
            acc=round(reading.acc, 1),
            batt=self.gps.battery(t),
            seq=self.seq,
            sos=sos,
        )
        self.seq = (self.seq + 1) % SEQ_MODULO
        self.last_fix_ts = position.ts
        return Fix(
            tag=self.tag,
            child_id=self.child.spec.id,
            route_id=self._route.route_id,
            gateway=self._gateway,
            position=position,
            true_lon=true_lon,
            true_lat=true_lat,
            multipath=reading.multipath,
        )

    def _incident(self, t: float, started: Counter[str]) -> Fix | None:
        cfg = self._cfg.incidents
        if t < self._busy_until:
            self.clock.postpone(self._busy_until + cfg.gap_s)
            return None
        scheduled = self.clock.fired()
        if scheduled is not None:
            cfg = self._scheduled_cfg
        kind = scheduled or cfg.choose_kind(self._rng_inc)
        base = TruthRecord(
            kind=kind,
            child_id=self.child.spec.id,
            tag=self.tag,
            route_id=self._route.route_id,
            start_ts=t,
            end_ts=t,
        )
        fix: Fix | None = None
        if kind == "sos":
            fix = self._fix(t, sos=True)
            record = msgspec.structs.replace(base, start_ts=fix.ts, end_ts=fix.ts)
            end = t
        elif kind == "go_silent":
            end = t + self._rng_inc.uniform(*cfg.silent_s)
            self.next_fix_t = max(self.next_fix_t, end)
            record = msgspec.structs.replace(
                base, start_ts=round(t, 3), end_ts=round(end, 3), last_fix_ts=self.last_fix_ts
            )
        else:
            anchor = self.walker.position(t)
            route_s = self.walker.route_s(t)
            assert route_s is not None, "an excursion starts on the route"
            zone_index = self._zones.nearest(anchor, cfg.zone_reach_m) if kind == "enter_zone" else None
            common = dict(
                route=self._route,
                zones=self._zones,
                anchor=anchor,
                t=t,
                speed=self.walker.speed,
                rng=self._rng_inc,
                config=cfg,
                base=base,
            )
            if zone_index is not None:
                excursion, target = plan_enter_zone(zone_index=zone_index, **common)  # type: ignore[arg-type]
            else:
                excursion, target = plan_leave_route(route_s=route_s, **common)  # type: ignore[arg-type]
            lon, lat = self._proj.to_lonlat(*target)
            record = msgspec.structs.replace(excursion.record, lon=round(lon, 7), lat=round(lat, 7))
            self.walker.detour(t, excursion.legs)
            end = t + excursion.duration_s
        self._busy_until = end
        release = end if record.end_ts is None else max(end, record.end_ts)
        self._pending.append((release, record))
        started[record.kind] += 1
        return fix


class FixGenerator:
    """Every virtual child of a world, stepped in simulated time; no I/O."""

    def __init__(self, world: World, config: SimConfig, start_ts: float) -> None:
        self.world = world
        self.config = config
        self.start_ts = start_ts
        self.sim_time = start_ts
        self.incidents_started: Counter[str] = Counter()
        chosen = select_children(world, config.children)
        routes = [build_route_geometry(world, r) for r in world.routes]
        zones = build_zone_set(world)
        scripted = self._scripted_incidents(len(chosen))
        self.children = [
            VirtualChild(
                c,
                routes[c.route_index],
                zones,
                world.projection,
                gateway_id(world.routes[c.route_index]),
                config,
                start_ts,
                scripted.get(n, ()),
                gate_reader_id(world.routes[c.route_index]),
                config.schedule if config.schedule is not None and config.schedule.tag == c.tag else None,
            )
            for n, c in enumerate(chosen)
        ]
        self._heap = [(child.next_time(), n) for n, child in enumerate(self.children)]
        heapq.heapify(self._heap)
        self._held: list[tuple[float, int, Fix]] = []  # late fixes and duplicates, by when they go
        self._held_count = 0
        self.delivered: Counter[str] = Counter()
        """fixes sent late ('late') and sent twice ('duplicate') so far"""

    def _scripted_incidents(self, n: int) -> dict[int, list[float]]:
        cfg = self.config.incidents
        if cfg.fraction <= 0 or n == 0:
            return {}
        rng = random.Random(f"{self.config.seed}:fraction")
        chosen = sorted(rng.sample(range(n), round(cfg.fraction * n)))
        lo, hi = cfg.warmup_s, max(cfg.warmup_s, cfg.fraction_window_s)
        return {i: [self.start_ts + rng.uniform(lo, hi)] for i in chosen}

    def advance(self, until: float) -> Step:
        """Every fix due by ``until``, in the order it is sent, and the incidents that ended by then.
        A fix is sent when it is made, but for a late one (sent up to late_delay_s after, so after
        fixes made later) and a duplicate (a second copy, sent again a little later)."""
        fixes: list[Fix] = []
        truth: list[TruthRecord] = []
        sightings: list[GateSighting] = []
        heap, children, started, held = self._heap, self.children, self.incidents_started, self._held
        cfg = self.config
        network = cfg.late_probability > 0 or cfg.duplicate_probability > 0
        while heap and heap[0][0] <= until:
            t, n = heap[0]
            child = children[n]
            fix = child.step(t, truth, started)
            if cfg.rfid_gates and (seen := child.gate(t)) is not None:
                sightings.append(seen)
            if fix is not None:
                if not network:
                    fixes.append(fix)
                else:
                    for when, sent in child.resends(fix):
                        if when <= t:
                            fixes.append(sent)
                        else:
                            self._held_count += 1
                            heapq.heappush(held, (when, self._held_count, sent))
            heapq.heapreplace(heap, (child.next_time(), n))
        if held and held[0][0] <= until:
            due: list[tuple[float, int, Fix]] = []
            while held and held[0][0] <= until:
                due.append(heapq.heappop(held))
            timed = [(f.ts, i, f) for i, f in enumerate(fixes)] + [(w, len(fixes) + c, f) for w, c, f in due]
            timed.sort(key=lambda x: (x[0], x[1]))
            fixes = [f for _, _, f in timed]
            self.delivered.update(f.delivery for _, _, f in due if f.delivery)
        self.sim_time = max(self.sim_time, until)
        sightings.sort(key=lambda g: g.ts)
        return Step(self.sim_time, fixes, truth, sightings)

    def steps(self, step_s: float, duration_s: float | None = None) -> Iterator[Step]:
        """Steps of ``step_s`` simulated seconds, for ``duration_s`` from now (forever if None)."""
        if not step_s > 0:
            raise ValueError("step_s must be positive")
        end = math.inf if duration_s is None else self.sim_time + duration_s
        while self.sim_time < end:
            yield self.advance(min(self.sim_time + step_s, end))

    def finish(self) -> list[TruthRecord]:
        """Incidents still going on at the end of the run (end_ts None)."""
        return [r for child in self.children for r in child.open_incidents()]
