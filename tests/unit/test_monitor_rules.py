"""The monitor's rules as scenario tables: steps of (seconds, distance to the route, accuracy,
zones certain / possible / crossed, position) and the events each step must produce.
Corridor 30 m everywhere; positions in metres east/north of a point in Daechi-dong."""

from __future__ import annotations

import copy
import dataclasses
import math
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from tracker.monitor import (
    ChildContext,
    ChildState,
    EventKind,
    Hours,
    Observation,
    Place,
    RouteSchedule,
    Rules,
    Verdict,
    Window,
    gate,
    step,
    tick,
)
from tracker.monitor.model import R68_PER_SIGMA

RULES = Rules()  # the defaults: what a deployment runs with
assert (RULES.off_route_sigma, RULES.off_route_score, RULES.off_route_step_cap) == (2.0, 4.0, 3.0)
assert (RULES.off_route_min_fixes, RULES.off_route_min_s) == (3, 20.0)
assert (RULES.on_route_min_fixes, RULES.zone_confirm_fixes, RULES.zone_exit_fixes) == (2, 2, 2)
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Asia/Seoul")).timestamp()  # a Monday, 08:00 in Seoul
MORNING = RouteSchedule.from_registry(
    "Asia/Seoul", [{"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00"}]
)

L, B, E, LZ, SOS, LOW = (
    EventKind.LEFT_ROUTE,
    EventKind.BACK_ON_ROUTE,
    EventKind.ENTERED_ZONE,
    EventKind.LEFT_ZONE,
    EventKind.SOS,
    EventKind.LOW_BATTERY,
)
LOST, BACK, ARR, LEFT, NOT = (
    EventKind.SIGNAL_LOST,
    EventKind.SIGNAL_BACK,
    EventKind.ARRIVED,
    EventKind.LEFT_PLACE,
    EventKind.NOT_ARRIVED,
)
LON0, LAT0 = 127.0560, 37.4990
MX, MY = 111_320.0 * math.cos(math.radians(LAT0)), 110_574.0


def lonlat(x: float, y: float) -> tuple[float, float]:
    return LON0 + x / MX, LAT0 + y / MY


def obs(
    t: float,
    dist: float = 0.0,
    acc: float = 10.0,
    certain: tuple[int, ...] = (),
    possible: tuple[int, ...] | None = None,
    at: tuple[float, float] = (0.0, 0.0),
    **kw: object,
) -> Observation:
    lon, lat = lonlat(*at)
    return Observation(
        ts=T0 + t,
        lon=lon,
        lat=lat,
        acc=acc,
        route_distance_m=dist,
        corridor_m=30.0,
        certain_zones=frozenset(certain),
        possible_zones=frozenset(certain if possible is None else possible),
        **kw,  # type: ignore[arg-type]
    )


CTX = ChildContext(schedule=MORNING)


def run(steps: list[Observation], ctx: ChildContext = CTX, rules: Rules = RULES) -> list[list[EventKind]]:
    """Each observation as the geofence stage makes it for a batch of one fix: with the error scale its
    tag has learnt so far (tracker.stages.geofence.error_scales)."""
    state = ChildState()
    out = []
    for o in steps:
        o = msgspec.structs.replace(o, acc_scale=state.error_scale(rules))
        state, events, _ = step(state, o, ctx, rules)
        out.append([e.kind for e in events])
    return out


# (name, [observations], [events per step])
# Accuracy 10 m is sigma 6.6 m; the corridor is 30 m. Each fix adds (sigmas beyond the corridor - 2),
# at most 3: 100 m out adds 3; "left route" at 4, from 3 fixes of evidence spanning 20 s, or from 2 when
# each came at a walk from the fix before it (at most 2 m/s, both accuracies taken off).
SIGMA10 = 10 / 1.5096
ROUTE_SCENARIOS = [
    (
        "walking inside the corridor never alerts",
        [obs(0, 5), obs(15, 25), obs(30, 29.9), obs(45, 0)],
        [[], [], [], []],
    ),
    (
        "60-70 m from a 30 m corridor with accuracy 40 m is 1-1.5 sigma: jitter, no evidence",
        [obs(0, 60, acc=40), obs(15, 65, acc=40), obs(30, 69, acc=40), obs(45, 70, acc=40)],
        [[], [], [], []],
    ),
    (
        "2 sigma beyond the corridor on every fix adds nothing (it happens daily to every child)",
        [obs(t, 30 + 2 * SIGMA10) for t in (0, 15, 30, 45, 60, 75)],
        [[], [], [], [], [], []],
    ),
    (
        "two fixes thrown far out (multipath) are not enough, however far: each adds at most 3",
        [obs(0, 300), obs(15, 300), obs(30, 10)],
        [[], [], []],
    ),
    (
        "three fixes far out, 30 s from first to last: left route on the third",
        [obs(0, 100), obs(15, 120), obs(30, 130)],
        [[], [], [L]],
    ),
    (
        "evidence adds up: 3 sigma beyond adds 1 per fix, left route on the fourth",
        [obs(t, 30 + 3.01 * SIGMA10) for t in (0, 15, 30, 45)],
        [[], [], [], [L]],
    ),
    (
        "a large error circle must be further out: 150 m with accuracy 40 m (4.5 sigma) adds 2.5",
        [obs(0, 150, acc=40), obs(15, 150, acc=40), obs(30, 150, acc=40)],
        [[], [], [L]],
    ),
    (
        "30 s fixes walking away: the second fix out decides (20 s of evidence, each fix a walk from the"
        " one before; before: the third, a minute after the first)",
        [obs(0, 0, at=(0, 0)), obs(30, 60, at=(0, 60)), obs(60, 100, at=(0, 100)), obs(90, 140, at=(0, 140))],
        [[], [], [L], []],
    ),
    (
        "... two fixes thrown 90-110 m in two directions at 30 s (a receiver's lies): the third decides",
        [
            obs(0, 0, at=(0, 0)),
            obs(30, 90, at=(0, 90)),
            obs(60, 110, at=(10, -110)),
            obs(90, 120, at=(0, 120)),
        ],
        [[], [], [], [L]],
    ),
    (
        "... and one thrown fix, the next back on the route: nothing",
        [obs(0, 0, at=(0, 0)), obs(30, 100, at=(0, 100)), obs(60, 0, at=(0, 0)), obs(90, 0, at=(0, 0))],
        [[], [], [], []],
    ),
    (
        "a fix inside the corridor starts over",
        [obs(0, 100), obs(15, 100), obs(30, 10), obs(45, 100)],
        [[], [], [], []],
    ),
    (
        "three fixes out within 20 s: the dwell needs a fourth",
        [obs(0, 100), obs(5, 100), obs(12, 100), obs(21, 100)],
        [[], [], [], [L]],
    ),
    (
        "a fix in the band outside the corridor takes some evidence away but does not start over (had it"
        " started over, the fourth fix would not be enough either)",
        [obs(0, 100), obs(15, 35, acc=10), obs(30, 100), obs(45, 100)],
        [[], [], [L], []],
    ),
    (
        "back on route needs two fixes inside",
        [obs(0, 100), obs(15, 100), obs(30, 100), obs(45, 10), obs(60, 10)],
        [[], [], [L], [], [B]],
    ),
    (
        "a fix outside while returning resets the return count",
        [obs(0, 100), obs(15, 100), obs(30, 100), obs(45, 10), obs(60, 100), obs(75, 10), obs(90, 10)],
        [[], [], [L], [], [], [], [B]],
    ),
    (
        "still outside: one incident, no repeat",
        [obs(0, 100), obs(15, 100), obs(30, 150), obs(45, 200), obs(60, 250)],
        [[], [], [L], [], []],
    ),
    (
        "outside the commute window nothing is decided about the route",
        [obs(3600, 100), obs(3615, 100), obs(3630, 100), obs(3645, 100)],  # 09:00 onwards
        [[], [], [], []],
    ),
]


@pytest.mark.parametrize(("name", "steps", "expected"), ROUTE_SCENARIOS, ids=[s[0] for s in ROUTE_SCENARIOS])
def test_route_rules(name: str, steps: list[Observation], expected: list[list[EventKind]]) -> None:
    assert run(steps) == expected


CANYON_MARGIN = Rules(off_route_margin_m=25.0)  # TRACKER_OFF_ROUTE_MARGIN_M: an operator's choice
ROUTE_MARGIN = [
    (
        "fixes of 10 m accuracy 20 m beyond the corridor for two minutes (an urban canyon's bias):"
        " 'left route' at the fourth by default",
        RULES,
        [obs(t, 50) for t in range(0, 120, 15)],
        [[], [], [], [L]] + [[]] * 4,
    ),
    (
        "... nothing with a margin of 25 m (they are not 25 m beyond)",
        CANYON_MARGIN,
        [obs(t, 50) for t in range(0, 120, 15)],
        [[]] * 8,
    ),
    (
        "a child walking away: 'left route' at the same fix with the margin and without",
        CANYON_MARGIN,
        [obs(0, 0), obs(15, 60), obs(30, 75), obs(45, 90), obs(60, 105)],
        [[], [], [], [L], []],
    ),
    (
        "... the same walk by default",
        RULES,
        [obs(0, 0), obs(15, 60), obs(30, 75), obs(45, 90), obs(60, 105)],
        [[], [], [], [L], []],
    ),
]


@pytest.mark.parametrize(
    ("name", "rules", "steps", "expected"), ROUTE_MARGIN, ids=[s[0] for s in ROUTE_MARGIN]
)
def test_a_margin_beyond_the_corridor(
    name: str, rules: Rules, steps: list[Observation], expected: list[list[EventKind]]
) -> None:
    assert run(steps, rules=rules) == expected


ZONE_SCENARIOS = [
    (
        "certainly inside twice: entered on the second fix",
        [obs(0, certain=(7,)), obs(15, certain=(7,))],
        [[], [E]],
    ),
    (
        "possibly inside (accuracy circle over the edge) never enters",
        [obs(0, certain=(), possible=(7,)), obs(15, certain=(), possible=(7,))],
        [[], []],
    ),
    (
        "inside, out, inside: the confirmation must be consecutive",
        [obs(0, certain=(7,)), obs(15), obs(30, certain=(7,)), obs(45, certain=(7,))],
        [[], [], [], [E]],
    ),
    (
        "leaving needs two fixes certainly outside",
        [obs(0, certain=(7,)), obs(15, certain=(7,)), obs(30), obs(45)],
        [[], [E], [], [LZ]],
    ),
    (
        "a fix that may still be inside does not count towards leaving",
        [obs(0, certain=(7,)), obs(15, certain=(7,)), obs(30), obs(45, possible=(7,)), obs(60), obs(75)],
        [[], [E], [], [], [], [LZ]],
    ),
    (
        "zones are watched outside commute windows too",
        [obs(7200, certain=(7,)), obs(7215, certain=(7,))],
        [[], [E]],
    ),
    (
        "two zones at once are two incidents",
        [obs(0, certain=(7, 9)), obs(15, certain=(7, 9))],
        [[], [E, E]],
    ),
]


@pytest.mark.parametrize(("name", "steps", "expected"), ZONE_SCENARIOS, ids=[s[0] for s in ZONE_SCENARIOS])
def test_zone_rules(name: str, steps: list[Observation], expected: list[list[EventKind]]) -> None:
    # a child without a route: on its route, in a commute window, a zone's part in the corridor does
    # not count (tests/unit/test_city_rules.py), and these steps put the zone on the route's line
    assert run([msgspec.structs.replace(o, route_distance_m=math.nan) for o in steps]) == expected


def test_sos_is_immediate_and_survives_a_late_fix_but_not_a_duplicate() -> None:
    state = ChildState()
    state, events, _ = step(state, obs(30), CTX, RULES)
    state, events, verdict = step(state, obs(0, sos=True), CTX, RULES)  # late, yet a real press
    assert [e.kind for e in events] == [SOS] and verdict == Verdict.STALE
    state, events, _ = step(state, obs(45, sos=True), CTX, RULES)
    assert [e.kind for e in events] == [SOS]
    _, events, verdict = step(state, obs(45, sos=True), CTX, RULES)
    assert events == [] and verdict == Verdict.DUPLICATE


@pytest.mark.parametrize(
    ("name", "second", "verdict"),
    [
        ("same timestamp", obs(15, 100), Verdict.DUPLICATE),
        ("older than the last decided fix", obs(10, 100), Verdict.STALE),
        ("accuracy worse than the limit", obs(30, 500, acc=150), Verdict.POOR_ACCURACY),
    ],
)
def test_fixes_that_must_not_decide(name: str, second: Observation, verdict: Verdict) -> None:
    state, _, _ = step(ChildState(), obs(15, 100), CTX, RULES)
    new, events, got = step(state, second, CTX, RULES)
    assert got == verdict and events == []
    # a fix too vague to decide is still news that the tag is alive (signal lost); the others are not
    heard = second.ts if verdict == Verdict.POOR_ACCURACY else None
    assert new == dataclasses.replace(state, heard_ts=heard)


def test_low_battery_once_per_local_day() -> None:
    steps = [obs(0, batt=14), obs(15, batt=12), obs(86400, batt=10)]
    assert run(steps) == [[LOW], [], [LOW]]


def test_a_child_without_a_route_is_only_watched_for_zones() -> None:
    steps = [obs(0, math.nan, certain=(3,)), obs(15, math.nan, certain=(3,))]
    assert run(steps, ChildContext()) == [[], [E]]


def test_step_never_modifies_the_previous_state() -> None:
    state, _, _ = step(ChildState(), obs(0, 100, certain=(7,)), CTX, RULES)
    frozen = copy.deepcopy(state)
    step(state, obs(15, 100, certain=(7,)), CTX, RULES)
    assert state == frozen


def test_state_round_trips_through_json() -> None:
    state = ChildState()
    ctx = ChildContext(schedule=MORNING, school=Place(*lonlat(0, 0), 60))
    for o in [obs(0, 100, certain=(7,)), obs(15, 100, certain=(7, 9)), obs(30, batt=3), obs(45, batt=3)]:
        state, _, _ = step(state, o, ctx, RULES)
    state, _ = tick(state, T0 + 600, ctx, RULES)
    assert ChildState.from_json(state.to_json()) == state


def seg(t: float, since: float, crossed: tuple[int, ...], acc: float = 8.0, **kw: object) -> Observation:
    """A fix whose segment from the fix at `since` crosses the zones `crossed`."""
    return obs(t, acc=acc, crossed_zones=frozenset(crossed), crossed_from_ts=T0 + since, **kw)


NOON = 4 * 3600.0  # 12:00, after the morning window


def idle(t: float, depth: float, acc: float, dist: float = 55.0, every: float = 15.0) -> Observation:
    """Outside the commute windows, t s after noon: a fix ``depth`` m inside zone 7 (negative: outside
    it, within its disc: still possible), from the fix ``every`` s before."""
    return seg(
        NOON + t,
        NOON + t - every,
        (7,) if depth > 0 else (),
        acc=acc,
        possible=(7,),
        nearest_zone_m=max(0.0, -depth),
        dist=dist,
        zone_depths_m={7: depth},
    )


# Lingering: 55 m from the route with 20 m accuracy the circle clears the 30 m corridor (too little
# for a departure: 1.9 sigma beyond it); 45 m from it, the circle reaches the corridor: the fix may be
# on the route. Lingering reads fixes of at most 20 m (zone_linger_max_acc_m).
SHORT_VISITS = [
    (
        "in the zone once, next fix just outside it: a short visit counts",
        [obs(0, certain=(7,)), obs(15, nearest_zone_m=12.0)],
        [[], [E]],
    ),
    (
        "in the zone once, next fix back on the route far from it: a multipath jump, no alert",
        [obs(0, certain=(7,)), obs(15, nearest_zone_m=80.0)],
        [[], []],
    ),
    (
        "in the zone once, then a fix too vague to tell (its disc touches the zone): the next decides",
        [
            obs(0, certain=(7,)),
            obs(15, acc=65, possible=(7,), nearest_zone_m=60.0),
            obs(30, nearest_zone_m=12.0),
        ],
        [[], [], [E]],
    ),
    (
        "a multipath jump into the zone, a vague fix, then back on the route far from it: no alert",
        [
            obs(0, certain=(7,)),
            obs(15, acc=65, possible=(7,), nearest_zone_m=60.0),
            obs(30, nearest_zone_m=80.0),
        ],
        [[], [], []],
    ),
    (
        "a pass-through between two accurate fixes outside it, the next fix goes on: entered then",
        [obs(0, acc=8), seg(15, 0, (7,)), seg(30, 15, ())],
        [[], [], [E]],
    ),
    (
        "a fix thrown across the zone comes back across it: a multipath jump, no alert",
        [obs(0, acc=8), seg(15, 0, (7,)), seg(30, 15, (7,)), seg(45, 30, ())],
        [[], [], [], []],
    ),
    (
        "... and comes back across it to a fix that lies outside it though its disc touches it: no"
        " alert (a child at home 25 m from a road: one fix thrown over the road, the next at home)",
        [
            obs(0, acc=8),
            seg(15, 0, (7,)),
            seg(30, 15, (7,), possible=(7,), nearest_zone_m=10.0, zone_depths_m={7: -10.0}),
            seg(45, 30, ()),
        ],
        [[], [], [], []],
    ),
    (
        "... comes back across it to a fix that lies inside it: it may have stopped there: entered",
        [obs(0, acc=8), seg(15, 0, (7,)), seg(30, 15, (7,), possible=(7,), zone_depths_m={7: 4.0})],
        [[], [], [E]],
    ),
    (
        "a segment out of a fix that may be inside is not a pass-through (a jump coming back)",
        [obs(0, acc=8, possible=(7,)), seg(15, 0, (7,)), seg(30, 15, ())],
        [[], [], []],
    ),
    (
        "a crossing between fixes a long gap apart does not count",
        [obs(0, acc=8), seg(120, 0, (7,)), seg(135, 120, ())],
        [[], [], []],
    ),
    (
        "a crossing from an inaccurate fix does not count",
        [obs(0, acc=45), seg(15, 0, (7,)), seg(30, 15, ())],
        [[], [], []],
    ),
    (
        "crossings from another fix than the last decided one do not count",
        [obs(0, acc=8), seg(15, 5, (7,)), seg(30, 15, ())],
        [[], [], []],
    ),
    (
        "a thin zone never certainly inside: three segments into it, to fixes in it, over 20 s while it"
        " stays possible",
        [obs(0, 55, acc=20)]
        + [seg(t, t - 15, (7,), acc=20, possible=(7,), nearest_zone_m=0.0, dist=55) for t in (15, 30, 45)],
        [[], [], [], [E]],
    ),
    (
        "lingering counts only while the zone stays possible",
        [obs(0, 55, acc=20)]
        + [seg(t, t - 15, (7,), acc=20, possible=(7,), nearest_zone_m=0.0, dist=55) for t in (15, 30)]
        + [seg(45, 30, (), acc=20, dist=55)]
        + [seg(t, t - 15, (7,), acc=20, possible=(7,), nearest_zone_m=0.0, dist=55) for t in (60, 75)],
        [[], [], [], [], [], []],
    ),
    (
        "walking its route (the fixes may be on it) by a zone: segments into it are no lingering",
        # 45 m from the route with 20 m accuracy: its circle reaches 25 m from the route, in the corridor
        [obs(0, 45, acc=20)]
        + [seg(t, t - 15, (7,), acc=20, possible=(7,), nearest_zone_m=0.0, dist=45) for t in (15, 30, 45)],
        [[], [], [], []],
    ),
    (
        "... a fix that may be on the route neither counts nor starts the lingering over",
        [obs(0, 55, acc=20)]
        + [
            seg(t, t - 15, (7,), acc=20, possible=(7,), nearest_zone_m=0.0, dist=d)
            for t, d in ((15, 55), (30, 45), (45, 55))
        ]
        + [seg(60, 45, (7,), acc=20, possible=(7,), nearest_zone_m=0.0, dist=55)],
        [[], [], [], [], [E]],
    ),
    (
        "... outside the commute windows the route explains nothing: 25 m deep at 20 m accuracy (1.9"
        " sigmas) for a run of 90 s (zone_linger_idle_min_s): a stay",
        [obs(NOON, 45, acc=20)] + [idle(t, 25.0, 20, dist=45) for t in range(15, 106, 15)],
        [[], [], [], [], [], [], [], [E]],
    ),
    (
        "... the same stay at 1 s fixes: alerted as soon (the evidence is per second, not per fix; the"
        " run spans 90 s from its first fix, 1 s in, not 15)",
        [obs(NOON, 45, acc=20)] + [idle(t, 25.0, 20, dist=45, every=1) for t in range(1, 106)],
        [[E] if t == 91 else [] for t in range(106)],
    ),
    (
        "outside the commute windows, a sidewalk 5 m beside a road zone, every fix for two minutes"
        " grazing 4 m into the road (0.4 sigmas at 15 m): no stay (before: a run of 90 s, 'entered')",
        [obs(NOON, 55, acc=15)] + [idle(t, 4.0, 15) for t in range(15, 121, 15)],
        [[]] * 9,
    ),
    (
        "... nor with one fix thrown 30 m deep among them (a fix adds at most 1.5)",
        [obs(NOON, 55, acc=15)] + [idle(t, 30.0 if t == 60 else 4.0, 15) for t in range(15, 121, 15)],
        [[]] * 9,
    ),
    (
        "... reported in the road for 45 s, then just outside: not yet a stay, however deep",
        [obs(NOON, 55, acc=15)]
        + [idle(t, 20.0, 15) for t in (15, 30, 45, 60)]
        + [idle(75, -2.0, 15), idle(90, -4.0, 15)],
        [[], [], [], [], [], [], []],
    ),
    (
        "... 15 m deep at 10 m accuracy (2.3 sigmas) for 90 s, one fix of them just outside: a stay (a"
        " fix outside takes back some evidence, it does not start the run over)",
        [obs(NOON, 55, acc=10)] + [idle(t, -1.0 if t == 45 else 15.0, 10) for t in range(15, 121, 15)],
        [[], [], [], [], [], [], [], [E], []],
    ),
    (
        "outside the commute windows (idle: at home, indoors) lingering is a run: segments that miss"
        " the zone take it back (issue 15: a child by a zone crosses it now and then, not in a run)",
        [obs(NOON, 55, acc=20)]
        + [
            seg(NOON + t, NOON + t - 15, (7,), acc=20, possible=(7,), nearest_zone_m=0.0, dist=55)
            for t in (15, 30)
        ]
        + [seg(NOON + 45, NOON + 30, (), acc=20, possible=(7,), dist=55)]
        + [
            seg(NOON + t, NOON + t - 15, (7,), acc=20, possible=(7,), nearest_zone_m=0.0, dist=55)
            for t in (60, 75)
        ],
        [[], [], [], [], [], []],
    ),
    (
        "... of segments to fixes reported inside the zone (3 m outside it: no lingering)",
        [obs(NOON, 55, acc=20)]
        + [
            seg(
                NOON + t,
                NOON + t - 15,
                (7,),
                acc=20,
                possible=(7,),
                nearest_zone_m=0.0 if t == 30 else 3.0,
                dist=55,
            )
            for t in (15, 30, 45, 60, 75)
        ],
        [[], [], [], [], [], []],
    ),
    (
        "... from fixes of at most 20 m (zone_linger_idle_max_acc_m): at 30 m, nothing",
        [obs(NOON, 65, acc=30)]
        + [
            seg(NOON + t, NOON + t - 15, (7,), acc=30, possible=(7,), nearest_zone_m=0.0, dist=65)
            for t in (15, 30, 45, 60)
        ],
        [[], [], [], [], []],
    ),
    (
        "... in a commute window, off its route, 30 m fixes' segments into it still count (today's bench)",
        [obs(0, 65, acc=30)] + [seg(t, t - 15, (7,), acc=30, possible=(7,), dist=65) for t in (15, 30, 45)],
        [[], [], [], [E]],
    ),
]


@pytest.mark.parametrize(("name", "steps", "expected"), SHORT_VISITS, ids=[s[0] for s in SHORT_VISITS])
def test_short_visits_and_crossings(
    name: str, steps: list[Observation], expected: list[list[EventKind]]
) -> None:
    if all(o.route_distance_m == 0.0 for o in steps):  # the zone on the route's line: no route (above)
        steps = [msgspec.structs.replace(o, route_distance_m=math.nan) for o in steps]
    assert run(steps) == expected


def test_a_zone_with_hours_is_only_dangerous_during_them() -> None:
    works = Hours.from_registry("Asia/Seoul", [{"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00"}])
    ctx = ChildContext(schedule=MORNING, zone_hours={7: works})
    assert run([obs(0, certain=(7,)), obs(15, certain=(7,))], ctx) == [[], []]  # 08:00: no work yet
    assert run([obs(3600, certain=(7,)), obs(3615, certain=(7,))], ctx) == [[], [E]]  # 09:00


def test_an_impossible_jump_decides_nothing_and_the_next_plausible_fix_does() -> None:
    state, _, _ = step(ChildState(), obs(0, at=(0, 0)), CTX, RULES)
    jumped, events, verdict = step(state, obs(15, 500, at=(3000, 0), certain=(7,)), CTX, RULES)
    assert verdict == Verdict.IMPOSSIBLE_JUMP and events == []
    assert jumped == dataclasses.replace(state, heard_ts=T0 + 15)  # heard: the tag is alive
    _, _, verdict = step(state, obs(30, at=(20, 0)), CTX, RULES)
    assert verdict == Verdict.DECIDED


SCHOOL = Place(*lonlat(0, 0), 60)
HOME = Place(*lonlat(-800, 0), 50)
PLACES = ChildContext(schedule=MORNING, school=SCHOOL, home=HOME)


@pytest.mark.parametrize(
    ("name", "path", "expected"),
    [
        ("two fixes inside the school's fence: arrived", [(-100, 0), (-30, 0), (-10, 5)], [[], [], [ARR]]),
        ("one fix inside is not yet arrival", [(-100, 0), (-30, 0), (-100, 0)], [[], [], []]),
        (
            "arrived, then two fixes certainly outside: left school",
            [(-30, 0), (-10, 0), (-200, 0), (-210, 0)],
            [[], [ARR], [], [LEFT]],
        ),
        (
            "arrived, a fix certainly outside, one that may still be inside (beyond the fence, its disc"
            " reaching it), another certainly outside: still at school, the outs must come in a row"
            " (before: left on the second out, and a tag scattering indoors left its place)",
            [(-30, 0), (-10, 0), (-200, 0), (-70, 0), (-210, 0), (-220, 0)],
            [[], [ARR], [], [], [], [LEFT]],
        ),
        (
            "at home, then walking out of it",
            [(-800, 0), (-795, 0), (-730, 0), (-710, 0)],
            [[], [ARR], [], [LEFT]],
        ),
    ],
)
def test_arrival_at_places(
    name: str, path: list[tuple[float, float]], expected: list[list[EventKind]]
) -> None:
    got = run([obs(15 * i, at=p) for i, p in enumerate(path)], PLACES)
    assert got == expected


def test_an_rfid_gate_sighting_is_arrival_at_once_and_leaving_after_an_hour() -> None:
    state, events = gate(ChildState(), T0, PLACES, RULES)
    assert [(e.kind, e.detail) for e in events] == [(ARR, "school")]
    state, events = gate(state, T0 + 60, PLACES, RULES)
    assert events == []  # the same child passing the gate again at once is not leaving
    state, events = gate(state, T0 + 5 * 3600, PLACES, RULES)
    assert [(e.kind, e.detail) for e in events] == [(LEFT, "school")]


# A child at home (its route's start, 800 m west of the school) in the morning window: arrived on two
# fixes inside the 50 m fence; `dist` is the fix's distance from the route's line (the route starts at
# home, so beside it the two are alike). At 30 m accuracy the zone disc is 50 m: a fix up to 100 m from
# home may still be there; at 10 m accuracy, up to 67 m.
def _home(t: float, d: float, acc: float = 10.0, dist: float | None = None) -> Observation:
    return obs(t, d if dist is None else dist, acc=acc, at=(-800 + d, 0))


AT_HOME = [
    (
        "indoors at home, fixes 80-95 m away at 30 m accuracy (four sigmas of excess added up): no"
        " 'left route', and not left home (before: 'left route' on the fourth)",
        [_home(0, 0), _home(15, 5)] + [_home(t, 80 + t / 8, acc=30, dist=95) for t in range(30, 150, 15)],
        [[], [ARR]] + [[]] * 8,
    ),
    (
        "walking away from home: the evidence adds up while it may still be there, 'left route' at the"
        " first fix certainly away from it (one fix later than without the place)",
        [_home(t, d) for t, d in ((0, 0), (15, 5), (30, 64), (45, 66), (60, 66), (75, 100), (90, 130))],
        [[], [ARR], [], [], [], [L], [LEFT]],
    ),
    (
        "a child who has left home (two fixes certainly away) is judged as anywhere",
        [_home(0, 0), _home(15, 5), _home(30, 120, dist=35), _home(45, 140, dist=35)]
        + [_home(t, 160, dist=90) for t in (60, 75, 90)],
        [[], [ARR], [], [LEFT], [], [], [L]],
    ),
]


# The same at one fix a second: certain outs count per second, not per fix (each Rules.weight of its
# gap: 0.1), so a tag away for a few seconds is still at home, and a child walking out is away once it
# has been certainly so for 10 s ("left route") and has left after 20 s, as a tag every 10 s or more
# would be after one fix and two.
_INDOORS_1S = [_home(0, 0), _home(1, 5)] + [_home(t, 80, acc=30, dist=95) for t in range(2, 40)]
_WALK_1S = [_home(0, 0), _home(1, 5)] + [
    _home(t, 5 + 1.4 * (t - 1), dist=5 + 1.4 * (t - 1)) for t in range(2, 70)
]
AT_HOME_EVERY_SECOND = [
    (
        "a 1 s tag indoors, its evidence added up, then 3 s of fixes certainly away (100 m at 10 m) and"
        " back: still at home, no 'left route' (before: 'left route' at the first, left home at the"
        " second)",
        _INDOORS_1S
        + [_home(t, 100, dist=95) for t in range(40, 43)]
        + [_home(t, 80, acc=30, dist=95) for t in range(43, 50)],
        [[], [ARR]] + [[]] * 48,
    ),
    (
        "a 1 s child walking out of home at 1.4 m/s, certainly away from t = 45 s (66.6 m): 'left"
        " route' at its tenth fix certainly away, left home at its twentieth (before: left home at the"
        " second, 'left route' at t = 49 s)",
        _WALK_1S,
        [[], [ARR]] + [[]] * 52 + [[L]] + [[]] * 9 + [[LEFT]] + [[]] * 5,
    ),
]


@pytest.mark.parametrize(
    ("name", "steps", "expected"), AT_HOME_EVERY_SECOND, ids=[s[0] for s in AT_HOME_EVERY_SECOND]
)
def test_a_place_is_left_per_second_not_per_fix(
    name: str, steps: list[Observation], expected: list[list[EventKind]]
) -> None:
    assert run(steps, PLACES) == expected


@pytest.mark.parametrize(("name", "steps", "expected"), AT_HOME, ids=[s[0] for s in AT_HOME])
def test_left_route_from_home(name: str, steps: list[Observation], expected: list[list[EventKind]]) -> None:
    assert run(steps, PLACES) == expected


# TRACKER_PLACE_SIGMA: how wide the disc round a fix is that keeps a child at home or at school. At
# 10 m accuracy 2.5 sigmas (the default) reach 16.6 m beyond the 50 m fence, 4.0 sigmas 26.5 m.
WIDE_PLACE = dataclasses.replace(RULES, place_sigma=4.0)
PLACE_SIGMA = [
    (
        "indoors at home on a device that under-reports its error, fixes 69-75 m away at 10 m: left"
        " home and 'left route' with the default",
        RULES,
        [_home(0, 0), _home(15, 5)] + [_home(t, 68 + t / 20) for t in range(30, 150, 15)],
        [[], [ARR], [], [LEFT], [L], [], [], [], [], []],
    ),
    (
        "... and nothing with 4.0 sigmas (still possibly at home)",
        WIDE_PLACE,
        [_home(0, 0), _home(15, 5)] + [_home(t, 68 + t / 20) for t in range(30, 150, 15)],
        [[], [ARR]] + [[]] * 8,
    ),
    (
        "walking away from home with 4.0 sigmas: 'left route' at the first fix beyond 76.5 m, as with"
        " the default at the first beyond 66.6 m (here the same fix)",
        WIDE_PLACE,
        [_home(t, d) for t, d in ((0, 0), (15, 5), (30, 64), (45, 66), (60, 66), (75, 100), (90, 130))],
        [[], [ARR], [], [], [], [L], [LEFT]],
    ),
    (
        "walking away slowly with 4.0 sigmas: later than with the default (two fixes at 70 m, 75 m)",
        WIDE_PLACE,
        [_home(t, d) for t, d in ((0, 0), (15, 5), (30, 60), (45, 65), (60, 70), (75, 75), (90, 85))],
        [[], [ARR], [], [], [], [], [L]],
    ),
    (
        "... the same walk with the default",
        RULES,
        [_home(t, d) for t, d in ((0, 0), (15, 5), (30, 60), (45, 65), (60, 70), (75, 75), (90, 85))],
        [[], [ARR], [], [], [L], [LEFT], []],
    ),
]


@pytest.mark.parametrize(("name", "rules", "steps", "expected"), PLACE_SIGMA, ids=[s[0] for s in PLACE_SIGMA])
def test_how_wide_a_place_holds_a_child(
    name: str, rules: Rules, steps: list[Observation], expected: list[list[EventKind]]
) -> None:
    assert run(steps, PLACES, rules) == expected


def _home_hour(out_every: int, accurate: int = 0) -> list[Observation]:
    """Arrived home, then ``accurate`` fixes 20 m from its middle at 10 m accuracy (outdoors, a good
    sky), then 50 indoors at 30 m accuracy 20 m from it, every ``out_every``-th one (never two in a
    row) 110 m away instead: beyond the disc of 2.5 sigmas (99.7 m), a device whose true error is
    more than it reports; then two fixes 112 m away."""
    steps = [_home(0, 0), _home(15, 5)]
    steps += [_home(30 + 15 * i, 20) for i in range(accurate)]
    t0 = 30 + 15 * accurate
    steps += [
        _home(t0 + 15 * i, 110 if out_every and i % out_every == out_every // 2 else 20, acc=30)
        for i in range(50)
    ]
    return [*steps, _home(t0 + 15 * 50, 112, acc=30), _home(t0 + 15 * 51, 112, acc=30)]


ALL_FIXES_TELL = dataclasses.replace(RULES, place_fit_acc_share=0.0)  # (before: every fix evidence)
LEARNT_PLACE = [
    (
        "a tag whose fixes at home keep within their accuracy: two fixes 112 m away, certainly out at"
        " 2.5 sigmas: left home",
        0,
        0,
        RULES,
        [[], [LEFT]],
    ),
    (
        "a tag whose fixes at home land beyond 2.5 of its sigmas one time in ten (5 of 50: above"
        " TRACKER_PLACE_OUT_RATE): judged there by 4.0 sigmas from then on, 112 m away may be home",
        10,
        0,
        RULES,
        [[], []],
    ),
    (
        "the same, 2 of its 50 indoor fixes beyond, after 250 fixes at 10 m outdoors: those tell nothing"
        " (a fix at 10 m lands beyond a 50 m fence's disc almost never), 2 in 50 is above the rate: 4.0",
        25,
        250,
        RULES,
        [[], []],
    ),
    (
        "... the same fixes with every fix counted as evidence (before): 2 in 300 is under the rate,"
        " left home",
        25,
        250,
        ALL_FIXES_TELL,
        [[], [LEFT]],
    ),
]


@pytest.mark.parametrize(
    ("name", "out_every", "accurate", "rules", "last"), LEARNT_PLACE, ids=[s[0] for s in LEARNT_PLACE]
)
def test_a_place_holds_a_tag_by_how_its_fixes_keep_there(
    name: str, out_every: int, accurate: int, rules: Rules, last: list[list[EventKind]]
) -> None:
    got = run(_home_hour(out_every, accurate), PLACES, rules)
    assert got[1] == [ARR] and all(e == [] for e in got[2:-2])
    assert got[-2:] == last


# A tag learns at home how it keeps to its accuracy (above), and is judged by it everywhere: its walk
# away from home 60 m off its route (30 m beyond the 30 m corridor) at 10 m accuracy is 4.5 of its
# sigmas for a tag that reports truly (each fix adds 2.5), 2.8 for one learnt to under-report its
# error (its sigmas x1.6: each fix adds 0.8).
LEARNT_EVERYWHERE = [
    (
        "a tag whose fixes at home keep within their accuracy: 'left route' on the third fix 60 m off"
        " (its evidence 7.6, spanning 30 s)",
        0,
        [[], [LEFT], [L], [], [], []],
    ),
    (
        "a tag learnt to under-report its error: the same fixes are 2.8 of its sigmas: 'left route' on"
        " the fifth (its evidence 4.1)",
        10,
        [[], [LEFT], [], [], [L], []],
    ),
]


@pytest.mark.parametrize(
    ("name", "out_every", "walk"), LEARNT_EVERYWHERE, ids=[s[0] for s in LEARNT_EVERYWHERE]
)
def test_a_tag_is_judged_everywhere_by_how_its_fixes_keep_at_home(
    name: str, out_every: int, walk: list[list[EventKind]]
) -> None:
    hour = _home_hour(out_every)[:-3]  # (its last fix at home 20 m from its middle)
    t0 = hour[-1].ts - T0
    away = [_home(t0 + 15 * (i + 1), 300 + 20 * i, dist=60) for i in range(6)]
    got = run(hour + away, PLACES)
    assert got[1] == [ARR] and all(e == [] for e in got[2 : len(hour)])
    assert got[len(hour) :] == walk


def _scatter_at_home(r: float, fixes: int, acc: float = 30.0) -> list[Observation]:
    """Arrived home, then ``fixes`` every 15 s at ``acc`` r m from its middle, where the child sits, in
    the four directions in turn: all inside the 50 m fence, none beyond a disc (the outs of
    ``test_a_place_holds_a_tag_by_how_its_fixes_keep_there`` learn nothing from them)."""
    steps = [_home(0, 0), _home(15, 5)]
    sides = ((r, 0.0), (0.0, r), (-r, 0.0), (0.0, -r))
    for i in range(fixes):
        dx, dy = sides[i % 4]
        steps.append(obs(30 + 15 * i, 0.0, acc=acc, at=(-800 + dx, dy)))
    return steps


SIGMA30 = 30 / R68_PER_SIGMA  # 19.9 m
SCATTER_AT_HOME = [
    (
        "fixes 2.1 reported sigmas round where the child sits (4.5 a fix: a device whose true error is"
        " 1.5x what it reports, indoors at 30 m) for half an hour: judged by 1.6x its accuracy",
        _scatter_at_home(2.12 * SIGMA30, 120),
        RULES.wide_scale,
    ),
    (
        "... for a quarter of an hour: not yet (the scatter's evidence needs 90 fixes' worth after two"
        " minutes of the stay's mean)",
        _scatter_at_home(2.12 * SIGMA30, 60),
        1.0,
    ),
    (
        "fixes 1.41 sigmas round it (2.0 a fix: a device that reports its error truly): as reported",
        _scatter_at_home(1.41 * SIGMA30, 120),
        1.0,
    ),
    (
        "the 1.5x scatter at 10 m accuracy (fixes that cannot tell in a 50 m fence: not counted)",
        _scatter_at_home(2.12 * 10 / R68_PER_SIGMA, 120, acc=10.0),
        1.0,
    ),
]


@pytest.mark.parametrize(("name", "steps", "scale"), SCATTER_AT_HOME, ids=[s[0] for s in SCATTER_AT_HOME])
def test_a_tag_is_judged_by_how_its_fixes_scatter_at_home(
    name: str, steps: list[Observation], scale: float
) -> None:
    state = ChildState()
    for o in steps:
        o = msgspec.structs.replace(o, acc_scale=state.error_scale(RULES))
        state, events, _ = step(state, o, PLACES, RULES)
        assert all(e.kind in (ARR,) for e in events)  # nothing else: not left home, no "left route"
    assert state.error_scale(RULES) == pytest.approx(scale)


def test_a_tag_whose_fixes_keep_arriving_too_vague_to_decide_is_not_lost() -> None:
    """Indoors a tag's fixes may come at 120 m for minutes: they decide nothing, but it is heard."""
    state, _, _ = step(ChildState(), obs(0, at=(-500, 0)), PLACES, RULES)
    for t in range(15, 300, 15):
        state, events, verdict = step(state, obs(t, acc=120, at=(-500, 0)), PLACES, RULES)
        assert verdict == Verdict.POOR_ACCURACY and events == []
    assert _ticks(state, PLACES, [300, 400]) == [[], []]
    assert _ticks(state, PLACES, [285 + 181]) == [[LOST]]  # and lost once they stop


def _ticks(state: ChildState, ctx: ChildContext, seconds: list[float]) -> list[list[EventKind]]:
    out = []
    for t in seconds:
        state, events = tick(state, T0 + t, ctx, RULES)
        out.append([e.kind for e in events])
    return out


def test_signal_lost_inside_a_window_and_back_with_the_next_fix() -> None:
    state, _, _ = step(ChildState(), obs(0, at=(-500, 0)), PLACES, RULES)
    assert _ticks(state, PLACES, [60, 179, 181, 300]) == [[], [], [LOST], []]
    lost, _ = tick(state, T0 + 181, PLACES, RULES)
    _, events, _ = step(lost, obs(400, at=(-400, 0)), PLACES, RULES)
    assert [e.kind for e in events] == [BACK]


@pytest.mark.parametrize(
    ("name", "last_fix_at", "where", "now", "lost"),
    [
        ("silent after the window ended: not the commute's business", 0, (-500, 0), 3700, False),
        ("silent at school (tags off in class): no alarm", 0, (0, 0), 600, False),
        ("last fix before the window began (07:00): no alarm", -3600, (-500, 0), 600, False),
    ],
)
def test_silence_that_is_not_signal_lost(
    name: str, last_fix_at: float, where: tuple[float, float], now: float, lost: bool
) -> None:
    state = ChildState()
    for i in range(2):
        state, _, _ = step(state, obs(last_fix_at - 15 + 15 * i, at=where), PLACES, RULES)
    _, events = tick(state, T0 + now, PLACES, RULES)
    assert (LOST in [e.kind for e in events]) is lost


ARRIVE_BY = RouteSchedule.from_registry(
    "Asia/Seoul",
    [{"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00"}],
    arrivals=[{"days": [0, 1, 2, 3, 4], "time": "08:40"}],
)
ON_TIME = ChildContext(schedule=ARRIVE_BY, school=SCHOOL, home=HOME)


@pytest.mark.parametrize(
    ("name", "path", "tick_at", "expected"),
    [
        ("no fix at all by 08:40: not arrived", [], 2400, [NOT]),
        ("not at 08:39", [], 2340, []),
        ("arrived at 08:10: nothing", [(-20, 0), (0, 0)], 2400, []),
        ("at school since 07:20, before the window: nothing", [(-20, 0), (0, 0)], 2400, []),
        ("still walking at 08:40: not arrived", [(-600, 0), (-500, 0)], 2400, [NOT]),
    ],
)
def test_not_arrived_by_the_expected_time(
    name: str, path: list[tuple[float, float]], tick_at: float, expected: list[EventKind]
) -> None:
    start = -2400 if "07:20" in name else 2370 if name.startswith("still walking") else 600
    state = ChildState()
    for i, p in enumerate(path):
        state, _, _ = step(state, obs(start + 15 * i, at=p), ON_TIME, RULES)
    assert _ticks(state, ON_TIME, [tick_at, tick_at + 5]) == [expected, []]  # raised once


def test_not_arrived_only_on_school_days() -> None:
    chuseok = datetime(2026, 9, 25, 8, 41, tzinfo=ZoneInfo("Asia/Seoul")).timestamp()  # a Friday, a holiday
    _, events = tick(ChildState(), chuseok, ON_TIME, RULES)
    assert events == []
    closed = RouteSchedule.from_registry(
        "Asia/Seoul",
        [{"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00"}],
        arrivals=[{"time": "08:40"}],
        closed_days=frozenset({datetime.fromtimestamp(T0, ZoneInfo("Asia/Seoul")).date()}),
    )
    _, events = tick(ChildState(), T0 + 2400, ChildContext(schedule=closed), RULES)
    assert events == []


@pytest.mark.parametrize(
    ("local", "watched"),
    [
        ("2026-11-23 07:29", False),  # Monday before the window
        ("2026-11-23 07:30", True),
        ("2026-11-23 08:59", True),
        ("2026-11-23 09:00", False),  # end is exclusive
        ("2026-11-28 08:00", False),  # Saturday
        ("2026-10-09 08:00", False),  # Hangul Day, a Friday
    ],
)
def test_schedule_in_the_schools_time_zone(local: str, watched: bool) -> None:
    ts = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Asia/Seoul")).timestamp()
    assert MORNING.watched(ts) is watched


def test_schedule_refuses_a_window_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError, match="start before it ends"):
        Window.parse({"start": "09:00", "end": "07:00"})


def _a_day_of_steps() -> list[Observation | float]:
    """Fixes (and clock passes: a float) through every container a state has: home, a zone entered
    and left, school arrived at and left, a deadline, a low battery, a fix of unknown accuracy."""
    nan = math.nan
    return [
        obs(-3000, at=(-800, 0)),
        obs(-2985, at=(-795, 0)),  # arrived home
        obs(-2970, at=(-600, 0)),
        obs(-2955, at=(-500, 0)),  # left home
        obs(-2940, dist=nan, certain=(7,), at=(-400, 0)),
        obs(-2925, dist=nan, certain=(7,), at=(-400, 5)),  # entered zone 7
        obs(-2910, dist=nan, possible=(7,), at=(-380, 0)),
        obs(-2895, dist=nan, at=(-300, 0)),
        obs(-2880, dist=nan, at=(-250, 0)),  # left zone 7
        obs(-2865, acc=nan, batt=10, at=(-240, 0)),  # unknown accuracy, low battery
        obs(-2850, at=(-30, 0)),
        obs(-2835, at=(-10, 0)),  # arrived at school
        T0 - 2400.0,  # a clock pass: the deadline (08:40) has not come
        obs(-2820, at=(-200, 0)),
        obs(-2805, at=(-210, 0)),  # left school
        T0 + 3600.0,  # a clock pass after the deadline: not arrived
    ]


def _walk(owned: bool) -> tuple[list[ChildState], list[list[EventKind]]]:
    state, states, events = ChildState(), [], []
    for s in _a_day_of_steps():
        if isinstance(s, float):
            state, new = tick(state, s, ON_TIME, RULES)
        else:
            state, new, _ = step(state, s, ON_TIME, RULES, owned=owned and bool(states))
        states.append(state)
        events.append([e.kind for e in new])
    state, new = gate(state, T0 + 4000, ON_TIME, RULES)
    return [*states, state], [*events, [e.kind for e in new]]


def test_no_state_is_changed_by_the_steps_after_it() -> None:
    """A copy shares the state's containers (ChildState.copy): the monitor replaces a container whole,
    never changes one in place. Every state of a day through all of them is compared at the end with
    a deep copy taken when it was made."""
    states, events = [], []
    state = ChildState()
    for s in _a_day_of_steps():
        if isinstance(s, float):
            state, new = tick(state, s, ON_TIME, RULES)
        else:
            state, new, _ = step(state, s, ON_TIME, RULES)
        states.append((state, copy.deepcopy(state)))
        events += [e.kind for e in new]
    state, _ = gate(state, T0 + 4000, ON_TIME, RULES)
    states.append((state, copy.deepcopy(state)))
    assert events == [ARR, LEFT, E, LZ, LOW, ARR, LEFT, NOT]  # the day went through every container
    assert all(s == frozen for s, frozen in states)


def test_a_state_moved_in_place_ends_as_the_copies_do() -> None:
    """``step(..., owned=True)`` (a batch's own copy, moved in place for the child's later fixes)
    decides as the step that copies."""
    copied, events_copied = _walk(owned=False)
    in_place, events_in_place = _walk(owned=True)
    assert events_in_place == events_copied
    assert in_place[-1] == copied[-1]


def test_a_deadline_met_before_the_window_stays_met_after_the_child_leaves() -> None:
    state = ChildState()
    for i, p in enumerate([(-20, 0), (0, 0)]):
        state, _, _ = step(state, obs(-2400 + 15 * i, at=p), ON_TIME, RULES)  # at school from 07:20
    state, events = tick(state, T0 + 2400, ON_TIME, RULES)  # 08:40: there
    assert events == []
    for i, p in enumerate([(-200, 0), (-210, 0)]):
        state, _, _ = step(state, obs(3000 + 15 * i, at=p), ON_TIME, RULES)  # leaves later
    _, events = tick(state, T0 + 3100, ON_TIME, RULES)
    assert events == []
