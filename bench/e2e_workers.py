"""``bench/e2e.py --workers N[,N...]``: the same chain on a NATS cluster with N tracker workers (issue 16).

For each N in turn, on the same database and city (bench/e2e.py's ``setup_city``):

* an engine of its own: three nats-server processes routed to each other (``EmbeddedNats.cluster``,
  the streams at 3 replicas) or one (``--nats-nodes 1``, 1 replica), fresh for each N;
* N workers: ``tracker run`` processes with ``TRACKER_ENGINE=nats``, ``TRACKER_NATS_URL`` listing every
  node, ``TRACKER_WORKER_ID=w1..wN`` and an HTTP port each; the bench waits until every one of the 64
  partitions has a live owner and every worker holds some;
* the publishers (MQTT 3.1.1, QoS 1) spread over the nodes' MQTT listeners, one node each in turn;
* e2e's phases, the counters summed over the workers: a warm-up (each driven child's first fix, not
  a target), single fixes, gateway batches of 100, publish →
  websocket latency of incident alerts (the guardians' sockets on w1: an alert decided by another
  worker reaches them through the socket relay) at 10,000 fixes/s or half the single-fix capacity if
  that is lower (the report says which);
* for N >= 2, a takeover: single fixes at the latency phase's rate, w<N> killed with SIGKILL a third
  of the way in; measured from the kill: until every partition has a live owner again
  (``partition_leases``: owner among the workers still alive, ``expires_at > now()``), and until
  every fix of the stream is in ``positions``.

Per phase: fixes/s, fixes per tracker CPU-second for each worker (the fixes its pipeline handled as
the owner of its partitions, over its own CPU: the front's work for other workers' partitions is in
it too) and for all, and the engine's CPU per fix (every nats-server process). Per N: lost (unique
fixes sent − rows in ``positions``), each worker's peak RSS; ratios against N=1 of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.e2e import (
    CitySetup,
    Phase,
    Sockets,
    TrackerProcess,
    Watch,
    batch_messages,
    cpu_seconds,
    latency_phase,
    log,
    plan_from,
    setup_city,
    single_messages,
    take,
    take_each,
    tracker_phase,
    unwind,
)
from bench.load.drive import LEFT, Publishers
from bench.load.plot import plot, plot_workers
from tracker.embedded import EmbeddedNats

TARGETS = {"per_cpu_vs_one_worker": 0.9, "lost": 0, "takeover_s": 15.0, "latency_p99_ms": 250.0}


class Engine:
    """The nats-server processes of one N (a directory of their own: streams start empty)."""

    def __init__(self, directory: Path, nodes: int, topic_prefix: str, partitions: int) -> None:
        """``topic_prefix``: the workers' (the servers' subject mappings must know it: without them every
        message goes the unmapped way, one consumer shared by the workers, which the runs before
        2026-12-07's twelfth session measured unawares)."""
        self.nodes = EmbeddedNats.cluster(nodes, directory, topic_prefix=topic_prefix, partitions=partitions)
        self.replicas = min(3, nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
            LEFT.append(node.proc)

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def cpu_s(self) -> float:
        return sum(cpu_seconds(n.proc.pid) for n in self.nodes if n.proc is not None)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


async def leases(database_url: str, alive: Sequence[str]) -> tuple[int, int]:
    """(partitions whose lease is held now by one of ``alive``, workers of ``alive`` holding one)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT owner) AS owners FROM partition_leases"
            " WHERE owner = ANY($1::text[]) AND expires_at > now()",
            list(alive),
        )
        return int(row["n"]), int(row["owners"])
    finally:
        await conn.close()


async def stored(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM positions"))
    finally:
        await conn.close()


def _per_cpu(phase: dict[str, Any]) -> dict[str, Any]:
    return {
        "all": phase["fixes_per_tracker_cpu_s"],
        "each": [w["fixes_per_cpu_s"] for w in phase.get("per_worker", [])],
    }


async def takeover(
    n: int,
    workers: list[TrackerProcess],
    setup: CitySetup,
    publishers: Publishers,
    prefix: str,
    rate: float,
    seconds: float,
    seen: set[tuple[str, float]],
    phases: list[Phase],
    partitions: int,
) -> dict[str, Any]:
    """Single fixes at ``rate`` for ``seconds``; the last worker SIGKILLed a third of the way in."""
    fixes = take(setup.generator, int(rate * seconds))
    seen.update((f.tag, f.ts) for f in fixes)
    expected = len(seen)  # every unique fix of the run so far, this stream's included
    t0 = time.time()
    publish = asyncio.create_task(
        asyncio.to_thread(publishers.run, single_messages(prefix, fixes), rate=rate)
    )
    await asyncio.sleep(1.5 + seconds / 3)  # (the publishers start 1.5 s after they are launched)
    victim = workers[-1]
    rss_peak = victim.rss_mb()[1]
    victim.kill()
    t_kill = time.time()
    alive = [w.name for w in workers[:-1]]
    log(f"  takeover: {victim.name} killed (SIGKILL) {t_kill - t0:.1f} s into the stream")
    t_owned = t_stored = None
    last_count, last_change = -1, time.time()
    while t_stored is None:
        now = time.time()
        if t_owned is None and (await leases(setup.database_url, alive))[0] == partitions:
            t_owned = now - t_kill
            log(f"  takeover: every partition has a live owner again {t_owned:.1f} s after the kill")
        count = await stored(setup.database_url)
        if count >= expected and publish.done():
            t_stored = now - t_kill
        elif count != last_count:
            last_count, last_change = count, now
        elif now - last_change > 120:
            log(f"  takeover: no progress for 120 s ({count:,} of {expected:,} positions stored); giving up")
            break
        await asyncio.sleep(0.1)
    await publish
    phases.append(Phase(f"takeover ({n} workers)", t0, time.time()))
    in_db = await stored(setup.database_url)
    out = {
        "offered_fixes_per_s": rate,
        "fixes_sent": len(fixes),
        "killed": victim.name,
        "killed_after_s": round(t_kill - t0, 1),
        "killed_rss_peak_mb": round(rss_peak, 1),
        "all_partitions_owned_after_s": round(t_owned, 1) if t_owned is not None else None,
        "stream_stored_after_s": round(t_stored, 1) if t_stored is not None else None,
        "lost_so_far": expected - in_db,
    }
    log(
        f"  takeover: stream stored {out['stream_stored_after_s']} s after the kill; "
        f"{out['lost_so_far']} of the run's unique fixes not in positions"
    )
    return out


async def one_count(
    n: int, args: argparse.Namespace, setup: CitySetup, workdir: Path, seen: set[tuple[str, float]]
) -> tuple[dict[str, Any], Watch, list[Phase], list[tuple[float, float]]]:
    plan = plan_from(args)
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    engine = Engine(workdir / f"nats-{n}", args.nats_nodes, prefix, args.partitions)
    workers: list[TrackerProcess] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        t = time.time()
        engine.start()
        log(f"{n} worker(s): {len(engine.nodes)} nats-server node(s) up in {time.time() - t:.1f} s")
        extra = {k: v for k, v in (kv.split("=", 1) for kv in args.tracker_env)}
        extra |= {
            "TRACKER_ENGINE": "nats",
            "TRACKER_NATS_URL": engine.urls,
            "TRACKER_NATS_REPLICAS": str(engine.replicas),
            "TRACKER_PARTITIONS": str(args.partitions),
        }

        def worker(i: int) -> TrackerProcess:
            w = TrackerProcess(
                database_url=setup.database_url,
                mqtt_url=engine.nodes[0].mqtt_url,  # (not read with TRACKER_ENGINE=nats)
                workdir=workdir,
                prefix=prefix,
                extra=extra | {"TRACKER_WORKER_ID": f"w{i}"},
                name=f"w{i}",
            )
            workers.append(w)
            return w

        t = time.time()
        await worker(1).wait_ready(args.start_timeout)  # the first one makes the streams
        for i in range(2, n + 1):
            worker(i)
        await asyncio.gather(*(w.wait_ready(args.start_timeout) for w in workers[1:]))
        t_ready = time.time() - t
        names = [w.name for w in workers]
        while await leases(setup.database_url, names) != (args.partitions, n):
            if time.time() - t > args.start_timeout:
                raise TimeoutError(f"the partitions were not shared by {n} workers")
            await asyncio.sleep(0.2)
        t_shared = time.time() - t
        log(f"  ready in {t_ready:.1f} s; the {args.partitions} partitions shared by {n} in {t_shared:.1f} s")

        watch = Watch(
            workers, setup.admin_token, per_worker=True, engine_cpu=engine.cpu_s, cpu_from_first_publish=True
        )
        tasks.append(asyncio.create_task(watch.run()))
        sockets = Sockets(workers[0].base, setup.watch_tokens)
        tasks += sockets.start()
        urls = [node.mqtt_url for node in engine.nodes]
        # 1,000 in flight each: 4,000 at the cluster's rates waited about 5 s, and the node closed them
        publishers = Publishers(urls, 1, workdir, max(args.publishers, len(engine.nodes)), window=1000)
        await asyncio.sleep(1.0)
        # what the workers and the engine spend with nothing to do (lease rounds, the clock, every
        # partition's pull request waiting): the floor under the per-fix figures at low rates
        w0, e0, t0 = [w.cpu_s() for w in workers], engine.cpu_s(), time.time()
        await asyncio.sleep(args.idle_seconds)
        idle_s = time.time() - t0
        idle = {
            "workers_cpu_per_s": [
                round((w.cpu_s() - c) / idle_s, 3) for w, c in zip(workers, w0, strict=True)
            ],
            "engine_cpu_per_s": round((engine.cpu_s() - e0) / idle_s, 3),
        }
        log(f"  idle: workers {idle['workers_cpu_per_s']} CPU s/s, engine {idle['engine_cpu_per_s']} CPU s/s")
        phases: list[Phase] = []
        out: dict[str, Any] = {
            "workers": n,
            "nats_nodes": len(engine.nodes),
            "replicas": engine.replicas,
            "ready_s": round(t_ready, 1),
            "partitions_shared_s": round(t_shared, 1),
            "idle": idle,
        }

        # each driven child's next fix first, as bench/e2e.py does: the workers then hold every child's
        # state, and the single-fix phase measures running workers, not each child's first read
        warm = take_each(setup.generator, len(setup.generator.children))
        single = take(setup.generator, plan.single_fixes)
        batched = take(setup.generator, plan.batch100_fixes)
        for key, label, fixes, messages in (
            (
                "warm_up",
                "warm-up, each driven child's first fix (not a target)",
                warm,
                single_messages(prefix, warm),
            ),
            ("single_qos1", "single fixes, QoS 1", single, single_messages(prefix, single)),
            ("batch100", "gateway batches of 100", batched, batch_messages(prefix, batched, 100)),
        ):
            out[key], _ = await tracker_phase(
                f"{label} ({n} workers)", watch, publishers, messages, fixes, phases, seen
            )
        for k in ("single_qos1", "batch100"):
            log(
                f"  {k}: engine {out[k]['engine_cpu_us_per_fix']:,.0f} µs CPU per fix (all nodes); "
                f"fixes per CPU s by worker: {[w['fixes_per_cpu_s'] for w in out[k].get('per_worker', [])]}"
            )

        half = round(0.5 * out["single_qos1"]["fixes_per_s"], -2) or 100.0
        rate = min(plan.latency_rate, half)
        basis = (
            "the fixed offered load" if rate == plan.latency_rate else "half the measured single-fix capacity"
        )
        out["latency_phase"], out["latency"], lat = await latency_phase(
            "latency",
            rate,
            plan.latency_s,
            0,
            setup.generator,
            prefix,
            watch,
            publishers,
            phases,
            seen,
            sockets,
            database_url=setup.database_url,
        )
        out["latency"]["rate_is"] = basis
        log(f"  latency offered at {rate:,.0f} fixes/s: {basis}")

        peaks = {w.name: round(w.rss_mb()[1], 1) for w in workers}
        if n >= 2:
            out["takeover"] = await takeover(
                n,
                workers,
                setup,
                publishers,
                prefix,
                rate,
                args.takeover_seconds,
                seen,
                phases,
                args.partitions,
            )
            peaks[workers[-1].name] = out["takeover"]["killed_rss_peak_mb"]
        peaks |= {w.name: round(w.rss_mb()[1], 1) for w in workers if w.proc.poll() is None}
        in_db = await stored(setup.database_url)
        out["positions_in_db"] = in_db
        out["unique_fixes_sent_so_far"] = len(seen)
        out["rss_peak_mb"] = peaks
        out["fixes_per_tracker_cpu_s"] = {k: _per_cpu(out[k]) for k in ("single_qos1", "batch100")}
        return out, watch, phases, lat
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers), return_exceptions=True)
        with contextlib.suppress(Exception):
            engine.stop()


def ratios(per_n: list[dict[str, Any]]) -> dict[str, Any]:
    """Each N against N=1 of the same run (when it ran)."""
    base = next((r for r in per_n if r["workers"] == 1), None)
    if base is None:
        return {}
    out: dict[str, Any] = {}
    for r in per_n:
        row: dict[str, Any] = {}
        for k in ("single_qos1", "batch100"):
            row[f"{k}_fixes_per_s"] = round(r[k]["fixes_per_s"] / base[k]["fixes_per_s"], 3)
            one = base[k]["fixes_per_tracker_cpu_s"]
            row[f"{k}_fixes_per_cpu_s_each"] = [
                round(x / one, 3) if x and one else None for x in r["fixes_per_tracker_cpu_s"][k]["each"]
            ]
            row[f"{k}_fixes_per_cpu_s_all"] = round(r[k]["fixes_per_tracker_cpu_s"] / one, 3) if one else None
        out[str(r["workers"])] = row
    return out


def targets(per_n: list[dict[str, Any]], rel: dict[str, Any], lost: dict[str, int]) -> dict[str, Any]:
    two = rel.get("2", {})
    each = [x for k in ("single_qos1", "batch100") for x in two.get(f"{k}_fixes_per_cpu_s_each", [])]
    takeovers = [r["takeover"]["all_partitions_owned_after_s"] for r in per_n if "takeover" in r]
    at_half = [r["latency"] for r in per_n if r["latency"]["rate_is"].startswith("half")]
    return {
        "two_workers_each_ge_0.9_of_one_per_cpu_s": {
            "value": two.get("single_qos1_fixes_per_cpu_s_each"),
            "batch100": two.get("batch100_fixes_per_cpu_s_each"),
            "met": bool(each) and all(x is not None and x >= TARGETS["per_cpu_vs_one_worker"] for x in each),
        }
        if two
        else None,
        "zero_lost": {"value": lost, "met": all(v == 0 for v in lost.values())},
        "takeover_le_15s": {
            "value": takeovers,
            "met": bool(takeovers) and all(t is not None and t <= TARGETS["takeover_s"] for t in takeovers),
        },
        "latency_p99_le_250ms_at_half_capacity": {
            "value": [x["p99_ms"] for x in at_half],
            "met": bool(at_half) and all(x["p99_ms"] <= TARGETS["latency_p99_ms"] for x in at_half),
        },
    }


CITIES = (100_000, 400_000, 1_000_000)
INTERVALS_S = (15.0, 5.0)
WORKER_LOAD = 0.5  # a worker is sized to run at half its core: the latency target is at half capacity
NODE_LOAD = 0.5  # a broker node's cores used at most to half


def sizing(per_n: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cores, workers, broker nodes and PostgreSQL rows/s for a city, from this run's per-CPU figures:
    the first N's fixes per tracker CPU-second (at this machine's low rates its fixed costs weigh in:
    pessimistic for a busy worker) and the engine's CPU per fix of the same N, for single fixes and
    for gateway batches of 100 (a city's mix lies between). A worker is one process: at most one core
    (its event loop), run at ``WORKER_LOAD``. The engine: three nodes (R3: each holds every message,
    and one stream's leader takes all its writes, so more nodes do not spread the two streams: a city
    beyond three nodes' cores needs the streams split, which the tracker does not do), each with a
    third of the engine's CPU at ``NODE_LOAD``. PostgreSQL: one row per fix (positions today)."""
    if not per_n:
        return []
    base = per_n[0]
    rows = []
    for children in CITIES:
        for interval in INTERVALS_S:
            fixes_s = children / interval
            row: dict[str, Any] = {
                "children": children,
                "interval_s": interval,
                "fixes_per_s": round(fixes_s),
            }
            for k, label in (("single_qos1", "single"), ("batch100", "batch100")):
                per_cpu = base[k]["fixes_per_tracker_cpu_s"]
                engine_cores = fixes_s * base[k]["engine_cpu_us_per_fix"] / 1e6
                workers = math.ceil(fixes_s / (per_cpu * WORKER_LOAD))
                row[label] = {
                    "worker_cores": round(fixes_s / per_cpu, 1),
                    "workers": workers,
                    "engine_cores": round(engine_cores, 1),
                    "broker_nodes": 3,
                    "cores_per_broker_node": math.ceil(engine_cores / 3 / NODE_LOAD),
                    "cores": workers
                    + 3 * math.ceil(engine_cores / 3 / NODE_LOAD),  # provisioned: workers + nodes
                }
            row["postgres_rows_per_s"] = round(fixes_s)
            rows.append(row)
    return rows


async def run_workers(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    q = args.quick
    args.single_fixes = args.single_fixes or (10_000 if q else 60_000)
    args.batch100_fixes = args.batch100_fixes or (40_000 if q else 300_000)
    args.takeover_seconds = args.takeover_seconds or (15.0 if q else 30.0)
    args.idle_seconds = 5.0 if q else 15.0
    plan = plan_from(args)
    started = time.time()
    cleanup: list[Any] = []
    try:
        setup = await setup_city(args, plan, workdir, cleanup)
        seen: set[tuple[str, float]] = set()
        per_n: list[dict[str, Any]] = []
        lost: dict[str, int] = {}
        lost_before = 0
        for n in counts:
            r, watch, phases, lat = await one_count(n, args, setup, workdir, seen)
            lost_total = r["unique_fixes_sent_so_far"] - r["positions_in_db"]
            r["lost"] = lost_total - lost_before
            lost[str(n)] = r["lost"]
            lost_before = lost_total
            per_n.append(r)
            log(f"{n} worker(s): lost {r['lost']}; peak RSS {r['rss_peak_mb']}")
            about = {**r, "children_registered": setup.city.children, "machine": {"cpus": os.cpu_count()}}
            plot(Path(args.out) / f"e2e-workers-{n}.png", watch.samples, phases, lat, about)
        rel = ratios(per_n)
        for key, row in rel.items():
            log(f"against 1 worker, {key}: {row}")
        report = {
            "bench": "e2e --workers",
            "quick": args.quick,
            "machine": {"cpus": os.cpu_count(), "load_at_end": [round(x, 2) for x in os.getloadavg()]},
            "children_registered": setup.city.children,
            "children_driven": setup.city.driven,
            "nats_nodes": args.nats_nodes,
            "partitions": args.partitions,
            "per_workers": per_n,
            "against_one_worker": rel,
            "targets": targets(per_n, rel, lost),
            "sizing": sizing(per_n),
            "seconds": round(time.time() - started, 1),
        }
        for row in report["sizing"]:
            log(
                f"sizing {row['children']:,} children every {row['interval_s']:.0f} s "
                f"({row['fixes_per_s']:,} fixes/s): single fixes {row['single']}; batches {row['batch100']}"
            )
        out = Path(args.out)
        (out / "e2e-workers.json").write_text(json.dumps(report, indent=2))
        plot_workers(out / "e2e-workers.png", report)
        log(f"wrote {out / 'e2e-workers.json'} and {out / 'e2e-workers.png'}")
        return report
    finally:
        await unwind(cleanup)
