"""The clock's pass over the children (tracker.clock.due_children) finds exactly those for whom tick()
changes something: the children never seen are judged a schedule at a time, as tick() judges each."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from tests.unit.test_monitor_rules import ARRIVE_BY, MORNING, RULES, T0
from tracker.clock import due_children
from tracker.monitor import ChildContext, ChildState, RouteSchedule, tick


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
