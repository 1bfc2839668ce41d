"""Benchmark: what the school live map's feed (tracker/api/live_feed.py) costs the event loop per
committed batch: with no school watched (the pipeline must pay nothing per fix), with one and with ten
watched, and the rebuild of its children map that each registry view swap causes while some are.

No PostgreSQL, no broker: a registry of ``--children`` children at ``--schools`` schools (an id's
school is the id modulo the schools), batches of ``--batch`` fixes of children picked at random, the
feed's ``committed`` called as the batch loop calls it. Run: ``python bench/school_live_feed.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from tracker.api.live_feed import SchoolLiveFeed
from tracker.stages.records import BatchOutcome
from tracker.store.registry_rows import ChildRow


def outcome(children: int, size: int) -> BatchOutcome:
    now = datetime.now(UTC)
    fixes = [
        ("tag", now, random.randrange(children), 127.0, 37.5, 8.0, 80, None, False, now, 1.0)
        for _ in range(size)
    ]
    return BatchOutcome(positions=fixes)  # type: ignore[arg-type]


async def run(args: Any) -> None:
    rows = SimpleNamespace(
        children={c: ChildRow(c, c % args.schools, None, f"k{c}") for c in range(args.children)}
    )
    view = SimpleNamespace(rows=rows)
    feed = SchoolLiveFeed(pool=None, view=lambda: view, state_of={}.get, min_interval_s=3.0)  # type: ignore[arg-type]
    batches = [outcome(args.children, args.batch) for _ in range(args.batches)]
    for watched in (0, 1, 10):
        subs = [feed.subscribe(s) for s in range(watched)]
        feed.committed(batches[0])  # the children map, built once for the watched schools
        t = time.perf_counter()
        for b in batches:
            feed.committed(b)
        per = (time.perf_counter() - t) / len(batches)
        t = time.perf_counter()
        feed._stale = True  # as a registry view swap does
        feed._children()
        rebuild = time.perf_counter() - t
        print(
            f"{watched:2d} schools watched: {per * 1e6:7.1f} µs per batch of {args.batch} fixes"
            f" ({per / args.batch * 1e9:.0f} ns per fix)"
            + (f"; children map rebuilt in {rebuild * 1e3:.1f} ms" if watched else "")
        )
        for s in subs:
            feed.unsubscribe(s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--children", type=int, default=100_000)
    p.add_argument("--schools", type=int, default=300)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--batches", type=int, default=200)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
