"""Children's days in the city-like world (bench/quality/city.py), through the tracker's decisions.

Each child-day is 24 hours of tag time (00:00-24:00 in Asia/Seoul, school days only): the child is
at home, walks its route to school (waiting 30-90 s at the crosswalk's kerb, then crossing the road
zone), stays at school, goes home in the afternoon (some stand 10-40 minutes 5-15 m from a zone on
the way; some east-side walkers ride an academy shuttle they have not registered, along the road's
lanes), and some go to the academy in the evening. Shuttle riders ride their registered afternoon
shuttle; subway riders lose their fix underground for 5-20 minutes and the fixes taken in the
station arrive when they come up. Incidents: stays in a danger zone (from the nearest kerb or the
redevelopment site's hoarding) of every depth (1-60 m) and time inside (10 s - 10 min), departures
from the route (west-side walkers, 20-200 m beyond the corridor, 15-300 s), SOS presses.

The GPS (vectorised, per child-day): the simulator's model (each device 8-20 m typical, the
reported accuracy wandering 5-50 m, the error a drifting normal with sigma = acc / 1.51, tau 45 s;
multipath: honest episodes of a larger accuracy, lying jumps of 40-120 m at a small one, started at
the simulator's rate per 15 s of time), plus urban-canyon bias episodes (20-60 m of bias for 1-5
minutes while the reported accuracy stays 10-25 m), indoor fixes (at home, school, academy, in a
station: accuracy 2.5x, the error with it), and a device class (20 %) whose true error is 1.5x what
it reports. 5 % of tags have a clock off by -240 to +90 s, 2 % store and forward (fixes received in
bursts 1-5 minutes late); the rest are received 0.2-3 s after they are taken.

The fixes of a group of children go, in the order received, through
:class:`tracker.offline.OfflineTracker` in batches by the second received, with the clock's pass every
``tick_s`` (as ``tracker replay --world --alerts-out`` runs them). Each alert is kept with the moment
it was raised (the server's time of its batch or clock pass), which is what delays are measured from.
"""

from __future__ import annotations

import math
import os
import random
import time as clock
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from multiprocessing import get_context
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from shapely.geometry import LineString, Point

from bench.quality.city import (
    CORRIDOR_M,
    Block,
    RouteGeom,
    build_blocks,
    world_doc,
)
from tracker.config import Settings
from tracker.ingest.decode import Fix as TrackerFix
from tracker.monitor import RouteSchedule, Rules
from tracker.offline import OfflineTracker
from tracker.replay import world_view

TZ = ZoneInfo("Asia/Seoul")
FIRST_DAY = date(2026, 4, 6)
R68 = 1.5096
TAU_S = 45.0
WALK_V = (1.1, 1.5)
SCORE_KIND = {
    "danger_zone": "entered_zone",
    "not_arrived_school": "not_arrived",
    "not_arrived_home": "not_arrived",
}
ALERT_KINDS = frozenset({"left_route", "entered_zone", "sos", "signal_lost", "not_arrived"})
FIXES_PER_GROUP_DAY = 2_500_000
"""children are run in groups whose one day holds about this many fixes (memory)"""


@dataclass(frozen=True, kw_only=True)
class CityParams:
    child_days: int = 10_000
    days: int = 10
    interval_s: float = 15.0
    seed: int = 1
    schools: int = 10
    workers: int = 0
    tick_s: float = 5.0
    stays_per_day: float = 0.4
    sos_per_day: float = 0.05
    departure_per_walk: float = 0.3
    canyon_per_hour: float = 1.0
    """bias episodes per hour outdoors (streets between tall buildings)"""
    skewed_share: float = 0.05
    store_forward_share: float = 0.02
    big_error_share: float = 0.2
    rules: tuple[tuple[str, float], ...] = ()
    why: bool = False
    """name the rule behind each alert (bench.quality.stand.RuleWatch watches the monitor's steps)"""

    @property
    def children(self) -> int:
        return max(1, math.ceil(self.child_days / self.days))


# --- a child's day: where it is, second by second, and what it is doing ----------------------------


@dataclass
class Day:
    """Waypoints (t, x, y) in seconds from the local midnight and block metres; activities
    (kind, t0, t1, facts); indoor intervals; incidents (dicts of their truth)."""

    pts: list[tuple[float, float, float]] = field(default_factory=list)
    acts: list[tuple[str, float, float, dict[str, Any]]] = field(default_factory=list)
    indoor: list[tuple[float, float]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    buffered: list[tuple[float, float, float]] = field(default_factory=list)
    """(from, to, delivered): fixes taken in [from, to) are received at ``delivered``"""
    dark: list[tuple[float, float]] = field(default_factory=list)
    """no fix at all (underground)"""

    @property
    def t(self) -> float:
        return self.pts[-1][0]

    @property
    def here(self) -> tuple[float, float]:
        return self.pts[-1][1], self.pts[-1][2]

    def go(self, path: list[tuple[float, float]], v: float, act: str | None = None, **facts: Any) -> None:
        t0 = self.t
        for x, y in path:
            px, py = self.here
            self.pts.append((self.t + math.hypot(x - px, y - py) / v, x, y))
        if act:
            self.acts.append((act, t0, self.t, facts))

    def stay(self, until: float, act: str | None = None, indoor: bool = False, **facts: Any) -> None:
        t0 = self.t
        until = max(until, t0)
        x, y = self.here
        self.pts.append((until, x, y))
        if act:
            self.acts.append((act, t0, until, facts))
        if indoor:
            self.indoor.append((t0, until))


def _hm(h: float, m: float = 0.0) -> float:
    return h * 3600.0 + m * 60.0


def _kerb_north(b: Block, x: float) -> tuple[float, float]:
    return (x, b.road_w / 2 + 0.7)


def _kerb_south(b: Block, x: float) -> tuple[float, float]:
    return (x, -b.road_w / 2 - 0.7)


def _cross(d: Day, b: Block, x: float, north_to_south: bool, v: float, rng: random.Random) -> None:
    """Wait 30-90 s at the kerb, then walk over the crosswalk."""
    yn, ys = b.y_north, -b.y_north
    a, c = (
        (_kerb_north(b, x), _kerb_south(b, x)) if north_to_south else (_kerb_south(b, x), _kerb_north(b, x))
    )
    d.go([a], v)
    d.stay(d.t + rng.uniform(30.0, 90.0), "kerb_wait", zone_m=0.7)
    d.go([c], v, "crossing")
    d.go([(x, ys if north_to_south else yn)], v)


def _walk_route(
    d: Day, b: Block, r: RouteGeom, to_school: bool, v: float, rng: random.Random, depart: bool
) -> None:
    """Walk a walk route (or the surface ends of the subway route), crossing at its crosswalk."""
    assert r.crosswalk is not None
    xc = r.crosswalk[0][0]
    line = r.line if to_school else list(reversed(r.line))
    t0 = d.t
    for i in range(1, len(line)):
        a, c = line[i - 1], line[i]
        if abs(a[0] - xc) < 1e-6 and abs(c[0] - xc) < 1e-6 and (a[1] > 0) != (c[1] > 0):
            _cross(d, b, xc, a[1] > 0, v, rng)  # the crosswalk leg
            continue
        if depart and r.kind == "walk_west" and i == (2 if to_school else len(line) - 2):
            # a departure from the north sidewalk, away from the road
            lo, hi = min(a[0], c[0]) + 250.0, max(a[0], c[0]) - 30.0
            if hi > lo:
                x0 = rng.uniform(lo, hi)
                d.go([(x0, a[1])], v)
                extra = rng.uniform(20.0, 200.0)
                t_go = d.t
                d.go([(x0, a[1] + CORRIDOR_M + extra)], v)
                dwell = rng.uniform(15.0, 300.0)
                d.stay(d.t + dwell)
                d.go([(x0, a[1])], v)
                far = extra >= 60.0
                d.incidents.append(
                    {
                        "kind": "leave_route",
                        "start": t_go,
                        "end": d.t,
                        "extra_m": extra,
                        "t60": t_go + (CORRIDOR_M + 60.0) / v if far else None,
                        "beyond60_s": dwell + 2 * (extra - 60.0) / v if far else 0.0,
                    }
                )
        d.go([c], v)
    d.acts.append(("walk", t0, d.t, {}))


def plan_day(b: Block, r: RouteGeom, rng: random.Random, p: CityParams) -> Day:
    """One child's day on route ``r`` of block ``b`` (see the module's docstring)."""
    d = Day()
    v = rng.uniform(*WALK_V)
    d.pts.append((0.0, *r.home))
    kind = r.kind
    if kind in ("walk_west", "walk_east", "subway"):
        d.stay(_hm(7, 35) + rng.uniform(0, 2700) - (1200 if kind == "subway" else 0), "home", indoor=True)
        if kind == "subway":
            _subway(d, b, r, v, rng, to_school=True)
        else:
            _walk_route(d, b, r, True, v, rng, rng.random() < p.departure_per_walk)
        d.stay(_hm(13) + rng.uniform(0, 9000), "school", indoor=True)
        if kind == "walk_east" and rng.random() < 0.1:
            _ride(d, b, r, rng, registered=False)
        elif kind == "subway":
            _subway(d, b, r, v, rng, to_school=False)
        else:
            if rng.random() < 0.3:
                _stand_near(d, b, r, v, rng)
            _walk_route(d, b, r, False, v, rng, rng.random() < p.departure_per_walk)
        if kind != "subway" and rng.random() < 0.4:
            d.stay(max(d.t, _hm(17) + rng.uniform(0, 7200)), "home", indoor=True)
            ax, ay = b.academy
            out = [(r.home[0], b.y_north), (ax, b.y_north), (ax, ay)]
            d.go(out, v, "walk")
            d.stay(d.t + rng.uniform(3600, 10800), "academy", indoor=True)
            d.go([*reversed(out[:-1]), r.home], v, "walk")
        d.stay(86400.0, "home", indoor=True)
    else:  # shuttle riders live at the academy
        ax = b.academy[0]
        d.stay(_hm(7, 35) + rng.uniform(0, 2700), "home", indoor=True)
        t0 = d.t
        d.go([(ax, b.y_north)], v)
        _cross(d, b, ax, True, v, rng)
        d.go([(0.0, -b.y_north), b.school], v)
        d.acts.append(("walk", t0, d.t, {}))
        d.stay(_hm(13) + rng.uniform(0, 9000), "school", indoor=True)
        _ride(d, b, r, rng, registered=True)
        d.stay(86400.0, "home", indoor=True)
    _add_stays(d, b, r, rng, p)
    return d


def _ride(d: Day, b: Block, r: RouteGeom, rng: random.Random, *, registered: bool) -> None:
    """From the school gate's kerb into the road's lanes, along them at 8-15 m/s (one red light),
    across to the north kerb, then on foot."""
    v = rng.uniform(*WALK_V)
    d.go([(0.0, -b.y_north), _kerb_south(b, 0.0)], v)
    d.stay(d.t + rng.uniform(120.0, 300.0), "board_wait", zone_m=0.7)
    t0 = d.t
    speed = rng.uniform(8.0, 15.0)
    h = b.road_w / 2
    x_end = b.academy[0] if registered else r.home[0]
    lane = -b.road_w / 4 if registered else b.road_w / 4
    d.go([(0.0, lane)], speed)
    mid = x_end * rng.uniform(0.3, 0.7)
    d.go([(mid, lane)], speed)
    d.stay(d.t + rng.uniform(30.0, 90.0))
    d.go([(x_end, lane), (x_end, h + 0.7)], speed)
    d.acts.append(("ride_registered" if registered else "ride_unregistered", t0, d.t, {}))
    if not registered:
        d.incidents.append({"kind": "unregistered_ride", "start": t0, "end": d.t})
    end = b.academy if registered else r.home
    d.go([(x_end, b.y_north), end], v, "walk")


def _stand_near(d: Day, b: Block, r: RouteGeom, v: float, rng: random.Random) -> None:
    """On the way home, stand 10-40 minutes 5-15 m from a zone (in front of the hoarding, or by
    the road)."""
    g = rng.uniform(5.0, 15.0)
    x0, x1, y0, _ = b.site
    if r.kind == "walk_east":
        spot = (rng.uniform(x0 + 20, x1 - 20), y0 - g)
        if spot[1] - b.road_w / 2 < 5.0:  # too near the road: stand by the road instead
            spot = (spot[0], b.road_w / 2 + g)
    else:
        xc = r.crosswalk[0][0] if r.crosswalk else 0.0
        spot = (rng.uniform(xc - 200, xc - 50), b.road_w / 2 + g)
    t0 = d.t
    # to the crosswalk, over it, to the spot; the walk home continues from the crosswalk's far side
    xc = r.crosswalk[0][0] if r.crosswalk else 0.0
    d.go([(0.0, -b.y_north), (xc, -b.y_north)], v)
    _cross(d, b, xc, False, v, rng)
    d.go([(spot[0], b.y_north), spot], v)
    d.stay(d.t + rng.uniform(600.0, 2400.0), "stand_near", zone_m=b.zone_distance(*spot))
    d.go([(spot[0], b.y_north), (xc, b.y_north), (xc, -b.y_north), (0.0, -b.y_north), b.school], v)
    d.acts.append(("walk", t0, d.t, {}))


def _subway(d: Day, b: Block, r: RouteGeom, v: float, rng: random.Random, *, to_school: bool) -> None:
    """Home <-> far station on foot, underground 5-20 minutes, near station <-> school on foot; the
    fixes taken in the station before the train are delivered when the child comes up."""
    far, near = r.line[1], r.line[2]
    t0 = d.t
    if to_school:
        d.go([far], v)
        down = d.t
        d.stay(d.t + rng.uniform(60.0, 120.0), "station", indoor=True)
        under = d.t
        d.go([near], math.dist(far, near) / rng.uniform(300.0, 1200.0))
        up = d.t
        d.buffered.append((down, under, up + rng.uniform(2.0, 10.0)))
        d.dark.append((under, up))
        d.acts.append(("subway", down, up, {}))
        sub = RouteGeom(r.id, r.number, r.line[2:], r.mode, r.windows, r.crosswalk, near, "subway_surface")
        _walk_route(d, b, sub, True, v, rng, False)
    else:
        sub = RouteGeom(r.id, r.number, r.line[2:], r.mode, r.windows, r.crosswalk, near, "subway_surface")
        _walk_route(d, b, sub, False, v, rng, False)
        down = d.t
        d.stay(d.t + rng.uniform(60.0, 120.0), "station", indoor=True)
        under = d.t
        d.go([far], math.dist(far, near) / rng.uniform(300.0, 1200.0))
        up = d.t
        d.buffered.append((down, under, up + rng.uniform(2.0, 10.0)))
        d.dark.append((under, up))
        d.acts.append(("subway", down, up, {}))
        d.go([r.home], v)
    d.acts.append(("walk", t0, d.t, {}))


DEPTH_BINS = ((1.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 60.0))
STAY_BINS = ((10.0, 30.0), (30.0, 120.0), (120.0, 300.0), (300.0, 600.0))


def _add_stays(d: Day, b: Block, r: RouteGeom, rng: random.Random, p: CityParams) -> None:
    """Zone stays from the child's stationary places: out to the nearest kerb (or the hoarding),
    in to a depth, a time inside, back. Inserted into a stationary interval that holds the trip."""
    n = _poisson(rng, p.stays_per_day)
    places = [(k, t0, t1) for k, t0, t1, _ in d.acts if k in ("home", "school", "academy") and t1 - t0 > 1800]
    used: list[tuple[float, float]] = []
    for _ in range(n):
        if not places:
            return
        kind, t0, t1 = rng.choice(places)
        x, y = _position(d, t0 + 1.0)
        if math.hypot(x, y) > 3000:  # the subway riders' far homes: no zone near
            continue
        lo, hi = rng.choice(DEPTH_BINS)
        depth = rng.uniform(lo, hi)
        a, c = rng.choice(STAY_BINS)
        inside = math.exp(rng.uniform(math.log(a), math.log(c)))
        h = b.road_w / 2
        north = y > 0
        if depth > h - 1.0 and not north:
            depth = rng.uniform(1.0, h - 1.0)
        x0, x1, sy0, _ = b.site
        if north and (depth > h - 1.0 or rng.random() < 0.5):
            ex = rng.uniform(x0 + 70.0, x1 - 70.0)
            path_out = [(x, b.y_north), (ex, b.y_north), (ex, sy0)]
            deep = (ex, sy0 + depth)
            zone = b.site_id
        else:
            ex = x + rng.uniform(-20.0, 20.0)
            edge_y = h if north else -h
            path_out = [(x, math.copysign(b.y_north, edge_y)), (ex, edge_y)]
            deep = (ex, edge_y - math.copysign(depth, edge_y))
            zone = b.road_id
        v = rng.uniform(*WALK_V)
        v_in = max(v, 2 * depth / (0.8 * inside))
        if v_in > 5.0:
            inside = 2 * depth / (0.8 * 5.0)
            v_in = 5.0
        dwell = inside - 2 * depth / v_in
        there = sum(math.dist(u, w) for u, w in zip([(x, y), *path_out[:-1]], path_out, strict=True)) / v
        total = 2 * there + inside
        room = (t0 + 60.0, t1 - total - 60.0)
        if room[1] <= room[0]:
            continue
        start = rng.uniform(*room)
        if any(start < u1 + 60 and start + total > u0 - 60 for u0, u1 in used):
            continue
        used.append((start, start + total))
        t_edge = start + there
        t_deep = t_edge + depth / v_in
        t_out = t_deep + dwell
        t_back = t_out + depth / v_in
        seg = [(start, x, y)]
        tt = start
        prev = (x, y)
        for q in path_out:
            tt += math.dist(prev, q) / v
            seg.append((tt, *q))
            prev = q
        seg += [(t_deep, *deep), (t_out, *deep), (t_back, *path_out[-1])]
        tt = t_back
        prev = path_out[-1]
        for q in [*reversed(path_out[:-1]), (x, y)]:
            tt += math.dist(prev, q) / v
            seg.append((tt, *q))
            prev = q
        _insert(d, seg)
        _go_outdoors(d, start, tt)
        d.acts.append(("stay_trip", start, tt, {}))
        d.incidents.append(
            {
                "kind": "enter_zone",
                "zone_id": zone,
                "start": t_edge,
                "end": t_back,
                "depth_m": depth,
                "inside_s": t_back - t_edge,
                "deep_at": t_deep,
                "at30": None if depth < 30.0 else t_edge + 30.0 / v_in,
                "place": kind,
                "route_m": LineString(r.line).distance(Point(deep)),
            }
        )


def _go_outdoors(d: Day, a: float, c: float) -> None:
    """The child is outdoors from ``a`` to ``c`` (a trip out of a place it stayed in indoors): the
    indoor intervals lose that span. A child in the road or at a hoarding has a sky view; its fixes
    there are outdoor fixes (without this, every stay from home, school or academy was drawn with
    indoor accuracy and error, 2.5x, as if the child had taken the building with it)."""
    out: list[tuple[float, float]] = []
    for u, w in d.indoor:
        if w <= a or u >= c:
            out.append((u, w))
            continue
        if u < a:
            out.append((u, a))
        if w > c:
            out.append((c, w))
    d.indoor = out


def _insert(d: Day, seg: list[tuple[float, float, float]]) -> None:
    """Replace the (stationary) waypoints' span by ``seg``."""
    a, c = seg[0][0], seg[-1][0]
    before = [q for q in d.pts if q[0] < a]
    after = [q for q in d.pts if q[0] > c]
    d.pts = [*before, *seg, *after]


def _position(d: Day, t: float) -> tuple[float, float]:
    ts = [q[0] for q in d.pts]
    return float(np.interp(t, ts, [q[1] for q in d.pts])), float(np.interp(t, ts, [q[2] for q in d.pts]))


def _poisson(rng: random.Random, lam: float) -> int:
    n, acc, limit = 0, 1.0, math.exp(-lam)
    while True:
        acc *= rng.random()
        if acc <= limit:
            return n
        n += 1


# --- the tag: its GPS, its clock, its delivery -----------------------------------------------------


@dataclass(frozen=True)
class Tag:
    """One child's device: what it is like for the whole run."""

    typical_acc: float
    error_factor: float
    """true error / what the accuracy says (1.5 for the device class that under-reports)"""
    clock_offset_s: float
    store_forward: bool


def make_tag(rng: random.Random, p: CityParams) -> Tag:
    return Tag(
        rng.uniform(8.0, 20.0),
        1.5 if rng.random() < p.big_error_share else 1.0,
        rng.uniform(-240.0, 90.0) if rng.random() < p.skewed_share else 0.0,
        rng.random() < p.store_forward_share,
    )


@dataclass
class DayFixes:
    """One child-day's fixes as arrays (true time order)."""

    t: np.ndarray  # true time, s since local midnight
    x: np.ndarray  # reported, block metres
    y: np.ndarray
    tx: np.ndarray  # true
    ty: np.ndarray
    acc: np.ndarray
    sigma_true: np.ndarray
    """the true error's sigma per axis before multipath and canyon bias (for the ceiling)"""
    received: np.ndarray  # s since local midnight
    sos: np.ndarray
    noise: list[tuple[str, float, float]] = field(default_factory=list)
    """the error's episodes beyond the drifting normal: ("canyon", start, end), ("lie", t, t) for a
    fix thrown 40-120 m, ("multipath", start, end) for honest multipath (s since local midnight)"""


def unit_noise(n_children: int, p: CityParams, rng: np.random.Generator) -> np.ndarray:
    """For each child, three unit-variance AR(1) series on the day's grid of fixes: the log of the
    reported accuracy (tau 300 s) and the error's two axes (tau 45 s). Shape (3, n, grid)."""
    dt = p.interval_s
    m = len(np.arange(0.0, 86400.0 - dt, dt))
    e = rng.standard_normal((3, n_children, m))
    rho = np.array([math.exp(-dt / 300.0), math.exp(-dt / TAU_S), math.exp(-dt / TAU_S)])[:, None]
    k = np.sqrt(1.0 - rho * rho)
    for i in range(1, m):
        e[:, :, i] = rho * e[:, :, i - 1] + k * e[:, :, i]
    return e


def fixes_of_day(d: Day, tag: Tag, p: CityParams, rng: np.random.Generator, noise: np.ndarray) -> DayFixes:
    """The tag's fixes of one day (the noise model in the module's docstring); ``noise``: the child's
    rows of :func:`unit_noise`."""
    dt = p.interval_s
    t = rng.uniform(0, dt) + np.arange(0.0, 86400.0 - dt, dt)
    grid = np.arange(len(t))
    keep = np.ones(len(t), bool)
    for a, c in d.dark:
        keep &= ~((t >= a) & (t < c))
    sos_t = [inc["start"] for inc in d.incidents if inc["kind"] == "sos"]
    sos_arr = np.asarray(sos_t, float)
    sos_grid = np.clip(np.searchsorted(t, sos_arr), 0, len(t) - 1)
    t_all = np.concatenate([t[keep], sos_arr])
    g_all = np.concatenate([grid[keep], sos_grid])
    order = np.argsort(t_all, kind="stable")
    t, g = t_all[order], g_all[order]
    sos = np.isin(t, sos_arr)
    n = len(t)
    ts = np.array([q[0] for q in d.pts])
    tx = np.interp(t, ts, [q[1] for q in d.pts])
    ty = np.interp(t, ts, [q[2] for q in d.pts])
    indoor = np.zeros(n, bool)
    for a, c in d.indoor:
        indoor |= (t >= a) & (t < c)
    gaps = np.diff(t, prepend=t[0] - dt)
    # the reported accuracy wanders round the device's typical value (log OU, tau 300 s)
    la, ux, uy = noise[0][g], noise[1][g], noise[2][g]
    acc = np.clip(tag.typical_acc * np.exp(0.35 * la), 5.0, 50.0)
    acc = np.where(indoor, np.minimum(acc * 2.5, 150.0), acc)
    sigma = acc / R68 * tag.error_factor
    dx, dy = sigma * ux, sigma * uy
    # urban canyon: a bias of 20-60 m for 1-5 minutes, the reported accuracy 10-25 m meanwhile
    outdoor = [(a, c) for a, c in _outdoors(d)]
    episodes: list[tuple[str, float, float]] = []  # (no draws: what was drawn, for the score)
    for a0, c0 in outdoor:
        for _ in range(rng.poisson(p.canyon_per_hour * (c0 - a0) / 3600.0)):
            a = rng.uniform(a0, c0)
            c = a + rng.uniform(60.0, 300.0)
            w = (t >= a) & (t < c)
            ang = rng.uniform(0, 2 * math.pi)
            m = rng.uniform(20.0, 60.0)
            dx[w] += m * math.cos(ang)
            dy[w] += m * math.sin(ang)
            acc[w] = rng.uniform(10.0, 25.0)
            episodes.append(("canyon", a, c))
    # multipath at the simulator's rate per 15 s of time: honest (larger accuracy) or a lying jump
    start = rng.random(n) < 0.02 * np.minimum(gaps, 15.0) / 15.0
    lie = start & (rng.random(n) < 0.2)
    k = int(lie.sum())
    ang = rng.uniform(0, 2 * math.pi, k)
    jump = rng.uniform(40.0, 120.0, k)
    dx[lie] += jump * np.cos(ang)
    dy[lie] += jump * np.sin(ang)
    episodes += [("lie", float(x), float(x)) for x in t[lie]]
    for i in np.flatnonzero(start & ~lie):
        end = t[i] + rng.uniform(15.0, 45.0)
        episodes.append(("multipath", float(t[i]), float(end)))
        span = (t >= t[i]) & (t < end)
        mp = rng.uniform(50.0, 150.0)
        cnt = int(span.sum())
        acc[span] = mp
        dx[span] = rng.normal(0, mp / R68, cnt)
        dy[span] = rng.normal(0, mp / R68, cnt)
    # delivery
    if tag.store_forward:
        uploads = np.cumsum(rng.uniform(60.0, 300.0, int(86400 / 60) + 2))
        received = uploads[np.searchsorted(uploads, t)] + rng.uniform(0.2, 2.0, n)
    else:
        received = t + 0.2 + rng.exponential(0.8, n)
    for a, c, at in d.buffered:
        w = (t >= a) & (t < c)
        received[w] = np.maximum(received[w], at)
    return DayFixes(t, tx + dx, ty + dy, tx, ty, acc, acc / R68 * tag.error_factor, received, sos, episodes)


def _outdoors(d: Day) -> list[tuple[float, float]]:
    """The day's intervals outside the indoor ones."""
    out, t = [], 0.0
    for a, c in sorted(d.indoor):
        if a > t:
            out.append((t, a))
        t = max(t, c)
    if t < 86400.0:
        out.append((t, 86400.0))
    return out


# --- a group of children through the tracker ------------------------------------------------------


@dataclass
class RaisedAlert:
    child: int
    kind: str
    zone_id: int | None
    raised_at: float
    opened_at: float
    received_at: float | None
    """the receive time of the fix that opened it (None: the clock)"""
    rule: str | None = None
    """the rule behind it, with ``CityParams.why`` (bench.quality.stand.RuleWatch)"""


@dataclass
class ChildDay:
    """What the score needs of one child-day (times in unix seconds)."""

    child: int
    route_kind: str
    tag: Tag
    day_start: float
    acts: list[tuple[str, float, float, dict[str, Any]]]
    incidents: list[dict[str, Any]]
    fixes: int
    noise: list[tuple[str, float, float]] = field(default_factory=list)
    """DayFixes.noise in unix seconds"""


@dataclass
class CityOutcome:
    days: list[ChildDay] = field(default_factory=list)
    alerts: list[RaisedAlert] = field(default_factory=list)
    fixes: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    sos_received: dict[tuple[int, float], float] = field(default_factory=dict)
    """(child, true press time) -> when the tracker received that fix"""

    def merge(self, o: CityOutcome) -> None:
        self.days += o.days
        self.alerts += o.alerts
        self.fixes += o.fixes
        self.refused.update(o.refused)
        self.sos_received.update(o.sos_received)


def school_days(n: int) -> list[date]:
    sched = RouteSchedule.from_registry(
        "Asia/Seoul", [{"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:10"}]
    )
    out, day = [], FIRST_DAY
    while len(out) < n:
        if day.weekday() < 5 and sched.school_day(day):
            out.append(day)
        day += timedelta(days=1)
    return out


def child_route(p: CityParams, k: int, blocks: list[Block]) -> tuple[Block, RouteGeom]:
    """Child k's block and route: round the blocks, two children of five on the west and east walk
    routes, one of ten on the shuttle, one of ten on the subway."""
    b = blocks[((k - 1) // 10) % len(blocks)]
    slot = (k - 1) % 10
    number = [1, 2, 3, 4, 1, 2, 3, 4, 5, 6][slot]
    return b, next(r for r in b.routes if r.number == number)


def run_group(p: CityParams, children: list[int]) -> CityOutcome:
    """Children ``children`` through every day (one OfflineTracker: their states carry over)."""
    blocks = build_blocks(p.schools)
    by_route: dict[int, list[dict[str, Any]]] = {}
    assign = {k: child_route(p, k, blocks) for k in children}
    for k, (_, r) in assign.items():
        by_route.setdefault(r.id, []).append({"id": k, "name": f"Child {k}", "tag": f"city-{k:06d}"})
    view = world_view(world_doc(blocks, by_route), Settings())
    rules = Rules(**dict(p.rules)) if p.rules else Rules()
    offline = OfflineTracker(view, rules, tick_s=p.tick_s)
    out = CityOutcome()
    watch = None
    if p.why:
        from bench.quality.stand import RuleWatch  # it imports this module

        try:
            watch = RuleWatch()
        except AttributeError:  # the monitor's steps renamed: alerts are counted, their rules not named
            watch = None
    tags = {k: make_tag(random.Random(p.seed * 7_000_003 + k), p) for k in children}
    previous: date | None = None
    for day_no, day in enumerate(school_days(p.days)):
        day_start = datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp()
        if previous is not None and (day - previous).days > 1:
            # a weekend or holiday: no school day, nothing for the clock to do; its passes skipped
            offline.last_pass = day_start - p.tick_s
        previous = day
        noise = unit_noise(len(children), p, np.random.default_rng([p.seed, day_no, children[0]]))
        cols: dict[str, list[np.ndarray]] = {
            k: [] for k in ("recv", "ts", "lon", "lat", "acc", "sos", "child")
        }
        for j, k in enumerate(children):
            b, r = assign[k]
            rng = random.Random(hash((p.seed, k, day_no)) & 0xFFFFFFFF)
            d = plan_day(b, r, rng, p)
            for _ in range(_poisson(rng, p.sos_per_day)):
                d.incidents.append({"kind": "sos", "start": rng.uniform(0, 86000), "end": 0.0})
            for inc in d.incidents:
                if inc["kind"] == "sos":
                    inc["end"] = inc["start"]
            for act in d.acts:
                if act[0] in ("home", "school", "academy") and "zone_m" not in act[3]:
                    x, y = _position(d, act[1] + 1.0)
                    act[3]["zone_m"] = b.zone_distance(x, y) if math.hypot(x, y) < 3000 else 1e6
            f = fixes_of_day(d, tags[k], p, np.random.default_rng([p.seed, k, day_no]), noise[:, j, :])
            lon, lat = b.projection().to_lonlat_arrays(f.x, f.y)
            cols["recv"].append(f.received + day_start)
            cols["ts"].append(f.t + day_start + tags[k].clock_offset_s)
            cols["lon"].append(np.asarray(lon))
            cols["lat"].append(np.asarray(lat))
            cols["acc"].append(f.acc)
            cols["sos"].append(f.sos)
            cols["child"].append(np.full(len(f.t), k))
            _truth(d, f, tags[k], day_start)
            for inc in d.incidents:
                if inc["kind"] == "sos":
                    i = int(np.searchsorted(f.t, inc["start"] - day_start))
                    if i < len(f.t):
                        out.sos_received[(k, inc["start"])] = float(f.received[i] + day_start)
            out.days.append(
                ChildDay(
                    k,
                    r.kind,
                    tags[k],
                    day_start,
                    _shift(d.acts, day_start),
                    d.incidents,
                    len(f.t),
                    [(kind, a + day_start, c + day_start) for kind, a, c in f.noise],
                )
            )
        arr = {k: np.concatenate(v) for k, v in cols.items()}
        order = np.argsort(arr["recv"], kind="stable")
        _drive(offline, arr, order, out, watch.rule_of if watch else None)
    if watch:
        watch.close()
    out.refused.update(Counter(r.reason.value for r in offline.refused))
    return out


def _shift(
    acts: list[tuple[str, float, float, dict[str, Any]]], t0: float
) -> list[tuple[str, float, float, dict[str, Any]]]:
    return [(k, a + t0, c + t0, f) for k, a, c, f in acts]


def _truth(d: Day, f: DayFixes, tag: Tag, day_start: float) -> None:
    """Each incident's truth in unix time, and what the fixes during a stay were like."""
    for inc in d.incidents:
        if inc["kind"] == "enter_zone":
            w = (f.t >= inc["start"]) & (f.t <= inc["end"])
            inc["acc_median"] = float(np.median(f.acc[w])) if w.any() else None
            inc["fix_t"] = f.t[w].tolist()
            inc["sigma"] = f.sigma_true[w].tolist()
            # the true depth of the child at each of those fixes (for the ceiling)
            inc["depth_at_fix"] = _depth_profile(inc, f.t[w]).tolist()
        for key in ("start", "end", "deep_at", "at30", "t60"):
            if inc.get(key) is not None:
                inc[key] += day_start
        if "fix_t" in inc:
            inc["fix_t"] = [x + day_start for x in inc["fix_t"]]


def _depth_profile(inc: dict[str, Any], t: np.ndarray) -> np.ndarray:
    """Depth inside the zone at times t (walk in, dwell, walk out)."""
    d = inc["depth_m"]
    a, deep, c = inc["start"], inc["deep_at"], inc["end"]
    out_start = c - (deep - a)
    return np.interp(t, [a, deep, out_start, c], [0.0, d, d, 0.0])


def _drive(
    offline: OfflineTracker,
    arr: dict[str, np.ndarray],
    order: np.ndarray,
    out: CityOutcome,
    rule_of: dict[tuple[float, float, float, int | None], str] | None = None,
) -> None:
    """The fixes in the order received, the clock's passes in between (``OfflineTracker.run``'s
    order), each new alert stamped with when it was raised. A batch is what was received between two
    passes of the clock (``tick_s``; the service's batches are shorter, ``OfflineTracker.run``'s one
    second): every fix meets the same passes before and after it as it would in batches by the second,
    and the monitor judges each child's fixes one by one in either case; only admission's "stamped in
    the future" check is made at the batch's last receipt, up to ``tick_s`` later than the second it
    was received in (a clock 60-65 s fast is the edge: 0.15 % of the tags here). Five times fewer
    batches is what makes 10,000 child-days of 24 hours fit in the bench's hour."""
    recv = arr["recv"][order]
    sec = np.floor(recv / offline.tick_s)
    cuts = np.flatnonzero(np.diff(sec)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(order)]])
    ts, lon, lat, acc = arr["ts"][order], arr["lon"][order], arr["lat"][order], arr["acc"][order]
    sos, child = arr["sos"][order], arr["child"][order]
    ledger = offline.ledger
    tag_of = {int(c): f"city-{int(c):06d}" for c in np.unique(child)}
    for a, c in zip(starts.tolist(), ends.tolist(), strict=True):
        first = float(recv[a])
        n0 = len(ledger.alerts)
        after = offline.last_pass if offline.last_pass is not None else first - offline.tick_s
        for tp in _passes(after, first, offline.tick_s):
            offline.clock(tp)
            _stamp(offline, n0, tp, out, rule_of)
            n0 = len(ledger.alerts)
        batch = [
            TrackerFix(
                tag_of[int(child[i])],
                float(ts[i]),
                float(lat[i]),
                float(lon[i]),
                float(acc[i]),
                None,
                None,
                bool(sos[i]),
                float(recv[i]),
                "tracker/v1/tags/x/position",
            )
            for i in range(a, c)
        ]
        now = float(recv[c - 1])
        events = offline.batch(batch, now)
        _stamp(offline, n0, now, out, rule_of)
        for ce in events:  # every press is heard: a second one updates the open SOS alert
            if ce.event.kind.value == "sos":
                fix = next((f for f in batch if f.sos and tag_of.get(ce.child_id) == f.tag), None)
                out.alerts.append(
                    RaisedAlert(ce.child_id, "sos", None, now, ce.event.ts, fix.received_at if fix else None)
                )
        out.fixes += c - a


def _passes(after: float, before: float, tick: float) -> list[float]:
    k = math.floor(after / tick) + 1
    return [j * tick for j in range(k, math.ceil(before / tick) + 1) if j * tick < before]


def _stamp(
    offline: OfflineTracker,
    n0: int,
    now: float,
    out: CityOutcome,
    rule_of: dict[tuple[float, float, float, int | None], str] | None = None,
) -> None:
    for al in offline.ledger.alerts[n0:]:
        kind = SCORE_KIND.get(al.kind, al.kind)
        if kind in ALERT_KINDS and kind != "sos":
            rule = None
            if rule_of is not None:
                f = al.fix
                key = None if f is None else (f.ts, f.lon, f.lat, al.zone_id)
                rule = "clock" if f is None else rule_of.get(key, "?") if key else None
            out.alerts.append(
                RaisedAlert(
                    al.child_id,
                    kind,
                    al.zone_id,
                    now,
                    al.opened_at,
                    al.fix.received_at if al.fix else None,
                    rule,
                )
            )


def _group(args: tuple[CityParams, list[int]]) -> CityOutcome:
    return run_group(*args)


def simulate_city(p: CityParams) -> tuple[CityOutcome, float]:
    """Every child through every day, in groups whose day fits in memory, on ``workers`` processes."""
    started = clock.perf_counter()
    children = list(range(1, p.children + 1))
    per_day = 86400.0 / p.interval_s
    size = max(1, min(len(children), int(FIXES_PER_GROUP_DAY / per_day)))
    workers = max(1, min(p.workers or os.cpu_count() or 1, len(children)))
    size = min(size, math.ceil(len(children) / workers))
    groups = [children[i : i + size] for i in range(0, len(children), size)]
    out = CityOutcome()
    if workers == 1:
        for g in groups:
            out.merge(run_group(p, g))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for part in pool.map(_group, [(p, g) for g in groups]):
                out.merge(part)
    return out, clock.perf_counter() - started
