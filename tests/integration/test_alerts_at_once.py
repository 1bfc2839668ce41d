"""Critical alerts go out on the parents' sockets as soon as their batch is committed, against a real
PostgreSQL: the commit claims the websocket deliveries of a critical alert to guardians connected to
this process (the outbox row is written 'sending' in the alert's transaction), the batch loop hands
them to the dispatcher's ``send_at_once``, and they are marked after. Every other delivery (an SMS,
a warning, a guardian with no socket here) waits in the outbox for the dispatcher's rounds."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import build_small_world, fix, wait_until
from tracker.alerts.dispatcher import Dispatcher
from tracker.config import Settings
from tracker.ingest.decode import RawMessage
from tracker.metrics import Metrics
from tracker.pipeline import Pipeline
from tracker.registry_view import build_view
from tracker.store.alerts import AlertFacts, DeliveryJob, release_stuck_deliveries
from tracker.store.db import create_pool
from tracker.store.registry_rows import load_registry


class Socket:
    """A websocket channel that records what it was given."""

    name = "websocket"

    def __init__(self) -> None:
        self.delivered: list[tuple[DeliveryJob, AlertFacts]] = []

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> str:
        self.delivered.append((job, facts))
        return "sent"


def _message(tag: str, body: dict[str, object], mid: int) -> RawMessage:
    return RawMessage(
        f"tracker/v1/tags/{tag}/position", json.dumps(body).encode(), time.time(), mid=mid, qos=1
    )


# (what, the kid's fix, whether the kid's guardian has a socket here, websocket row's state after the
#  commit, whether it is sent at once); every kid's guardian also has an SMS row, always left 'pending'
AT_ONCE = [
    ("an SOS to a guardian connected here is sent at once", {"sos": True}, True, "sending", True),
    ("an SOS to a guardian with no socket here waits for a round", {"sos": True}, False, "pending", False),
    ("a warning (left route) waits for a round, connected or not", {}, True, "pending", False),
]


@pytest.mark.parametrize("what, extra, connected, state, at_once", AT_ONCE, ids=[r[0] for r in AT_ONCE])
async def test_which_deliveries_a_commit_sends_at_once(
    database_url: str, what: str, extra: dict[str, object], connected: bool, state: str, at_once: bool
) -> None:
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Ara"])
            view = build_view(await load_registry(conn), default_timezone="Asia/Seoul")
        ara = world.kids["Ara"]
        settings = Settings(database_url=database_url, mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]
        pipeline = Pipeline(
            pool=pool,
            view=lambda: view,
            settings=settings,
            metrics=Metrics(),
            connected_here=lambda guardian: connected and guardian == ara.guardian_id,
        )
        # 400 m off the route's line (outside its 30 m corridor): an SOS, or a left route (a warning,
        # on a few fixes' evidence)
        t0 = time.time() - 120
        fixes = [fix(-300, 400, t0 + 15 * i, **extra) for i in range(1 if extra else 8)]
        outcome = await pipeline.process([_message(ara.tag, f, i + 1) for i, f in enumerate(fixes)])
        rows = {
            r["channel"]: (r["state"], r["attempts"])
            for r in await pool.fetch("SELECT channel, state, attempts FROM deliveries")
        }
        assert rows["sms"] == ("pending", 0), what
        assert rows["websocket"] == (state, 1 if at_once else 0), what
        assert len(outcome.at_once) == (1 if at_once else 0), what
        if not at_once:
            return
        job, facts = outcome.at_once[0]
        assert (job.channel, job.guardian_id, job.language, job.linked) == (
            "websocket",
            ara.guardian_id,
            "en",
            True,
        )
        assert (facts.kind, facts.severity, facts.child_name) == ("sos", "critical", "Ara")

        socket = Socket()
        dispatcher = Dispatcher(pool, [socket])  # type: ignore[list-item]
        dispatcher.send_at_once(outcome.at_once)  # what the batch loop does once the commit is done

        async def marked() -> bool:
            return await pool.fetchval("SELECT state FROM deliveries WHERE channel = 'websocket'") == "sent"

        await wait_until(marked, 10)
        assert [j.delivery_id for j, _ in socket.delivered] == [job.delivery_id]
        steps = await pool.fetch(
            "SELECT step, detail->>'channel' AS channel FROM alert_history WHERE step = 'delivered'"
        )
        assert [(s["step"], s["channel"]) for s in steps] == [("delivered", "websocket")]
    finally:
        await pool.close()


async def test_an_at_once_delivery_cut_off_by_a_crash_is_sent_by_the_next_start(database_url: str) -> None:
    """Claimed in the commit, never marked (the process died before it sent, or before it wrote the
    outcome): the next start gives it to the dispatcher again; the page keeps one card per alert."""
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Bom"])
            view = build_view(await load_registry(conn), default_timezone="Asia/Seoul")
        bom = world.kids["Bom"]
        settings = Settings(database_url=database_url, mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]
        pipeline = Pipeline(
            pool=pool, view=lambda: view, settings=settings, metrics=Metrics(), connected_here=lambda g: True
        )
        outcome = await pipeline.process([_message(bom.tag, fix(-300, 0, time.time(), sos=True), 1)])
        assert len(outcome.at_once) == 1  # ... and the process dies here
        assert await release_stuck_deliveries(pool) == 1
        socket = Socket()
        dispatcher = Dispatcher(pool, [socket])  # type: ignore[list-item]
        while await dispatcher.deliver_due():
            pass
        assert [(j.channel, f.kind) for j, f in socket.delivered] == [("websocket", "sos")]
        state = await pool.fetchval("SELECT state FROM deliveries WHERE channel = 'websocket'")
        assert state == "sent"
    finally:
        await pool.close()
