"""Retention (privacy): positions, and the dead letters that may hold them, are kept for a set number
of days and then deleted, in small batches so that the hot path's inserts never wait long on a lock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg


@dataclass(frozen=True)
class Purged:
    positions: int
    dead_letters: int


async def purge_old_positions(
    pool: asyncpg.Pool | asyncpg.Connection, *, keep: timedelta, batch: int = 10_000
) -> Purged:
    """Delete positions whose fix time, and dead letters whose arrival, is older than ``keep``."""
    positions = await _purge(
        pool,
        "DELETE FROM positions WHERE ctid = ANY(ARRAY(SELECT ctid FROM positions"
        " WHERE ts < now() - $1::interval LIMIT $2))",
        keep,
        batch,
    )
    dead = await _purge(
        pool,
        "DELETE FROM dead_letters WHERE id = ANY(ARRAY(SELECT id FROM dead_letters"
        " WHERE received_at < now() - $1::interval LIMIT $2))",
        keep,
        batch,
    )
    return Purged(positions, dead)


async def _purge(pool: asyncpg.Pool | asyncpg.Connection, sql: str, keep: timedelta, batch: int) -> int:
    total = 0
    while True:
        status = await pool.execute(sql, keep, batch)
        n = int(status.split()[-1])
        total += n
        if n < batch:
            return total
