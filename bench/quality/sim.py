"""The simulated school days: every fix through the tracker's own decisions and through the naive rule.

No servers and no clock: the simulator's core (``FixGenerator``) makes fixes and ground truth, and
the bench steps it one simulated second at a time. Each second's fixes are one batch received at that
second and go through

* the tracker's decisions on past fixes, :class:`tracker.offline.OfflineTracker` (what ``tracker
  replay --world --alerts-out`` runs): admission, ``tracker.stages.geofence.observe`` (each child's
  previous fix for the crossings, the zone disc round each fix), the monitor's ``judge_batch``, and
  the alert ledger of ``tracker.alerts.lifecycle`` (one open alert per child, kind and zone), on the
  registry view the service would build from the bench's world (``view_from_world``: commute windows
  in Asia/Seoul on school days, arrivals, school and home fences, default ``Rules``); the clock's
  pass (signal lost, not arrived) runs every ``tick_s`` simulated seconds, after that second's batch,
  as the service's clock does; an alert is what the ledger opened (one incident, one alert);
* the naive rule of Traccar, AWS Location and Tile38: a fix's centre alone decides; left route when
  it is outside the corridor (in a commute window), back when inside; a zone entered when the
  centre is inside it, left when outside; SOS at once. It has no accuracy, dwell or signal rule.

A simulated school day is its two commute windows (07:30-09:10 to school, 12:30-16:30 home, the
demo city's hours), with arrival deadlines ('not arrived') five minutes before each window ends.
Each window is one run of the generator: the tag is on from ``preroll_s`` before the window; the
child sets off at a random moment from then until 45 minutes before the window ends (so that it
arrives in time, incidents included), walks its route (home -> school in the morning; school -> home
in the afternoon, on the world whose routes are walked from the school end) and stays at its
destination; the run goes on ``tail_s`` after the window so that incidents begun in it finish.
Incidents (a Poisson rate per child-hour, none in the pre-roll) are judged when they begin inside the
window; the monitor's state carries over from window to window and day to day.

While a child is off its route on an excursion its true position is sampled every simulated second
(the walker's own position, asked in time order as the generator does), which gives the exact time
it spent >= 60 m beyond the corridor while the route was watched, and inside each zone on the way:
what decides whether the issue's recall target covers the incident.

Children are split over worker processes; each child's fixes depend only on the seed and its tag,
so the figures do not depend on the number of workers.
"""

from __future__ import annotations

import math
import os
import time as clock
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from multiprocessing import get_context
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from shapely.geometry import shape

from bench.quality.score import Alert, Incident
from bench.quality.world import CitySpec, build_city, world_doc
from simulator import (
    FixGenerator,
    IncidentConfig,
    LocalProjection,
    SimConfig,
    TruthRecord,
    WalkConfig,
    World,
    parse_world,
)
from simulator.messages import Fix
from tracker.config import Settings
from tracker.geofence import GeofenceAnswers
from tracker.ingest.decode import Fix as TrackerFix
from tracker.monitor import ChildContext, ChildState, RouteSchedule, Rules, judge
from tracker.offline import Alert as LedgerAlert
from tracker.offline import OfflineTracker
from tracker.replay import world_view

TIMEZONE = "Asia/Seoul"
WINDOWS: tuple[dict[str, Any], ...] = (
    {"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:10"},
    {"days": [0, 1, 2, 3, 4], "start": "12:30", "end": "16:30"},
)
"""the demo city's commute windows (tracker.demo.city.SCHOOL_DAY_WINDOWS): to school, then home"""
ARRIVALS: tuple[dict[str, Any], ...] = (
    {"days": [0, 1, 2, 3, 4], "time": "09:05", "to": "school"},
    {"days": [0, 1, 2, 3, 4], "time": "16:25", "to": "home"},
)
"""arrival deadlines ('not arrived'), five minutes before each window ends"""
FIRST_DAY = date(2026, 4, 6)
"""a Monday; days are the school days from here on (weekdays minus Korean public holidays)"""
HOME_FENCE_M: float = Settings.model_fields["home_fence_m"].default  # the tracker's default
"""the registry view's defaults (tracker.registry_view, Settings.home_fence_m)"""
SET_OFF_BEFORE_END_S = 45 * 60.0
BEYOND_M = 60.0
"""the recall target: a departure of >= 60 m beyond the corridor ..."""
BEYOND_MIN_S = 30.0
"""... lasting >= 30 s"""
ZONE_MIN_S = 10.0
"""and any zone entry lasting >= 10 s"""
EMPTY: frozenset[int] = frozenset()
RECENT_FIXES = 100
"""fixes each child keeps for the evidence of its alerts and incidents (25 minutes at 15 s)"""
EVIDENCE_BEFORE_S = 45.0
ALERT_EVIDENCE_FIXES = 6
MONITOR_ALERTS = frozenset({"left_route", "entered_zone", "sos", "signal_lost", "not_arrived"})
SCORE_KIND = {
    "danger_zone": "entered_zone",
    "not_arrived_school": "not_arrived",
    "not_arrived_home": "not_arrived",
}
"""the alerts table's kind -> the kind the score speaks of"""
NAIVE_ALERTS = frozenset({"left_route", "entered_zone", "sos"})


@dataclass(frozen=True, kw_only=True)
class Params:
    children: int = 2000
    days: int = 2
    seed: int = 1
    schools: int = 20
    incidents_per_hour: float = 0.1
    """Poisson rate per child per simulated hour, of the simulator's mix (35 % leave the route, 35 %
    enter a zone, 15 % SOS, 15 % go silent)"""
    leave_extra_m: tuple[float, float] = (20.0, 200.0)
    """how far beyond the corridor a departure goes: wider than the simulator's default (80-200 m)
    so that some departures fall short of the recall target"""
    stay_s: tuple[float, float] = (15.0, 300.0)
    """how long a child stays out or in a zone (simulator default 120-300 s); short stays included"""
    workers: int = 0
    """processes; 0: one per CPU (at most one per child)"""
    interval_s: float = 15.0
    """each tag's fix interval (the simulator's default; many watches send every 10-60 s)"""
    rules: tuple[tuple[str, float], ...] = ()
    """overrides of the monitor's default Rules (name, value), to try other thresholds"""
    tick_s: float = 5.0
    preroll_s: float = 300.0
    tail_s: float = 900.0
    windows: tuple[dict[str, Any], ...] = WINDOWS
    arrivals: tuple[dict[str, Any], ...] = ARRIVALS
    first_day: date = FIRST_DAY

    def __post_init__(self) -> None:
        if self.children < 1 or self.days < 1 or self.schools < 1:
            raise ValueError("children, days and schools must be >= 1")
        if not 1 <= len(self.windows) <= 2:
            raise ValueError("one window (to school) or two (to school, then home)")


@dataclass
class Track:
    """A child's excursion, sampled every simulated second on its true position."""

    first: float
    last: float = 0.0
    beyond60_s: float = 0.0
    beyond60_watched_s: float = 0.0
    """of which inside the commute window (the route is watched only then)"""
    beyond60_from: float | None = None
    """when the child was first 60 m beyond the corridor inside the window: a departure the recall
    target speaks of exists from then on"""
    max_beyond_m: float = -math.inf
    zones: dict[int, list[float]] = field(default_factory=dict)
    """zone id -> [first ts inside, last ts inside, seconds inside]"""


class FixRow(NamedTuple):
    """One fix of a child, with everything that decided it and the truth behind it."""

    ts: float
    acc: float
    route_m: float
    corridor_m: float
    certain: frozenset[int]
    possible: frozenset[int]
    crossed: frozenset[int]
    nearest_m: float
    verdict: str
    events: tuple[str, ...]
    multipath: str | None
    true_route_m: float
    true_zones: frozenset[int]
    sos: bool
    at: str | None
    """where the monitor thinks the child is after this fix: "school", "home" or None"""


@dataclass
class Outcome:
    """What a run (or one shard of it) produced."""

    incidents: list[Incident] = field(default_factory=list)
    alerts: dict[str, list[Alert]] = field(default_factory=lambda: {"monitor": [], "naive": []})
    notices: dict[str, Counter[str]] = field(
        default_factory=lambda: {"monitor": Counter(), "naive": Counter()}
    )
    verdicts: Counter[str] = field(default_factory=Counter)
    fixes: int = 0

    def merge(self, other: Outcome) -> None:
        self.incidents += other.incidents
        for rule in self.alerts:
            self.alerts[rule] += other.alerts[rule]
            self.notices[rule].update(other.notices[rule])
        self.verdicts.update(other.verdicts)
        self.fixes += other.fixes


@dataclass(frozen=True)
class WindowTimes:
    start: float
    end: float


def schedule_of(params: Params) -> RouteSchedule:
    """Every child's route schedule: the windows and arrivals in Asia/Seoul, Korean holidays off."""
    return RouteSchedule.from_registry(TIMEZONE, list(params.windows), arrivals=list(params.arrivals))


def school_days(params: Params) -> list[date]:
    schedule = schedule_of(params)
    days: list[date] = []
    day = params.first_day
    while len(days) < params.days:
        if day.weekday() < 5 and schedule.school_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def window_times(day: date, raw: dict[str, Any]) -> WindowTimes:
    tz = ZoneInfo(TIMEZONE)

    def at(hhmm: str) -> float:
        return datetime.combine(day, time.fromisoformat(hhmm), tz).timestamp()

    return WindowTimes(at(raw["start"]), at(raw["end"]))


def child_tag(k: int) -> str:
    return f"bench-{k:05d}"


class _Kid:
    __slots__ = ("ctx", "id", "naive_out", "naive_zones", "recent", "slot", "tag")

    def __init__(self, child_id: int, tag: str, slot: int, ctx: ChildContext) -> None:
        self.id = child_id
        self.tag = tag
        self.slot = slot
        self.ctx = ctx
        self.naive_out = False
        self.naive_zones: frozenset[int] = EMPTY
        self.recent: deque[FixRow] = deque(maxlen=RECENT_FIXES)


def registry_doc(spec: CitySpec, children: list[list[dict[str, Any]]], params: Params) -> dict[str, Any]:
    """The bench's world as the registry holds it (``GET /api/v1/world``): the routes walked home ->
    school with the commute windows and arrivals, the schools in Asia/Seoul."""
    doc = world_doc(spec, children)
    for f in doc["features"]:
        props = f["properties"]
        if props["kind"] == "school":
            props["timezone"] = TIMEZONE
        elif props["kind"] == "route":
            props["windows"] = [dict(w) for w in params.windows]
            props["arrivals"] = [dict(a) for a in params.arrivals]
    return doc


def tracker_fix(f: Fix, received_at: float) -> TrackerFix:
    """A simulator fix as the tracker decodes it, received at ``received_at``."""
    q = f.position
    return TrackerFix(
        f.tag,
        q.ts,
        q.lat,
        q.lon,
        q.acc,
        q.batt,
        q.seq,
        q.sos,
        received_at,
        f"tracker/v1/tags/{f.tag}/position",
    )


def _csr(v: GeofenceAnswers, name: str) -> tuple[list[int], list[int]] | None:
    offsets = getattr(v, f"{name}_offsets", None)
    ids = getattr(v, f"{name}_zone_ids", None)
    if offsets is None or ids is None:
        return None
    return np.asarray(offsets).tolist(), np.asarray(ids).tolist()


def _label(kind: str, zone: int | None) -> str:
    return kind if zone is None else f"{kind}:{zone}"


def _zones_at(csr: tuple[list[int], list[int]] | None, i: int) -> frozenset[int]:
    if csr is None:
        return EMPTY
    off, ids = csr
    a, b = off[i], off[i + 1]
    return EMPTY if a == b else frozenset(ids[a:b])


class ShardRun:
    """Some of the city's children, through all the simulated days."""

    def __init__(self, params: Params, children: Sequence[int]) -> None:
        self.p = params
        self.spec = build_city(params.schools)
        self.rules = replace(Rules(), **dict(params.rules))
        self.out = Outcome()
        n_routes = len(self.spec.routes)
        by_route: list[list[dict[str, Any]]] = [[] for _ in range(n_routes)]
        for k in children:
            by_route[(k - 1) % n_routes].append({"id": k, "name": f"Child {k}", "tag": child_tag(k)})
        view = world_view(registry_doc(self.spec, by_route, params), Settings())
        self.index = view.index
        self.offline = OfflineTracker(view, self.rules, tick_s=params.tick_s)
        self.kids: dict[str, _Kid] = {}
        for k in children:
            tag = child_tag(k)
            self.kids[tag] = _Kid(k, tag, view.route_slot_of_child.get(k, -1), view.context_of_child(k))
        self._by_id = {k.id: k for k in self.kids.values()}
        self.worlds: list[World] = [
            parse_world(world_doc(self.spec, by_route, reverse=w == 1)) for w in range(len(params.windows))
        ]

    # ---------------------------------------------------------------------------------------------
    def run(self) -> Outcome:
        for day_no, day in enumerate(school_days(self.p)):
            for w, raw in enumerate(self.p.windows):
                self._window(day_no, w, window_times(day, raw))
        self.out.verdicts.update(self.offline.verdicts)
        return self.out

    def _window(self, day_no: int, w: int, times: WindowTimes) -> None:
        p = self.p
        t0 = times.start - p.preroll_s
        t_end = times.end + p.tail_s
        config = SimConfig(
            seed=p.seed * 100_000 + day_no * 10 + w,
            interval_s=p.interval_s,
            walk=WalkConfig(
                start_spread_s=max(60.0, times.end - SET_OFF_BEFORE_END_S - t0),
                school_dwell_s=(1e7, 1e7),  # stays at its destination
            ),
            incidents=IncidentConfig(
                per_child_per_hour=p.incidents_per_hour,
                warmup_s=p.preroll_s,
                leave_extra_m=p.leave_extra_m,
                stay_s=p.stay_s,
            ),
        )
        world = self.worlds[w]
        gen = FixGenerator(world, config, t0)
        kid_of = [self.kids[c.tag] for c in gen.children]
        tracks: dict[int, Track] = {}
        done: dict[str, list[Track]] = defaultdict(list)
        truth: list[TruthRecord] = []
        seen: dict[tuple[str, float], tuple[str | None, tuple[FixRow, ...]]] = {}
        excursions = 0
        t = t0
        next_tick = t0 + p.tick_s
        while t < t_end:
            t = min(t + 1.0, t_end)
            st = gen.advance(t)
            if st.fixes:
                self._batch(st.fixes, t)
            for r in st.truth:
                seen[(r.tag, r.start_ts)] = self._seen(r)
            truth += st.truth
            started = gen.incidents_started["leave_route"] + gen.incidents_started["enter_zone"]
            if started != excursions:
                excursions = started
                for n, child in enumerate(gen.children):
                    if n not in tracks and not child.walker.on_route:
                        tracks[n] = Track(first=t)
            if tracks:
                self._sample(gen, world, kid_of, tracks, done, t, times)
            if t >= next_tick:
                self._tick(t)
                next_tick += p.tick_s
        for n, track in tracks.items():
            done[kid_of[n].tag].append(track)
        for r in gen.finish():
            truth.append(r)
            seen[(r.tag, r.start_ts)] = self._seen(r)
        for r in truth:
            at, evidence = seen[(r.tag, r.start_ts)]
            for inc in self._incidents(r, times, done.get(r.tag, []), at):
                self.out.incidents.append(replace(inc, evidence=evidence))

    def _seen(self, r: TruthRecord) -> tuple[str | None, tuple[FixRow, ...]]:
        """Where the monitor thought the child was when the incident began, and the child's fixes
        since just before it (the generator hands over an incident at the child's first step after
        its end, so the fixes up to then are all there)."""
        kid = self.kids[r.tag]
        since = (r.excursion_start_ts or r.start_ts) - EVIDENCE_BEFORE_S
        rows = tuple(row for row in kid.recent if row.ts >= since)
        before = [row for row in rows if row.ts <= r.start_ts]
        return (before[-1].at if before else (self.offline.states.get(kid.id) or ChildState()).at), rows

    # ---------------------------------------------------------------------------------------------
    def _batch(self, fixes: list[Fix], now: float) -> None:
        """One second's fixes, received at ``now``, through the tracker's decisions; the naive rule
        and the truth beside them."""
        n = len(fixes)
        offline = self.offline
        kids = [self.kids[f.tag] for f in fixes]
        before = {k.id: offline.states.get(k.id) or ChildState() for k in kids}
        decoded = [tracker_fix(f, now) for f in fixes]
        row_of = {id(d): i for i, d in enumerate(decoded)}
        opened = len(offline.ledger.alerts)
        events = offline.batch(decoded, now)
        judged = offline.last_batch
        assert judged is not None
        slots = np.fromiter((k.slot for k in kids), dtype=np.int64, count=n)
        lon = np.fromiter((d.lon for d in decoded), dtype=np.float64, count=n)
        lat = np.fromiter((d.lat for d in decoded), dtype=np.float64, count=n)
        centre = self.index.check(lon, lat, np.zeros(n), slots)  # the naive rule: the centre alone
        inside = _csr(centre, "certain")
        true_v = self._truth_check(fixes, slots)
        true_route = true_v.route_distance_m.tolist()
        true_in = _csr(true_v, "certain")
        labels: dict[int, list[str]] = defaultdict(list)
        for ce in events:
            labels[ce.child_id].append(_label(ce.event.kind.value, ce.event.zone_id))
        rules = self.rules
        for d, obs, decided in zip(judged.fixes, judged.observations, judged.decided, strict=True):
            i = row_of[id(d)]
            k = kids[i]
            # the verdict of a fix that did not decide, asked of the monitor with the state the batch
            # started from (one fix per child per batch here)
            verdict = "decided" if decided else judge(before[k.id], obs, rules).value
            k.recent.append(
                FixRow(
                    d.ts,
                    d.acc,
                    obs.route_distance_m,
                    obs.corridor_m,
                    obs.certain_zones,
                    obs.possible_zones,
                    obs.crossed_zones,
                    obs.nearest_zone_m,
                    verdict,
                    tuple(labels.pop(k.id, ())),
                    fixes[i].multipath,
                    true_route[i],
                    _zones_at(true_in, i),
                    d.sos,
                    (offline.states.get(k.id) or ChildState()).at,
                )
            )
        self._collect(events, opened)
        alerts_n, notices_n = self.out.alerts["naive"], self.out.notices["naive"]
        for i, (d, k) in enumerate(zip(decoded, kids, strict=True)):
            obs_m = centre.route_distance_m[i], centre.corridor_m[i]
            naive = self._naive(k, d.ts, float(obs_m[0]), float(obs_m[1]), _zones_at(inside, i), d.sos)
            for kind, zone in naive:
                if kind in NAIVE_ALERTS:
                    alerts_n.append(Alert(k.id, kind, d.ts, zone))
                else:
                    notices_n[kind] += 1
        self.out.fixes += n

    def _collect(self, events: Sequence[Any], opened: int) -> None:
        """The alerts the ledger opened since ``opened`` (the parent hears these), and the events
        that are no alert (resolutions, notices) counted by kind."""
        alerts, notices = self.out.alerts["monitor"], self.out.notices["monitor"]
        for a in self.offline.ledger.alerts[opened:]:
            kind = SCORE_KIND.get(a.kind, a.kind)
            if kind in MONITOR_ALERTS and kind != "sos":
                alerts.append(self._alert(self._by_id[a.child_id], kind, a, a.opened_at))
        for ce in events:
            if ce.event.kind.value == "sos":
                # every press is heard: a second one while the first is unacknowledged updates the
                # open alert (the ledger's one alert per incident) and is delivered as such
                k = self._by_id[ce.child_id]
                alerts.append(Alert(k.id, "sos", ce.event.ts, None, evidence=tuple(list(k.recent)[-6:])))
            elif ce.event.kind.value not in MONITOR_ALERTS:
                notices[ce.event.kind.value] += 1

    @staticmethod
    def _alert(k: _Kid, kind: str, a: LedgerAlert, ts: float) -> Alert:
        evidence = tuple(list(k.recent)[-ALERT_EVIDENCE_FIXES:])
        detail = a.kind.rsplit("_", 1)[1] if kind == "not_arrived" else None
        return Alert(k.id, kind, ts, a.zone_id, detail, evidence=evidence)

    def _truth_check(self, fixes: list[Fix], slots: np.ndarray) -> GeofenceAnswers:
        n = len(fixes)
        lon = np.fromiter((f.true_lon for f in fixes), dtype=np.float64, count=n)
        lat = np.fromiter((f.true_lat for f in fixes), dtype=np.float64, count=n)
        return self.index.check(lon, lat, np.zeros(n), slots)

    @staticmethod
    def _naive(
        k: _Kid, ts: float, route_m: float, corridor_m: float, inside: frozenset[int], sos: bool
    ) -> list[tuple[str, int | None]]:
        out: list[tuple[str, int | None]] = []
        if sos:
            out.append(("sos", None))
        outside = route_m > corridor_m  # False for nan: no route
        if outside and not k.naive_out:
            k.naive_out = True
            schedule = k.ctx.schedule
            if schedule is None or schedule.watched(ts):
                out.append(("left_route", None))
        elif not outside and k.naive_out:
            k.naive_out = False
            out.append(("back_on_route", None))
        if inside != k.naive_zones:
            out += [("entered_zone", z) for z in sorted(inside - k.naive_zones)]
            out += [("left_zone", z) for z in sorted(k.naive_zones - inside)]
            k.naive_zones = inside
        return out

    def _tick(self, now: float) -> None:
        """The clock's pass at ``now`` (signal lost, not arrived), as the service's clock runs it."""
        opened = len(self.offline.ledger.alerts)
        self._collect(self.offline.clock(now), opened)

    def _sample(
        self,
        gen: FixGenerator,
        world: World,
        kid_of: list[_Kid],
        tracks: dict[int, Track],
        done: dict[str, list[Track]],
        t: float,
        times: WindowTimes,
    ) -> None:
        order = list(tracks)
        watched = times.start <= t < times.end
        xy = [gen.children[n].walker.position(t) for n in order]
        lon, lat = world.projection.to_lonlat_arrays([p[0] for p in xy], [p[1] for p in xy])
        slots = np.array([kid_of[n].slot for n in order], dtype=np.int64)
        v = self.index.check(lon, lat, np.zeros(len(order)), slots)
        for i, n in enumerate(order):
            track = tracks[n]
            track.last = t
            beyond = float(v.route_distance_m[i] - v.corridor_m[i])
            track.max_beyond_m = max(track.max_beyond_m, beyond)
            if beyond >= BEYOND_M:
                track.beyond60_s += 1.0
                track.beyond60_watched_s += watched
                if watched and track.beyond60_from is None:
                    track.beyond60_from = t
            for z in v.certain(i):
                seen = track.zones.setdefault(z, [t, t, 0.0])
                seen[1] = t
                seen[2] += 1.0
            if gen.children[n].walker.on_route:
                done[kid_of[n].tag].append(tracks.pop(n))

    # ---------------------------------------------------------------------------------------------
    def _incidents(
        self, r: TruthRecord, times: WindowTimes, tracks: list[Track], at: str | None
    ) -> list[Incident]:
        child = self.kids[r.tag].id
        end = r.end_ts if r.end_ts is not None else (r.planned_end_ts or r.start_ts)

        window = {"window_start": times.start, "window_end": times.end}

        def scoped(ts: float) -> bool:
            return times.start <= ts < times.end

        if r.kind == "sos":
            return [Incident("sos", child, r.start_ts, end, target=False, in_scope=scoped(r.start_ts))]
        if r.kind == "go_silent":
            facts = {"silent_s": round(end - r.start_ts, 1), "at": at, **window}
            if r.last_fix_ts is not None:
                facts["since_last_fix_s"] = round(end - r.last_fix_ts, 1)
                facts["last_fix_ts"] = r.last_fix_ts
            return [
                Incident(
                    "go_silent",
                    child,
                    r.start_ts,
                    end,
                    target=False,
                    in_scope=scoped(r.start_ts),
                    facts=facts,
                )
            ]
        exc0 = r.excursion_start_ts if r.excursion_start_ts is not None else r.start_ts
        exc1 = r.excursion_end_ts if r.excursion_end_ts is not None else end
        track = next((tr for tr in tracks if exc0 - 1.0 <= tr.first <= exc1 + 1.0), None)
        beyond60 = track.beyond60_watched_s if track else 0.0
        peak = (
            (r.peak_distance_m - r.corridor_m)
            if r.peak_distance_m is not None and r.corridor_m is not None
            else (track.max_beyond_m if track else None)
        )
        dep_facts = {
            "beyond60_s": beyond60,
            "beyond60_after_window_s": (track.beyond60_s - beyond60) if track else 0.0,
            "max_beyond_m": round(track.max_beyond_m, 1) if track else None,
            "peak_beyond_m": None if peak is None else round(peak, 1),
            "corridor_m": r.corridor_m,
            "at": at,
            **window,
        }
        out: list[Incident] = []
        if r.kind == "leave_route":
            dep_facts["out_s"] = round(end - r.start_ts, 1)
            out.append(
                Incident(
                    "leave_route",
                    child,
                    r.start_ts,
                    end,
                    match_from=exc0,
                    target=beyond60 >= BEYOND_MIN_S,
                    in_scope=scoped(r.start_ts),
                    qualified_at=track.beyond60_from if track else None,
                    facts=dep_facts,
                )
            )
        else:  # enter_zone
            inside = track.zones.get(r.zone_id, [0, 0, 0.0])[2] if track and r.zone_id is not None else None
            out.append(
                Incident(
                    "enter_zone",
                    child,
                    r.start_ts,
                    end,
                    zone_id=r.zone_id,
                    match_from=exc0,
                    target=end - r.start_ts >= ZONE_MIN_S,
                    in_scope=scoped(r.start_ts),
                    facts={
                        "inside_s": round(end - r.start_ts, 1),
                        "sampled_inside_s": inside,
                        "depth_m": r.depth_m,
                        **window,
                    },
                )
            )
            if r.off_route_start_ts is not None and r.off_route_end_ts is not None:
                dep_facts["out_s"] = round(r.off_route_end_ts - r.off_route_start_ts, 1)
                out.append(
                    Incident(
                        "zone_walk_departure",
                        child,
                        r.off_route_start_ts,
                        r.off_route_end_ts,
                        match_from=exc0,
                        target=beyond60 >= BEYOND_MIN_S,
                        in_scope=scoped(r.off_route_start_ts),
                        qualified_at=track.beyond60_from if track else None,
                        facts=dep_facts,
                    )
                )
        if track is not None:
            for zone, (first, last, secs) in sorted(track.zones.items()):
                if zone == r.zone_id:
                    continue
                out.append(
                    Incident(
                        "crossed_zone",
                        child,
                        first,
                        last,
                        zone_id=zone,
                        match_from=exc0,
                        target=secs >= ZONE_MIN_S,
                        in_scope=scoped(first),
                        facts={"inside_s": secs, **window},
                    )
                )
        return out


def _shard(args: tuple[Params, list[int]]) -> Outcome:
    params, children = args
    return ShardRun(params, children).run()


def simulate(params: Params) -> tuple[Outcome, float]:
    """Every child through every day; returns the outcome and the wall time in seconds.

    With more than one worker the shards run in spawned processes: the calling script needs the
    ``if __name__ == "__main__":`` guard."""
    started = clock.perf_counter()
    children = list(range(1, params.children + 1))
    workers = params.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(children)))
    shards = [children[i::workers] for i in range(workers)]
    out = Outcome()
    if workers == 1:
        out = ShardRun(params, children).run()
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for part in pool.map(_shard, [(params, s) for s in shards]):
                out.merge(part)
    return out, clock.perf_counter() - started


def city_size(params: Params) -> dict[str, int]:
    spec = build_city(params.schools)
    return {
        "schools": len(spec.schools),
        "routes": len(spec.routes),
        "zones": len(spec.zones),
        "zone_parts": int(sum(len(shapely.get_parts(shape(z["geometry"]))) for z in spec.zones)),
    }


def zone_depths(params: Params) -> dict[int, tuple[str, float]]:
    """Each zone's kind and how deep a point can lie inside it (its largest inscribed circle), m."""
    out: dict[int, tuple[str, float]] = {}
    for z in build_city(params.schools).zones:
        geom = shape(z["geometry"])
        c = geom.centroid
        proj = LocalProjection(c.x, c.y)
        metric = shapely.transform(
            geom, lambda xy, p=proj: np.column_stack(p.to_xy_arrays(xy[:, 0], xy[:, 1]))
        )
        depth = max(shapely.maximum_inscribed_circle(part).length for part in shapely.get_parts(metric))
        out[z["properties"]["id"]] = (z["properties"]["zone_kind"], float(depth))
    return out
