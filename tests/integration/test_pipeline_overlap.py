"""A batch prepared while the one before it commits (the service's batch loop overlaps them): it
decides exactly as if the two had run one after the other, the commits land in order, and a batch
that never commits takes nothing with it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.helpers import build_small_world, fix
from tracker.config import Settings
from tracker.ingest.decode import RawMessage
from tracker.metrics import Metrics
from tracker.pipeline import Pipeline
from tracker.registry_view import build_view
from tracker.store.db import create_pool
from tracker.store.registry_rows import load_registry

T0 = time.time() - 600
# off the route (150 m north of it, 30 m corridor) for long enough, then back on it
LEAVE = [(-500, 0, 0), (-450, 150, 15), (-440, 160, 30), (-430, 170, 45), (-420, 170, 60)]
RETURN = [(-400, 0, 75), (-390, 0, 90), (-380, 0, 105)]


def _messages(tag: str, steps: list[tuple[float, float, float]]) -> list[RawMessage]:
    now = time.time()
    return [
        RawMessage(f"tracker/v1/tags/{tag}/position", json.dumps(fix(x, y, T0 + t)).encode(), now, i + 1, 1)
        for i, (x, y, t) in enumerate(steps)
    ]


@pytest.fixture
async def world(database_url: str) -> Any:
    pool = await create_pool(database_url)
    async with pool.acquire() as conn:
        w = await build_small_world(conn, ["Serial", "Overlap", "Lost"])
        rows = await load_registry(conn)
    view = build_view(rows, default_timezone="Asia/Seoul")
    settings = Settings(database_url=database_url, mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]
    pipeline = Pipeline(pool=pool, view=lambda: view, settings=settings, metrics=Metrics())
    yield pool, w, pipeline
    await pool.close()


def _kinds(outcome: Any) -> list[str]:
    return [e.event.kind.value for e in outcome.events]


async def _state(pool: Any, child: int) -> dict[str, Any]:
    return dict(await pool.fetchval("SELECT state FROM child_state WHERE child_id = $1", child))


async def test_a_batch_prepared_before_the_one_before_it_committed_decides_the_same(world: Any) -> None:
    pool, w, pipeline = world
    serial, overlap = w.kids["Serial"], w.kids["Overlap"]

    one_after_the_other = [
        _kinds(await pipeline.process(_messages(serial.tag, LEAVE))),
        _kinds(await pipeline.process(_messages(serial.tag, RETURN))),
    ]
    async with pipeline.writer:
        first = await pipeline.prepare(_messages(overlap.tag, LEAVE))
        second = await pipeline.prepare(_messages(overlap.tag, RETURN))  # on the first's states
        assert await pool.fetchval("SELECT count(*) FROM alerts WHERE child_id = $1", overlap.child_id) == 0
        overlapped = [_kinds(await pipeline.commit(first)), _kinds(await pipeline.commit(second))]

    assert one_after_the_other == overlapped == [["left_route"], ["back_on_route"]]
    # the same state, but for what the receipts taught (the tag's clock estimate from receipt delays,
    # its last receipt and upload gaps: the two were received at different moments of this test)
    serial_state, overlap_state = await _state(pool, serial.child_id), await _state(pool, overlap.child_id)
    assert serial_state.pop("clock", None) is not None and overlap_state.pop("clock", None) is not None
    for receipts in ("received_last", "uplink"):
        serial_state.pop(receipts, None)
        overlap_state.pop(receipts, None)
    assert serial_state == overlap_state
    rows = await pool.fetch("SELECT child_id, state FROM alerts ORDER BY child_id")
    assert [(r["child_id"], r["state"]) for r in rows] == [
        (serial.child_id, "resolved"),
        (overlap.child_id, "resolved"),
    ]


async def test_a_batch_that_never_commits_leaves_nothing_behind(world: Any) -> None:
    pool, w, pipeline = world
    lost = w.kids["Lost"]
    async with pipeline.writer:
        await pipeline.prepare(_messages(lost.tag, LEAVE))  # its commit fails for good (a bug) ...
        pipeline.discard_ahead()  # ... and what was prepared on top of it is forgotten
        after = await pipeline.commit(await pipeline.prepare(_messages(lost.tag, RETURN)))
    # the return decides from the committed state (none): on route, nothing to resolve
    assert _kinds(after) == [] and after.stored == len(RETURN)
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 0
    assert (await _state(pool, lost.child_id))["last_ts"] == T0 + RETURN[-1][2]


async def test_a_commit_that_failed_midway_is_made_again_from_the_same_prepared_batch(world: Any) -> None:
    """The service retries a commit PostgreSQL could not finish with the batch as prepared: nothing of
    the failed attempt stays (neither rows nor states), and the retry decides what one commit would."""
    pool, w, pipeline = world
    kid = w.kids["Serial"]
    async with pipeline.writer:
        prepared = await pipeline.prepare(_messages(kid.tag, LEAVE))
        conn = await pool.acquire()
        try:  # the alerts table locked by another session: the commit gets no further than the positions
            tx = conn.transaction()
            await tx.start()
            await conn.execute("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await pipeline.commit(prepared)
            await tx.rollback()
        finally:
            await pool.release(conn)
        assert await pool.fetchval("SELECT count(*) FROM positions") == 0  # rolled back
        outcome = await pipeline.commit(prepared)
    assert outcome.stored == len(LEAVE) and _kinds(outcome) == ["left_route"]
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 1
