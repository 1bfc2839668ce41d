"""Alert transitions of one batch, written in rounds (each child's first transition, then each one's
second, ...): a child's transitions keep their order, other children's are independent of them."""

from __future__ import annotations

import time
from typing import Any

from tests.helpers import build_small_world
from tracker.alerts.escalation import Escalation
from tracker.alerts.lifecycle import ChildEvent, Recipient
from tracker.monitor import Event, EventKind
from tracker.store.alert_lifecycle import apply_events
from tracker.store.db import create_pool

T0 = time.time() - 600


def _event(child: int, kind: EventKind, dt: float, **kw: Any) -> ChildEvent:
    return ChildEvent(child, Event(kind, T0 + dt, **kw), 127.0, 37.5, 10.0, T0 + dt)


async def test_one_batch_that_opens_resolves_and_opens_again_keeps_each_child_s_order(
    database_url: str,
) -> None:
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Ara", "Bom", "Cho"])
            ara, bom, cho = (world.kids[n] for n in ("Ara", "Bom", "Cho"))
            events = [
                _event(ara.child_id, EventKind.LEFT_ROUTE, 0),
                _event(bom.child_id, EventKind.ARRIVED, 0, detail="school"),  # two transitions
                _event(ara.child_id, EventKind.BACK_ON_ROUTE, 10),
                _event(cho.child_id, EventKind.SOS, 5),
                _event(ara.child_id, EventKind.LEFT_ROUTE, 20),  # a new incident, not the old one reopened
                _event(cho.child_id, EventKind.SOS, 15),  # the same incident: updated, not told again
                _event(bom.child_id, EventKind.LEFT_ROUTE, 30),
            ]
            recipients = {
                k.child_id: [Recipient(k.guardian_id, ("websocket",), True)] for k in (ara, bom, cho)
            }
            async with conn.transaction():
                outbox = await apply_events(conn, events, recipients, {}, Escalation())
            rows = await conn.fetch(
                "SELECT child_id, kind, state, fix_count FROM alerts ORDER BY child_id, opened_at, id"
            )
            steps = await conn.fetch(
                "SELECT a.child_id, h.step FROM alert_history h JOIN alerts a ON a.id = h.alert_id"
                " ORDER BY h.id"
            )
    finally:
        await pool.close()
    assert [(r["child_id"], r["kind"], r["state"], r["fix_count"]) for r in rows] == [
        (ara.child_id, "left_route", "resolved", 1),
        (ara.child_id, "left_route", "open", 1),
        (bom.child_id, "arrived_school", "resolved", 1),  # a notice: resolved as it is made
        (bom.child_id, "left_route", "open", 1),
        (cho.child_id, "sos", "open", 2),
    ]
    assert [s for c, s in steps if c == ara.child_id] == ["opened", "resolved", "opened"]
    assert [s for c, s in steps if c == cho.child_id] == ["opened", "updated"]
    # told: Ara's opening, resolution and second opening; Bom's arrival and departure; Cho's SOS once
    assert outbox.rows == 6
