"""The owner's side of the NATS engine (tracker.ingest.jetstream.PartitionIngest) on a real nats-server:
a partition lost and taken again at once is read by a new reader.

The service calls ``give_up`` for every lost partition one after the other, and ``take`` for the ones
it gains, from two tasks of their own. Seen in ``bench/e2e.py --workers 1,2 --nats-nodes 1`` under load:
a worker lost 32 partitions (leases not renewed in time) and took 15 of them back 9 s later while the
give-ups were still going (each one waited for its reader's end); ``take`` found the old reader still
held and returned, the give-up then removed it, and those partitions stayed owned and read by nobody.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tracker.embedded import EmbeddedNats
from tracker.ingest import jetstream
from tracker.ingest.decode import RawMessage
from tracker.ingest.handoff import Handoff

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def nats_node(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    node = EmbeddedNats(tmp_path / "nats")
    node.start()
    yield node  # type: ignore[misc]
    node.stop()


async def test_a_partition_lost_and_taken_again_at_once_is_read(
    database_url: str, nats_node: EmbeddedNats
) -> None:
    nc = await jetstream.connect(nats_node.url, "test")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    js = nc.jetstream()
    await jetstream.ensure_streams(js, topic_prefix="", replicas=1, partitions=8)
    queue: Handoff[RawMessage] = Handoff(asyncio.get_running_loop(), 1000)
    owned = set(range(8))
    ingest = jetstream.PartitionIngest(
        js, queue, pool, topic_prefix="", replicas=1, batch=100, owns=lambda p: p in owned
    )
    try:
        for p in sorted(owned):
            await ingest.take(p)

        async def lost(partitions: list[int]) -> None:  # as Service._lost
            for p in partitions:
                await ingest.give_up(p)

        # lost all eight, then (before the give-ups are done) gained 5, 6, 7 back: two tasks, in that order
        gone = asyncio.create_task(lost(list(range(8))))
        back = asyncio.create_task(asyncio.wait_for(asyncio.gather(*(ingest.take(p) for p in (5, 6, 7))), 30))
        await asyncio.gather(gone, back)
        assert ingest.partitions == [5, 6, 7]

        await js.publish(jetstream.part_subject(6), b"\x90", stream=jetstream.PART_STREAM)
        deadline = asyncio.get_running_loop().time() + 10
        while not len(queue) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert len(queue) == 1, "partition 6 is held but nobody reads it"
        assert ingest.pending(6) == 1
    finally:
        await ingest.stop()
        await pool.close()
        await nc.close()


async def _pull(nc: Any, consumer: str, wait_s: float) -> list[bytes]:
    """One pull request on ``consumer`` of the partition stream, as a reader's fetch sends it, from a
    connection of its own: the messages it was given within ``wait_s``."""
    got: list[bytes] = []
    inbox = nc.new_inbox()

    async def take(m: Any) -> None:
        if m.data:  # (not a status: 404 no such consumer, 408 the request expired)
            got.append(m.data)

    sub = await nc.subscribe(inbox, cb=take)
    request = {"batch": 100, "expires": int(wait_s * 1e9)}
    subject = f"$JS.API.CONSUMER.MSG.NEXT.{jetstream.PART_STREAM}.{consumer}"
    await nc.publish(subject, json.dumps(request).encode(), reply=inbox)
    await asyncio.sleep(wait_s + 0.3)
    await sub.unsubscribe()
    return got


async def test_a_pull_from_a_reader_that_lost_its_partition_takes_nothing_from_the_new_owner(
    database_url: str, nats_node: EmbeddedNats
) -> None:
    """A worker cut off from the engine keeps what it sent in its TCP buffer: its reader's last pull
    request reaches the server when the cut heals, after the partition's new owner made its consumer.
    Served by the new owner's consumer, that request took messages to a subscription nobody reads;
    they came back after the ack wait (two minutes), behind later ones: stored late, and judged
    "older than the child's last decided fix" (tests/e2e/test_cluster_cut.py, one run in three).
    Each owner's consumer has a name of its own: the old reader's request names a consumer that is
    gone, and the new owner reads everything, in order."""
    old_nc = await jetstream.connect(nats_node.url, "old owner")
    new_nc = await jetstream.connect(nats_node.url, "new owner")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    old_js, new_js = old_nc.jetstream(), new_nc.jetstream()
    await jetstream.ensure_streams(new_js, topic_prefix="", replicas=1, partitions=8)
    old_queue: Handoff[RawMessage] = Handoff(asyncio.get_running_loop(), 1000)
    new_queue: Handoff[RawMessage] = Handoff(asyncio.get_running_loop(), 1)
    owner = {"old"}
    old = jetstream.PartitionIngest(
        old_js, old_queue, pool, topic_prefix="", replicas=1, batch=100, owns=lambda p: "old" in owner
    )
    new = jetstream.PartitionIngest(
        new_js, new_queue, pool, topic_prefix="", replicas=1, batch=100, owns=lambda p: "new" in owner
    )
    try:
        await old.take(3)
        (old_consumer,) = [c.name for c in await new_js.consumers_info(jetstream.PART_STREAM)]
        owner = {"new"}
        await old.give_up(3)
        new_queue.put_nowait(RawMessage("busy", b"", 0.0, 0, 0, 0))  # the new owner reads nothing yet
        await new.take(3)
        for i in range(5):
            await new_js.publish(jetstream.part_subject(3), bytes([0x90 + i]), stream=jetstream.PART_STREAM)

        assert await _pull(old_nc, old_consumer, 1.0) == []  # (the old name: served nothing)

        await new_queue.batch(1, 0)  # the new owner's pipeline has room again
        deadline = asyncio.get_running_loop().time() + 10
        while len(new_queue) < 5 and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert [m.payload for m in await new_queue.batch(10, 0)] == [bytes([0x90 + i]) for i in range(5)]
    finally:
        await old.stop()
        await new.stop()
        await pool.close()
        await old_nc.close()
        await new_nc.close()
