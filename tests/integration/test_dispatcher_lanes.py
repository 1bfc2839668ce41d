"""The dispatcher's lanes, against a real PostgreSQL: a parent's websocket message never waits behind a
slow SMS gateway (the issue's burst: 5,000 SOS, and the SMS of each going out through a provider that
takes its time), and a round is sized by the time it took, not by a fixed count."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import alert_with_delivery, build_small_world, wait_until
from tracker.alerts.dispatcher import MAX_ROUND, MIN_ROUND, ROUND_S, Dispatcher, _Lane
from tracker.store.alerts import DeliveryJob
from tracker.store.db import connect, create_pool


class HeldGateway:
    """An SMS channel whose gateway answers only once the test lets it."""

    name = "sms"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.called = asyncio.Event()

    async def deliver(self, job: DeliveryJob, facts: object) -> str:
        self.called.set()
        await self.release.wait()
        return "sent"


class Socket:
    """A websocket channel that records what it delivered."""

    name = "websocket"

    def __init__(self) -> None:
        self.delivered: list[int] = []

    async def deliver(self, job: DeliveryJob, facts: object) -> str:
        self.delivered.append(job.delivery_id)
        return "sent"


async def test_a_websocket_delivery_does_not_wait_behind_a_held_sms(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, ["Ara", "Bom"])
        _, sms = await alert_with_delivery(conn, world.kids["Ara"], channel="sms")  # the older row
        _, socket = await alert_with_delivery(conn, world.kids["Bom"], channel="websocket")
    finally:
        await conn.close()
    pool = await create_pool(database_url)
    gateway, page = HeldGateway(), Socket()
    dispatcher = Dispatcher(pool, [gateway, page])  # type: ignore[list-item]
    running = asyncio.create_task(dispatcher.run())
    try:
        dispatcher.wake()
        await asyncio.wait_for(gateway.called.wait(), 10)  # the SMS is in its gateway's hands ...

        async def state(delivery: int) -> str:
            return str(await pool.fetchval("SELECT state FROM deliveries WHERE id = $1", delivery))

        async def sent(delivery: int) -> bool:
            return await state(delivery) == "sent"

        # ... and the page was told meanwhile, its outcome written (one lane waited for the SMS's)
        await wait_until(lambda: sent(socket), 10)
        assert page.delivered == [socket]
        assert await state(sms) == "sending"
        gateway.release.set()
        await wait_until(lambda: sent(sms), 10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await pool.close()


# (rows claimed, seconds the round took, the limit before, the limit after)
ROUND_SIZES = [
    ("a full round that took ROUND_S keeps its size", 200, ROUND_S, 200, 200),
    ("a full round twice as fast doubles", 200, ROUND_S / 2, 200, 400),
    ("a full round ten times too slow shrinks, not below MIN_ROUND", 200, ROUND_S * 10, 200, MIN_ROUND),
    ("a burst grows it, not above MAX_ROUND", 4000, ROUND_S / 10, 4000, MAX_ROUND),
    ("a round that emptied the outbox leaves it alone", 30, ROUND_S * 10, 200, 200),
]


@pytest.mark.parametrize(
    "what, claimed, seconds, before, after", ROUND_SIZES, ids=[r[0] for r in ROUND_SIZES]
)
def test_a_round_is_sized_by_time(what: str, claimed: int, seconds: float, before: int, after: int) -> None:
    lane = _Lane("test", ("websocket",), False)
    lane.limit = before
    lane.sized(claimed, seconds)
    assert lane.limit == after, what
