"""Benchmark: the pipeline's CPU per fix, in one process, without the broker or the event loop's other work.

bench/e2e.py measures the whole tracker (MQTT thread, batch loop, websockets, dispatcher) and its
figure moves with what else the machine runs. This one runs only :class:`tracker.pipeline.Pipeline`
(decode and admit, geofence, monitor, the rows and the commit's transaction on a real PostgreSQL),
batch after batch on the same city and the same simulated fixes as bench/e2e.py's ``--quick`` (20,000
children, 5,000 driven), and reports fixes per CPU-second of this process (every thread: the worker
threads that prepare, the event loop that commits, asyncpg) for single-fix messages and gateway
batches of 100, with the pipeline's stage seconds. The fixes are made and encoded before the clock
starts.

    nice -n 19 .venv/bin/python bench/pipeline_cpu.py
    py-spy record --gil --format raw -o /tmp/p.txt -- .venv/bin/python bench/pipeline_cpu.py

The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.e2e import batch_messages, fresh_database, single_messages, take  # noqa: E402
from bench.load.city import register  # noqa: E402
from simulator import FixGenerator, IncidentConfig, SimConfig  # noqa: E402
from tracker.config import Settings  # noqa: E402
from tracker.ingest.decode import RawMessage  # noqa: E402
from tracker.metrics import Metrics  # noqa: E402
from tracker.pipeline import Pipeline  # noqa: E402
from tracker.registry_view import build_view  # noqa: E402
from tracker.service import settle_heap  # noqa: E402
from tracker.store.alert_rules import load_alert_rules  # noqa: E402
from tracker.store.db import apply_migrations, create_pool  # noqa: E402
from tracker.store.registry_rows import load_registry  # noqa: E402


def _raw(messages: list[tuple[str, bytes]], mid0: int) -> list[RawMessage]:
    now = time.time()
    return [RawMessage(t, p, now, mid=mid0 + i, qos=1) for i, (t, p) in enumerate(messages)]


def _batches(messages: list[RawMessage], most: int, max_bytes: int) -> list[list[RawMessage]]:
    """Batches as the batch loop takes them from a backlog: at most ``most`` messages and
    ``max_bytes`` of payload (TRACKER_BATCH_MAX_MESSAGES, TRACKER_BATCH_MAX_BYTES)."""
    out: list[list[RawMessage]] = [[]]
    size = 0
    for m in messages:
        if out[-1] and (len(out[-1]) >= most or size + len(m.payload) > max_bytes):
            out.append([])
            size = 0
        out[-1].append(m)
        size += len(m.payload)
    return out


async def _phase(
    name: str, pipeline: Pipeline, messages: list[RawMessage], batch: int, metrics: Metrics
) -> dict[str, Any]:
    max_bytes = pipeline._settings.batch_max_bytes
    before = dict(metrics.stage_seconds)
    fixes0 = metrics.fixes_in
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for part in _batches(messages, batch, max_bytes):
        await pipeline.process(part)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    fixes = metrics.fixes_in - fixes0
    stages = {
        k: round(v - before.get(k, 0.0), 3)
        for k, v in sorted(metrics.stage_seconds.items())
        if v - before.get(k, 0.0) > 0.0005
    }
    out = {
        "messages": len(messages),
        "fixes": fixes,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "fixes_per_cpu_s": round(fixes / cpu) if cpu else None,
        "stage_seconds": stages,
    }
    print(
        f"  {name}: {fixes:,} fixes in {cpu:.2f} CPU-s ({out['fixes_per_cpu_s']:,} fixes per CPU-s;"
        f" wall {wall:.2f} s)",
        file=sys.stderr,
    )
    print("    stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()), file=sys.stderr)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cleanup: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-cpu-") as tmp:
        try:
            url, _name = await fresh_database(args.database_url, Path(tmp), cleanup)
            conn = await asyncpg.connect(url)
            await apply_migrations(conn)
            city = await register(
                conn, children=args.children, routes=args.children // 10, driven=args.driven
            )
            await conn.close()
            settings = Settings(  # type: ignore[call-arg]
                database_url=url, mqtt_url="mqtt://unused:1", watch_all_day=True, signal_lost_s=86400
            )
            pool = await create_pool(url)
            cleanup.append(pool.close)
            async with pool.acquire() as c:
                rows = await load_registry(c)
                rules = await load_alert_rules(c)
            view = build_view(rows, default_timezone=settings.default_timezone, all_day=True, rules=rules)
            settle_heap()  # as the service does once its registry view is in
            metrics = Metrics()
            pipeline = Pipeline(pool=pool, view=lambda: view, settings=settings, metrics=metrics)
            incidents = IncidentConfig(
                per_child_per_hour=0.5, kind_weights={"leave_route": 0.4, "enter_zone": 0.4, "sos": 0.2}
            )
            generator = FixGenerator(
                city.world,
                SimConfig(
                    seed=args.seed, incidents=incidents, duplicate_probability=0.005, late_probability=0.005
                ),
                time.time() - 3 * 3600,
            )
            prefix = f"bench-{uuid.uuid4().hex[:8]}/"
            settings = settings.model_copy(update={"topic_prefix": prefix})
            pipeline._settings = settings
            results: dict[str, Any] = {}
            warm = _raw(single_messages(prefix, take(generator, 5_000)), 1)
            await _phase("warm-up (single fixes)", pipeline, warm, args.batch, metrics)
            for rep in range(args.repeat):
                single = _raw(single_messages(prefix, take(generator, args.single_fixes)), 1)
                results[f"single_{rep}"] = await _phase("single fixes", pipeline, single, args.batch, metrics)
                hundred = _raw(batch_messages(prefix, take(generator, args.batch100_fixes), 100), 1)
                results[f"batch100_{rep}"] = await _phase(
                    "gateway batches of 100", pipeline, hundred, args.batch, metrics
                )
            best = {
                kind: max(r["fixes_per_cpu_s"] for k, r in results.items() if k.startswith(kind))
                for kind in ("single", "batch100")
            }
            return {"bench": "pipeline_cpu", "children": args.children, "best": best, "phases": results}
        finally:
            for stop in reversed(cleanup):
                r = stop()
                if asyncio.iscoroutine(r):
                    await r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test", help="an admin URL")
    p.add_argument("--children", type=int, default=20_000)
    p.add_argument("--driven", type=int, default=5_000)
    p.add_argument("--single-fixes", type=int, default=30_000)
    p.add_argument("--batch100-fixes", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=2000, help="messages per pipeline batch (single fixes)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
