"""The school live map's feed (tracker/api/live_feed.py) on its own: what a watched school's socket is
handed after committed batches, as a table of scenarios. No PostgreSQL is needed: these batches carry
fixes and no alert events (alerts are looked up in PostgreSQL: tests/integration/test_school_live.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from tracker.api.live_feed import SchoolLiveFeed
from tracker.monitor.model import ChildState
from tracker.stages.records import BatchOutcome
from tracker.store.registry_rows import ChildRow

INTERVAL_S = 0.2
T0 = datetime.now(UTC)  # the feed dates a move it sees by the wall clock


def fixes(*child_and_second: tuple[int, int]) -> BatchOutcome:
    rows = [
        ("tag", T0 + timedelta(seconds=s), c, 127.0 + s / 1e4, 37.5, 8.0, 80, None, False, T0, 1.0)
        for c, s in child_and_second
    ]
    return BatchOutcome(positions=rows)  # type: ignore[arg-type]


@dataclass
class Scenario:
    batches: list[BatchOutcome]
    sent: dict[int, int]  # child -> the second of the fix its last item carries
    items: int  # items the watching socket was handed in all
    schools: dict[int, int] = field(default_factory=lambda: {1: 1, 2: 1, 3: 2})  # child -> school
    moved_to: dict[int, int] = field(default_factory=dict)  # after the first batch, these move


SCENARIOS = {
    "the watched school's child, not another school's": Scenario([fixes((1, 5), (3, 6))], {1: 5}, 1),
    "fixes in one batch out of order: the latest wins": Scenario(
        [fixes((1, 9), (1, 4), (2, 3))], {1: 9, 2: 3}, 2
    ),
    "batches within the interval are one item per child": Scenario(
        [fixes((1, 1)), fixes((1, 2)), fixes((1, 3), (2, 1))], {1: 3, 2: 1}, 2
    ),
    "a late fix older than the one sent does not go back": Scenario(
        [fixes((1, 8)), fixes((1, 2))], {1: 8}, 1
    ),
    "a child moved here: none of its fixes timed before the move was seen": Scenario(
        [fixes((1, 1)), fixes((3, -100))], {1: 1}, 1, moved_to={3: 1}
    ),
    "a child moved here: its fixes from the move on": Scenario(
        [fixes((1, 1)), fixes((3, -100), (3, 3600))], {1: 1, 3: 3600}, 2, moved_to={3: 1}
    ),
    "a child moved away: its fixes up to the move, none after": Scenario(
        [fixes((2, 1)), fixes((2, 2), (1, 1))], {1: 1, 2: 1}, 2, moved_to={2: 2}
    ),
}


def view_of(schools: dict[int, int]) -> Any:
    return SimpleNamespace(
        rows=SimpleNamespace(children={c: ChildRow(c, s, None, f"k{c}") for c, s in schools.items()})
    )


@pytest.mark.parametrize("name", SCENARIOS)
async def test_what_a_watching_socket_is_handed(name: str) -> None:
    sc = SCENARIOS[name]
    views = [view_of(sc.schools)]
    states = {c: ChildState(last_ts=1.0) for c in sc.schools}
    feed = SchoolLiveFeed(pool=None, view=lambda: views[-1], state_of=states.get, min_interval_s=INTERVAL_S)  # type: ignore[arg-type]
    sub = feed.subscribe(1)
    handed: list[dict[str, Any]] = []
    try:
        for i, batch in enumerate(sc.batches):
            feed.committed(batch)
            if i == 0 and sc.moved_to:
                views.append(view_of(sc.schools | sc.moved_to))
                # the move is seen at the next batch; its fixes "before" are those timed before now
                await asyncio.sleep(INTERVAL_S * 1.5)
                handed += sub.take()[0]
        await asyncio.sleep(INTERVAL_S * 1.5)
        handed += sub.take()[0]
    finally:
        feed.unsubscribe(sub)
    last = {item["child_id"]: item for item in handed}
    got = {
        c: round((datetime.fromisoformat(i["position"]["ts"]) - T0).total_seconds()) for c, i in last.items()
    }
    assert got == sc.sent and len(handed) == sc.items
    assert all(i["status"] == "on_route" and i["zones"] == [] for i in handed)


async def test_nobody_watching_costs_nothing_and_a_bug_never_reaches_the_pipeline() -> None:
    def broken_view() -> Any:
        raise RuntimeError("a registry view that cannot be read")

    feed = SchoolLiveFeed(pool=None, view=broken_view, state_of={}.get, min_interval_s=INTERVAL_S)  # type: ignore[arg-type]
    feed.committed(fixes((1, 1)))  # nobody watches: the view is not even asked for
    feed.alerts_changed([(7, 1)])  # an acknowledgement or escalation: nor here
    sub = feed.subscribe(1)
    try:
        feed.committed(fixes((1, 2)))  # logged, not raised into the batch loop
        feed.clock_events([])
        feed.alerts_changed([(7, 1)])  # nor into the API's acknowledgement or the clock
    finally:
        feed.unsubscribe(sub)
    assert feed.watched == 0 and feed.sent == 0
