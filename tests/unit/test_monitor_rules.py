"""The monitor's rules as scenario tables: steps of (seconds, distance to the route, accuracy,
zones certain / possible) and the events each step must produce. Corridor 30 m everywhere."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tracker.monitor import (
    ChildState,
    CommuteWindow,
    EventKind,
    Observation,
    RouteSchedule,
    Rules,
    Verdict,
    step,
)

RULES = Rules(
    off_route_min_fixes=2, off_route_min_s=10, on_route_min_fixes=2, zone_confirm_fixes=2, zone_exit_fixes=2
)
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


def obs(
    t: float,
    dist: float = 0.0,
    acc: float = 10.0,
    certain: tuple[int, ...] = (),
    possible: tuple[int, ...] | None = None,
    **kw: object,
) -> Observation:
    return Observation(
        ts=T0 + t,
        acc=acc,
        route_distance_m=dist,
        corridor_m=30.0,
        certain_zones=frozenset(certain),
        possible_zones=frozenset(certain if possible is None else possible),
        **kw,  # type: ignore[arg-type]
    )


def run(steps: list[Observation], schedule: RouteSchedule | None = MORNING) -> list[list[EventKind]]:
    state = ChildState()
    out = []
    for o in steps:
        state, events, _ = step(state, o, schedule, RULES)
        out.append([e.kind for e in events])
    return out


# (name, [observations], [events per step])
ROUTE_SCENARIOS = [
    (
        "walking inside the corridor never alerts",
        [obs(0, 5), obs(15, 25), obs(30, 29.9), obs(45, 0)],
        [[], [], [], []],
    ),
    (
        "jitter: far centre but a large accuracy circle is not certainly outside",
        [obs(0, 60, acc=40), obs(15, 65, acc=40), obs(30, 69, acc=40)],
        [[], [], []],
    ),
    (
        "two fixes certainly outside, 15 s apart: left route on the second",
        [obs(0, 100), obs(15, 120)],
        [[], [L]],
    ),
    ("one fix outside is not enough", [obs(0, 100), obs(15, 10), obs(30, 100)], [[], [], []]),
    (
        "two fixes outside but within 10 s: the dwell needs a third",
        [obs(0, 100), obs(5, 100), obs(12, 100)],
        [[], [], [L]],
    ),
    (
        "a fix in the hysteresis band neither counts nor resets",
        [obs(0, 100), obs(15, 35, acc=10), obs(30, 100)],
        [[], [], [L]],
    ),
    (
        "back on route needs two fixes inside",
        [obs(0, 100), obs(15, 100), obs(30, 10), obs(45, 10)],
        [[], [L], [], [B]],
    ),
    (
        "a fix outside while returning resets the return count",
        [obs(0, 100), obs(15, 100), obs(30, 10), obs(45, 100), obs(60, 10), obs(75, 10)],
        [[], [L], [], [], [], [B]],
    ),
    (
        "still outside: one incident, no repeat",
        [obs(0, 100), obs(15, 100), obs(30, 150), obs(45, 200)],
        [[], [L], [], []],
    ),
    (
        "outside the commute window nothing is decided about the route",
        [obs(3600, 100), obs(3615, 100), obs(3630, 100)],  # 09:00 onwards
        [[], [], []],
    ),
]


@pytest.mark.parametrize(("name", "steps", "expected"), ROUTE_SCENARIOS, ids=[s[0] for s in ROUTE_SCENARIOS])
def test_route_rules(name: str, steps: list[Observation], expected: list[list[EventKind]]) -> None:
    assert run(steps) == expected


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
    assert run(steps) == expected


def test_sos_is_immediate_and_survives_a_late_fix_but_not_a_duplicate() -> None:
    state = ChildState()
    state, events, _ = step(state, obs(30), MORNING, RULES)
    state, events, verdict = step(state, obs(0, sos=True), MORNING, RULES)  # late, yet a real press
    assert [e.kind for e in events] == [SOS] and verdict == Verdict.STALE
    state, events, _ = step(state, obs(45, sos=True), MORNING, RULES)
    assert [e.kind for e in events] == [SOS]
    _, events, verdict = step(state, obs(45, sos=True), MORNING, RULES)
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
    state, _, _ = step(ChildState(), obs(15, 100), MORNING, RULES)
    new, events, got = step(state, second, MORNING, RULES)
    assert got == verdict and events == [] and new == state


def test_low_battery_once_per_local_day() -> None:
    steps = [obs(0, batt=14), obs(15, batt=12), obs(86400, batt=10)]
    assert run(steps) == [[LOW], [], [LOW]]


def test_a_child_without_a_route_is_only_watched_for_zones() -> None:
    no_route = Observation(T0, 10, math.nan, math.nan, frozenset({3}), frozenset({3}))
    state, events, _ = step(ChildState(), no_route, MORNING, RULES)
    state, events, _ = step(
        state, Observation(T0 + 15, 10, math.nan, math.nan, frozenset({3}), frozenset({3})), None, RULES
    )
    assert [e.kind for e in events] == [E]


def test_step_never_modifies_the_previous_state() -> None:
    state, _, _ = step(ChildState(), obs(0, 100, certain=(7,)), MORNING, RULES)
    frozen = state.to_json()
    step(state, obs(15, 100, certain=(7,)), MORNING, RULES)
    assert state.to_json() == frozen


def test_state_round_trips_through_json() -> None:
    state = ChildState()
    for o in [obs(0, 100, certain=(7,)), obs(15, 100, certain=(7, 9)), obs(30, batt=3)]:
        state, _, _ = step(state, o, MORNING, RULES)
    assert ChildState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    ("local", "watched"),
    [
        ("2026-11-23 07:29", False),  # Monday before the window
        ("2026-11-23 07:30", True),
        ("2026-11-23 08:59", True),
        ("2026-11-23 09:00", False),  # end is exclusive
        ("2026-11-28 08:00", False),  # Saturday
    ],
)
def test_schedule_in_the_schools_time_zone(local: str, watched: bool) -> None:
    ts = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Asia/Seoul")).timestamp()
    assert MORNING.watched(ts) is watched


def test_schedule_refuses_a_window_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError, match="start before it ends"):
        CommuteWindow.parse({"start": "09:00", "end": "07:00"})
