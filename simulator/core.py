"""The simulator's core: virtual children make fixes and ground truth, with no I/O.

``FixGenerator(world, config, start_ts).advance(until)`` returns every fix made up to ``until``
(simulated Unix seconds), in time order, and the truth records of incidents that ended by then.
Each child has its own random streams (seeded by the run's seed and the child's tag) and is driven
by its own events (fixes, incidents), so a seed reproduces a run exactly whatever the step size.
"""

from __future__ import annotations

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
    RouteGeometry,
    TruthRecord,
    ZoneSet,
    plan_enter_zone,
    plan_leave_route,
)
from simulator.messages import Fix, Position
from simulator.projection import LocalProjection
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

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError("interval_s must be positive")
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
    ) -> None:
        seed = f"{config.seed}:{child.tag}"
        self.child = child
        self.tag = child.tag
        self._route = route
        self._zones = zones
        self._proj = projection
        self._gateway = gateway
        self._cfg = config
        self._rng_fix = random.Random(f"{seed}:fix")
        self._rng_inc = random.Random(f"{seed}:incidents")
        self.walker = Walker(route.path, random.Random(f"{seed}:walk"), config.walk, t0)
        self.gps = GpsModel(random.Random(f"{seed}:gps"), config.gps, t0)
        self.clock = IncidentClock(self._rng_inc, config.incidents, t0, scripted_incidents)
        self.next_fix_t = t0 + self._rng_fix.uniform(0.0, config.interval_s)
        self.seq = 0
        self.last_fix_ts: float | None = None
        self._busy_until = -math.inf
        self._pending: list[tuple[float, TruthRecord]] = []

    def next_time(self) -> float:
        return min(self.next_fix_t, self.clock.next_time)

    def step(self, t: float, truth: list[TruthRecord], started: Counter[str]) -> Fix | None:
        if self.clock.next_time <= self.next_fix_t:
            fix = self._incident(t, started)
        else:
            fix = self._fix(t, sos=False)
            jitter = self._cfg.interval_jitter
            self.next_fix_t = t + self._cfg.interval_s * self._rng_fix.uniform(1.0 - jitter, 1.0 + jitter)
        if self._pending and self._pending[0][0] <= t:
            truth.extend(r for end, r in self._pending if end <= t)
            self._pending = [(end, r) for end, r in self._pending if end > t]
        return fix

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
        self.clock.fired()
        kind = cfg.choose_kind(self._rng_inc)
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
            )
            for n, c in enumerate(chosen)
        ]
        self._heap = [(child.next_time(), n) for n, child in enumerate(self.children)]
        heapq.heapify(self._heap)

    def _scripted_incidents(self, n: int) -> dict[int, list[float]]:
        cfg = self.config.incidents
        if cfg.fraction <= 0 or n == 0:
            return {}
        rng = random.Random(f"{self.config.seed}:fraction")
        chosen = sorted(rng.sample(range(n), round(cfg.fraction * n)))
        lo, hi = cfg.warmup_s, max(cfg.warmup_s, cfg.fraction_window_s)
        return {i: [self.start_ts + rng.uniform(lo, hi)] for i in chosen}

    def advance(self, until: float) -> Step:
        """Every fix with ts <= until (in time order), and the incidents that ended by then."""
        fixes: list[Fix] = []
        truth: list[TruthRecord] = []
        heap, children, started = self._heap, self.children, self.incidents_started
        while heap and heap[0][0] <= until:
            t, n = heap[0]
            child = children[n]
            fix = child.step(t, truth, started)
            if fix is not None:
                fixes.append(fix)
            heapq.heapreplace(heap, (child.next_time(), n))
        self.sim_time = max(self.sim_time, until)
        return Step(self.sim_time, fixes, truth)

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
