"""Stage 5: the batch's one transaction.

Positions (COPY), dead letters, alerts with their history and outbox rows, the open alerts' last
positions, and the changed children's state checkpoints, all or nothing: a batch whose transaction
failed changed nothing and may be written again.

With workers (issue 16), the transaction begins with the fencing check (tracker.cluster.fencing): a
batch prepared under partition tokens that are no longer current raises ``Fenced`` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from tracker.alerts.escalation import Escalation
from tracker.cluster.fencing import fence
from tracker.metrics import StageClock
from tracker.stages.records import PreparedBatch
from tracker.store.alert_lifecycle import apply_events, touch_open_alerts
from tracker.store.batches import StoredBefore, save_child_states, store_dead_letters, store_positions


async def write_batch(
    pool: asyncpg.Pool,
    p: PreparedBatch,
    escalation: Escalation,
    clock: StageClock,
    connected_here: Callable[[int], bool] = lambda guardian_id: False,
) -> None:
    """Write a prepared batch. The fixes that decided are COPYed as new; should one of them be stored
    already (it almost never is: a fix that decides is later than any stored fix of its child), the
    transaction is written again with every fix the careful way.

    ``connected_here``: whether a guardian has a websocket open on this process; their critical
    deliveries on it are claimed in the transaction, for the caller to send as soon as it is committed
    (``p.outcome.at_once``)."""
    at_once = {r.guardian_id for rs in p.recipients.values() for r in rs if connected_here(r.guardian_id)}
    try:
        await _transaction(pool, p, escalation, clock, at_once)
    except StoredBefore:
        p.maybe_stored, p.new_positions = [*p.new_positions, *p.maybe_stored], []
        await _transaction(pool, p, escalation, clock, at_once)


async def _transaction(
    pool: asyncpg.Pool, p: PreparedBatch, escalation: Escalation, clock: StageClock, at_once: set[int]
) -> None:
    outcome = p.outcome
    async with pool.acquire() as conn, conn.transaction():
        if p.tokens is not None:  # first: the leases are held FOR SHARE until the commit
            await fence(conn, p.tokens)
        outcome.stored = await store_positions(conn, p.maybe_stored, new=p.new_positions)
        await store_dead_letters(conn, p.dead)
        clock.lap("commit_positions")
        written = await apply_events(conn, p.events, p.recipients, p.webhook_schools, escalation, at_once)
        outcome.outbox_rows, outcome.at_once = written.rows, written.at_once
        clock.lap("commit_alerts")
        await touch_open_alerts(conn, p.following)  # type: ignore[arg-type]
        clock.lap("commit_follow")
        await save_child_states(conn, p.changed)
        clock.lap("commit_states")
    clock.lap("commit_end")
