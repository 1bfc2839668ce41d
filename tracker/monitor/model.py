"""The monitor's vocabulary: what it is shown, what it remembers, what it says."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from tracker.monitor.schedule import Hours, RouteSchedule

_T = TypeVar("_T")

R68_PER_SIGMA = math.sqrt(-2.0 * math.log(1.0 - 0.68))
"""A fix's reported accuracy is the 68 % radius of its error (Android's getAccuracy, the wire
contract): for a 2-D normal error that radius is ~1.51 sigma per axis, and the error across a route
or a zone's edge is a 1-D normal with that sigma."""


class EventKind(StrEnum):
    LEFT_ROUTE = "left_route"
    BACK_ON_ROUTE = "back_on_route"
    ENTERED_ZONE = "entered_zone"
    LEFT_ZONE = "left_zone"
    SOS = "sos"
    LOW_BATTERY = "low_battery"
    SIGNAL_LOST = "signal_lost"
    SIGNAL_BACK = "signal_back"
    ARRIVED = "arrived"  # detail: "school" or "home"
    LEFT_PLACE = "left_place"  # detail: "school"
    NOT_ARRIVED = "not_arrived"  # detail: "school" or "home"


class Verdict(StrEnum):
    """Whether a fix was allowed to decide anything, and if not, why (a metric label)."""

    DECIDED = "decided"
    DUPLICATE = "duplicate"  # same timestamp as the last decided fix
    STALE = "stale"  # older than the child's last decided fix
    UNKNOWN_ACCURACY = "unknown_accuracy"  # the sender stated no accuracy (a phone app may not)
    POOR_ACCURACY = "poor_accuracy"  # accuracy radius above the limit
    IMPOSSIBLE_JUMP = "impossible_jump"  # faster than a child can move since the last decided fix


class Observation(msgspec.Struct, frozen=True, gc=False):
    """One fix of one child, with the geofence core's answers for it.

    Immutable like a frozen dataclass, but built for every fix: a msgspec Struct is made in about a
    tenth of the time (a frozen dataclass sets each of its 13 fields through object.__setattr__).
    It holds no containers that could form a cycle, so it stays out of the garbage collector."""

    ts: float
    lon: float
    lat: float
    acc: float  # nan: not stated (the fix decides nothing but SOS, battery and liveness)
    route_distance_m: float  # nan: the child has no route (or it is not in the index)
    corridor_m: float
    certain_zones: frozenset[int]  # zones whose interior holds the whole accuracy circle
    possible_zones: frozenset[int]  # zones that may hold the fix
    crossed_zones: frozenset[int] = frozenset()  # zones the segment from the previous fix passes through
    crossed_from_ts: float | None = None  # ts of the fix that segment began at (None: no segment)
    nearest_zone_m: float = math.inf  # distance to the nearest zone (0 inside one)
    batt: int | None = None
    sos: bool = False
    received_at: float = math.nan  # when the tracker received it (nan: not known); for the tag's clock
    stamped_at_receipt: bool = False  # an SOS whose own timestamp was out of range: ts is received_at
    zone_depths_m: dict[int, float] = {}  # possible zone -> how deep the fix lies in it (tracker.geofence)
    acc_scale: float = 1.0  # how much larger the tag's true error is than it reports (ChildState.error_scale)

    def zone_depth_sigmas(self, zone: int) -> float:
        """How deep in the zone the fix lies, in sigmas of its own error (negative outside): the
        geofence's signed distance to the zone's edge, clipped to the zone disc (Rules.zone_sigma
        sigmas); 0 when the geofence gave none (a caller that measures no depth)."""
        return self.zone_depths_m.get(zone, 0.0) / self.sigma_m

    @property
    def has_route(self) -> bool:
        return not math.isnan(self.route_distance_m)

    @property
    def error_m(self) -> float:
        """The 68 % radius the fix is judged by: its reported accuracy, times what its tag is known to
        under-report (``acc_scale``, learnt where the child is known to be: ChildState.error_scale)."""
        return self.acc * self.acc_scale

    @property
    def sigma_m(self) -> float:
        """Standard deviation of the fix's error along one axis (at least 1 m)."""
        return max(self.error_m, 1.0) / R68_PER_SIGMA

    @property
    def off_route_sigmas(self) -> float:
        """How far beyond the corridor's edge the fix is, in sigmas of its own error (negative inside).

        A parent is told only when fixes are so far out that jitter cannot explain them: GPS error is
        correlated over tens of seconds, so one or two fixes at 2-3 sigma happen every day to every
        child; the evidence of several fixes added up does not (bench/alert_quality.py).
        """
        return (self.route_distance_m - self.corridor_m) / self.sigma_m

    @property
    def may_be_on_route(self) -> bool:
        """The accuracy circle reaches the corridor: the fix may be on the route (False: no route)."""
        return self.route_distance_m - self.error_m <= self.corridor_m

    @property
    def beyond_corridor_m(self) -> float:
        """How far the fix is outside its corridor (negative inside; nan: no route)."""
        return self.route_distance_m - self.corridor_m

    @property
    def on_route(self) -> bool:
        """The reported position is inside the corridor (outside it lies the hysteresis band: a fix
        there never resolves a departure)."""
        return self.route_distance_m <= self.corridor_m


@dataclass(frozen=True)
class Place:
    """A school or a home: a point and the radius of its fence."""

    lon: float
    lat: float
    radius_m: float


@dataclass(frozen=True)
class ChildContext:
    """What the registry says about one child, as far as the monitor needs it."""

    schedule: RouteSchedule | None = None
    school: Place | None = None
    home: Place | None = None
    zone_hours: Mapping[int, Hours] = field(default_factory=dict)  # absent: the zone is always on
    mode: str = "walk"  # how the child goes along its route: walk, bicycle, shuttle or bus


def _threshold(default: _T, doc: str) -> _T:
    """A field of `Rules` with its description: tracker.config makes each one a setting
    (``TRACKER_<NAME>``, the description its doc line), so a threshold is named once, here."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Rules:
    """Thresholds of the alert rules (tracker.monitor.machine says how each is used). Every field is a
    setting of the same name (tracker.config.rules_from builds Rules from Settings)."""

    max_accuracy_m: float = _threshold(100.0, "fixes less accurate than this never decide anything")
    max_speed_mps: float = _threshold(
        25.0, "a fix implying a faster move (both accuracy radii allowed for) is an impossible jump"
    )
    off_route_sigma: float = _threshold(
        2.0,
        "a fix is evidence of a departure this many sigmas of its error beyond the corridor"
        " (sigma = accuracy / 1.51); the evidence adds up what each fix has beyond this",
    )
    off_route_margin_m: float = _threshold(
        0.0,
        "... and at least this many metres beyond the corridor (a fix of 10 m accuracy in an urban"
        " canyon may lie 20-60 m off for minutes): the evidence adds up what each fix has beyond"
        " the farther of the two",
    )
    off_route_score: float = _threshold(
        4.0, "'left route' when the fixes' evidence adds up to this (a CUSUM) ..."
    )
    off_route_step_cap: float = _threshold(
        3.0, "... each fix adding at most this (one multipath fix cannot decide) ..."
    )
    off_route_min_fixes: int = _threshold(3, "... from at least this many fixes of evidence ...")
    off_route_min_s: float = _threshold(20.0, "... spanning at least this many seconds ...")
    off_route_walked_fixes: int = _threshold(
        2,
        "... or from this many, when each came at a walk from the fix before it (fixes 20 s or more"
        " apart: 30 s fixes decide on the second fix out, not the third a minute later) ...",
    )
    off_route_walk_mps: float = _threshold(
        2.0,
        "... at most this fast (the speed's lower bound, both accuracies taken off): a child walking"
        " away goes a walk's distance from fix to fix, two fixes thrown far land where no walk goes",
    )
    on_route_min_fixes: int = _threshold(2, "fixes back inside the corridor before it resolves")
    evidence_s: float = _threshold(
        10.0,
        "the GPS error's correlation time: a fix's evidence (beyond the corridor, in or out of a zone)"
        " counts for the part of this it covers since the last decided fix, so that 1 s and 30 s fixes"
        " decide alike (the first fix of a run counts whole)",
    )
    walk_max_mps: float = _threshold(
        5.0,
        "a child on a walking route moving faster than this (a lower bound over the last"
        " evidence_s or more) is not walking it: 'left route' once sustained ...",
    )
    bicycle_max_mps: float = _threshold(
        10.0, "... the same for a bicycle route (shuttle and bus: max_speed_mps) ..."
    )
    fast_min_s: float = _threshold(
        25.0,
        "... for this many seconds and two measures, and over the whole stretch (one fix thrown far makes"
        " two measures fast, not the stretch)",
    )
    ride_min_mps: float = _threshold(
        8.0,
        "a child moving faster than this (the same lower bound) rides a vehicle: its fixes are no"
        " evidence of entering a danger zone (a bus on a road is not a child in it)",
    )
    zone_confirm_fixes: int = _threshold(2, "fixes whose disc lies inside a danger zone before the alert")
    zone_near_m: float = _threshold(
        25.0,
        "a short visit: after one fix whose disc lies inside a zone, the next fix still within this"
        " (plus its accuracy) of the zone confirms it ...",
    )
    zone_confirm_max_acc_m: float = _threshold(
        50.0, "... if at least this accurate (a vaguer fix neither confirms nor cancels: the next decides)"
    )
    zone_exit_fixes: int = _threshold(2, "fixes whose disc lies outside a danger zone before it resolves")
    crossing_max_gap_s: float = _threshold(
        60.0,
        "a segment between two fixes crosses a zone (a pass-through, a linger) only if they are at most"
        " this many seconds apart ...",
    )
    crossing_max_acc_m: float = _threshold(25.0, "... and, for a pass-through, both at least this accurate")
    zone_sigma: float = _threshold(
        2.5, "zones are judged on a disc of this many sigmas round each fix (1.51: its accuracy)"
    )
    zone_linger_crossings: int = _threshold(
        3, "segments into a zone too thin to be certainly inside, while it stays possible ..."
    )
    zone_linger_min_s: float = _threshold(20.0, "... spanning this many seconds ...")
    zone_linger_max_acc_m: float = _threshold(
        50.0, "... each between fixes at least this accurate, before the alert ..."
    )
    zone_linger_travel_m: float = _threshold(
        20.0,
        "... while the child stays: a fix this far at least from the run's first one (the distance"
        " less both fixes' accuracy) is a child going along the zone's edge (off its route, on the"
        " sidewalk beside a road zone), not lingering in it: the run starts over from it",
    )
    zone_linger_idle_max_acc_m: float = _threshold(
        20.0,
        "outside the child's commute windows (or with no route) lingering reads only fixes this"
        " accurate, and weighs how deep each lies in the zone: a child at home, indoors, 20-40 m from"
        " a road zone crosses it now and then (docs/alert-quality.md) ...",
    )
    zone_linger_idle_sigma: float = _threshold(
        0.25,
        "... each fix is evidence of a stay by how many sigmas of its error it lies deeper than this"
        " in the zone (less: it takes away), in proportion to the time it covers (a CUSUM, as for a"
        " departure): a child on a sidewalk a few metres outside a road zone, whose fixes graze a few"
        " metres into it now and then, adds little and takes it back ...",
    )
    zone_linger_idle_step_cap: float = _threshold(
        1.5, "... each fix adding at most this (one fix thrown deep cannot decide) ..."
    )
    zone_linger_idle_score: float = _threshold(5.0, "... 'entered danger zone' when it adds up to this ...")
    zone_linger_idle_min_s: float = _threshold(
        90.0,
        "... over a run (the evidence above 0) spanning this many seconds (a child on a sidewalk a few"
        " metres from a road zone has its fixes in the road for half a minute now and then)",
    )
    zone_linger_idle_travel_m: float = _threshold(
        50.0,
        "... while the child stays: a fix this far at least from the run's first one (the distance"
        " less both fixes' accuracy) is a child going along the zone's edge, not lingering in it (the"
        " sidewalk beside a road zone): the run starts over from it",
    )
    low_battery_pct: int = _threshold(15, "battery level below which 'low battery' is sent, once a day")
    signal_lost_s: float = _threshold(180.0, "no fix for this long inside a commute window: 'signal lost'")
    place_confirm_fixes: int = _threshold(
        2,
        "fixes inside a school's or home's fence before 'arrived' (as many in a row certainly outside:"
        " 'left')",
    )
    place_sigma: float = _threshold(
        2.5,
        "a child at home or at school is still there while its fix's disc of this many sigmas reaches"
        " the fence (as zone_sigma for zones) ...",
    )
    place_wide_sigma: float = _threshold(
        4.0,
        "... of this many for a tag whose fixes there keep landing beyond that disc (a device whose true"
        " error is more than it reports, learnt per tag; its accuracy is then taken as"
        " place_wide_sigma / place_sigma of what it reports everywhere: route, zones, places): ...",
    )
    place_out_rate: float = _threshold(
        0.01, "... more often than this share of its evidence at home or school ..."
    )
    place_fit_min_evidence: float = _threshold(
        30.0, "... once it has this much (fixes of evidence_s each) ..."
    )
    place_fit_acc_share: float = _threshold(
        0.5,
        "... counting only fixes whose accuracy is at least this share of the place's fence radius (a"
        " fix more accurate lands beyond the disc almost never, however its device under-reports: such"
        " fixes only diluted the share) ...",
    )
    place_scatter_max: float = _threshold(
        3.4,
        "... or whose fixes there that tell scatter round where the child stays more than this on"
        " average (each fix's squared distance from the stay's running mean in its reported sigmas"
        " squared, at most 16: 2 for a device that reports its error truly, 4.5 for one whose true"
        " error is 1.5x) ...",
    )
    place_scatter_min_evidence: float = _threshold(
        90.0,
        "... once that scatter has this much evidence (fixes of evidence_s each: a quarter of an hour"
        " of stays, so that the child's own moves about the place weigh little) ...",
    )
    place_fit_half_life_s: float = _threshold(
        4 * 3600.0, "... which fades by half in this many seconds (a tag's error is the same tomorrow)"
    )

    def mode_max_mps(self, mode: str) -> float:
        """The fastest a child goes along a route of this mode (above: not on it)."""
        if mode == "walk":
            return self.walk_max_mps
        if mode == "bicycle":
            return self.bicycle_max_mps
        return self.max_speed_mps

    def weight(self, gap_s: float) -> float:
        """How much of one fix's evidence a fix ``gap_s`` after the last decided one carries: GPS error
        stays correlated for about ``evidence_s``, so ten fixes in that time say little more than one
        (the evidence is per second, not per fix). A first fix (gap inf) counts whole."""
        if not gap_s < self.evidence_s:
            return 1.0
        return max(gap_s, 0.0) / self.evidence_s

    def place_disc_m(self, acc: float) -> float:
        """The radius a fix is judged with against the fence of the place the child is at."""
        return acc * (self.place_sigma / R68_PER_SIGMA)

    @property
    def wide_scale(self) -> float:
        """How much wider a tag that under-reports its error is judged (ChildState.error_scale)."""
        return self.place_wide_sigma / self.place_sigma

    def zone_disc_m(self, acc: Any) -> Any:
        """The radius the geofence judges a fix's zones with (`certain`: that disc inside; `possible`:
        it touches), from its accuracy (a float or an array of them)."""
        return acc * (self.zone_sigma / R68_PER_SIGMA)


_JSON_SETS = ("zones_in", "zone_passes", "zones_possible")
_JSON_ZONE_KEYED = ("zone_counts", "zone_exit_counts")


@dataclass
class ChildState:
    """What the monitor remembers of one child between fixes (checkpointed as JSON).

    Its containers (sets, dicts, lists) are replaced whole when they change, never changed in place:
    a copy shares them (``copy``)."""

    last_ts: float | None = None
    last_lon: float | None = None
    last_lat: float | None = None
    last_acc: float | None = None
    heard_ts: float | None = None  # the latest fix of unknown accuracy, when later than last_ts
    off_route: bool = False  # a 'left route' incident is open
    off_count: int = 0  # fixes of evidence of a departure since the score was last 0
    off_since: float | None = None  # ts of the first of them
    off_score: float = 0.0  # the departure's evidence (CUSUM of sigmas beyond the reference)
    on_count: float = 0.0  # evidence of fixes back inside, in a row, while off route (weighted)
    zone_counts: dict[int, float] = field(default_factory=dict)  # zone -> evidence of being in it (weighted)
    zones_in: set[int] = field(default_factory=set)  # zones with an open incident
    zone_exit_counts: dict[int, float] = field(default_factory=dict)  # zone -> evidence outside (weighted)
    zone_passes: set[int] = field(default_factory=set)  # zones passed through, for the next fix to confirm
    # zone -> (evidence, since[, outside the windows: the run's first fix's lon, lat, error_m]) (_zones, 4.)
    zone_lingers: dict[int, tuple[float, ...]] = field(default_factory=dict)
    zones_possible: set[int] = field(default_factory=set)  # zones the last decided fix may have been in
    low_battery_day: str | None = None  # local date of the last low-battery notice
    signal_lost: bool = False
    at: str | None = None  # "school" or "home" while inside its fence
    place_counts: dict[str, int] = field(default_factory=dict)  # place -> consecutive fixes inside
    arrived: dict[str, float] = field(default_factory=dict)  # place -> last arrival (tracker's time)
    not_arrived: list[str] = field(default_factory=list)  # deadline keys already raised
    in_corridor: bool = False  # the last decided fix lay inside its route's corridor
    pace: list[float] | None = None  # [ts, lon, lat, acc] of the fix the speed is measured from
    speed_mps: float = 0.0  # the child's speed at least (a lower bound over evidence_s or more)
    fast_from: list[float] | None = None  # [ts, lon, lat, acc] whence it has gone faster than its mode
    fast_measures: int = 0  # measures of its speed in a row that said so
    clock: list[float] | None = None  # [bucket start, its min, the previous bucket's min] of receipt - ts
    received_last: float | None = None  # when the tag's latest fix was received (tracker's time)
    uplink: list[float] | None = None  # [bucket start, its buffered gaps: count, longest, the previous
    #                                     bucket's count, longest] (tracker.monitor.machine._uplink)
    off_pace: float = 0.0  # the fastest move into a fix of the departure's evidence (m/s, a lower bound)
    place_fit: list[float] | None = None  # [ts, evidence at home or school, of it beyond the place's
    #                     disc, beyond it still unconfirmed]: fading (tracker.monitor.machine._place_fit);
    #                     then the scatter's seven (tracker.monitor.machine._place_scatter)

    def error_scale(self, rules: Rules) -> float:
        """What the tag's reported accuracy is multiplied by wherever its fixes are judged: 1, or
        Rules.wide_scale (place_wide_sigma / place_sigma) once its fixes at home or at school, where
        the child is known to be, keep landing beyond what their accuracy allows
        (tracker.monitor.machine._place_fit: more than place_out_rate of place_fit_min_evidence or
        more), or scatter round where the child stays more than place_scatter_max
        (tracker.monitor.machine._place_scatter). A device that under-reports its error at home does so
        on its walk and by a zone too."""
        f = self.place_fit
        if f is None:
            return 1.0
        if f[1] >= rules.place_fit_min_evidence and f[2] > rules.place_out_rate * f[1]:
            return rules.wide_scale
        if len(f) > 8 and f[8] >= rules.place_scatter_min_evidence and f[7] > rules.place_scatter_max * f[8]:
            return rules.wide_scale
        return 1.0

    @property
    def clock_offset(self) -> float:
        """The tag's clock's offset: the tracker's time minus the tag's (0 while unknown), the least
        receipt delay of the last two buckets of reports (tracker.monitor.machine.CLOCK_BUCKET_S; a
        late fix only makes a delay longer)."""
        if self.clock is None:
            return 0.0
        return min(self.clock[1], self.clock[2])

    @property
    def upload_gap_s(self) -> float:
        """How long this tag stays silent between the uploads of a store-and-forward tag (0: it reports
        as it goes): the longest silence after which its fixes came taken during it, when at least two
        such came in the last two buckets of receipts (tracker.monitor.machine.UPLINK_BUCKET_S: a
        subway ride's buffered station fixes come once, a tag that buffers does so again and again)."""
        u = self.uplink
        if u is None or u[1] + u[3] < 2:
            return 0.0
        return max(u[2], u[4])

    def copy(self) -> ChildState:
        """A copy, sharing the containers (the per-fix path: one for every child a batch moves).

        A state's containers are values: the monitor (tracker.monitor.machine) replaces a container
        whole when it changes and never changes one in place, so states may share them. The instance
        dict is copied without going through __init__ (dataclasses.replace passes all 28 fields to it),
        and no container is made: a copy of each of the nine was most of a fix's cost (allocations and
        the garbage collector's passes over them)."""
        new = object.__new__(ChildState)
        new.__dict__ = self.__dict__.copy()
        return new

    def to_json(self) -> dict[str, Any]:
        """The fields that differ from their defaults (``from_json`` restores the rest), as JSON-able
        values: sets as sorted lists, zone ids as strings. Most of a state is at its defaults, and every
        batch checkpoints every child it moved: a short document is less to build, to encode, for
        PostgreSQL to parse and to write to its log. Every default is falsy (None, False, 0, empty),
        and so are a few values that are not defaults (a longitude of 0.0 where the default is None).
        The lists and string-keyed dicts are the state's own: encode the result, do not change it."""
        out = {k: v for k, v in self.__dict__.items() if v or (v is not None and k in _NONE_BY_DEFAULT)}
        for name in _JSON_SETS:
            if (value := out.get(name)) is not None:
                out[name] = sorted(value)
        for name in _JSON_ZONE_KEYED:
            if (value := out.get(name)) is not None:
                out[name] = {str(k): n for k, n in value.items()}
        if (value := out.get("zone_lingers")) is not None:
            out["zone_lingers"] = {str(k): list(v) for k, v in value.items()}
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ChildState:
        return cls(
            last_ts=raw.get("last_ts"),
            last_lon=raw.get("last_lon"),
            last_lat=raw.get("last_lat"),
            last_acc=raw.get("last_acc"),
            heard_ts=raw.get("heard_ts"),
            off_route=bool(raw.get("off_route", False)),
            off_count=int(raw.get("off_count", 0)),
            off_since=raw.get("off_since"),
            off_score=float(raw.get("off_score", 0.0)),
            on_count=float(raw.get("on_count", 0)),
            zone_counts={int(k): float(v) for k, v in raw.get("zone_counts", {}).items()},
            zones_in={int(z) for z in raw.get("zones_in", [])},
            zone_exit_counts={int(k): float(v) for k, v in raw.get("zone_exit_counts", {}).items()},
            zone_passes={int(z) for z in raw.get("zone_passes", [])},
            zone_lingers={int(k): tuple(float(x) for x in v) for k, v in raw.get("zone_lingers", {}).items()},
            zones_possible={int(z) for z in raw.get("zones_possible", [])},
            low_battery_day=raw.get("low_battery_day"),
            signal_lost=bool(raw.get("signal_lost", False)),
            at=raw.get("at"),
            place_counts={str(k): int(v) for k, v in raw.get("place_counts", {}).items()},
            arrived={str(k): float(v) for k, v in raw.get("arrived", {}).items()},
            not_arrived=[str(k) for k in raw.get("not_arrived", [])],
            in_corridor=bool(raw.get("in_corridor", False)),
            pace=[float(v) for v in raw["pace"]] if raw.get("pace") else None,
            speed_mps=float(raw.get("speed_mps", 0.0)),
            fast_from=[float(v) for v in raw["fast_from"]] if raw.get("fast_from") else None,
            fast_measures=int(raw.get("fast_measures", 0)),
            clock=[float(v) for v in raw["clock"]] if raw.get("clock") else None,
            received_last=raw.get("received_last"),
            uplink=[float(v) for v in raw["uplink"]] if raw.get("uplink") else None,
            off_pace=float(raw.get("off_pace", 0.0)),
            place_fit=[float(v) for v in raw["place_fit"]] if raw.get("place_fit") else None,
        )


_DEFAULTS: dict[str, Any] = ChildState().__dict__
"""each field's default (a value or an empty container); never modified"""
_NONE_BY_DEFAULT = frozenset(name for name, value in _DEFAULTS.items() if value is None)
assert not any(_DEFAULTS.values()), "to_json leaves out falsy values: every default must be falsy"


@dataclass(frozen=True)
class Event:
    """A status change of one child, decided by one fix (or by the clock)."""

    kind: EventKind
    ts: float
    zone_id: int | None = None
    detail: str | None = None  # the place of ARRIVED / LEFT_PLACE / NOT_ARRIVED
