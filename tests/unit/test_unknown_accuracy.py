"""A fix of unknown accuracy (a phone app that stated none: `acc` nan) as the monitor weighs it, in
the scenario tables of tests/unit/test_monitor_rules.py (same helpers, same corridor and zones).

The rule (tracker.monitor.machine): such a fix is no evidence for or against anything its position
would decide (route, zones, places), never alone and never as a tie-breaker, and it leaves every
count where it was; it does say SOS, battery, and that the tag is alive. So a parent is not told "in a
danger zone" on a guess, and a child is not reported "signal lost" while its phone is sending."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_monitor_rules import (
    BACK,
    CTX,
    LOST,
    LOW,
    LZ,
    MORNING,
    RULES,
    SOS,
    B,
    E,
    L,
    lonlat,
    obs,
    run,
)
from tracker.monitor import ChildContext, ChildState, EventKind, Observation, Place, Verdict, step, tick
from tracker.monitor.status import Status, child_status

U = math.nan  # not stated
ZONE = 7
SCHOOL = Place(*lonlat(500, 0), radius_m=60.0)


def unknown(t: float, dist: float = 0.0, **kw: object) -> Observation:
    return obs(t, dist, acc=U, **kw)  # type: ignore[arg-type]


# (name, [observations], [events per step])
ALONE = [
    (
        "a run of fixes deep inside a zone (even were the geofence to call them certain) raises nothing",
        [unknown(t, certain=(ZONE,), nearest_zone_m=0.0) for t in range(0, 120, 10)],
        [[]] * 12,
    ),
    (
        "a run of fixes possibly in a zone, each segment crossing it, raises nothing",
        [
            unknown(t, possible=(ZONE,), crossed_zones=frozenset({ZONE}), crossed_from_ts=obs(t - 10).ts)
            for t in range(0, 120, 10)
        ],
        [[]] * 12,
    ),
    (
        "a run of fixes a kilometre off the route, in the commute window, raises nothing",
        [unknown(t, 1000) for t in range(0, 300, 15)],
        [[]] * 20,
    ),
    (
        "a run of fixes inside the school's fence is no arrival",
        [unknown(t, at=(500, 0)) for t in range(0, 60, 10)],
        [[]] * 6,
    ),
]
AMONG_KNOWN = [
    (
        "they neither resolve a departure ...",
        [obs(0, 300), obs(15, 300), obs(30, 300), unknown(45), unknown(60), unknown(75), obs(90), obs(105)],
        [[], [], [L], [], [], [], [], [B]],
    ),
    (
        "... nor reset its evidence (the known fixes decide as if they were not there)",
        [obs(0, 300), obs(15, 300), unknown(30), unknown(40), unknown(50), obs(60, 300)],
        [[], [], [], [], [], [L]],
    ),
    (
        "they neither end a zone incident ...",
        [obs(0, certain=(ZONE,)), obs(15, certain=(ZONE,))]
        + [unknown(t, possible=()) for t in (25, 35, 45)]
        + [obs(55, possible=()), obs(70, possible=())],
        [[], [E], [], [], [], [], [LZ]],
    ),
    (
        "... nor break the count of certain fixes that confirms one",
        [obs(0, certain=(ZONE,)), unknown(10, possible=()), obs(20, certain=(ZONE,))],
        [[], [], [E]],
    ),
    (
        "... nor confirm a short visit that a known fix started",
        [obs(0, certain=(ZONE,)), unknown(10, certain=(ZONE,)), unknown(20, certain=(ZONE,))],
        [[], [], []],
    ),
]


def _scenarios(table: list[tuple[str, list[Observation], list[list[EventKind]]]]) -> None:
    for name, steps, expected in table:
        ctx = ChildContext(schedule=MORNING, school=SCHOOL)
        if any(o.certain_zones for o in steps) and all(o.route_distance_m == 0.0 for o in steps):
            # the zone on the route's line: a child without a route (on its route, in a commute
            # window, the zone minus the corridor is what counts: tests/unit/test_city_rules.py)
            steps = [msgspec.structs.replace(o, route_distance_m=math.nan) for o in steps]
        assert run(steps, ctx) == expected, name


def test_a_fix_of_unknown_accuracy_raises_no_zone_route_or_place_event_alone() -> None:
    _scenarios(ALONE)


def test_among_fixes_with_an_accuracy_it_changes_nothing_they_decide() -> None:
    _scenarios(AMONG_KNOWN)


def test_its_verdict_is_unknown_accuracy_and_it_moves_no_position_of_the_state() -> None:
    before, _, _ = step(ChildState(), obs(0, certain=(ZONE,)), CTX, RULES)
    after, events, verdict = step(before, unknown(10, 500, certain=(ZONE,)), CTX, RULES)
    assert (verdict, events) == (Verdict.UNKNOWN_ACCURACY, [])
    assert (after.last_ts, after.last_lon, after.last_lat, after.last_acc) == (
        before.last_ts,
        before.last_lon,
        before.last_lat,
        before.last_acc,
    )
    assert (after.zone_counts, after.off_score) == (before.zone_counts, before.off_score)
    assert after.heard_ts == obs(10).ts


def test_an_sos_is_never_dropped_for_lack_of_accuracy_but_a_redelivery_is_a_duplicate() -> None:
    state, events, verdict = step(ChildState(), unknown(0, 1000, sos=True), CTX, RULES)
    assert ([e.kind for e in events], verdict) == ([SOS], Verdict.UNKNOWN_ACCURACY)
    _, again, verdict = step(state, unknown(0, 1000, sos=True), CTX, RULES)
    assert (again, verdict) == ([], Verdict.DUPLICATE)


def test_its_battery_level_is_heard() -> None:
    _, events, _ = step(ChildState(), unknown(0, batt=9), CTX, RULES)
    assert [e.kind for e in events] == [LOW]


def test_it_proves_the_tag_alive_signal_back_and_no_signal_lost_while_such_fixes_come() -> None:
    state, _, _ = step(ChildState(), obs(0), CTX, RULES)
    for t in (100, 200, 300):
        state, events, _ = step(state, unknown(t), CTX, RULES)
        assert events == []
    t0 = obs(0).ts
    assert tick(state, t0 + 400, CTX, RULES)[1] == []  # heard 100 s ago: alive
    lost, events = tick(state, t0 + 300 + RULES.signal_lost_s, CTX, RULES)
    assert [e.kind for e in events] == [LOST]  # then silence: lost
    back, events, _ = step(lost, unknown(600), CTX, RULES)
    assert [e.kind for e in events] == [BACK] and not back.signal_lost


def test_a_child_heard_only_without_accuracy_is_shown_unknown_not_safe() -> None:
    state = ChildState()
    for t in range(0, 100, 10):
        state, _, _ = step(state, unknown(t), CTX, RULES)
    assert child_status(state) == Status.UNKNOWN
    assert ChildState.from_json(state.to_json()) == state  # heard_ts is checkpointed


PLACE_KINDS = {
    EventKind.LEFT_ROUTE,
    EventKind.BACK_ON_ROUTE,
    EventKind.ENTERED_ZONE,
    EventKind.LEFT_ZONE,
    EventKind.ARRIVED,
    EventKind.LEFT_PLACE,
}
zones = st.frozensets(st.integers(1, 3), max_size=3)
fix_kinds = st.tuples(
    st.floats(0, 2000),  # distance to the route
    st.one_of(st.just(U), st.floats(1, 150)),  # accuracy: unknown or stated
    zones,  # certain
    zones,  # possible besides
    zones,  # crossed
    st.tuples(st.floats(-200, 700), st.floats(-200, 200)),  # where
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(fix_kinds, max_size=25))
def test_fixes_of_unknown_accuracy_change_no_zone_route_or_place_event_of_any_sequence(
    fixes: list[tuple[float, float, frozenset[int], frozenset[int], frozenset[int], tuple[float, float]]],
) -> None:
    """Any sequence, with its fixes of unknown accuracy taken out, raises the same zone, route and
    place events at the same fixes: those fixes are never evidence, alone or as a tie-breaker."""
    ctx = ChildContext(schedule=MORNING, school=SCHOOL, home=Place(*lonlat(-600, 0), radius_m=50.0))

    def observed(keep_unknown: bool) -> list[tuple[float, EventKind, int | None]]:
        state, out, previous = ChildState(), [], None
        for i, (dist, acc, certain, possible, crossed, at) in enumerate(fixes):
            if math.isnan(acc) and not keep_unknown:
                continue
            t = 10.0 * i
            o = obs(
                t,
                dist,
                acc=acc,
                certain=tuple(certain),
                possible=tuple(certain | possible),
                at=at,
                crossed_zones=crossed,
                crossed_from_ts=previous,
            )
            state, events, verdict = step(state, o, ctx, RULES)
            if verdict == Verdict.DECIDED:
                previous = o.ts
            out += [(e.ts, e.kind, e.zone_id) for e in events if e.kind in PLACE_KINDS]
        return out

    with_them = observed(keep_unknown=True)
    assert with_them == observed(keep_unknown=False)
    if all(math.isnan(f[1]) for f in fixes):
        assert with_them == []
