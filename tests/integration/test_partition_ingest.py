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
from collections.abc import AsyncIterator
from pathlib import Path

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
    await jetstream.ensure_streams(js, topic_prefix="", replicas=1)
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
