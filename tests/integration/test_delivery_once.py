"""A delivery given again after a crash (issue 14, point 9): what each channel makes of the second time.

A tracker killed after a channel's call and before the dispatcher recorded the outcome leaves the
delivery 'sending'; the next start sends it again (never missed). Here the "tracker" is a dispatcher
with a pool of its own, killed at a chosen point of a round: the test holds a lock that the round's
next statement waits on, then stops the task, drops its connections and ends its backends (a killed
process sends nothing more, and PostgreSQL rolls back what it had begun). A second dispatcher, after
release_stuck_deliveries as at a start, finishes the work. The SMS gateway and the school's webhook
are real HTTP servers on this machine.

- the stub's SMS: one record per delivery wherever the kill lands (a constraint: exactly once);
- a real gateway (apprise): a second message only for a kill between the gateway's acceptance and
  the provider's record of it, none for a kill before the call or after the record;
- the webhook: every attempt of a delivery carries the same idempotency key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from tests.helpers import alert_with_delivery, build_small_world, wait_until
from tracker.alerts.channels import (
    AppriseSmsProvider,
    RecordingSmsProvider,
    SmsChannel,
    SmsProvider,
    WebhookChannel,
)
from tracker.alerts.dispatcher import Dispatcher
from tracker.embedded import free_port
from tracker.store.alerts import MARK_STATEMENT, release_stuck_deliveries
from tracker.store.db import connect, create_pool

KILLED = "tracker-to-be-killed"  # the application_name of the killed dispatcher's connections


@dataclass
class Gateway:
    """A real HTTP server standing in for an SMS gateway or a school's system: records requests and
    answers them with the statuses queued in `answers` (200 once they run out)."""

    port: int
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    app = FastAPI()
    gw = Gateway(free_port())

    @app.post("/{path:path}")
    async def record(path: str, request: Request) -> Response:
        gw.requests.append(("/" + path, dict(request.headers), await request.body()))
        return Response(status_code=gw.answers.pop(0) if gw.answers else 200)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=gw.port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, 5)
    yield gw
    server.should_exit = True
    await task


def _named(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


async def _waits_on_lock(watch: asyncpg.Connection, fragment: str) -> bool:
    """Is a statement of the killed dispatcher's that contains `fragment` waiting for a lock? (Asked
    on a connection outside the locks' transactions: inside one, pg_stat_activity is a snapshot.)"""
    return bool(
        await watch.fetchval(
            "SELECT count(*) > 0 FROM pg_stat_activity"
            " WHERE application_name = $1 AND wait_event_type = 'Lock' AND position($2 in query) > 0",
            KILLED,
            fragment,
        )
    )


async def _kill(task: asyncio.Task[int], pool: asyncpg.Pool, watch: asyncpg.Connection) -> None:
    """The process dies where it is: its task stops, its connections drop, and the statement it waits
    on never completes (a statement sent before a SIGKILL would; the kill is meant to land before it)."""
    task.cancel()
    await asyncio.wait([task])
    pool.terminate()
    await watch.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", KILLED
    )

    async def gone() -> bool:
        return bool(
            await watch.fetchval(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = $1", KILLED
            )
        )

    await wait_until(gone, 10)


@dataclass(frozen=True)
class KillPoint:
    """Where in a round the kill lands: the locks taken before the round starts, what the test does
    once it runs, and the statement the round waits on when it dies."""

    before: str  # a LOCK statement, in the test's `lock` transaction
    waits_on: str
    then: (
        Callable[[asyncpg.Connection, asyncpg.Connection, asyncpg.Connection, int], Awaitable[None]] | None
    ) = None
    claimed: bool = True  # whether the row is 'sending' when the kill lands (else still 'pending')


async def _let_the_record_through_and_hold_the_mark(
    lock: asyncpg.Connection, rows: asyncpg.Connection, watch: asyncpg.Connection, delivery: int
) -> None:
    """The message recorded, the round's outcome not: the mark waits on the delivery's row."""
    await wait_until(lambda: _waits_on_lock(watch, "INSERT INTO sms_messages"), 10)
    # (NO KEY: the record's foreign key check shares the row; the mark's UPDATE does not)
    await rows.execute("SELECT id FROM deliveries WHERE id = $1 FOR NO KEY UPDATE", delivery)
    await lock.execute("ROLLBACK; BEGIN")  # the record goes through; the row lock stays
    await wait_until(
        lambda: watch.fetchval("SELECT 1 FROM sms_messages WHERE delivery_id = $1", delivery), 10
    )


KILL_POINTS = {
    # its channel not called yet: the claim, which reads the alert's facts in the same statement,
    # waits (the claim dies with it, so the row is still 'pending' for the next start)
    "before the call": KillPoint(
        "LOCK TABLE danger_zones IN ACCESS EXCLUSIVE MODE", "a.id AS alert_id", claimed=False
    ),
    # the gateway, if any, has taken the message; the provider's record of it waits (reads go on)
    "between the call and its record": KillPoint(
        "LOCK TABLE sms_messages IN EXCLUSIVE MODE", "INSERT INTO sms_messages"
    ),
    "between the record and the mark": KillPoint(
        "LOCK TABLE sms_messages IN EXCLUSIVE MODE",
        MARK_STATEMENT,
        _let_the_record_through_and_hold_the_mark,
    ),
}


def _provider(kind: str, pool: asyncpg.Pool, gateway: Gateway) -> SmsProvider:
    if kind == "apprise":
        return AppriseSmsProvider(f"json://127.0.0.1:{gateway.port}/gateway/{{phone}}", pool)
    return RecordingSmsProvider(pool)


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
@pytest.mark.parametrize("provider", ["stub", "apprise"])
async def test_an_sms_delivery_killed_mid_round_is_sent_once_unless_killed_between_the_call_and_its_record(
    database_url: str, gateway: Gateway, provider: str, kill_point: str
) -> None:
    async with asyncio.timeout(60):
        conn = await connect(database_url)
        try:
            world = await build_small_world(conn, ["Nari"])
            kid = world.kids["Nari"]
            alert, delivery = await alert_with_delivery(conn, kid, "sos", "critical", channel="sms")
        finally:
            await conn.close()

        # the process to be killed: its dispatcher's round stops at the kill point
        doomed = await create_pool(_named(database_url, KILLED))
        point = KILL_POINTS[kill_point]
        lock, rows, watch = [await connect(database_url) for _ in range(3)]
        try:
            await lock.execute("BEGIN")
            await rows.execute("BEGIN")
            await lock.execute(point.before)
            channel = SmsChannel(_provider(provider, doomed, gateway), "https://tracker.example/")
            round_ = asyncio.create_task(Dispatcher(doomed, [channel]).deliver_due())
            if point.then is not None:
                await point.then(lock, rows, watch, delivery)
            await wait_until(lambda: _waits_on_lock(watch, point.waits_on), 10)
            state = await watch.fetchval("SELECT state FROM deliveries WHERE id = $1", delivery)
            assert state == ("sending" if point.claimed else "pending")
            await _kill(round_, doomed, watch)
        finally:
            for c in (lock, rows):
                await c.execute("ROLLBACK")
            await lock.close()
            await rows.close()

        # the next start
        pool = await create_pool(database_url)
        try:
            assert await release_stuck_deliveries(pool) == (1 if point.claimed else 0)
            channel = SmsChannel(_provider(provider, pool, gateway), "https://tracker.example/")
            assert await Dispatcher(pool, [channel]).deliver_due() == 1
            state, attempts = await pool.fetchrow(
                "SELECT state, attempts FROM deliveries WHERE id = $1", delivery
            )
            messages = await pool.fetch(
                "SELECT phone, body, provider FROM sms_messages WHERE delivery_id = $1", delivery
            )
            steps = await pool.fetch("SELECT step FROM alert_history WHERE alert_id = $1", alert)
        finally:
            await pool.close()
            await watch.close()

    # given to its channel twice (once, if the kill came before its claim), recorded sent once
    assert (state, attempts) == ("sent", 2 if point.claimed else 1)
    assert [(m["phone"], m["provider"]) for m in messages] == [(kid.phone, provider)]  # one record
    assert "SOS from Nari" in messages[0]["body"]
    assert [s["step"] for s in steps].count("delivered") == 1
    sent_to_gateway = [path for path, _, _ in gateway.requests]
    if provider == "stub":
        assert sent_to_gateway == []  # the record is the message: exactly once, wherever the kill
    elif kill_point == "between the call and its record":
        assert sent_to_gateway == [f"/gateway/{kid.phone}"] * 2  # the one window: a second message
    else:
        assert sent_to_gateway == [f"/gateway/{kid.phone}"]


async def test_every_attempt_of_a_webhook_delivery_carries_the_same_idempotency_key(
    database_url: str, gateway: Gateway
) -> None:
    pool = await create_pool(database_url)
    webhook = WebhookChannel()
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Ona"])
            _, delivery = await alert_with_delivery(conn, world.kids["Ona"], "sos", "critical")
            await conn.execute(
                "UPDATE schools SET webhook_url = $1 WHERE id = $2", f"{gateway.url}/hook", world.school_id
            )
            # the school's copy of the alert (the pipeline writes it for an escalation to the school)
            await conn.execute(
                "UPDATE deliveries SET guardian_id = NULL, school_id = $1, channel = 'webhook' WHERE id = $2",
                world.school_id,
                delivery,
            )
        gateway.answers = [503]  # the school's system is busy once: the delivery is retried
        dispatcher = Dispatcher(pool, [webhook], backoff_s=0.0)
        assert await dispatcher.deliver_due() == 1
        assert await dispatcher.deliver_due() == 1
        assert await pool.fetchval("SELECT state FROM deliveries WHERE id = $1", delivery) == "sent"
    finally:
        await webhook.close()
        await pool.close()
    assert len(gateway.requests) == 2
    keys = {(h["idempotency-key"], h["x-tracker-delivery"]) for _, h, _ in gateway.requests}
    assert keys == {(str(delivery), str(delivery))}  # one key for both attempts
    assert len({json.loads(body)["alert_id"] for _, _, body in gateway.requests}) == 1
