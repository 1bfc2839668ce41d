"""Several tracker processes on one PostgreSQL, one outbox (issue 16, point 4): each (alert, guardian,
channel) is delivered once however many dispatchers run, and a process that starts does not take
back what another live process is sending.

A "process" here is a pool of its own named with its worker id (tracker.store.db.create_pool's
``worker_id``: the session setting the claims record, migration 0016) and a Dispatcher on it, racing
the other over the same rows. The school's webhook is a real HTTP server on this machine; the SMS
gateway is a provider that counts what it is handed (what a phone would receive).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from tests.helpers import SmallWorld, build_small_world, wait_until
from tracker.alerts.channels import SmsChannel, WebhookChannel
from tracker.alerts.dispatcher import Dispatcher
from tracker.embedded import free_port
from tracker.store.alert_lifecycle import write_outbox
from tracker.store.alerts import (
    DeliveryMark,
    claim_due_deliveries,
    mark_deliveries,
    release_abandoned_deliveries,
    release_stuck_deliveries,
)
from tracker.store.db import create_pool


class CountingGateway:
    """The SMS gateway: counts each delivery it is handed (by delivery id), taking ``delay_s`` per
    message, and holds them while ``open`` is not set."""

    name = "counting"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.sent: Counter[int] = Counter()
        self.by: dict[str, int] = Counter()
        self.delay_s = delay_s
        self.open = asyncio.Event()
        self.open.set()
        self.entered = asyncio.Event()

    def provider(self, worker: str) -> CountingProvider:
        return CountingProvider(self, worker)


class CountingProvider:
    name = "counting"

    def __init__(self, gateway: CountingGateway, worker: str) -> None:
        self._gateway = gateway
        self._worker = worker

    async def send(self, phone: str, body: str, *, delivery_id: int) -> None:
        g = self._gateway
        g.entered.set()
        await g.open.wait()
        await asyncio.sleep(g.delay_s)
        g.sent[delivery_id] += 1
        g.by[self._worker] += 1


class SchoolSystem:
    """A school's webhook receiver: a real HTTP server counting the delivery ids it is POSTed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: Counter[int] = Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"


@pytest.fixture
async def school_system() -> AsyncIterator[SchoolSystem]:
    app = FastAPI()
    system = SchoolSystem()

    @app.post("/alerts")
    async def receive(request: Request) -> Response:
        await request.body()
        await asyncio.sleep(0.005)
        system.got[int(request.headers["x-tracker-delivery"])] += 1
        return Response(status_code=200)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=system.port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, 5)
    yield system
    server.should_exit = True
    await task


async def _alerts(
    conn: asyncpg.Connection, world: SmallWorld, n: int, channels: tuple[str, ...]
) -> list[int]:
    """``n`` alerts spread over the world's kids, each with an outbox row per channel (a guardian's SMS,
    the school's webhook); returns the delivery ids."""
    kids = list(world.kids.values())
    rows = []
    for i in range(n):
        kid = kids[i % len(kids)]
        alert = await conn.fetchval(
            "INSERT INTO alerts (child_id, kind, severity, state, opened_at, updated_at)"
            " VALUES ($1, 'sos', 'critical', 'resolved', now(), now()) RETURNING id",
            kid.child_id,
        )
        for channel in channels:
            guardian, school = (None, world.school_id) if channel == "webhook" else (kid.guardian_id, None)
            rows.append((alert, "opened", guardian, school, channel))
    await write_outbox(conn, rows)
    return [r["id"] for r in await conn.fetch("SELECT id FROM deliveries ORDER BY id")]


async def test_claims_racing_from_two_processes_take_each_row_once(database_url: str) -> None:
    """Many claims at once from two processes' pools: no row is claimed twice, none is left."""
    a = await create_pool(database_url, worker_id="worker-a", max_size=6)
    b = await create_pool(database_url, worker_id="worker-b", max_size=6)
    try:
        async with a.acquire() as conn:
            world = await build_small_world(conn, ["Ara", "Bin", "Chae"])
            ids = await _alerts(conn, world, 150, ("sms", "websocket"))

        async def claim(pool: asyncpg.Pool) -> list[int]:
            taken: list[int] = []
            while batch := await claim_due_deliveries(pool, 7):
                taken += [job.delivery_id for job, _ in batch]
            return taken

        rounds = await asyncio.gather(*(claim(pool) for pool in (a, b, a, b, a, b, a, b)))
        everything = [d for r in rounds for d in r]
        assert sorted(everything) == sorted(ids)  # each row once: none twice, none left
        owners = dict(await a.fetch("SELECT id, claimed_by FROM deliveries"))
        a_took = {d for r in rounds[0::2] for d in r}
        assert {owners[d] for d in a_took} <= {"worker-a"}
        assert {owners[d] for d in set(everything) - a_took} <= {"worker-b"}
    finally:
        await a.close()
        await b.close()


async def test_two_dispatchers_send_each_sms_and_webhook_once(
    database_url: str, school_system: SchoolSystem
) -> None:
    """Two processes' dispatchers running over one outbox of SMS and webhook deliveries: every one
    goes out once, both dispatchers take part, and each row's outcome is written by its claimer."""
    a = await create_pool(database_url, worker_id="worker-a")
    b = await create_pool(database_url, worker_id="worker-b")
    gateway = CountingGateway(delay_s=0.02)
    webhooks = [WebhookChannel(), WebhookChannel()]
    try:
        async with a.acquire() as conn:
            world = await build_small_world(conn, ["Ara", "Bin", "Chae", "Dan"])
            await conn.execute("UPDATE schools SET webhook_url = $1", school_system.url)
            ids = await _alerts(conn, world, 300, ("sms", "webhook"))
        sms = {r["id"] for r in await a.fetch("SELECT id FROM deliveries WHERE channel = 'sms'")}
        dispatchers = [
            Dispatcher(pool, [SmsChannel(gateway.provider(name), "http://tracker"), webhook], poll_s=0.05)
            for pool, name, webhook in ((a, "worker-a", webhooks[0]), (b, "worker-b", webhooks[1]))
        ]
        tasks = [asyncio.create_task(d.run()) for d in dispatchers]

        async def all_sent() -> bool:
            return bool(await a.fetchval("SELECT bool_and(state = 'sent') FROM deliveries"))

        await wait_until(all_sent, 60)
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)

        assert set(gateway.sent) == sms and set(gateway.sent.values()) == {1}  # each SMS once
        assert set(school_system.got) == set(ids) - sms and set(school_system.got.values()) == {1}
        assert set(gateway.by) == {"worker-a", "worker-b"}  # the two took part
        claimers = Counter(r["claimed_by"] for r in await a.fetch("SELECT claimed_by FROM deliveries"))
        assert set(claimers) == {"worker-a", "worker-b"}
        history = await a.fetchval("SELECT count(*) FROM alert_history WHERE step = 'delivered'")
        assert history == len(ids)  # one outcome written per delivery
    finally:
        for w in webhooks:
            await w.close()
        await a.close()
        await b.close()


# (what, who claimed the row, how long ago (s), who starts, released by the start?)
AT_START = [
    ("another live process's fresh claim is left to it", "worker-b", 1, "worker-a", False),
    ("its own claim of an earlier life is released", "worker-a", 1, "worker-a", True),
    ("a claim older than the timeout (a dead process's) is released", "worker-b", 120, "worker-a", True),
    ("a claim from before migration 0016 (no claim time) is released", "worker-b", None, "worker-a", True),
]


@pytest.mark.parametrize("what, claimer, age_s, starts, released", AT_START, ids=[r[0] for r in AT_START])
async def test_what_a_starting_process_releases(
    database_url: str, what: str, claimer: str, age_s: float | None, starts: str, released: bool
) -> None:
    pool = await create_pool(database_url, worker_id=claimer)
    starting = await create_pool(database_url, worker_id=starts)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Ara"])
            [delivery] = await _alerts(conn, world, 1, ("sms",))
        [(job, _)] = await claim_due_deliveries(pool)
        assert job.delivery_id == delivery
        await pool.execute(
            "UPDATE deliveries SET claimed_at = now() - make_interval(secs => $1) WHERE id = $2",
            age_s,
            delivery,
        )  # (NULL: no claim time)
        assert await release_stuck_deliveries(starting, claim_timeout_s=60) == (1 if released else 0), what
        state = await pool.fetchval("SELECT state FROM deliveries WHERE id = $1", delivery)
        assert state == ("pending" if released else "sending"), what
    finally:
        await pool.close()
        await starting.close()


async def test_a_commit_records_its_process_as_the_claimer_of_what_it_sends_at_once_(
    database_url: str,
) -> None:
    """A critical alert's websocket delivery written 'sending' in its commit (to be sent as soon as it
    is committed) is that process's claim like a round's: another process starting leaves it alone."""
    a = await create_pool(database_url, worker_id="worker-a")
    b = await create_pool(database_url, worker_id="worker-b")
    try:
        async with a.acquire() as conn:
            world = await build_small_world(conn, ["Ara"])
            kid = world.kids["Ara"]
            alert = await conn.fetchval(
                "INSERT INTO alerts (child_id, kind, severity, state, opened_at, updated_at)"
                " VALUES ($1, 'sos', 'critical', 'open', now(), now()) RETURNING id",
                kid.child_id,
            )
            # what apply_events writes for a delivery claimed in the commit
            await conn.execute(
                "INSERT INTO deliveries (alert_id, transition, guardian_id, channel, state, attempts)"
                " VALUES ($1, 'opened', $2, 'websocket', 'sending', 1)",
                alert,
                kid.guardian_id,
            )
        row = await a.fetchrow("SELECT claimed_by, claimed_at IS NOT NULL AS timed FROM deliveries")
        assert (row["claimed_by"], row["timed"]) == ("worker-a", True)
        assert await release_stuck_deliveries(b) == 0
        assert await release_stuck_deliveries(a) == 1  # a's own, after a restart
    finally:
        await a.close()
        await b.close()


async def test_an_outcome_is_written_only_by_the_rows_last_claimer(database_url: str) -> None:
    """A process taken for dead (its claim went stale, another released the row and claimed it again)
    that comes back and writes its outcome does not overwrite the new claimer's."""
    a = await create_pool(database_url, worker_id="worker-a")
    b = await create_pool(database_url, worker_id="worker-b")
    try:
        async with a.acquire() as conn:
            world = await build_small_world(conn, ["Ara"])
            [delivery] = await _alerts(conn, world, 1, ("sms",))
        await claim_due_deliveries(a)
        await a.execute("UPDATE deliveries SET claimed_at = now() - interval '2 minutes'")
        assert await release_abandoned_deliveries(b, claim_timeout_s=60) == 1
        assert await release_abandoned_deliveries(a, claim_timeout_s=60) == 0  # never its own
        [(job, _)] = await claim_due_deliveries(b)
        assert job.attempts == 2
        await mark_deliveries(a, [DeliveryMark(delivery, "failed", time.time(), error="a's late word")])
        assert await a.fetchval("SELECT state FROM deliveries") == "sending"  # still b's
        await mark_deliveries(b, [DeliveryMark(delivery, "sent", time.time())])
        assert await a.fetchval("SELECT state FROM deliveries") == "sent"
    finally:
        await a.close()
        await b.close()


async def test_a_restart_does_not_resend_what_another_process_is_sending(database_url: str) -> None:
    """Process B is in the middle of a slow round of SMS (its gateway holds them; its heartbeat keeps
    its claims fresh); process A restarts (releases at start, then its dispatcher's rounds): A sends
    none of B's, B finishes them, and every SMS went out once."""
    a = await create_pool(database_url, worker_id="worker-a")
    b = await create_pool(database_url, worker_id="worker-b")
    gateway = CountingGateway()
    try:
        async with a.acquire() as conn:
            world = await build_small_world(conn, ["Ara", "Bin"])
            ids = await _alerts(conn, world, 10, ("sms",))
        gateway.open.clear()
        sending = Dispatcher(b, [SmsChannel(gateway.provider("worker-b"), "http://t")], claim_timeout_s=3.0)
        task = asyncio.create_task(sending.run())
        await asyncio.wait_for(gateway.entered.wait(), 10)
        first = await a.fetchval("SELECT max(claimed_at) FROM deliveries")
        # B's heartbeat (every third of its claim timeout) refreshes the claims it holds
        await wait_until(lambda: a.fetchval("SELECT min(claimed_at) > $1 FROM deliveries", first), 10)

        assert await release_stuck_deliveries(a, claim_timeout_s=3.0) == 0  # A starts again
        restarted = Dispatcher(a, [SmsChannel(gateway.provider("worker-a"), "http://t")])
        assert await restarted.deliver_due() == 0  # nothing for A: all B's
        gateway.open.set()
        await wait_until(lambda: a.fetchval("SELECT bool_and(state = 'sent') FROM deliveries"), 10)
        task.cancel()
        await asyncio.wait([task])
        assert gateway.sent == Counter({d: 1 for d in ids})
        assert gateway.by == {"worker-b": len(ids)}
    finally:
        await a.close()
        await b.close()
