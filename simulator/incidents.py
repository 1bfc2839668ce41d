"""Scripted incidents and their ground truth.

Kinds (what the tracker should alert on, and when, per the truth record):

* ``leave_route``: the child walks perpendicular away from its route (to the side without a danger
  zone, when there is one) until it is 80–200 m outside the corridor, stays a few minutes, walks
  back to where it left and carries on. ``start_ts`` / ``end_ts``: when its true position crosses
  the corridor's edge out and back in; ``peak_distance_m`` how far from the route it got.
* ``enter_zone``: the child walks straight to a point well inside the nearest danger zone within
  reach (as deep as the zone allows, up to ``zone_depth_m``), stays, walks back. ``start_ts`` /
  ``end_ts``: when it truly enters and leaves the zone. If the walk also leaves the corridor,
  ``off_route_start_ts`` / ``off_route_end_ts`` say when, so a benchmark does not count that
  'left route' alert as a false alarm; ``crossed_zone_ids`` lists other zones the straight walk cuts.
* ``sos``: one fix with ``"sos": true`` sent at once; ``start_ts == end_ts`` is that fix's ts.
* ``go_silent``: no fix from ``start_ts`` until ``end_ts`` (the first fix after the silence is sent
  at ``end_ts``); ``last_fix_ts`` is the last fix before it.

A record is written when its incident ends; at the end of a run an incident still going on is
written with ``end_ts: null`` and its ``planned_end_ts``. Every record has ``kind``, ``child_id``,
``tag``, ``route_id``, ``start_ts``, ``end_ts`` (Unix seconds, simulated clock); the other fields
appear where they apply. Excursions also carry ``excursion_start_ts`` / ``excursion_end_ts`` (left
the route / back on it at the same spot) and ``lon`` / ``lat`` of where the child stayed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import IO

import msgspec
import numpy as np
import shapely
import shapely.ops
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Point, Polygon

from simulator.rng import RandomSource
from simulator.walker import XY, Leg, Path

KINDS = ("leave_route", "enter_zone", "sos", "go_silent")
EXCURSION_SAMPLE_M = 1.0
"""the straight walks out and back are checked against the geometry every metre"""


def _default_weights() -> dict[str, float]:
    return {"leave_route": 0.35, "enter_zone": 0.35, "sos": 0.15, "go_silent": 0.15}


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentConfig:
    per_child_per_hour: float = 0.0
    """Poisson rate of incidents per child per simulated hour"""
    fraction: float = 0.0
    """besides the rate: this fraction of the children has exactly one incident in the run"""
    fraction_window_s: float = 3600.0
    """those incidents happen at a uniform moment in [warmup_s, fraction_window_s) after the start"""
    warmup_s: float = 120.0
    """no incident in the first seconds, so every child has sent fixes before"""
    kind_weights: Mapping[str, float] = field(default_factory=_default_weights)
    leave_extra_m: tuple[float, float] = (80.0, 200.0)
    """how far beyond the corridor's edge a leave_route goes"""
    stay_s: tuple[float, float] = (120.0, 300.0)
    """how long the child stays out (leave_route) or in (enter_zone)"""
    zone_reach_m: float = 1500.0
    """enter_zone picks the nearest zone within this distance, else it becomes a leave_route"""
    zone_depth_m: float = 40.0
    """how deep into the zone the child goes, when the zone is wide enough"""
    silent_s: tuple[float, float] = (180.0, 600.0)
    gap_s: float = 60.0
    """an incident due while another one runs waits until this long after it"""

    def __post_init__(self) -> None:
        if self.per_child_per_hour < 0 or not 0.0 <= self.fraction <= 1.0:
            raise ValueError("incident rate must be >= 0 and fraction in [0, 1]")
        unknown = set(self.kind_weights) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown incident kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        if any(w < 0 for w in self.kind_weights.values()) or not any(self.kind_weights.values()):
            raise ValueError("incident kind weights must be >= 0 and not all zero")
        if self.leave_extra_m[0] <= 0 or self.zone_depth_m < 0:
            raise ValueError("distances must be positive")

    @property
    def active(self) -> bool:
        return self.per_child_per_hour > 0 or self.fraction > 0

    def choose_kind(self, rng: RandomSource) -> str:
        kinds = [k for k in KINDS if self.kind_weights.get(k, 0.0) > 0]
        return rng.choices(kinds, weights=[self.kind_weights[k] for k in kinds])[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentSchedule:
    """One child's incidents at fixed moments, kinds in turn: the first ``first_s`` after the start,
    then one every ``every_s``. The demo (``make run``) scripts one, so a newcomer sees an alert
    within a minute, and again every few minutes; that child has no random incidents besides."""

    tag: str
    first_s: float = 40.0
    every_s: float = 300.0
    kinds: tuple[str, ...] = ("sos", "enter_zone", "leave_route")
    stay_s: tuple[float, float] = (60.0, 90.0)
    """how long the child stays out or in: shorter than a random incident's, so that an excursion
    is over before the next one is due (one still going on puts the next off: IncidentConfig.gap_s)"""

    def __post_init__(self) -> None:
        if not (self.first_s >= 0 and self.every_s > 0 and 0 <= self.stay_s[0] <= self.stay_s[1]):
            raise ValueError("a schedule needs first_s >= 0, every_s > 0 and a stay_s range")
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ValueError(f"schedule kinds must be some of {', '.join(KINDS)}")

    def moment(self, n: int, t0: float) -> tuple[float, str]:
        """The n-th incident (0 first): when, and which kind."""
        return t0 + self.first_s + n * self.every_s, self.kinds[n % len(self.kinds)]


class TruthRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One line of the ground-truth JSONL file."""

    kind: str
    child_id: int
    tag: str
    route_id: int
    start_ts: float
    end_ts: float | None
    zone_id: int | None = None
    planned_end_ts: float | None = None
    corridor_m: float | None = None
    peak_distance_m: float | None = None
    """leave_route: the farthest true distance from the route"""
    depth_m: float | None = None
    """enter_zone: how far inside the zone the target point lies"""
    off_route_start_ts: float | None = None
    off_route_end_ts: float | None = None
    crossed_zone_ids: list[int] | None = None
    excursion_start_ts: float | None = None
    excursion_end_ts: float | None = None
    last_fix_ts: float | None = None
    lon: float | None = None
    """leave_route / enter_zone: where the child stays (true position)"""
    lat: float | None = None


class TruthWriter:
    """Appends records to a JSONL file, one flushed line each (a benchmark may tail it live)."""

    def __init__(self, path: str | FilePath) -> None:
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._encoder = msgspec.json.Encoder()
        self.count = 0

    def write(self, records: Sequence[TruthRecord]) -> None:
        for record in records:
            self._file.write(self._encoder.encode(record) + b"\n")
            self.count += 1
        if records:
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_truth(path: str | FilePath) -> list[TruthRecord]:
    decoder = msgspec.json.Decoder(TruthRecord)
    with open(path, "rb") as f:
        return [decoder.decode(line) for line in f if line.strip()]


# --- geometry the planners need -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteGeometry:
    route_id: int
    path: Path
    """what the child walks: home at s=0, school at s=length"""
    line: LineString | MultiLineString
    """the whole registered route in metres (all parts): distances are measured to it"""
    corridor_m: float


@dataclass(frozen=True, slots=True)
class ZoneSet:
    ids: tuple[int, ...]
    polygons: tuple[Polygon | MultiPolygon, ...]
    """in metres"""
    tree: shapely.STRtree

    @classmethod
    def build(cls, ids: Sequence[int], polygons: Sequence[Polygon | MultiPolygon]) -> ZoneSet:
        return cls(tuple(ids), tuple(polygons), shapely.STRtree(list(polygons)))

    def nearest(self, xy: XY, reach_m: float) -> int | None:
        """Index of the zone nearest to ``xy`` within ``reach_m`` (lowest id on a tie), or None."""
        if not self.ids:
            return None
        hits = self.tree.query_nearest(Point(xy), max_distance=reach_m, all_matches=True)
        if len(hits) == 0:
            return None
        return min((int(i) for i in hits), key=lambda i: self.ids[i])

    def any_contains(self, x: float, y: float) -> bool:
        return any(shapely.contains_xy(p, x, y) for p in self.polygons)


@dataclass(slots=True)
class Excursion:
    legs: list[Leg]
    record: TruthRecord
    duration_s: float


def _sample_line(a: XY, b: XY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every metre from a to b: (distances from a, xs, ys)."""
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    d = np.append(np.arange(0.0, length, EXCURSION_SAMPLE_M), length)
    f = d / length if length > 0 else np.zeros_like(d)
    return d, a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])


def _first_crossing(a: XY, b: XY, is_past: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float | None:
    """Distance from a along a→b where ``is_past(xs, ys)`` first holds: sampled every metre, then
    pinned down by bisection to well under a millimetre. None if it never holds."""
    d, xs, ys = _sample_line(a, b)
    idx = np.flatnonzero(is_past(xs, ys))
    if not len(idx):
        return None
    i = int(idx[0])
    if i == 0:
        return 0.0
    length = float(d[-1])
    lo, hi = float(d[i - 1]), float(d[i])
    for _ in range(40):
        mid = (lo + hi) / 2
        f = mid / length
        x, y = a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        if bool(is_past(np.array([x]), np.array([y]))[0]):
            hi = mid
        else:
            lo = mid
    return hi


def _outside_corridor(route: RouteGeometry) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def outside(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return np.asarray(shapely.distance(route.line, shapely.points(xs, ys)) > route.corridor_m)

    return outside


def _out_and_back(anchor: XY, target: XY, speed: float, stay: float) -> tuple[list[Leg], float]:
    walk = math.hypot(target[0] - anchor[0], target[1] - anchor[1]) / speed
    legs = [
        Leg(walk, line=(anchor, target)),
        Leg(stay, line=(target, target)),
        Leg(walk, line=(target, anchor)),
    ]
    return legs, walk


def _crossed_zones(zones: ZoneSet, anchor: XY, target: XY, exclude: int | None) -> list[int] | None:
    """Ids of the zones the straight walk anchor → target cuts (but ``exclude``), or None."""
    line = LineString([anchor, target]) if anchor != target else Point(anchor)
    hits = zones.tree.query(line, predicate="intersects")
    return sorted(zones.ids[int(i)] for i in hits if int(i) != exclude) or None


def _ms(t: float) -> float:
    return round(t, 3)


def plan_leave_route(
    *,
    route: RouteGeometry,
    zones: ZoneSet,
    anchor: XY,
    route_s: float,
    t: float,
    speed: float,
    rng: RandomSource,
    config: IncidentConfig,
    base: TruthRecord,
) -> tuple[Excursion, XY]:
    """Walk perpendicular to the route until ``corridor + extra`` metres from it, stay, come back."""
    extra = rng.uniform(*config.leave_extra_m)
    goal = route.corridor_m + extra
    tx, ty = route.path.direction_at(route_s)
    sides = [1.0, -1.0] if rng.random() < 0.5 else [-1.0, 1.0]
    directions = [(-side * ty, side * tx) for side in sides]
    directions += [(math.cos(a), math.sin(a)) for a in np.linspace(0.0, 2 * math.pi, 16, endpoint=False)]
    reach = np.arange(goal, 3.0 * goal + 100.0, 2.0)
    target: XY | None = None
    fallback: XY | None = None
    for nx, ny in directions:
        xs, ys = anchor[0] + reach * nx, anchor[1] + reach * ny
        far = np.flatnonzero(shapely.distance(route.line, shapely.points(xs, ys)) >= goal)
        if not len(far):
            continue
        candidate = (float(xs[far[0]]), float(ys[far[0]]))
        if not zones.any_contains(*candidate):
            target = candidate
            break
        fallback = fallback or candidate
    target = target or fallback
    if target is None:  # a route that fills the neighbourhood: go straight out, far enough
        target = (anchor[0] + 3.0 * goal, anchor[1])
    stay = rng.uniform(*config.stay_s)
    legs, walk = _out_and_back(anchor, target, speed, stay)
    length = math.dist(anchor, target)
    d_out = _first_crossing(anchor, target, _outside_corridor(route))
    if d_out is None:  # cannot happen with a target found above; the fallback target counts whole
        d_out = 0.0
    _, xs, ys = _sample_line(anchor, target)
    peak = float(shapely.distance(route.line, shapely.points(xs, ys)).max())
    record = msgspec.structs.replace(
        base,
        kind="leave_route",
        start_ts=_ms(t + d_out / speed),
        end_ts=_ms(t + walk + stay + (length - d_out) / speed),
        corridor_m=route.corridor_m,
        peak_distance_m=round(peak, 1),
        crossed_zone_ids=_crossed_zones(zones, anchor, target, exclude=None),
        excursion_start_ts=_ms(t),
        excursion_end_ts=_ms(t + 2 * walk + stay),
    )
    return Excursion(legs, record, 2 * walk + stay), target


def _inner_target(polygon: Polygon | MultiPolygon, anchor: XY, depth_m: float) -> tuple[XY, float]:
    """The point nearest to ``anchor`` that lies ``depth`` inside the polygon, depth as large as fits."""
    for depth in (depth_m, depth_m * 0.75, depth_m * 0.5, depth_m * 0.25, depth_m * 0.1):
        inner = polygon.buffer(-depth) if depth > 0 else polygon
        if not inner.is_empty:
            _, nearest = shapely.ops.nearest_points(Point(anchor), inner)
            if shapely.contains_xy(polygon, nearest.x, nearest.y):
                return (nearest.x, nearest.y), depth
    point = polygon.representative_point()
    return (point.x, point.y), float(polygon.exterior.distance(point)) if isinstance(
        polygon, Polygon
    ) else 0.0


def plan_enter_zone(
    *,
    route: RouteGeometry,
    zones: ZoneSet,
    zone_index: int,
    anchor: XY,
    t: float,
    speed: float,
    rng: RandomSource,
    config: IncidentConfig,
    base: TruthRecord,
) -> tuple[Excursion, XY]:
    """Walk straight into the zone, to a point well inside it, stay, walk back out."""
    polygon = zones.polygons[zone_index]
    target, depth = _inner_target(polygon, anchor, config.zone_depth_m)
    stay = rng.uniform(*config.stay_s)
    legs, walk = _out_and_back(anchor, target, speed, stay)
    length = math.dist(anchor, target)
    d_in = _first_crossing(anchor, target, lambda x, y: shapely.contains_xy(polygon, x, y))
    if d_in is None:  # the target lies on the boundary (a sliver of a zone): count the target itself
        d_in = length
    back = t + walk + stay
    d_off = _first_crossing(anchor, target, _outside_corridor(route))
    record = msgspec.structs.replace(
        base,
        kind="enter_zone",
        zone_id=zones.ids[zone_index],
        start_ts=_ms(t + d_in / speed),
        end_ts=_ms(back + (length - d_in) / speed),
        depth_m=round(depth, 1),
        corridor_m=route.corridor_m,
        off_route_start_ts=None if d_off is None else _ms(t + d_off / speed),
        off_route_end_ts=None if d_off is None else _ms(back + (length - d_off) / speed),
        crossed_zone_ids=_crossed_zones(zones, anchor, target, exclude=zone_index),
        excursion_start_ts=_ms(t),
        excursion_end_ts=_ms(back + walk),
    )
    return Excursion(legs, record, 2 * walk + stay), target


class IncidentClock:
    """When a child's next incident is due: a Poisson process plus scripted moments, or (a child with
    an ``IncidentSchedule``) the schedule's moments alone."""

    __slots__ = (
        "_poisson_next",
        "_rate_per_s",
        "_rng",
        "_schedule",
        "_schedule_n",
        "_schedule_next",
        "_scripted",
        "_t0",
        "next_time",
    )

    def __init__(
        self,
        rng: RandomSource,
        config: IncidentConfig,
        t0: float,
        scripted: Sequence[float],
        schedule: IncidentSchedule | None = None,
    ) -> None:
        self._rng = rng
        self._t0 = t0
        self._schedule = schedule
        self._schedule_n = 0
        self._schedule_next = schedule.moment(0, t0)[0] if schedule is not None else math.inf
        self._rate_per_s = config.per_child_per_hour / 3600.0 if schedule is None else 0.0
        self._scripted = sorted(scripted) if schedule is None else []
        self._poisson_next = self._draw(t0 + config.warmup_s)
        self.next_time = self._peek()

    def _draw(self, after: float) -> float:
        return after + self._rng.expovariate(self._rate_per_s) if self._rate_per_s > 0 else math.inf

    def _peek(self) -> float:
        return min(self._poisson_next, self._scripted[0] if self._scripted else math.inf, self._schedule_next)

    def _schedule_due(self) -> bool:
        return self._schedule is not None and self._schedule_next <= self.next_time

    def fired(self) -> str | None:
        """The due incident happened; move on to the next one. Returns the kind a schedule gives
        it (None: the caller draws one)."""
        kind: str | None = None
        if self._schedule_due():
            assert self._schedule is not None
            kind = self._schedule.moment(self._schedule_n, self._t0)[1]
            self._schedule_n += 1
            self._schedule_next = self._schedule.moment(self._schedule_n, self._t0)[0]
        elif self._scripted and self._scripted[0] <= self._poisson_next:
            self._scripted.pop(0)
        else:
            self._poisson_next = self._draw(self._poisson_next)
        self.next_time = self._peek()
        return kind

    def postpone(self, until: float) -> None:
        """The due incident waits until ``until`` (another one is running)."""
        if self._schedule_due():
            self._schedule_next = until
        elif self._scripted and self._scripted[0] <= self._poisson_next:
            self._scripted[0] = until
            self._scripted.sort()
        else:
            self._poisson_next = until
        self.next_time = self._peek()
