"""positions partitioned by UTC day (migration 0014, tracker.store.retention): every fix finds a
partition whatever its timestamp, a redelivered fix collides in whichever partition holds it, the days
ahead are made (and the fixes the end partitions held moved into them), retention drops whole days,
a partition change that cannot have its lock gives up instead of holding the commits, and commits
of different children on several connections do not wait for each other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from tracker.store.batches import (
    POSITION_COLUMNS,
    PositionRecord,
    PositionRows,
    StoredBefore,
    store_positions,
)
from tracker.store.db import create_pool
from tracker.store.retention import AHEAD_DAYS, ensure_partitions, purge_old_positions

NOW = datetime.now(UTC)
TODAY = NOW.date()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    try:
        yield pool
    finally:
        await pool.close()


def record(tag: str, at: datetime, child: int = 1, acc: float = 8.0) -> PositionRecord:
    return (tag, at, child, 127.0, 37.5, acc, 80, None, False, at, None)


async def partitions(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    """(name, bounds) of every partition, oldest first."""
    rows = await pool.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'positions'::regclass"
    )
    order = {"positions_before": "", "positions_after": "~"}
    return sorted(((r["relname"], r["bound"]) for r in rows), key=lambda p: order.get(p[0], p[0]))


def day_name(d: date) -> str:
    return f"positions_{d:%Y%m%d}"


def start(d: date) -> str:
    return f"'{d:%Y-%m-%d} 00:00:00+00'"


async def where(pool: asyncpg.Pool, tag: str) -> list[str]:
    """The partitions holding the tag's fixes, oldest fix first."""
    return [
        r["p"]
        for r in await pool.fetch(
            "SELECT tableoid::regclass::text AS p FROM positions WHERE tag_id = $1 ORDER BY ts", tag
        )
    ]


async def test_the_migration_makes_today_and_the_days_ahead_between_the_two_end_partitions(
    pool: asyncpg.Pool,
) -> None:
    days = [TODAY + timedelta(days=k) for k in range(AHEAD_DAYS + 1)]
    assert await partitions(pool) == [
        ("positions_before", f"FOR VALUES FROM (MINVALUE) TO ({start(days[0])})"),
        *[(day_name(d), f"FOR VALUES FROM ({start(d)}) TO ({start(d + timedelta(days=1))})") for d in days],
        ("positions_after", f"FOR VALUES FROM ({start(days[-1] + timedelta(days=1))}) TO (MAXVALUE)"),
    ]
    assert await ensure_partitions(pool) == ()  # all there: nothing made, no lock taken


# a fix's time -> the partition that holds it
UNUSUAL = [
    ("now", NOW, day_name(TODAY)),
    ("a watch whose clock reset to 1980", datetime(1980, 1, 6, tzinfo=UTC), "positions_before"),
    ("buffered offline for 40 days", NOW - timedelta(days=40), "positions_before"),
    ("a year ahead", NOW + timedelta(days=365), "positions_after"),
    (
        "the last instant of the last day",
        datetime.combine(TODAY + timedelta(days=AHEAD_DAYS + 1), datetime.min.time(), UTC)
        - timedelta(microseconds=1),
        day_name(TODAY + timedelta(days=AHEAD_DAYS)),
    ),
]


@pytest.mark.parametrize(("case", "at", "partition"), UNUSUAL, ids=[c[0] for c in UNUSUAL])
async def test_a_fix_with_any_timestamp_is_stored_once_and_a_redelivery_collides(
    pool: asyncpg.Pool, case: str, at: datetime, partition: str
) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            assert await store_positions(conn, [], new=[record("t", at)]) == 1
        with pytest.raises(StoredBefore):  # the decided path: COPY collides on (tag_id, ts)
            async with conn.transaction():
                await store_positions(conn, [], new=[record("t", at, acc=9.0)])
        async with conn.transaction():  # the careful path: skipped
            assert await store_positions(conn, [record("t", at, acc=9.0)]) == 0
    assert await where(pool, "t") == [partition]
    assert await pool.fetchval("SELECT acc FROM positions WHERE tag_id = 't'") == 8.0


async def test_days_made_ahead_and_behind_take_the_fixes_the_end_partitions_held(pool: asyncpg.Pool) -> None:
    later = NOW + timedelta(days=10)
    earlier = NOW - timedelta(days=20)
    async with pool.acquire() as conn, conn.transaction():
        await store_positions(conn, [], new=[record("t", earlier), record("t", NOW), record("t", later)])
    assert await where(pool, "t") == ["positions_before", day_name(TODAY), "positions_after"]

    made = await ensure_partitions(pool, ahead=12, since=TODAY - timedelta(days=25))
    assert set(made) == {
        day_name(TODAY + timedelta(days=k)) for k in range(-25, 13) if not 0 <= k <= AHEAD_DAYS
    }
    assert await where(pool, "t") == [day_name(earlier.date()), day_name(TODAY), day_name(later.date())]
    names = [n for n, _ in await partitions(pool)]
    assert names == [
        "positions_before",
        *[day_name(TODAY + timedelta(days=k)) for k in range(-25, 13)],
        "positions_after",
    ]
    # the moved fixes still collide with a redelivery
    async with pool.acquire() as conn:
        for at in (earlier, later):
            with pytest.raises(StoredBefore):
                async with conn.transaction():
                    await store_positions(conn, [], new=[record("t", at)])
    assert await pool.fetchval("SELECT count(*) FROM positions") == 3


async def test_retention_drops_the_days_older_than_the_period_and_the_fixes_before_them(
    pool: asyncpg.Pool,
) -> None:
    await ensure_partitions(pool, since=TODAY - timedelta(days=40))
    ages = {"35 days": 35, "31 days": 31, "29 days": 29, "1 day": 1}
    async with pool.acquire() as conn, conn.transaction():
        await store_positions(
            conn,
            [],
            new=[record(tag, NOW - timedelta(days=d)) for tag, d in ages.items()]
            + [record("1980", datetime(1980, 1, 6, tzinfo=UTC))],
        )
    await pool.execute(
        "INSERT INTO dead_letters (received_at, topic, payload, reason) VALUES"
        " (now() - interval '40 days', 't', '\\x7b7d', 'malformed'), (now(), 't', '\\x7b7d', 'malformed')"
    )

    purged = await purge_old_positions(pool, keep=timedelta(days=30))
    # a day goes once all of it is older than 30 days: the day of 31 days ago, not the one of 29
    cutoff = (NOW - timedelta(days=30)).date()
    assert purged.dropped == (
        *[
            day_name(TODAY - timedelta(days=k))
            for k in range(40, 0, -1)
            if TODAY - timedelta(days=k) < cutoff
        ],
        "positions_before",
    )
    assert purged.positions == 3 and purged.dead_letters == 1 and purged.created == ()
    assert purged.rebuilt == day_name(TODAY - timedelta(days=1))  # the newest day that is over
    assert set(await pool.fetchval("SELECT array_agg(tag_id) FROM positions")) == {"29 days", "1 day"}
    # positions_before is there again, below the oldest day kept: a fix older than that still has a home
    assert (await partitions(pool))[0] == (
        "positions_before",
        f"FOR VALUES FROM (MINVALUE) TO ({start(cutoff)})",
    )
    async with pool.acquire() as conn, conn.transaction():
        await store_positions(conn, [], new=[record("late", NOW - timedelta(days=33))])
    assert await where(pool, "late") == ["positions_before"]
    # ... and the next pass deletes it, row by row: older than the period
    again = await purge_old_positions(pool, keep=timedelta(days=30))
    assert (again.positions, again.dropped, again.dead_letters) == (1, (), 0)
    assert again.rebuilt == day_name(TODAY - timedelta(days=2))  # one day a pass, newest first
    assert await pool.fetchval("SELECT count(*) FROM positions") == 2


async def test_a_day_that_is_over_gets_its_indexes_rebuilt_once_and_they_still_catch_a_redelivery(
    pool: asyncpg.Pool,
) -> None:
    yesterday = NOW - timedelta(days=1)
    await ensure_partitions(pool, since=yesterday.date())
    async with pool.acquire() as conn, conn.transaction():
        await store_positions(conn, [], new=[record("t", yesterday), record("t", NOW)])
    # a rebuild cut short before: its half-built index is left invalid
    await pool.execute(
        f"CREATE INDEX {day_name(yesterday.date())}_pkey_ccnew ON {day_name(yesterday.date())} (tag_id, ts)"
    )
    await pool.execute(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1::regclass",
        f"{day_name(yesterday.date())}_pkey_ccnew",
    )

    assert (await purge_old_positions(pool, keep=timedelta(days=30))).rebuilt == day_name(yesterday.date())
    assert (await purge_old_positions(pool, keep=timedelta(days=30))).rebuilt is None  # today is not over
    indexes = await pool.fetch(
        "SELECT indexrelid::regclass::text AS name, indisvalid FROM pg_index WHERE indrelid = $1::regclass",
        day_name(yesterday.date()),
    )
    assert len(indexes) == 2 and all(i["indisvalid"] for i in indexes)
    async with pool.acquire() as conn:
        with pytest.raises(StoredBefore):
            async with conn.transaction():
                await store_positions(conn, [], new=[record("t", yesterday)])
        async with conn.transaction():
            assert (
                await store_positions(
                    conn, [record("t", yesterday), record("t", yesterday + timedelta(seconds=15))]
                )
                == 1
            )
    assert await pool.fetchval("SELECT count(*) FROM positions") == 3


async def test_a_partition_change_that_cannot_have_its_lock_gives_up_and_is_made_on_a_later_pass(
    pool: asyncpg.Pool,
) -> None:
    reader = await pool.acquire()
    try:
        tx = reader.transaction()
        await tx.start()
        await reader.fetchval("SELECT count(*) FROM positions")  # a long export holds positions
        with pytest.raises(asyncpg.LockNotAvailableError):
            await ensure_partitions(pool, ahead=AHEAD_DAYS + 2)
        # the commits go on meanwhile (they need no lock the reader holds against them)
        async with pool.acquire() as conn, conn.transaction():
            await store_positions(conn, [], new=[record("t", NOW)])
        await tx.rollback()
    finally:
        await pool.release(reader)
    made = await ensure_partitions(pool, ahead=AHEAD_DAYS + 2)
    assert made == tuple(day_name(TODAY + timedelta(days=k)) for k in (AHEAD_DAYS + 1, AHEAD_DAYS + 2))


@pytest.mark.parametrize(
    "careful", [False, True], ids=["COPY of decided fixes", "INSERT of maybe-stored fixes"]
)
async def test_commits_of_different_children_on_several_connections_do_not_wait_for_each_other(
    pool: asyncpg.Pool, careful: bool
) -> None:
    """Each connection's transaction stays open while the others store and commit: none waits for a
    lock (lock_timeout would end it)."""

    async def store(conn: asyncpg.Connection, records: list[PositionRecord]) -> int:
        return await (store_positions(conn, records) if careful else store_positions(conn, [], new=records))

    conns = [await pool.acquire() for _ in range(4)]
    try:
        txs = [c.transaction() for c in conns]
        for k, (conn, tx) in enumerate(zip(conns, txs, strict=True)):
            await tx.start()
            await conn.execute("SET LOCAL lock_timeout = '5s'")
            # the same instants on every connection: only the tags differ
            assert (
                await store(
                    conn, [record(f"tag-{k}", NOW + timedelta(seconds=s), child=k) for s in range(50)]
                )
                == 50
            )
        for tx in reversed(txs):
            await tx.commit()
    finally:
        for conn in conns:
            await pool.release(conn)
    assert await pool.fetchval("SELECT count(DISTINCT tag_id) FROM positions") == 4


async def test_positions_copied_in_columns_are_stored_as_their_records_are(pool: asyncpg.Pool) -> None:
    """The pipeline COPYs a batch's decided fixes in binary made from columns (PositionRows); the
    rows stored are those asyncpg's copy of the same records stores, and a repeat collides alike."""
    base = NOW.timestamp()
    rows = PositionRows(
        ["cols-a", "cols-b", "cols-é"],
        np.array([base + 0.1234565, base + 1.0000005, base + 2.5]),
        np.array([1, 2, 3], dtype=np.int64),
        np.array([126.97812345678901, 0.0, -0.5]),
        np.array([37.566512345678901, 45.0, 1.25]),
        np.array([8.3, np.nan, 0.1]),
        [80, None, 0],
        [None, 4294967295, 7],
        [False, True, False],
        np.array([base + 0.9, base + 1.5, base + 3.0]),
        np.array([np.nan, 12.34567, 3.3]),
    )
    records = [(f"rec-{r[0][5:]}", *r[1:]) for r in rows]
    async with pool.acquire() as conn, conn.transaction():
        assert await store_positions(conn, [], new=rows) == 3
        assert await store_positions(conn, [], new=records) == 3
    stored = await pool.fetch(
        f"SELECT {', '.join(POSITION_COLUMNS)} FROM positions"
        " WHERE tag_id LIKE 'cols-%' OR tag_id LIKE 'rec-%' ORDER BY ts, tag_id"
    )
    assert len(stored) == 6
    for rec, col in zip(stored[1::2], stored[0::2], strict=True):
        assert col["tag_id"] == "cols-" + rec["tag_id"][4:]
        assert tuple(col)[1:] == tuple(rec)[1:]
    with pytest.raises(StoredBefore):
        async with pool.acquire() as conn, conn.transaction():
            await store_positions(conn, [], new=rows.select(np.array([False, True, False])))
