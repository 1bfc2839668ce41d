"""The clock's pass over the children (tracker.clock.due_children) finds exactly those for whom tick()
changes something: the children never seen are judged a schedule at a time, as tick() judges each."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import numpy as np

from tests.unit.test_monitor_rules import ARRIVE_BY, MORNING, RULES, T0
from tracker.clock import due_children
from tracker.compact_states import DENSE_MAX, CompactStates
from tracker.geofence import build_index
from tracker.monitor import ChildContext, ChildState, RouteSchedule, tick
from tracker.registry_view import ChildLookup, RegistryView
from tracker.store.registry_rows import RegistryRows


def _state(rng: random.Random, day: str) -> ChildState:
    last = rng.choice([None, T0 - rng.uniform(0, 3 * RULES.signal_lost_s), T0 + rng.uniform(0, 3600)])
    return ChildState(
        last_ts=last,
        signal_lost=rng.random() < 0.2,
        at=rng.choice([None, None, "school", "home"]),
        not_arrived=rng.choice([[], [f"{day}/0"], ["2026-11-20/0"]]),
        arrived=rng.choice([{}, {"school": T0 - 600}]),
    )


def test_the_pass_finds_the_children_tick_would_change_and_only_them() -> None:
    rng = random.Random(7)
    schedules: list[RouteSchedule] = [MORNING, ARRIVE_BY]
    contexts = {c: ChildContext(schedule=schedules[c % 2]) for c in range(4000)}
    contexts[4000] = ChildContext()  # no schedule: never the clock's
    view: Any = SimpleNamespace(contexts=contexts)
    found: list[int] = []
    for minutes in (0, 5, 41, 45, 60, 61, 200, 900):  # 08:00 on a Monday, and on through the day
        now = T0 + 60 * minutes
        day = ARRIVE_BY.at(now).local_day
        states = {c: _state(rng, day) for c in range(0, 4001, 2)}  # the odd ones never seen
        awaited = [(ARRIVE_BY, list(range(1, 4000, 2)))]
        expected = sorted(
            c
            for c, ctx in contexts.items()
            if ctx.schedule is not None
            and (c in states or ctx.schedule.arrivals)
            and tick(state := states.get(c, ChildState()), now, ctx, RULES)[0] is not state
        )
        assert sorted(due_children(states, awaited, view, now, RULES)) == expected, minutes
        found.append(len(expected))
    assert min(found) < 400 and max(found) > 2000  # moments with few children due, and with most


def _held_state(rng: random.Random, day: str) -> ChildState:
    """A state with what the clock's candidates read beside the rest: a fix of unknown accuracy heard
    after the last decided one, a tag's clock offset, deadlines settled."""
    s = _state(rng, day)
    if s.last_ts is not None and rng.random() < 0.3:
        s.heard_ts = s.last_ts + rng.uniform(-600, 1200)
    if rng.random() < 0.3:
        s.clock = [T0, rng.uniform(-900, 900), rng.uniform(-900, 900)]
    if rng.random() < 0.2:
        s.not_arrived = [f"{day}/0", f"{day}/1"]
    return s


def _view_of(contexts: dict[int, ChildContext]) -> RegistryView:
    """A registry view holding these children's contexts (no routes or zones)."""
    groups = list({id(ctx): ctx for ctx in contexts.values()}.values())
    ids = np.array(sorted(contexts), dtype=np.int64)
    group = np.array([groups.index(contexts[c]) for c in ids.tolist()], dtype=np.int32)
    lookup = ChildLookup(ids, group, [-1] * len(groups), groups)
    return RegistryView(RegistryRows(), build_index([], []), {}, lookup)


def test_the_pass_over_compact_states_finds_what_the_pass_over_every_state_finds() -> None:
    """The clock's pass over the service's store (tracker.compact_states) asks tick() only for the
    children the store says time may change: moment by moment, it finds the same children as the pass
    over every state."""
    rng = random.Random(11)
    schedules: list[RouteSchedule] = [MORNING, ARRIVE_BY]
    contexts = {c: ChildContext(schedule=schedules[c % 2]) for c in range(1, 3000)}
    contexts[3000] = ChildContext()
    contexts[DENSE_MAX + 5] = ChildContext(schedule=MORNING)
    view = _view_of(contexts)
    asked: list[int] = []
    for minutes in (0, 5, 41, 45, 46, 60, 61, 200, 900, 1500):
        now = T0 + 60 * minutes
        day = ARRIVE_BY.at(now).local_day
        states = {c: _held_state(rng, day) for c in range(2, 3001, 2)}
        states[DENSE_MAX + 5] = _held_state(rng, day)  # an id not from the sequence: held as it is
        compact = CompactStates()
        compact.update(states)
        awaited = [(ARRIVE_BY, list(range(1, 3000, 2)))]
        expected = due_children(states, awaited, view, now, RULES)
        assert sorted(due_children(compact, awaited, view, now, RULES)) == sorted(expected), minutes
        odd = lambda c: c % 4 == 2  # noqa: E731 - a worker's share
        mine = due_children(compact, awaited, view, now, RULES, odd)
        assert sorted(mine) == sorted(due_children(states, awaited, view, now, RULES, odd)), minutes
        candidates = [
            int(compact.candidates(np.array([c]), now, RULES.signal_lost_s, ())[0]) for c in range(2, 3001, 2)
        ]
        asked.append(sum(candidates))
    assert min(asked) < 1500  # the candidates leave children out (else the store saves nothing)


def test_a_state_made_again_from_the_store_equals_the_one_put() -> None:
    rng = random.Random(3)
    compact = CompactStates()
    for c in range(200):
        s = _held_state(rng, "2026-11-23")
        s.zones_in = {3, 9}
        s.zone_lingers = {4: (2.0, T0)}
        s.zone_counts = {rng.randrange(9): 1.5}
        s.pace = [T0, 127.0, 37.5, 8.0]
        compact[c] = s
        again = compact[c]
        assert again == s and again is not s
        assert again.zone_lingers == {4: (2.0, T0)} and type(again.zones_in) is set
        again.zones_in.add(5)  # a state made again has its own containers
        assert compact[c].zones_in == {3, 9}
    assert len(compact) == 200 and sorted(compact) == list(range(200))
    del compact[7]
    assert 7 not in compact and compact.get(7) is None and len(compact) == 199
