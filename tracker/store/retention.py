"""Retention (privacy) and the day partitions of ``positions`` (migration 0014).

Positions are partitioned by the fix's UTC day: the retention loop makes the partitions of the days
ahead, drops the days older than the retention period whole (no DELETE of a day's rows, no dead tuples,
no index bloat), and deletes row by row only the few fixes with unusual timestamps that
``positions_before`` / ``positions_after`` hold, and the dead letters (which may hold positions).

Adding or dropping a partition takes an ACCESS EXCLUSIVE lock on ``positions`` for a moment: the batch
commits (and the readers) wait behind it, so it is asked for with a short lock timeout, and a pass
that did not get the lock (a long export reading positions) gives up and is tried again at the next
pass. The days ahead (``AHEAD_DAYS``) are the slack for that: until they run out, nothing waits on a
partition being made.

A day's indexes grow by page splits as the fixes of every tag arrive in turn, and end about two thirds
full; once the day is over, its indexes are rebuilt packed (REINDEX CONCURRENTLY: the writes of late
fixes and the reads go on), the newest closed day first, one per pass: bench/positions_copy.py measured
189 bytes per fix before and 173 after (the indexes from 88 to 72; docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg

AHEAD_DAYS = 3  # partitions made for today and this many days after (each an index probe more for
# "the last fix of a child", which reads from the newest partition down: bench/positions_copy.py)
LOCK_TIMEOUT = "500ms"  # how long a partition change waits for the batch commits and readers


@dataclass(frozen=True)
class Purged:
    positions: int  # fixes purged: the dropped partitions' rows as estimated (pg_class.reltuples), and
    # those deleted from positions_before / positions_after
    dead_letters: int
    dropped: tuple[str, ...] = ()  # partitions dropped
    created: tuple[str, ...] = ()  # partitions made
    rebuilt: str | None = None  # the closed day whose indexes were rebuilt

    def __bool__(self) -> bool:
        return bool(self.positions or self.dead_letters or self.dropped or self.created or self.rebuilt)


async def ensure_partitions(
    pool: asyncpg.Pool | asyncpg.Connection, *, ahead: int = AHEAD_DAYS, since: date | None = None
) -> tuple[str, ...]:
    """Make the day partitions up to today + ``ahead`` (and back to ``since``) that are not there yet;
    returns those made. Raises asyncpg.LockNotAvailableError when the lock was not had in time."""
    rows = await _locked(pool, "SELECT positions_ensure_partitions($1::int, $2::date) AS name", ahead, since)
    return tuple(r["name"] for r in rows)


async def purge_old_positions(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    keep: timedelta,
    batch: int = 10_000,
    ahead: int = AHEAD_DAYS,
) -> Purged:
    """One pass of the retention loop: make the partitions ahead, drop the days whose whole day is
    older than ``keep`` (a fix is kept at least ``keep``, at most a day longer), delete the fixes older
    than ``keep`` that the two end partitions hold, and the dead letters older than ``keep``; then
    rebuild the indexes of a day that is over.

    A partition change that did not get its lock in time is left for the next pass (the deletes still
    run); the error is raised after them."""
    created: tuple[str, ...] = ()
    dropped: list[str] = []
    estimated = 0
    missed: asyncpg.LockNotAvailableError | None = None
    try:
        created = await ensure_partitions(pool, ahead=ahead)
    except asyncpg.LockNotAvailableError as e:
        missed = e
    try:
        for r in await _locked(pool, "SELECT * FROM positions_drop_partitions($1::interval)", keep):
            dropped.append(r["name"])
            estimated += r["rows_estimate"]
    except asyncpg.LockNotAvailableError as e:
        missed = e
    deleted = 0
    for end in ("positions_before", "positions_after"):
        deleted += await _purge(
            pool,
            f"DELETE FROM {end} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {end}"
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
    if missed is not None:
        raise missed
    rebuilt = await rebuild_closed_day(pool)
    return Purged(estimated + deleted, dead, tuple(dropped), created, rebuilt)


REBUILT = "indexes rebuilt after the day closed"  # the partition's comment once done
_REBUILD_LOCK = 0x706F_7369_7265_6278  # advisory lock: one worker rebuilds at a time


async def rebuild_closed_day(pool: asyncpg.Pool | asyncpg.Connection) -> str | None:
    """Rebuild the indexes of the newest day partition that is over (before today, UTC) and not yet
    rebuilt; returns its name, or None when there is none (or another worker is rebuilding one)."""
    async with _connection(pool) as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _REBUILD_LOCK):
            return None
        try:
            name: str | None = await conn.fetchval(
                "SELECT c.relname FROM positions_days() p JOIN pg_class c ON c.oid = p.rel"
                " WHERE p.day < (now() AT TIME ZONE 'UTC')::date"
                " AND obj_description(c.oid, 'pg_class') IS DISTINCT FROM $1 ORDER BY p.day DESC LIMIT 1",
                REBUILT,
            )
            if name is None:
                return None
            # a rebuild cut short (the process stopped) leaves its new index invalid: dropped first
            for r in await conn.fetch(
                "SELECT indexrelid::regclass::text AS ix FROM pg_index WHERE indrelid = $1::regclass"
                " AND NOT indisvalid",
                name,
            ):
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {r['ix']}")
            await conn.execute(f"REINDEX TABLE CONCURRENTLY {name}")
            await conn.execute(f"COMMENT ON TABLE {name} IS '{REBUILT}'")
            return name
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _REBUILD_LOCK)


async def _locked(pool: asyncpg.Pool | asyncpg.Connection, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run a partition change in its own transaction, waiting at most LOCK_TIMEOUT for each lock."""
    async with _connection(pool) as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows


@asynccontextmanager
async def _connection(pool: asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(pool, asyncpg.Pool):
        async with pool.acquire() as conn:
            yield conn
    else:
        yield pool


async def _purge(pool: asyncpg.Pool | asyncpg.Connection, sql: str, keep: timedelta, batch: int) -> int:
    total = 0
    while True:
        status = await pool.execute(sql, keep, batch)
        n = int(status.split()[-1])
        total += n
        if n < batch:
            return total
