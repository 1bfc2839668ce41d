"""Benchmark: a tracker worker's memory and start-up with a whole city registered (issue 16 point 5).

Registers a city of ``--children`` children in a fresh PostgreSQL database (bench.load.city, as
bench/e2e.py does) and gives every child a checkpointed monitor state (what a city whose children all
send leaves in ``child_state``), then measures two things:

* **where the memory goes**, in a fresh interpreter of its own (``--measure``): the RSS after the
  imports, after reading the registry (``load_registry`` and the alert rules), after building the
  registry view (``build_view``: index, schedules, children's lookups), and after loading every
  child's committed state (``ChildStates.load``, what the clock does on its first tick), each after a
  collection; the same for a worker that owns a share of the partitions (``--owned``: a child's
  partition is its id modulo 64, tracker.cluster.partitions) when the view can be built for a subset;
* **a real worker** (``tracker run`` in its own process, like bench/e2e.py's): seconds from start to
  ``/readyz``, its RSS then, and its RSS and peak once the clock's first tick has loaded every
  child's state (``clock_scan`` in ``/api/v1/stats``).

The RSS is split as the kernel counts it: anonymous (the process's own pages) and files (pages of
mapped files, libllvmlite's code first: shared with every other process mapping the same library,
so a machine running several workers holds them once). The in-process steps let the registry's rows
go once the view is built, as the service does.

Figures go to stderr as it goes; the last line of stdout is one JSON object. ``--quick``: 20,000
children. ``--keep-city`` keeps the city's database for later runs (``--city-database``), which is
how a change is compared with the tree before it (``--tracker-env PYTHONPATH=<a worktree>``, and the
script run from that worktree). The machine's load average is printed with the figures (other
processes share its cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.e2e import _LEFT, OwnMosquitto, TrackerProcess, fresh_database, log, run_and_clean_up  # noqa: E402
from bench.load.city import register  # noqa: E402
from tracker.monitor import ChildState  # noqa: E402
from tracker.store.batches import encode_state  # noqa: E402
from tracker.store.db import apply_migrations  # noqa: E402
from tracker.store.tokens import issue_token  # noqa: E402

PARTITIONS = 64  # as a cluster's workers split the children (tracker.cluster.partitions)


def owned_set(spec: str) -> frozenset[int]:
    """ "0-20" or "0,3,5-9": the partitions a worker owns."""
    out: set[int] = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return frozenset(out)


# --- the city's states ------------------------------------------------------------------------------------


def state_of(child: int, now: float, rng: np.random.Generator) -> ChildState:
    """A child's state as a day of fixes leaves it: walking on its route (most), at school, or in a
    zone's evidence; a tag clock estimate and a pace fix, as the monitor keeps them."""
    lon, lat = 126.98 + rng.normal(0, 0.05), 37.55 + rng.normal(0, 0.04)
    ts = now - rng.uniform(0, 600)
    acc = float(rng.uniform(5, 30))
    s = ChildState(
        last_ts=ts,
        last_lon=lon,
        last_lat=lat,
        last_acc=acc,
        in_corridor=True,
        pace=[ts - 30, lon - 1e-4, lat, acc],
        speed_mps=float(rng.uniform(0.5, 1.6)),
        clock=[ts - ts % 600, float(rng.uniform(0.1, 2)), float(rng.uniform(0.1, 2))],
        place_counts={"home": 0} if child % 3 else {},
        arrived={"home": ts - 1800},
    )
    if child % 10 == 0:  # at school
        s.at = "school"
        s.place_counts = {"school": 5}
        s.arrived = {"home": ts - 7200, "school": ts - 3000}
    if child % 50 == 1:  # a zone's evidence
        s.zone_counts = {int(child % 2000) + 1: 1.0}
        s.zones_possible = {int(child % 2000) + 1}
    return s


async def write_states(conn: asyncpg.Connection, children: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    now = time.time()
    chunk = 50_000
    for start in range(1, children + 1, chunk):
        rows = [
            (c, encode_state(state_of(c, now, rng).to_json()))
            for c in range(start, min(start + chunk, children + 1))
        ]
        await conn.copy_records_to_table(
            "child_state", records=[(c, s) for c, s in rows], columns=("child_id", "state")
        )


# --- in a fresh interpreter: where the memory goes ------------------------------------------------------


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS, VmHWM (the peak), RssAnon (the process's own pages) and RssFile (pages of mapped files:
    the shared libraries, libllvmlite's 170 MB first, shared with other processes mapping them) in
    MiB."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def rss_mib() -> tuple[float, float]:
    st = proc_status()
    return st.get("VmRSS", 0.0), st.get("VmHWM", 0.0)


def settle() -> float:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mib()[0]


async def measure(database_url: str, owned: str | None) -> dict[str, Any]:
    """RSS step by step (MiB, after a collection), in this interpreter (run it in a fresh one)."""
    import inspect

    from tracker.child_states import ChildStates
    from tracker.config import Settings
    from tracker.registry_view import build_view
    from tracker.service import Service  # noqa: F401 - everything a worker imports
    from tracker.store.alert_rules import load_alert_rules
    from tracker.store.db import create_pool
    from tracker.store.registry_rows import load_registry

    out: dict[str, Any] = {"owned": owned}
    s = Settings()
    out["rss_imports"] = settle()
    pool = await create_pool(database_url)
    t = time.perf_counter()
    async with pool.acquire() as conn:
        rows = await load_registry(conn)
        rules = await load_alert_rules(conn)
    out["read_s"] = time.perf_counter() - t
    out["rss_rows"] = settle()
    kw: dict[str, Any] = {}
    if owned is not None:
        parts = owned_set(owned)
        if "owned" not in inspect.signature(build_view).parameters:
            out["error"] = "build_view cannot build a view for a subset in this tree"
            return out
        from tracker.cluster.partitions import partitions_of_children

        wanted = np.array(sorted(parts))
        kw["owned"] = lambda ids: np.isin(partitions_of_children(ids, PARTITIONS), wanted)
    if "take_geometry" in inspect.signature(build_view).parameters:  # as the service builds its view
        kw["take_geometry"] = True
    t = time.perf_counter()
    view = build_view(
        rows,
        default_timezone=s.default_timezone,
        all_day=True,
        rules=rules,
        home_fence_m=s.home_fence_m,
        **kw,
    )
    out["build_s"] = time.perf_counter() - t
    del rows  # as the service keeps only the view (tracker.service reload_registry)
    out["rss_view"] = settle()
    out["index_mib"] = view.index.nbytes / 2**20
    out["routes_indexed"] = int(view.index.route_ids.size)
    states = ChildStates(pool)
    t = time.perf_counter()
    children = list(view.contexts) if hasattr(view, "contexts") else []
    await states.load(children)
    out["states_load_s"] = time.perf_counter() - t
    out["states"] = len(states.committed)
    out["rss_states"] = settle()
    out["rss_peak"] = rss_mib()[1]
    st = proc_status()
    out["anon_states"], out["file_states"] = st.get("RssAnon", 0.0), st.get("RssFile", 0.0)
    del rules
    await pool.close()
    return out


def measure_in_fresh_interpreter(database_url: str, owned: str | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", database_url]
    if owned is not None:
        cmd += ["--owned", owned]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring interpreter failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the run ------------------------------------------------------------------------------------------------


def git_head() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return done.stdout.strip()


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    children = args.children or (20_000 if args.quick else 400_000)
    routes = args.routes or max(1, children // 10)
    report: dict[str, Any] = {
        "children": children,
        "routes": routes,
        "load_average": os.getloadavg()[0],
        "commit": git_head(),
    }
    cleanup: list[Any] = []
    try:
        t = time.time()
        if args.city_database:  # a city this bench registered before (its children and routes)
            database_url = args.city_database
            conn = await asyncpg.connect(database_url)
            report["children"] = children = await conn.fetchval("SELECT count(*) FROM children")
            report["routes"] = routes = await conn.fetchval("SELECT count(*) FROM routes")
        else:
            database_url, _ = await fresh_database(args.database_url, workdir, cleanup)
            if args.keep_city:  # not dropped at the end: measure it again with --city-database
                cleanup.pop()
                _LEFT.pop()
                report["city_database"] = database_url
                log(f"the city is kept: --city-database {database_url}")
            conn = await asyncpg.connect(database_url)
            await apply_migrations(conn)
            await register(conn, children=children, routes=routes, driven=1, seed=args.seed)
            await write_states(conn, children, args.seed)
        admin_token = await issue_token(conn, role="admin", label="bench")
        await conn.close()
        log(f"city of {children:,} children ({routes:,} routes) with their states in {time.time() - t:.1f} s")

        for owned in [] if args.no_breakdown else [None, *args.owned]:
            m = measure_in_fresh_interpreter(database_url, owned)
            report["whole" if owned is None else f"owns {owned}"] = m
            if "error" in m:
                log(f"owns {owned}: {m['error']}")
                continue
            log(
                f"{'every partition' if owned is None else 'partitions ' + owned}: RSS after imports "
                f"{m['rss_imports']:.0f} MiB, registry rows +{m['rss_rows'] - m['rss_imports']:.0f}, "
                f"view +{m['rss_view'] - m['rss_rows']:.0f} (index arrays {m['index_mib']:.0f} MiB, "
                f"{m['routes_indexed']:,} routes), {m['states']:,} states "
                f"+{m['rss_states'] - m['rss_view']:.0f} = {m['rss_states']:.0f} MiB "
                f"(peak {m['rss_peak']:.0f}; anonymous {m['anon_states']:.0f}, files "
                f"{m['file_states']:.0f}); read {m['read_s']:.1f} s, build {m['build_s']:.1f} s, "
                f"states {m['states_load_s']:.1f} s"
            )

        if not args.no_tracker:
            if args.mqtt_url:
                mqtt_url = args.mqtt_url
            else:
                mosq = OwnMosquitto(workdir, 1000)
                cleanup.append(mosq.stop)
                mqtt_url = mosq.url
            t = time.time()
            tracker = TrackerProcess(
                database_url=database_url,
                mqtt_url=mqtt_url,
                workdir=workdir,
                prefix="memory/",
                extra={k: v for k, v in (kv.split("=", 1) for kv in args.tracker_env)},
            )
            cleanup.append(tracker.stop)
            await tracker.wait_ready(args.start_timeout)
            ready_s = time.time() - t
            rss_ready, _ = tracker.rss_mb()
            cpu_ready = tracker.cpu_s()  # (on a busy machine the wall time says little)
            headers = {"Authorization": f"Bearer {admin_token}"}
            async with httpx.AsyncClient(base_url=tracker.base, headers=headers, timeout=30) as http:
                deadline = time.monotonic() + args.start_timeout
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.HTTPError):
                        stats = (await http.get("/api/v1/stats")).json()
                        if "clock_scan" in stats.get("stage_seconds", {}):
                            break
                    await asyncio.sleep(0.5)
                else:
                    raise TimeoutError("the clock did not tick")
            loaded_s = time.time() - t
            await asyncio.sleep(2.0)
            rss_loaded, peak = tracker.rss_mb()
            st = proc_status(tracker.pid())
            report["tracker"] = {
                "ready_s": round(ready_s, 2),
                "cpu_s_to_ready": round(cpu_ready, 2),
                "rss_ready_mib": round(rss_ready),
                "states_loaded_s": round(loaded_s, 2),
                "rss_states_mib": round(rss_loaded),
                "peak_rss_mib": round(peak),
                "anon_states_mib": round(st.get("RssAnon", 0.0)),
                "file_states_mib": round(st.get("RssFile", 0.0)),
            }
            log(
                f"tracker: ready in {ready_s:.1f} s ({cpu_ready:.1f} CPU-s) with RSS {rss_ready:.0f} MiB; "
                "every state loaded "
                f"{loaded_s:.1f} s after start: RSS {rss_loaded:.0f} MiB (anonymous "
                f"{st.get('RssAnon', 0.0):.0f}, files {st.get('RssFile', 0.0):.0f}), peak {peak:.0f} MiB"
            )
        report["load_average_end"] = os.getloadavg()[0]
        start, end = report["load_average"], report["load_average_end"]
        log(f"load average {start:.2f} at the start, {end:.2f} at the end")
        return report
    finally:
        for step in reversed(cleanup):
            result = step()
            if asyncio.iscoroutine(result):
                await result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="20,000 children")
    p.add_argument("--children", type=int, help="children registered (default 400,000; quick 20,000)")
    p.add_argument("--routes", type=int, help="routes (default: one per ten children)")
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an admin URL: a fresh database is created there and dropped afterwards",
    )
    p.add_argument("--mqtt-url", help="use this broker (default: start mosquitto on a free port)")
    p.add_argument(
        "--owned",
        action="append",
        default=[],
        metavar="PARTITIONS",
        help="also measure a worker owning these partitions of 64, e.g. 0-20 (repeatable)",
    )
    p.add_argument(
        "--city-database",
        metavar="URL",
        help="a database holding a city this bench registered before (kept): no new city, no drop",
    )
    p.add_argument(
        "--keep-city",
        action="store_true",
        help="keep the city's database (its URL is printed) for later runs with --city-database",
    )
    p.add_argument("--no-breakdown", action="store_true", help="only the tracker process")
    p.add_argument("--no-tracker", action="store_true", help="only the in-process breakdown")
    p.add_argument("--tracker-env", action="append", default=[], metavar="TRACKER_X=V")
    p.add_argument("--start-timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-workdir", action="store_true")
    p.add_argument("--measure", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        owned = args.owned[0] if args.owned else None
        print(json.dumps(asyncio.run(measure(args.measure, owned))))
        return 0
    if not args.no_tracker and not args.mqtt_url and shutil.which("mosquitto") is None:
        p.error("mosquitto is not installed: install it or pass --mqtt-url")
    report = run_and_clean_up(run, args, "tracker-memory-")
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
