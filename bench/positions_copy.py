"""Benchmark: how fast PostgreSQL stores decided fixes, the way a batch's commit does, and what a busy
worker thread in the same process costs each commit.

A scratch database gets the tracker's schema (its migrations) and ``--rows`` stored fixes (20,000 tags,
as the e2e bench drives); then batches of ``--batch`` fixes of random tags are stored with
``store_positions`` (a COPY into ``positions`` and its indexes, then the commit), first alone, then
while another thread of this process runs Python without pause (as the tracker decides the next batch
while this one commits: each reply from PostgreSQL waits for the interpreter). Prints the medians, the
rows per second of the first (a ceiling for one process storing fixes one row each) and the ratio of
the two, and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from bench.e2e import _pg_answers, _with_database  # noqa: E402
from tracker.embedded import EmbeddedPostgres  # noqa: E402
from tracker.store.batches import PositionRecord, store_positions  # noqa: E402
from tracker.store.db import apply_migrations, connect  # noqa: E402

TAGS = 20_000


def _batch(n: int, seq: int) -> list[PositionRecord]:
    now = time.time()
    out: list[PositionRecord] = []
    for i in range(n):
        child = random.randrange(TAGS)
        at = datetime.fromtimestamp(now + random.random(), UTC)
        out.append((f"tag-{child:06d}", at, child, 127.0, 37.5, 10.0, 80, seq + i, False, at, 5.0))
    return out


async def _commits(conn: asyncpg.Connection, batch: int, batches: int) -> list[float]:
    seconds = []
    for k in range(batches):
        records = _batch(batch, k * batch)
        t = time.perf_counter()
        async with conn.transaction():
            await store_positions(conn, [], new=records)
        seconds.append(time.perf_counter() - t)
    return seconds


def _busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


async def run(admin_url: str, rows: int, batch: int, batches: int) -> dict[str, object]:
    if not await _pg_answers(admin_url):
        print(f"no PostgreSQL at {admin_url}: starting an embedded one", flush=True)
        with tempfile.TemporaryDirectory(prefix="positions-copy-") as workdir:
            pg = EmbeddedPostgres(Path(workdir) / "postgres")
            try:
                return await run(pg.start(), rows, batch, batches)
            finally:
                pg.stop()
    name = f"positions_copy_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await connect(_with_database(admin_url, name))
        try:
            await apply_migrations(conn)
            await conn.execute(
                "INSERT INTO positions (tag_id, ts, child_id, lon, lat, acc, batt, seq, received_at)"
                " SELECT 'tag-' || lpad((g % $2)::text, 6, '0'),"
                " now() - interval '1 day' + g * interval '1 ms', g % $2, 127, 37.5, 10, 80, g, now()"
                " FROM generate_series(1, $1) g",
                rows,
                TAGS,
            )
            await conn.execute("VACUUM ANALYZE positions")
            await _commits(conn, batch, 3)  # warm up
            alone = await _commits(conn, batch, batches)
            stop = threading.Event()
            thread = threading.Thread(target=_busy, args=(stop,))
            thread.start()
            try:
                beside = await _commits(conn, batch, batches)
            finally:
                stop.set()
                thread.join()
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()
    alone_s, beside_s = statistics.median(alone), statistics.median(beside)
    return {
        "bench": "positions_copy",
        "rows_in_table": rows,
        "batch": batch,
        "batches": batches,
        "commit_ms_alone": round(alone_s * 1000, 1),
        "commit_ms_beside_a_busy_thread": round(beside_s * 1000, 1),
        "rows_per_s_alone": round(batch / alone_s),
        "busy_thread_ratio": round(beside_s / alone_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=2_000_000, help="fixes stored before timing")
    parser.add_argument("--batch", type=int, default=2_000, help="fixes per commit (the batch loop's most)")
    parser.add_argument("--batches", type=int, default=30, help="commits timed, each way")
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 10 commits each way")
    args = parser.parse_args(argv)
    rows, batches = (200_000, 10) if args.quick else (args.rows, args.batches)
    out = asyncio.run(run(args.database_url, rows, args.batch, batches))
    print(
        f"{args.batch:,} fixes per commit into a table of {rows:,}: median {out['commit_ms_alone']} ms alone"
        f" ({out['rows_per_s_alone']:,} rows/s), {out['commit_ms_beside_a_busy_thread']} ms beside a busy"
        f" thread ({out['busy_thread_ratio']} ×)"
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
