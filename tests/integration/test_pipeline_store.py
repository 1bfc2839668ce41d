"""The pipeline against the real PostgreSQL: batches stored once, redelivery changes nothing,
a restarted pipeline picks up the checkpointed state, registry changes reach the index without a
restart, and a failing channel is retried."""

from __future__ import annotations

import json
import time

import asyncpg
import pytest

from tests.helpers import Publisher, alert_with_delivery, build_small_world, fix, square, wait_until
from tracker.alerts.dispatcher import Dispatcher
from tracker.config import Settings
from tracker.ingest.decode import RawMessage
from tracker.metrics import Metrics
from tracker.pipeline import Pipeline
from tracker.registry_view import build_view
from tracker.store.alerts import DeliveryJob, DeliveryMark, mark_deliveries
from tracker.store.db import create_pool
from tracker.store.registry_rows import load_registry
from tracker.store.seeding import add_zone


def _messages(tag: str, fixes: list[dict[str, object]]) -> list[RawMessage]:
    now = time.time()
    return [
        RawMessage(f"tracker/v1/tags/{tag}/position", json.dumps(f).encode(), now, mid=i + 1, qos=1)
        for i, f in enumerate(fixes)
    ]


async def _counts(pool: asyncpg.Pool) -> tuple[int, int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM positions) p, (SELECT count(*) FROM alerts) a,"
        " (SELECT count(*) FROM deliveries) d, (SELECT count(*) FROM dead_letters) x"
    )
    return row["p"], row["a"], row["d"], row["x"]


async def test_redelivered_messages_change_nothing_even_after_a_restart(database_url: str) -> None:
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Hayun"])
            rows = await load_registry(conn)
        view = build_view(rows, default_timezone="Asia/Seoul")
        settings = Settings(database_url=database_url, mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]
        tag = world.kids["Hayun"].tag
        t0 = time.time() - 300
        batch = _messages(
            tag,
            [fix(-500, 0, t0), fix(-450, 100, t0 + 15), fix(-440, 110, t0 + 30), fix(-430, 120, t0 + 45)],
        )
        batch.append(
            RawMessage("tracker/v1/tags/nobody/position", json.dumps(fix(0, 0, t0)).encode(), time.time())
        )

        first = Pipeline(pool=pool, view=lambda: view, settings=settings, metrics=Metrics())
        outcome = await first.process(batch)
        assert outcome.stored == 4 and [e.event.kind.value for e in outcome.events] == ["left_route"]
        assert outcome.rejected == {"unknown_tag": 1}
        assert await _counts(pool) == (4, 1, 2, 1)  # 1 alert, websocket + sms outbox rows

        again = await first.process(batch)  # the broker redelivers the same messages
        assert again.stored == 0 and again.events == []
        assert again.verdicts == {"stale": 3, "duplicate": 1}  # none of them decides anything

        restarted = Pipeline(pool=pool, view=lambda: view, settings=settings, metrics=Metrics())
        after_restart = await restarted.process(batch)  # a new process, state read from child_state
        assert after_restart.stored == 0 and after_restart.events == []
        # dead letters are kept per delivery: the redeliveries of the unknown tag's message are counted too
        assert await _counts(pool) == (4, 1, 2, 3)

        back = await restarted.process(_messages(tag, [fix(-420, 0, t0 + 60), fix(-410, 0, t0 + 75)]))
        assert [e.event.kind.value for e in back.events] == ["back_on_route"]
        state = await pool.fetchval("SELECT state FROM alerts")
        assert state == "resolved"
    finally:
        await pool.close()


async def test_a_zone_added_to_the_registry_is_used_without_a_restart(service, mqtt_url: str) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Jiwoo"])
    kid = world.kids["Jiwoo"]
    await wait_until(lambda: kid.tag in svc.view().rows.tags, 5)
    version = svc.view().version
    async with svc.pool.acquire() as conn:
        new_zone = await add_zone(
            # beside the route, not on it: on its route a child is judged by the zone minus its corridor
            conn,
            name="New excavation",
            kind="construction",
            geometry=square(-100, 100, 40),
        )
    await wait_until(lambda: svc.view().version > version and new_zone in svc.view().rows.zones, 3)

    pub = Publisher(mqtt_url)
    t0 = time.time() - 100
    topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position"
    try:
        pub.publish(topic, fix(-100, 100, t0, acc=5))
        pub.publish(topic, fix(-100, 105, t0 + 15, acc=5))

        async def alert() -> asyncpg.Record | None:
            return await svc.pool.fetchrow(
                "SELECT kind, zone_id FROM alerts WHERE child_id = $1", kid.child_id
            )

        row = await wait_until(alert, 5)
        assert (row["kind"], row["zone_id"]) == ("danger_zone", new_zone)
    finally:
        pub.close()


class FlakyChannel:
    """A channel that fails its first `failures` deliveries (a gateway having a bad minute)."""

    name = "sms"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.delivered: list[int] = []

    async def deliver(self, job: DeliveryJob, facts: object) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("gateway unreachable")
        self.delivered.append(job.delivery_id)
        return "sent"


async def test_a_failing_channel_is_retried_with_back_off_until_it_delivers(database_url: str) -> None:
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Siwoo"])
            kid = world.kids["Siwoo"]
            _, delivery = await alert_with_delivery(conn, kid, channel="sms")
        channel = FlakyChannel(failures=2)
        dispatcher = Dispatcher(pool, [channel], max_attempts=5, backoff_s=0.05)  # type: ignore[list-item]
        assert await dispatcher.deliver_due() == 1
        row = await pool.fetchrow(
            "SELECT state, attempts, last_error FROM deliveries WHERE id = $1", delivery
        )
        assert (row["state"], row["attempts"]) == ("pending", 1) and "gateway unreachable" in row[
            "last_error"
        ]
        assert await dispatcher.deliver_due() == 0  # not due before its back-off

        async def delivered() -> bool:
            await dispatcher.deliver_due()
            return channel.delivered == [delivery]

        await wait_until(delivered, 5)
        row = await pool.fetchrow("SELECT state, attempts FROM deliveries WHERE id = $1", delivery)
        assert (row["state"], row["attempts"]) == ("sent", 3)
        assert dispatcher.outcomes == {("sms", "retry"): 2, ("sms", "sent"): 1}

        await mark_deliveries(pool, [DeliveryMark(delivery, "pending", time.time())])
        dead = Dispatcher(pool, [FlakyChannel(failures=99)], max_attempts=4, backoff_s=0.0)  # type: ignore[list-item]
        await wait_until(lambda: _state(pool, delivery, "failed", dead), 5)
    finally:
        await pool.close()


async def _state(pool: asyncpg.Pool, delivery: int, wanted: str, dispatcher: Dispatcher) -> bool:
    await dispatcher.deliver_due()
    return bool(await pool.fetchval("SELECT state FROM deliveries WHERE id = $1", delivery) == wanted)


async def test_a_run_through_a_zone_between_two_fixes_is_entered_in_one_batch_or_across_batches(
    database_url: str,
) -> None:
    """The pipeline gives the geofence each fix's previous fix (from the same batch, or the state
    checkpointed by an earlier one): a child who crossed the 80 m construction site between two fixes
    outside it is alerted when the next fix shows it went on (not a multipath jump coming back)."""
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Ara", "Bom"])
            rows = await load_registry(conn)
        view = build_view(rows, default_timezone="Asia/Seoul")
        settings = Settings(database_url=database_url, mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]
        pipeline = Pipeline(pool=pool, view=lambda: view, settings=settings, metrics=Metrics())
        t0 = time.time() - 300
        # 120 m in 15 s: running (a child 150 m further in 15 s rides something: no evidence of a zone)
        run = [fix(-300, 90, t0, acc=5), fix(-300, 210, t0 + 15, acc=5), fix(-300, 250, t0 + 30, acc=5)]

        ara = world.kids["Ara"].tag
        together = await pipeline.process(_messages(ara, run))
        zone_events = [(e.event.kind.value, e.event.zone_id) for e in together.events if e.event.zone_id]
        assert zone_events == [("entered_zone", world.zone_id)]  # (and left_route: it is 230 m out)

        bom = world.kids["Bom"].tag
        kinds = []
        for one in run:  # one fix per batch: the segment starts from the checkpointed state
            outcome = await pipeline.process(_messages(bom, [one]))
            kinds += [e.event.kind.value for e in outcome.events if e.event.zone_id]
        assert kinds == ["entered_zone"]
        assert await pool.fetchval("SELECT count(*) FROM alerts WHERE kind = 'danger_zone'") == 2
    finally:
        await pool.close()


async def test_decided_fixes_go_straight_in_and_one_stored_before_after_all_is_not_lost(
    database_url: str,
) -> None:
    """Fixes the monitor decided are COPYed straight into positions; should one of them be stored
    already (same tag and time as a fix that decided nothing), the transaction is told so and run again
    with all of them as fixes that may be stored: each fix stored once, the count says how many were new."""
    from datetime import UTC, datetime

    from tracker.store.batches import StoredBefore, store_positions

    def record(tag: str, ts: float, acc: float) -> tuple[object, ...]:
        at = datetime.fromtimestamp(ts, UTC)
        return (tag, at, 1, 127.0, 37.5, acc, 80, None, False, at, None)

    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            async with conn.transaction():
                stored = await store_positions(
                    conn, [record("t", 5.0, 300.0)], new=[record("t", 10.0, 8.0), record("t", 20.0, 8.0)]
                )
            assert stored == 3
            again = [record("t", 5.0, 300.0)], [record("t", 20.0, 9.0), record("t", 30.0, 8.0)]
            with pytest.raises(StoredBefore):  # 20 s is there already
                async with conn.transaction():
                    await store_positions(conn, again[0], new=again[1])
            async with conn.transaction():
                stored = await store_positions(conn, [*again[1], *again[0], record("t", 40.0, 7.0)])
            assert stored == 2
            rows = await conn.fetch("SELECT extract(epoch FROM ts) AS ts, acc FROM positions ORDER BY ts")
            assert [(float(r["ts"]), r["acc"]) for r in rows] == [
                (5, 300),
                (10, 8),
                (20, 8),
                (30, 8),
                (40, 7),
            ]
    finally:
        await pool.close()


async def test_a_decided_fix_at_the_time_of_one_that_decided_nothing_is_committed_with_its_state(
    database_url: str,
) -> None:
    """A fix too vague to decide is stored; a good fix of the same tag at the same second decides (it is
    later than the last decided fix) but finds the place taken: the batch is written again the careful
    way, the state moves on, and the next fix is judged from it."""
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Yuna"])
            rows = await load_registry(conn)
        view = build_view(rows, default_timezone="Asia/Seoul")
        settings = Settings(database_url=database_url, mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]
        pipeline = Pipeline(pool=pool, view=lambda: view, settings=settings, metrics=Metrics())
        tag = world.kids["Yuna"].tag
        t0 = time.time() - 300
        vague = fix(-500, 0, t0)
        vague["acc"] = 900.0
        first = await pipeline.process(_messages(tag, [vague]))
        assert first.stored == 1 and first.verdicts == {"poor_accuracy": 1}
        second = await pipeline.process(_messages(tag, [fix(-500, 0, t0), fix(-480, 0, t0 + 15)]))
        assert second.verdicts == {"decided": 2}
        assert second.stored == 1  # the second fix; the first's place was taken by the vague one
        third = await pipeline.process(_messages(tag, [fix(-480, 0, t0 + 15)]))
        assert third.verdicts == {"duplicate": 1}  # the state committed with the second batch
        assert await pool.fetchval("SELECT count(*) FROM positions") == 2
    finally:
        await pool.close()


async def test_the_dispatcher_takes_critical_alerts_before_the_notices_queued_ahead_of_them(
    database_url: str,
) -> None:
    """A commute's start queues thousands of 'arrived' notices; an SOS raised then is delivered in the
    dispatcher's next round, not after them."""
    from tracker.store.alerts import claim_due_deliveries

    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Dana"])
            kid = world.kids["Dana"]

            async def delivery_of(kind: str, severity: str) -> int:
                return (await alert_with_delivery(conn, kid, kind, severity, state="resolved"))[1]

            notices = [await delivery_of("arrived_school", "info") for _ in range(5)]
            warning = await delivery_of("left_route", "warning")
            sos = await delivery_of("sos", "critical")
        first = await claim_due_deliveries(pool, limit=2)
        assert [j.delivery_id for j, _ in first] == sorted([sos, warning])
        rest = await claim_due_deliveries(pool, limit=10)
        assert [j.delivery_id for j, _ in rest] == notices  # then the notices, oldest first
    finally:
        await pool.close()


async def test_a_round_of_outcomes_is_written_even_if_one_delivery_is_gone(database_url: str) -> None:
    """The dispatcher writes a round's outcomes in one statement: a delivery deleted meanwhile (its
    child, and so its alerts, deleted through the registry) must not undo the others'."""
    from tracker.store.alerts import DeliveryMark, mark_deliveries

    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, ["Ari", "Bo"])
            ids = [await alert_with_delivery(conn, world.kids[name]) for name in ("Ari", "Bo")]
            await conn.execute("DELETE FROM children WHERE id = $1", world.kids["Ari"].child_id)
        at = time.time() - 30
        await mark_deliveries(
            pool,
            [DeliveryMark(d, "sent", at, history=(a, "delivered", {"channel": "websocket"})) for a, d in ids],
        )
        row = await pool.fetchrow(
            "SELECT state, extract(epoch FROM sent_at) AS sent FROM deliveries WHERE id = $1", ids[1][1]
        )
        assert row["state"] == "sent"
        assert abs(float(row["sent"]) - at) < 0.01  # when it went out, not when it was written
        steps = await pool.fetch("SELECT alert_id, step FROM alert_history ORDER BY id")
        assert [(r["alert_id"], r["step"]) for r in steps] == [(ids[1][0], "delivered")]
    finally:
        await pool.close()
