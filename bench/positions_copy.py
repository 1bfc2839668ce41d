"""Benchmark: what a stored fix costs PostgreSQL: bytes on disk, rows per second per connection with
1, 2 and 4 connections committing at once, and the reads of the stored fixes; before and after
migration 0014 (positions partitioned by day), both measured in the same run.

Each layout gets a scratch database with the tracker's migrations up to it:

- ``before``: migrations up to 0013 (one table, primary key (tag_id, ts), an index (child_id, ts DESC),
  a BRIN index on ts);
- ``after``: up to 0014 (partitioned by UTC day, columns in padding-free order, no BRIN index).

Then, for each: ``--rows`` fixes of ``--tags`` tags, one every 15 s each, as they arrive (round robin
over the tags, so each index is written all over as in production), VACUUM ANALYZE, and the bytes per
fix of the table and its indexes (``pg_total_relation_size`` over every partition) and of WAL (the
INSERT's own, from EXPLAIN (ANALYZE, WAL)); then 1, 2 and 4
processes, one connection each, storing batches of ``--batch`` fixes of their own tags with
``store_positions`` (a COPY, then the commit) for ``--seconds`` each, while the lock waits of their
backends are sampled; then a sparse month of fixes (one fix per tag and day for 30 days) and the
readers' two shapes: the last fix of 100 children (the live view, the children list, GET .../position:
ORDER BY ts DESC LIMIT 1 per child) and one child's hour (the track). The partitioned layout's reads are
measured again with a DEFAULT partition in place of positions_after, the layout migration 0014 did not
choose. For the partitioned layout also: the WAL per fix right after a CHECKPOINT with wal_compression
off and lz4 (needs a superuser), and the bytes per fix once the indexes are rebuilt (what the retention
loop does to a day that is over). And the commit of the partitioned layout alone and beside a busy
thread of the same process (as the tracker decides the next batch while this one commits: each reply
from PostgreSQL waits for the interpreter).

A row per tag and minute (each column an array) is measured too, as the other way to make a fix
cheaper: its bytes per fix (the same fixes, grouped), and its rows per second when fixes arrive one by
one (each fix appends to its minute's row: an UPDATE, a new row version, per fix).

Prints the figures and, as its last line, one JSON object. Figures from a shared 2-core machine are
noisy: compare the layouts of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from bench.e2e import _pg_answers, _with_database  # noqa: E402
from tracker.embedded import EmbeddedPostgres  # noqa: E402
from tracker.store.batches import PositionRecord, store_positions  # noqa: E402
from tracker.store.db import connect, migration_files  # noqa: E402
from tracker.store.retention import ensure_partitions  # noqa: E402

LAYOUTS = {"before": "0013", "after": "0014"}  # the last migration each layout has
CONNECTIONS = (1, 2, 4)
READ_CHILDREN = 100  # children per "last fix" read: a page of the live view
MONTH_DAYS = 30

_FILL = (
    "INSERT INTO positions (tag_id, ts, child_id, lon, lat, acc, batt, seq, received_at, route_distance_m)"
    " SELECT 'tag-' || lpad((g % $2)::text, 6, '0'), $3::timestamptz + (g / $2) * interval '15 s'"
    " + (g % $2) * interval '1 ms', g % $2, 127 + random() / 10, 37.5 + random() / 10, 10, 80, g,"
    " $3::timestamptz + (g / $2) * interval '15 s', 5.0 FROM generate_series(0, $1 - 1) g"
)
_SIZE = (  # every partition, or the table itself when not partitioned
    "WITH leaves AS (SELECT relid FROM pg_partition_tree('positions') WHERE isleaf"
    " UNION SELECT 'positions'::regclass WHERE NOT EXISTS (SELECT FROM pg_partition_tree('positions')))"
    " SELECT count(*) AS partitions, sum(pg_relation_size(relid))::int8 AS heap,"
    " sum(pg_indexes_size(relid))::int8 AS indexes, sum(pg_total_relation_size(relid))::int8 AS total"
    " FROM leaves"
)
_LAST_FIX = (
    "SELECT c, p.ts, p.lon, p.lat FROM unnest($1::bigint[]) c LEFT JOIN LATERAL"
    " (SELECT q.ts, q.lon, q.lat FROM positions q WHERE q.child_id = c ORDER BY q.ts DESC LIMIT 1) p ON true"
)
_TRACK = "SELECT ts, lon, lat FROM positions WHERE child_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, tag_id"


def _records(
    first_tag: int, tags: int, n: int, counter: int, base_us: int, salt: int
) -> list[PositionRecord]:
    """Fixes ``counter`` to ``counter + n`` of the tags [first_tag, first_tag + tags) in turn, each tag
    one every 15 s from ``base_us`` (µs since the epoch, a multiple of 10); ``salt`` (0-9) keeps the
    fixes of different calls apart."""
    out: list[PositionRecord] = []
    for i in range(counter, counter + n):
        child = first_tag + i % tags
        at = _EPOCH + timedelta(microseconds=base_us + (i // tags) * 15_000_000 + (i % tags) * 10 + salt)
        out.append((f"tag-{child:06d}", at, child, 127.0, 37.5, 10.0, 80, i, False, at, 5.0))
    return out


def _base_us() -> int:
    return int(time.time() * 100_000) * 10


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def _migrated(admin_url: str, up_to: str) -> str:
    """A scratch database with the migrations up to ``up_to``; returns its URL."""
    name = f"positions_copy_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        for version, sql in migration_files():
            if version[:4] <= up_to:
                async with conn.transaction():
                    await conn.execute(sql)
    finally:
        await conn.close()
    return url


async def _drop(admin_url: str, url: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[-1]}" WITH (FORCE)')
    finally:
        await admin.close()


async def _median_s(run: Callable[[], Awaitable[object]], times: int) -> float:
    await run()  # warm: plans cached, pages read
    seconds = []
    for _ in range(times):
        t = time.perf_counter()
        await run()
        seconds.append(time.perf_counter() - t)
    return statistics.median(seconds)


async def _wal_bytes(conn: asyncpg.Connection, sql: str, *args: object) -> int:
    """Run a statement; the WAL it wrote (EXPLAIN's count: this statement's alone, whatever else the
    server is doing)."""
    plan = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, WAL, TIMING OFF, FORMAT JSON) " + sql, *args))
    return int(plan[0]["Plan"]["WAL Bytes"])


async def _wal_compression(
    conn: asyncpg.Connection, args: argparse.Namespace, first: datetime
) -> dict[str, float]:
    """WAL per fix of a quarter of ``--rows`` more fixes (hours before the others, into the same
    indexes) right after a CHECKPOINT (each page's first change after one is written whole), with
    wal_compression off and lz4."""
    out: dict[str, float] = {}
    n = args.rows // 4
    for k, mode in enumerate(("off", "lz4"), start=1):
        try:
            await conn.execute(f"SET wal_compression = {mode}")
            await conn.execute("CHECKPOINT")
        except asyncpg.PostgresError as e:  # not a superuser, or a server built without lz4
            print(f"wal_compression = {mode}: {e}", flush=True)
            continue
        out[mode] = round(await _wal_bytes(conn, _FILL, n, args.tags, first - timedelta(hours=2 * k)) / n, 1)
    await conn.execute("RESET wal_compression")
    return out


# --- writers: one process, one connection each ----------------------------------------------------------
def _writer(
    url: str, first_tag: int, tags: int, batch: int, seconds: float, salt: int, go: Any, out: Any
) -> None:
    out.put(asyncio.run(_write(url, first_tag, tags, batch, seconds, salt, go)))


async def _write(
    url: str, first_tag: int, tags: int, batch: int, seconds: float, salt: int, go: Any
) -> tuple[int, int]:
    conn = await connect(url)
    try:
        base, counter = _base_us(), 0
        for _ in range(2):  # warm up
            records = _records(first_tag, tags, batch, counter, base, salt)
            counter += batch
            async with conn.transaction():
                await store_positions(conn, [], new=records)
        await asyncio.to_thread(go.wait)
        stored = commits = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            records = _records(first_tag, tags, batch, counter, base, salt)
            counter += batch
            async with conn.transaction():
                stored += await store_positions(conn, [], new=records)
            commits += 1
        return stored, commits
    finally:
        await conn.close()


async def _concurrent(url: str, n: int, tags: int, batch: int, seconds: float) -> dict[str, Any]:
    """``n`` processes storing fixes of their own tags at once: rows/s in all and per connection, and
    how often their backends were seen waiting for a lock (a heavyweight lock: a table or a relation
    extension) or for a buffer / WAL lock."""
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    share = tags // n
    procs = [
        ctx.Process(target=_writer, args=(url, k * share, share, batch, seconds, n, go, out))
        for k in range(n)
    ]
    for p in procs:
        p.start()
    watcher = await asyncpg.connect(url)
    try:
        others = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        while await watcher.fetchval(others) < n:  # noqa: ASYNC110 (PostgreSQL offers no event)
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # their warm-up
        go.set()
        t0 = time.perf_counter()
        samples = locks = lwlocks = 0
        events: dict[str, int] = {}
        while time.perf_counter() - t0 < seconds:
            for r in await watcher.fetch(
                "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state = 'active'"
            ):
                samples += 1
                locks += r["wait_event_type"] == "Lock"
                lwlocks += r["wait_event_type"] == "LWLock"
                if r["wait_event_type"] in ("Lock", "LWLock"):
                    events[r["wait_event"]] = events.get(r["wait_event"], 0) + 1
            await asyncio.sleep(0.01)
        results = [await asyncio.to_thread(out.get, True, seconds + 60) for _ in procs]
    finally:
        await watcher.close()
        for p in procs:
            p.join(60)
    stored = sum(r[0] for r in results)
    return {
        "connections": n,
        "rows_per_s": round(stored / seconds),
        "rows_per_s_per_connection": round(stored / seconds / n),
        "lock_wait_share": round(locks / max(samples, 1), 3),
        "lwlock_wait_share": round(lwlocks / max(samples, 1), 3),
        "waits_seen": dict(sorted(events.items(), key=lambda e: -e[1])),
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median rows/s, with every run's rows/s and the wait samples of all."""
    ordered = sorted(runs, key=lambda c: c["rows_per_s"])
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["rows_per_s_runs"] = [c["rows_per_s"] for c in runs]
    waits: dict[str, int] = {}
    for c in runs:
        for event, k in c["waits_seen"].items():
            waits[event] = waits.get(event, 0) + k
    out["waits_seen"] = dict(sorted(waits.items(), key=lambda e: -e[1]))
    out["lock_wait_share"] = round(statistics.mean(c["lock_wait_share"] for c in runs), 3)
    out["lwlock_wait_share"] = round(statistics.mean(c["lwlock_wait_share"] for c in runs), 3)
    return out


# --- reads ------------------------------------------------------------------------------------------------
async def _reads(conn: asyncpg.Connection, tags: int, times: int) -> dict[str, Any]:
    children = random.Random(7).sample(range(tags), READ_CHILDREN)
    hour_end = datetime.now(UTC)
    last = await _median_s(lambda: conn.fetch(_LAST_FIX, children), times)
    track = await _median_s(
        lambda: conn.fetch(_TRACK, children[0], hour_end - timedelta(hours=1), hour_end), times
    )
    plan = "\n".join(
        r[0] for r in await conn.fetch("EXPLAIN " + _LAST_FIX.replace("$1::bigint[]", "'{1,2}'::bigint[]"))
    )
    return {
        "last_fix_100_children_ms": round(last * 1000, 2),
        "track_hour_ms": round(track * 1000, 2),
        "last_fix_plan": "Merge Append"
        if "Merge Append" in plan
        else "Append"
        if "Append" in plan
        else "Index Scan",
    }


async def _month(conn: asyncpg.Connection, tags: int, partitioned: bool) -> None:
    """One fix per tag and day over the last MONTH_DAYS days (into their day partitions)."""
    if partitioned:
        await ensure_partitions(conn, since=(datetime.now(UTC) - timedelta(days=MONTH_DAYS + 1)).date())
    await conn.execute(
        "INSERT INTO positions (tag_id, ts, child_id, lon, lat, acc, received_at)"
        " SELECT 'tag-' || lpad(t::text, 6, '0'), now() - d * interval '1 day' + t * interval '1 ms', t,"
        " 127, 37.5, 10, now() FROM generate_series(0, $1 - 1) t, generate_series(1, $2) d",
        tags,
        MONTH_DAYS,
    )
    await conn.execute("VACUUM ANALYZE positions")


# --- a row per tag and minute -----------------------------------------------------------------------------
_MINUTE_TABLE = (
    "CREATE TABLE minute_rows (tag_id text NOT NULL, minute timestamptz NOT NULL, child_id bigint NOT NULL,"
    " ts timestamptz[] NOT NULL, received_at timestamptz[] NOT NULL, lon float8[] NOT NULL,"
    " lat float8[] NOT NULL, acc real[], route_distance_m real[], batt smallint[], seq bigint[],"
    " sos bool[], PRIMARY KEY (tag_id, minute))"
)
_MINUTE_APPEND = (
    "INSERT INTO minute_rows AS m SELECT t, date_trunc('minute', ts), c, ARRAY[ts], ARRAY[r], ARRAY[x],"
    " ARRAY[y], ARRAY[a], ARRAY[d], ARRAY[b], ARRAY[s], ARRAY[o]"
    " FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::float8[], $5::float8[], $6::real[],"
    " $7::smallint[], $8::bigint[], $9::bool[], $10::timestamptz[], $11::real[])"
    " AS f(t, ts, c, x, y, a, b, s, o, r, d)"
    " ON CONFLICT (tag_id, minute) DO UPDATE SET ts = m.ts || EXCLUDED.ts,"
    " received_at = m.received_at || EXCLUDED.received_at, lon = m.lon || EXCLUDED.lon,"
    " lat = m.lat || EXCLUDED.lat, acc = m.acc || EXCLUDED.acc,"
    " route_distance_m = m.route_distance_m || EXCLUDED.route_distance_m, batt = m.batt || EXCLUDED.batt,"
    " seq = m.seq || EXCLUDED.seq, sos = m.sos || EXCLUDED.sos"
)


async def _minute_rows(
    conn: asyncpg.Connection, rows: int, tags: int, batch: int, seconds: float
) -> dict[str, Any]:
    """The same fixes as ``positions`` holds, a row per tag and minute: bytes per fix; then fixes
    appended one batch at a time to their minute's row, rows/s on one connection."""
    await conn.execute(_MINUTE_TABLE)
    await conn.execute("CREATE INDEX ON minute_rows (child_id, minute DESC)")
    await conn.execute(
        "INSERT INTO minute_rows SELECT tag_id, date_trunc('minute', ts), min(child_id),"
        " array_agg(ts ORDER BY ts), array_agg(received_at ORDER BY ts), array_agg(lon ORDER BY ts),"
        " array_agg(lat ORDER BY ts),"
        " array_agg(acc ORDER BY ts), array_agg(route_distance_m ORDER BY ts), array_agg(batt ORDER BY ts),"
        " array_agg(seq ORDER BY ts), array_agg(sos ORDER BY ts)"
        " FROM (SELECT * FROM positions ORDER BY ts LIMIT $1) p GROUP BY 1, 2 ORDER BY 2, 1",
        rows,
    )
    await conn.execute("VACUUM ANALYZE minute_rows")
    size = await conn.fetchval("SELECT pg_total_relation_size('minute_rows')")
    # appends: every tag's fixes four a minute, arriving one batch at a time
    base, counter, stored, wal = _base_us(), 0, 0, 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        records = _records(0, tags, batch, counter, base, 0)
        counter += batch
        columns = [list(c) for c in zip(*records, strict=True)]
        async with conn.transaction():
            wal += await _wal_bytes(conn, _MINUTE_APPEND, *columns)
        stored += batch
    return {
        "bytes_per_fix": round(size / rows, 1),
        "rows_per_s_one_connection": round(stored / (time.perf_counter() - t0)),
        "wal_bytes_per_fix": round(wal / stored, 1),
    }


# --- the commit beside a busy thread -----------------------------------------------------------------------
def _busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


async def _commit_ms(conn: asyncpg.Connection, batch: int, batches: int, tags: int) -> tuple[float, float]:
    base, counter = _base_us(), 0

    async def commits() -> float:
        nonlocal counter
        seconds = []
        for _ in range(batches):
            records = _records(0, tags, batch, counter, base, 9)
            counter += batch
            t = time.perf_counter()
            async with conn.transaction():
                await store_positions(conn, [], new=records)
            seconds.append(time.perf_counter() - t)
        return statistics.median(seconds)

    alone = await commits()
    stop = threading.Event()
    thread = threading.Thread(target=_busy, args=(stop,))
    thread.start()
    try:
        beside = await commits()
    finally:
        stop.set()
        thread.join()
    return alone, beside


# --- one layout ---------------------------------------------------------------------------------------------
async def _fill(url: str, name: str, args: argparse.Namespace) -> tuple[dict[str, Any], datetime]:
    """The fill, its bytes and WAL per fix; the partitioned layout's commit alone and beside a busy
    thread. Returns the figures and the time of the first fix."""
    out: dict[str, Any] = {}
    conn = await connect(url)
    try:
        if name == "after":  # the fill begins yesterday when run just after midnight
            await ensure_partitions(conn, since=(datetime.now(UTC) - timedelta(days=1)).date())
        first = datetime.now(UTC) - timedelta(seconds=15 * args.rows / args.tags)
        wal = await _wal_bytes(conn, _FILL, args.rows, args.tags, first)
        await conn.execute("VACUUM ANALYZE positions")
        size = await conn.fetchrow(_SIZE)
        out["bytes_per_fix"] = round(size["total"] / args.rows, 1)
        out["heap_bytes_per_fix"] = round(size["heap"] / args.rows, 1)
        out["index_bytes_per_fix"] = round(size["indexes"] / args.rows, 1)
        out["wal_bytes_per_fix"] = round(wal / args.rows, 1)
        print(
            f"{name}: {out['bytes_per_fix']} bytes per fix ({out['heap_bytes_per_fix']} table,"
            f" {out['index_bytes_per_fix']} indexes) over {args.rows:,} fixes of {args.tags:,} tags;"
            f" {out['wal_bytes_per_fix']} bytes of WAL per fix",
            flush=True,
        )
        if name == "after":
            alone, beside = await _commit_ms(conn, args.batch, args.batches, args.tags)
            out["commit_ms_alone"] = round(alone * 1000, 1)
            out["commit_ms_beside_a_busy_thread"] = round(beside * 1000, 1)
            out["busy_thread_ratio"] = round(beside / alone, 2)
            print(
                f"{name}: {args.batch:,} fixes per commit: median {out['commit_ms_alone']} ms alone,"
                f" {out['commit_ms_beside_a_busy_thread']} ms beside a busy thread"
                f" ({out['busy_thread_ratio']} ×)",
                flush=True,
            )
    finally:
        await conn.close()
    return out, first


async def _after_writes(
    url: str, name: str, args: argparse.Namespace, out: dict[str, Any], first: datetime
) -> None:
    """The minute rows, WAL after a checkpoint, the indexes rebuilt (partitioned layout); the month
    and its reads."""
    conn = await connect(url)
    try:
        if args.minute_rows and name == "after":
            out["minute_rows"] = m = await _minute_rows(conn, args.rows, args.tags, args.batch, args.seconds)
            print(
                f"a row per tag and minute: {m['bytes_per_fix']} bytes per fix,"
                f" {m['rows_per_s_one_connection']:,} rows/s appended on one connection,"
                f" {m['wal_bytes_per_fix']} bytes of WAL per fix appended",
                flush=True,
            )
        if name == "after":
            out["wal_after_a_checkpoint"] = await _wal_compression(conn, args, first)
            print(
                f"{name}: WAL bytes per fix right after a checkpoint: {out['wal_after_a_checkpoint']}",
                flush=True,
            )
            # a closed day's indexes rebuilt: packed full instead of split as they grew
            for leaf in await conn.fetch("SELECT relid FROM pg_partition_tree('positions') WHERE isleaf"):
                await conn.execute(f"REINDEX TABLE {leaf['relid']}")
            size = await conn.fetchrow(_SIZE)
            n = await conn.fetchval("SELECT count(*) FROM positions")
            out["bytes_per_fix_indexes_rebuilt"] = round(size["total"] / n, 1)
            out["index_bytes_per_fix_rebuilt"] = round(size["indexes"] / n, 1)
            print(
                f"{name}: {out['bytes_per_fix_indexes_rebuilt']} bytes per fix once the indexes are"
                f" rebuilt ({out['index_bytes_per_fix_rebuilt']} indexes)",
                flush=True,
            )
        await _month(conn, args.tags, name == "after")
        out["partitions"] = (await conn.fetchrow(_SIZE))["partitions"]
        out["reads"] = await _reads(conn, args.tags, args.reads)
        print(f"{name}: reads over {out['partitions']} partition(s): {out['reads']}", flush=True)
        if name == "after":
            await conn.execute("ALTER TABLE positions DETACH PARTITION positions_after")
            await conn.execute("CREATE TABLE positions_default PARTITION OF positions DEFAULT")
            await conn.execute("ANALYZE positions")
            out["reads_with_a_default_partition"] = await _reads(conn, args.tags, args.reads)
            print(
                f"{name}, a DEFAULT partition instead: {out['reads_with_a_default_partition']}",
                flush=True,
            )
    finally:
        await conn.close()


async def run(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    if not await _pg_answers(admin_url):
        print(f"no PostgreSQL at {admin_url}: starting an embedded one", flush=True)
        with tempfile.TemporaryDirectory(prefix="positions-copy-") as workdir:
            pg = EmbeddedPostgres(Path(workdir) / "postgres")
            try:
                return await run(pg.start(), args)
            finally:
                pg.stop()
    urls = {name: await _migrated(admin_url, up_to) for name, up_to in LAYOUTS.items()}
    try:
        outs: dict[str, dict[str, Any]] = {}
        firsts: dict[str, datetime] = {}
        for name, url in urls.items():
            outs[name], firsts[name] = await _fill(url, name, args)
        # the layouts in turn, ABBA..., so that a machine whose load drifts weighs on both alike
        for n in CONNECTIONS:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
            for r in range(args.rounds):
                for name in list(urls)[:: 1 if r % 2 == 0 else -1]:
                    runs[name].append(await _concurrent(urls[name], n, args.tags, args.batch, args.seconds))
            for name in urls:
                c = _median_run(runs[name])
                outs[name].setdefault("concurrent", []).append(c)
                print(
                    f"{name}: {n} connection(s): {c['rows_per_s']:,} rows/s (median of {args.rounds}:"
                    f" {c['rows_per_s_runs']}), {c['rows_per_s_per_connection']:,} per connection;"
                    f" backends waiting on a lock {c['lock_wait_share']:.1%} of samples, on an LWLock"
                    f" {c['lwlock_wait_share']:.1%} ({c['waits_seen']})",
                    flush=True,
                )
        for name, url in urls.items():
            await _after_writes(url, name, args, outs[name], firsts[name])
    finally:
        for url in urls.values():
            await _drop(admin_url, url)
    before, after = outs["before"], outs["after"]
    ratio = {
        "bytes_per_fix": round(after["bytes_per_fix"] / before["bytes_per_fix"], 3),
        **{
            f"rows_per_s_{a['connections']}_connections": round(a["rows_per_s"] / b["rows_per_s"], 2)
            for a, b in zip(after["concurrent"], before["concurrent"], strict=True)
        },
        "last_fix_100_children": round(
            after["reads"]["last_fix_100_children_ms"] / before["reads"]["last_fix_100_children_ms"], 2
        ),
    }
    return {
        "bench": "positions_copy",
        "rows": args.rows,
        "tags": args.tags,
        "batch": args.batch,
        "seconds": args.seconds,
        "before": before,
        "after": after,
        "after_over_before": ratio,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=2_000_000, help="fixes stored before measuring bytes")
    parser.add_argument("--tags", type=int, default=20_000, help="tags (children) the fixes are of")
    parser.add_argument("--batch", type=int, default=2_000, help="fixes per commit (the batch loop's most)")
    parser.add_argument(
        "--batches", type=int, default=30, help="commits timed alone and beside a busy thread"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each concurrent-commit measurement")
    parser.add_argument("--reads", type=int, default=30, help="times each read is timed")
    parser.add_argument("--rounds", type=int, default=2, help="concurrent runs of each layout, taken in turn")
    parser.add_argument("--no-minute-rows", dest="minute_rows", action="store_false", help="skip that layout")
    parser.add_argument("--quick", action="store_true", help="200,000 fixes, 3 s per measurement")
    args = parser.parse_args(argv)
    if args.batch > args.tags:
        parser.error("--batch must not exceed --tags (a batch holds one fix per tag)")
    if args.quick:
        args.rows, args.seconds, args.batches, args.reads, args.rounds = 200_000, 3.0, 10, 10, 1
    out = asyncio.run(run(args.database_url, args))
    r = out["after_over_before"]
    print(
        f"after / before: bytes per fix {r['bytes_per_fix']} ×; rows/s with 1, 2, 4 connections"
        f" {r['rows_per_s_1_connections']} ×, {r['rows_per_s_2_connections']} ×,"
        f" {r['rows_per_s_4_connections']} ×;"
        f" last fix of {READ_CHILDREN} children {r['last_fix_100_children']} ×"
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
