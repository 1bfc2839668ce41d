"""Fencing and once-per-child against the real PostgreSQL (tracker.cluster): a worker that lost a
partition commits nothing for it, a commit in flight holds a takeover back until it is written, the
batch loop drops a fenced batch without acknowledging or dead-lettering it, and the clock's rules and
escalations run for a worker's own children only.

The workers are pipelines in this process, each with a lease keeper of its own pool and worker id;
their rounds are run by hand, in a chosen order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.helpers import build_small_world, fix, wait_until
from tracker.alerts.escalation import Escalation
from tracker.batch_loop import BatchLoop
from tracker.cluster.fencing import Fenced, fence
from tracker.cluster.leases import LeaseKeeper
from tracker.cluster.partitions import Share
from tracker.config import Settings
from tracker.ingest.decode import RawMessage
from tracker.ingest.handoff import Handoff
from tracker.ingest.http import HttpIngress
from tracker.metrics import Metrics
from tracker.pipeline import Pipeline
from tracker.registry_view import RegistryView, build_view
from tracker.store.alert_lifecycle import escalate_due
from tracker.store.alert_rules import load_alert_rules
from tracker.store.db import create_pool
from tracker.store.registry_rows import load_registry

P = 4  # few partitions: a handful of children fall in each


class Worker:
    """A worker as the cluster would run it: a lease keeper and a pipeline owning through it, whose
    states follow the leases (on_gained / on_lost forget them)."""

    def __init__(self, name: str, pool: asyncpg.Pool, view: RegistryView, settings: Settings) -> None:
        self.pool = pool
        self.lost: list[int] = []
        self.keeper = LeaseKeeper(pool, name, P, 30.0, on_gained=self._gained, on_lost=self._lost)
        self.pipeline = Pipeline(
            pool=pool, view=lambda: view, settings=settings, metrics=Metrics(), ownership=self.keeper
        )

    def _gained(self, partitions: list[int]) -> None:
        self.pipeline.forget_partitions(partitions)

    def _lost(self, partitions: list[int]) -> None:
        self.lost += partitions
        self.pipeline.forget_partitions(partitions)


class Cluster:
    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.pools: list[asyncpg.Pool] = []
        self.settings = Settings(database_url=database_url, mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]

    async def world(self, kids: list[str], awaited: bool = False) -> Any:
        pool = await self.pool()
        async with pool.acquire() as conn:
            world = await build_small_world(conn, kids)
            if awaited:  # due at school a second after midnight, every day
                await conn.execute(
                    "UPDATE routes SET arrivals = $1 WHERE id = $2",
                    [{"days": [0, 1, 2, 3, 4, 5, 6], "time": "00:00:01"}],
                    world.route_id,
                )
            rows, rules = await load_registry(conn), await load_alert_rules(conn)
            self.view = build_view(rows, default_timezone="Asia/Seoul", rules=rules)
        return world

    async def pool(self) -> asyncpg.Pool:
        pool = await create_pool(self.url, min_size=1, max_size=4)
        self.pools.append(pool)
        return pool

    async def worker(self, name: str) -> Worker:
        return Worker(name, await self.pool(), self.view, self.settings)

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()


@pytest.fixture
async def cluster(database_url: str) -> AsyncIterator[Cluster]:
    c = Cluster(database_url)
    try:
        yield c
    finally:
        await c.close()


def _messages(tag: str, fixes: list[dict[str, Any]], first_mid: int = 1) -> list[RawMessage]:
    now = time.time()
    return [
        RawMessage(f"tracker/v1/tags/{tag}/position", json.dumps(f).encode(), now, mid=first_mid + i, qos=1)
        for i, f in enumerate(fixes)
    ]


def _walk(t0: float) -> list[dict[str, Any]]:
    return [fix(-500 + 10 * i, 0, t0 + 15 * i) for i in range(4)]


async def _take_over(pool: asyncpg.Pool, partition: int, newcomer: Worker) -> int:
    """The partition's lease lapses (its owner paused, say) and ``newcomer`` takes it; its new token."""
    await pool.execute(
        "UPDATE partition_leases SET expires_at = now() - interval '1 second' WHERE partition = $1", partition
    )
    await newcomer.keeper.round()
    return newcomer.keeper.owned[partition]


async def _count(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_a_batch_prepared_before_a_takeover_commits_nothing(cluster: Cluster) -> None:
    world = await cluster.world(["Dain"])
    kid = world.kids["Dain"]
    p = kid.child_id % P
    old, new = await cluster.worker("old"), await cluster.worker("new")
    await old.keeper.round()  # alone: every partition
    token = old.keeper.owned[p]
    batch = _messages(kid.tag, _walk(time.time() - 300))
    prepared = await old.pipeline.prepare(batch)
    assert prepared.tokens == {p: token}

    assert await _take_over(old.pool, p, new) == token + 1
    with pytest.raises(Fenced) as fenced:
        await old.pipeline.commit(prepared)
    assert fenced.value.stale == {p: token}
    assert await _count(old.pool, "positions") == await _count(old.pool, "child_state") == 0
    assert old.keeper.owned[p] == token  # (it has not noticed yet: its rounds are the test's)
    old.pipeline.fenced(fenced.value)  # what the batch loop does with it
    assert p not in old.keeper.owned and old.lost == [p]

    # the new owner, from the checkpoints (none), stores the redelivered messages
    redelivered = await new.pipeline.process(batch)
    assert redelivered.stored == 4 and await _count(new.pool, "positions") == 4


async def test_a_commit_in_flight_holds_the_takeover_back_until_it_is_written(cluster: Cluster) -> None:
    """FOR SHARE: a lease row a commit in flight holds is skipped by a take (never waited on: a keeper
    must not stall behind a worker that may be cut off mid-commit), and taken by a round after that
    commit, so the new owner reads the checkpoint that commit wrote, never the one before it."""
    world = await cluster.world(["Eunbi"])
    kid = world.kids["Eunbi"]
    p = kid.child_id % P
    old, new = await cluster.worker("old"), await cluster.worker("new")
    await old.keeper.round()
    token = old.keeper.owned[p]
    await old.pool.execute(
        "UPDATE partition_leases SET expires_at = now() - interval '1 second' WHERE partition = $1", p
    )

    async with old.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await fence(conn, {p: token})  # the old owner's commit, begun while the lease still had its token
        await asyncio.wait_for(new.keeper.round(), 10)  # not blocked by the locked row ...
        assert p not in new.keeper.owned  # ... and not taking it from under the commit
        await conn.execute(
            "INSERT INTO child_state (child_id, state) VALUES ($1, $2)", kid.child_id, {"last_ts": 1.0}
        )
        await tx.commit()
    await new.keeper.round()
    assert new.keeper.owned[p] == token + 1
    async with new.pool.acquire() as conn, conn.transaction():
        with pytest.raises(Fenced):
            await fence(conn, {p: token})  # anything the old owner commits from now on
    assert await new.pool.fetchval("SELECT state FROM child_state WHERE child_id = $1", kid.child_id) == {
        "last_ts": 1.0
    }


class Acks:
    def __init__(self) -> None:
        self.acked: list[RawMessage] = []

        self.read_again: list[RawMessage] = []

    def ack(self, messages: list[RawMessage]) -> None:
        self.acked += messages

    def not_committed(self, messages: list[RawMessage]) -> None:
        self.read_again += messages

    def current(self, messages: list[RawMessage]) -> list[RawMessage]:
        return messages


class NoDispatcher:
    def wake(self) -> None:
        pass

    def send_at_once(self, deliveries: list[Any]) -> None:
        pass


async def test_the_batch_loop_drops_a_fenced_batch_unacknowledged_and_goes_on(cluster: Cluster) -> None:
    world = await cluster.world(["Gaon", "Hana"])
    taken, kept = world.kids["Gaon"], world.kids["Hana"]
    assert taken.child_id % P != kept.child_id % P
    old, new = await cluster.worker("old"), await cluster.worker("new")
    await old.keeper.round()
    await _take_over(old.pool, taken.child_id % P, new)  # the old worker has not noticed

    queue: Handoff[RawMessage] = Handoff(asyncio.get_running_loop(), 1000)
    acks = Acks()
    loop = BatchLoop(
        pipeline=old.pipeline,
        queue=queue,
        settings=cluster.settings,
        metrics=Metrics(),
        pool=old.pool,
        broker=acks,
        http=HttpIngress(queue, lambda: {}, timeout_s=1),
        dispatcher=NoDispatcher(),
    )
    running = asyncio.ensure_future(loop.run())
    try:
        t0 = time.time() - 300
        for m in _messages(taken.tag, _walk(t0)):
            queue.put_nowait(m)
        await wait_until(lambda: old.lost, 10)
        assert old.lost == [taken.child_id % P]
        for m in _messages(kept.tag, _walk(t0), first_mid=10):
            queue.put_nowait(m)
        await wait_until(lambda: len(acks.acked) == 4, 10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert {m.mid for m in acks.acked} == {10, 11, 12, 13}  # only the messages it still owns
    # the fenced batch's messages go back to the broker's side (which reads again at once those of
    # partitions this worker still holds: tests/e2e/test_cluster_cut.py)
    assert {m.mid for m in acks.read_again} == {1, 2, 3, 4}
    rows = await old.pool.fetch("SELECT DISTINCT tag_id FROM positions")
    assert [r["tag_id"] for r in rows] == [kept.tag]
    assert await _count(old.pool, "dead_letters") == 0
    assert loop.healthy


def _moment_within_one_seoul_day() -> float:
    """Now, or 15 minutes ago when now + 405 s would be the next day in Seoul (as the clock's tests)."""
    now = time.time()
    seoul = ZoneInfo("Asia/Seoul")
    if datetime.fromtimestamp(now - 1, seoul).date() != datetime.fromtimestamp(now + 405, seoul).date():
        return now - 900
    return now


KIDS = ["Iseo", "Jia", "Kian", "Lua", "Mio", "Nari"]


async def _two_workers(cluster: Cluster) -> tuple[Any, Worker, Worker]:
    world = await cluster.world(KIDS, awaited=True)
    a, b = await cluster.worker("a"), await cluster.worker("b")
    for _ in range(3):
        await a.keeper.round()
        await b.keeper.round()
    assert sorted(a.keeper.owned) == [0, 1] and sorted(b.keeper.owned) == [2, 3]
    a.lost.clear()  # (a took all four first, and gave 2 and 3 up when b came)
    return world, a, b


def _children_of(world: Any, worker: Worker) -> set[int]:
    return {k.child_id for k in world.kids.values() if k.child_id % P in worker.keeper.owned}


async def test_the_clock_and_escalations_run_for_the_owned_children_only(cluster: Cluster) -> None:
    world, a, b = await _two_workers(cluster)
    now = _moment_within_one_seoul_day()
    said: dict[int, list[str]] = {}
    for w in (a, b):
        events = await w.pipeline.tick(now + 400)  # every child is due at school, none came
        assert {e.child_id for e in events} == _children_of(world, w) != set()
        for e in events:
            said.setdefault(e.child_id, []).append(e.event.kind.value)
    assert said == {k.child_id: ["not_arrived"] for k in world.kids.values()}  # each child once

    await a.pool.execute("UPDATE alerts SET next_escalation_at = now() - interval '1 second'")
    escalation = Escalation()
    # (whose share, the children whose alerts it escalates)
    for share, children in [
        (Share(P), set()),  # owning nothing: nothing
        (a.keeper.share(), _children_of(world, a)),
        (b.keeper.share(), _children_of(world, b)),
        (None, set()),  # one process: everything due, and nothing is due any more
    ]:
        escalated = await escalate_due(a.pool, escalation, share=share)
        assert {child for _, child in escalated} == children


async def test_a_clock_tick_whose_partition_changed_hands_writes_nothing(cluster: Cluster) -> None:
    world, a, _ = await _two_workers(cluster)
    lost = min(a.keeper.owned)
    await a.pool.execute(
        "UPDATE partition_leases SET owner = 'x', token = token + 1 WHERE partition = $1", lost
    )
    now = _moment_within_one_seoul_day()
    assert await a.pipeline.tick(now + 400) == []  # fenced: one transaction, so nothing at all
    assert await _count(a.pool, "alerts") == await _count(a.pool, "child_state") == 0
    assert a.lost == [lost] and sorted(a.keeper.owned) == [lost + 1]
    events = await a.pipeline.tick(now + 400)  # the partition it still owns
    assert {e.child_id for e in events} == {
        k.child_id for k in world.kids.values() if k.child_id % P == lost + 1
    }
