"""Benchmark: a burst of SOS alerts — 5,000 tags press SOS within one second; how soon each guardian's
websocket hears it, whether every SMS row is written, and what an open socket costs the tracker.

Built from bench/e2e.py's parts: its own Mosquitto on a free port (e2e's settings), a fresh database
on ``--database-url`` (dropped afterwards), the city registered in bulk (``bench/load/city.py``; every
child has a guardian of its own, with websocket and SMS channels and a phone), the tracker as its own
process (``tracker run``), publisher processes. The run:

1. the tracker's RSS with no socket open; then the guardians of the first ``--sos`` children open
   their websockets (``/ws?token=``, tokens issued in bulk) and the RSS is read again;
2. burst 1: one SOS fix per tag, QoS 1, published within ``--window`` seconds (the publishers' real
   window is reported); per SOS, publish → that guardian's websocket receiving the alert (p50 … max,
   and how many never arrived within ``--deadline`` s: lost); every SMS row (``sms_messages``, the
   stub provider) written: the time from the burst's start to the last, and the count;
3. the rest of ``--sockets`` guardians' websockets open (RSS again: KiB per socket);
4. burst 2: the same with the next ``--sos`` children (their guardians' sockets are among those
   open), while every other socket receives nothing.

The sockets live in their own processes (``--per-process`` sockets each), not in the bench's event
loop: 20,000 websockets in one Python process shared with the publishers would distort the latency
they measure. Each socket process records its event loop's lag (a 10 ms tick and how late it came),
and the lag during each burst is reported as the client's own share of the latency. The client does
not ping (``ping_interval=None``), as a browser does not: 20,000 client pings every 20 s would be a
load the tracker does not see from parents' phones.

Prints figures as it goes, writes ``burst.json`` into ``--out`` and prints the JSON object as its last
line. ``--quick``: 1,000 SOS, 2,000 sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import msgspec  # noqa: E402
import numpy as np  # noqa: E402
import websockets  # noqa: E402

from bench.e2e import (  # noqa: E402
    _LEFT,
    OwnMosquitto,
    TrackerProcess,
    fresh_database,
    log,
    run_and_clean_up,
    unwind,
)
from bench.load.city import register, tag_of  # noqa: E402
from bench.load.drive import SPAWN, Publishers  # noqa: E402
from simulator.messages import Position, position_topic  # noqa: E402
from tracker.store.db import apply_migrations  # noqa: E402
from tracker.store.tokens import issue_token  # noqa: E402

TARGETS = {"p99_s": 1.0, "sms_s": 10.0, "lost": 0}
FD_LIMIT = 65_536
TRACKER_OTHER_FILES = 200
"""descriptors the tracker holds besides its websockets (PostgreSQL pool, MQTT, listener, logs, ...)"""


def raise_fd_limit(want: int = FD_LIMIT) -> int:
    """Raise this process's open-file limit (children inherit it: the tracker, the socket processes):
    20,000 sockets need more than the usual 1,024 (or this machine's 20,000) on both sides. Root may
    raise the hard limit too; anyone else gets as far as the hard limit. Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


# --- pure parts: what a burst's figures are -------------------------------------------------------------


Received = tuple[float, int, str, str, float]
"""(arrival time, child id, alert kind, transition, when the tracker received the deciding fix) of one
alert a socket received; the last NaN when the message does not say"""


@dataclass
class Delivery:
    latencies_s: list[float]
    """publish → websocket, one per SOS that arrived within the deadline"""
    lost: list[int]
    """children whose SOS did not arrive within the deadline"""
    last_arrival: float | None


def deliveries(sent_at: dict[int, float], received: Iterable[Received], deadline_s: float) -> Delivery:
    """Match each SOS (child id → publish time) to the first SOS opening its guardian's socket received
    for that child; an alert later than ``deadline_s`` after its publish, or none at all, is lost. Other
    alerts (another kind, a resolution, an SOS of a child not in this burst) are not counted."""
    first: dict[int, float] = {}
    for arrived, child, kind, transition, *_ in received:
        if kind == "sos" and transition == "opened" and child in sent_at:
            first[child] = min(arrived, first.get(child, arrived))
    latencies: list[float] = []
    lost: list[int] = []
    for child, t in sent_at.items():
        arrived_at = first.get(child)
        if arrived_at is None or arrived_at - t > deadline_s:
            lost.append(child)
        else:
            latencies.append(arrived_at - t)
    last = max(
        (first[c] for c in sent_at if c in first and first[c] - sent_at[c] <= deadline_s), default=None
    )
    return Delivery(latencies, sorted(lost), last)


def stages(sent_at: dict[int, float], received: Iterable[Received]) -> dict[str, list[float]]:
    """Where each SOS's time went (seconds), from its first opening heard: publish → the tracker has the
    fix (the message's ``fix_received_at``), then → the websocket (deciding, committing, dispatching).
    Clocks of one machine; an alert that does not say is left out. (``opened_at`` is no stage: it is
    the fix's own time, which the tag set before it published.)"""
    first: dict[int, Received] = {}
    for r in received:
        arrived, child, kind, transition = r[:4]
        heard_first = child not in first or arrived < first[child][0]
        if kind == "sos" and transition == "opened" and child in sent_at and heard_first:
            first[child] = r
    out: dict[str, list[float]] = {"to_tracker": [], "to_websocket": []}
    for child, (arrived, _, _, _, fix_received) in first.items():
        if math.isnan(fix_received):
            continue
        out["to_tracker"].append(fix_received - sent_at[child])
        out["to_websocket"].append(arrived - fix_received)
    return out


def summary_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max in milliseconds (None when there is nothing to summarise)."""
    if not values_s:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(values_s, dtype=float) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def per_socket_kib(rss_before_mb: float, rss_after_mb: float, sockets: int) -> float | None:
    """The tracker's RSS growth per open socket, in KiB."""
    return round((rss_after_mb - rss_before_mb) * 1024 / sockets, 1) if sockets > 0 else None


def sos_message(prefix: str, child_id: int, lon: float, lat: float, ts: float) -> tuple[str, bytes]:
    """An SOS press: the tag's position fix (position.v1) with ``sos`` set."""
    position = Position(ts=round(ts, 3), lat=lat, lon=lon, acc=8.0, batt=80, seq=1, sos=True)
    return position_topic(prefix, tag_of(child_id)), msgspec.json.encode(position)


def mid_vertex(geometry: dict[str, Any]) -> tuple[float, float]:
    """A point on the route (its middle vertex): an SOS from there raises nothing but the SOS (no
    left-route, no danger zone, no arrival), so the burst is of SOS alone."""
    coords = geometry["coordinates"]
    if geometry["type"] == "MultiLineString":
        coords = coords[0]
    lon, lat = coords[len(coords) // 2][:2]
    return float(lon), float(lat)


# --- the guardians' sockets, in processes of their own -------------------------------------------------


def sockets_main(base: str, tokens: list[str], conn: Connection, concurrency: int) -> None:
    raise_fd_limit()
    asyncio.run(_sockets(base, tokens, conn, concurrency))


async def _sockets(base: str, tokens: list[str], conn: Connection, concurrency: int) -> None:
    """Open every socket (``concurrency`` handshakes at a time), say how many opened, then record what
    arrives and how late the event loop's ticks come. Commands: ``("received", k)``: the alerts from
    the k-th on (polled during a burst: only what is new crosses the pipe); ``("lags", t0, t1)``: the
    ticks' lags between two moments, and how many sockets closed; ``"stop"``."""
    received: list[Received] = []
    lags: list[tuple[float, float]] = []
    state = {"opened": 0, "failed": 0, "closed": 0}
    gate = asyncio.Semaphore(concurrency)
    all_tried = asyncio.Event()
    first_error: list[str] = []
    loop = asyncio.get_running_loop()

    async def listen(token: str) -> None:
        try:
            async with gate:
                ws = await websockets.connect(
                    f"{base}/ws?token={token}", max_size=None, open_timeout=120, ping_interval=None
                )
                hello = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if hello.get("type") != "hello":
                    raise RuntimeError(f"expected hello, got {hello}")
            state["opened"] += 1
            if state["opened"] + state["failed"] == len(tokens):
                all_tried.set()
        except Exception as e:  # counted and reported, the first one's reason too
            state["failed"] += 1
            if not first_error:
                first_error.append(f"{type(e).__name__}: {e}")
            if state["opened"] + state["failed"] == len(tokens):
                all_tried.set()
            return
        try:
            async for raw in ws:
                now = time.time()
                m = json.loads(raw)
                if m.get("type") == "alert":
                    fix_received = m.get("fix_received_at")
                    received.append(
                        (
                            now,
                            int(m["child"]["id"]),
                            str(m["kind"]),
                            str(m["transition"]),
                            float(fix_received) if fix_received is not None else math.nan,
                        )
                    )
        except websockets.exceptions.WebSocketException:
            pass
        state["closed"] += 1

    async def tick() -> None:
        while True:
            t0 = loop.time()
            await asyncio.sleep(0.01)
            lags.append((time.time(), loop.time() - t0 - 0.01))
            if len(lags) > 200_000:
                del lags[:100_000]

    t = time.time()
    tasks = [asyncio.create_task(listen(tok)) for tok in tokens]
    ticker = asyncio.create_task(tick())
    if tokens:
        await all_tried.wait()
    conn.send(
        {
            "opened": state["opened"],
            "failed": state["failed"],
            "seconds": time.time() - t,
            "error": first_error[0] if first_error else None,
        }
    )
    while True:
        cmd = await asyncio.to_thread(conn.recv)
        if cmd == "stop":
            break
        if cmd[0] == "received":
            conn.send(received[cmd[1] :])
        else:
            _, t0, t1 = cmd
            conn.send({"lags": [lag for t, lag in lags if t0 <= t <= t1], "closed": state["closed"]})
    ticker.cancel()
    for task in tasks:
        task.cancel()
    conn.send("stopped")


class SocketProcess:
    def __init__(self, base: str, tokens: list[str], concurrency: int) -> None:
        self.count = len(tokens)
        self._received: list[Received] = []
        self.conn, child = SPAWN.Pipe()
        self.proc = SPAWN.Process(
            target=sockets_main,
            args=(base.replace("http://", "ws://"), tokens, child, concurrency),
            daemon=True,
        )
        self.proc.start()
        _LEFT.append(self.proc)

    def opened(self) -> dict[str, Any]:
        reply: dict[str, Any] = self.conn.recv()
        return reply

    def received(self) -> list[Received]:
        """Every alert this process's sockets received so far (only the new ones cross the pipe)."""
        self.conn.send(("received", len(self._received)))
        self._received += self.conn.recv()
        return self._received

    def lags(self, t0: float, t1: float) -> dict[str, Any]:
        self.conn.send(("lags", t0, t1))
        reply: dict[str, Any] = self.conn.recv()
        return reply

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.conn.send("stop")
            if self.conn.poll(10):
                self.conn.recv()
        self.proc.terminate()
        self.proc.join(10)


async def open_sockets(
    base: str, tokens: list[str], per_process: int, concurrency: int
) -> list[SocketProcess]:
    t = time.time()
    procs = [
        SocketProcess(base, tokens[i : i + per_process], concurrency)
        for i in range(0, len(tokens), per_process)
    ]
    replies = [await asyncio.to_thread(p.opened) for p in procs]
    opened = sum(r["opened"] for r in replies)
    failed = sum(r["failed"] for r in replies)
    log(f"  {opened:,} sockets opened ({failed} failed) in {time.time() - t:.1f} s")
    if failed:
        error = next(r["error"] for r in replies if r["error"])
        raise RuntimeError(f"{failed} of {len(tokens)} websockets did not open; the first: {error}")
    return procs


# --- the run ----------------------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settled_rss(tracker: TrackerProcess, seconds: float = 3.0) -> float:
    """The tracker's RSS (MiB) after it has had ``seconds`` to settle: the lowest of a few readings."""
    readings = []
    for _ in range(int(seconds / 0.5)):
        await asyncio.sleep(0.5)
        readings.append(tracker.rss_mb()[0])
    return min(readings)


async def stage_seconds(tracker: TrackerProcess, admin_token: str) -> dict[str, float]:
    """The tracker's batch-loop seconds per pipeline stage so far (``/api/v1/stats``)."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=tracker.base, headers=headers, timeout=10) as http:
        stats = (await http.get("/api/v1/stats")).json()
    return {k: float(v) for k, v in stats.get("stage_seconds", {}).items()}


async def burst(
    name: str,
    children: range,
    positions: dict[int, tuple[float, float]],
    prefix: str,
    publishers: Publishers,
    window_s: float,
    sockets: list[SocketProcess],
    tracker: TrackerProcess,
    database_url: str,
    deadline_s: float,
    admin_token: str,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One SOS per child, published within ``window_s``; wait for every alert and SMS (or the deadline).
    ``profile``: py-spy samples the tracker from just before the burst until its last alert is heard,
    and writes the stacks there (collapsed, a line per stack)."""
    conn = await asyncpg.connect(database_url)
    sms_before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM sms_messages")
    phones = [f"+8210{c:08d}" for c in children]  # bench/load/city.py's phone of child c's guardian
    now = time.time()
    messages = [sos_message(prefix, c, *positions[c], now) for c in children]
    pid = tracker.pid()
    spy = None
    if profile is not None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        spy = subprocess.Popen(  # noqa: ASYNC220 - started once, not waited on here
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--gil",
                "--format",
                "raw",
                "-o",
                str(profile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)
    stages0 = await stage_seconds(tracker, admin_token)
    stages1 = stages0
    cpu0, t_cpu0 = cpu_s(pid), time.time()
    rate = len(messages) / window_s if window_s > 0 else None
    results, times = await asyncio.to_thread(publishers.run, messages, rate=rate, start_in=1.0)
    t_first = min(r.t_first for r in results)
    t_last = max(r.t_last for r in results)
    acked = sum(r.acked for r in results)
    log(
        f"  {name}: {len(messages):,} SOS published in {t_last - t_first:.3f} s "
        f"({acked:,} acknowledged by the broker)"
    )
    sent_at = {c: float(times[i]) for i, c in enumerate(children)}
    sms_count, sms_last, sms_seen_at = 0, None, None
    received: list[Received] = []
    cpu1, t_cpu1 = cpu0, t_cpu0
    done_alerts = False
    while True:
        await asyncio.sleep(0.25)
        if not done_alerts:
            received = [r for p in sockets for r in await asyncio.to_thread(p.received)]
            got = {r[1] for r in received if r[2] == "sos" and r[3] == "opened" and r[1] in sent_at}
            if len(got) >= len(sent_at):
                done_alerts = True
                cpu1, t_cpu1 = cpu_s(pid), time.time()
                stages1 = await stage_seconds(tracker, admin_token)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
        # (a join, not `phone = ANY($2)`: that compared each row with all 5,000 phones, every 0.25 s,
        # on the PostgreSQL the tracker was committing the burst to)
        row = await conn.fetchrow(
            "SELECT count(DISTINCT s.phone) AS n, extract(epoch FROM max(s.created_at)) AS last"
            " FROM sms_messages s JOIN unnest($2::text[]) AS p(phone) ON p.phone = s.phone"
            " WHERE s.id > $1",
            sms_before,
            phones,
        )
        if row["n"] > sms_count:
            sms_count, sms_last, sms_seen_at = row["n"], row["last"], time.time()
        if done_alerts and sms_count >= len(phones):
            break
        if time.time() - t_last > deadline_s:
            log(f"  {name}: deadline of {deadline_s:.0f} s after the last publish passed")
            if not done_alerts:
                cpu1, t_cpu1 = cpu_s(pid), time.time()
                stages1 = await stage_seconds(tracker, admin_token)
            break
    await conn.close()
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await asyncio.to_thread(spy.wait, 30)
    received = [r for p in sockets for r in await asyncio.to_thread(p.received)]
    delivery = deliveries(sent_at, received, deadline_s)
    lat = summary_ms(delivery.latencies_s)
    split = {k: summary_ms(v) for k, v in stages(sent_at, received).items()}
    end = max(delivery.last_arrival or t_last, t_last)
    reports = [await asyncio.to_thread(p.lags, t_first, end) for p in sockets]
    lags = [lag for rep in reports for lag in rep["lags"]]
    sms_s = float(sms_last) - t_first if sms_last is not None else None
    out = {
        "sos": len(messages),
        "published_in_s": round(t_last - t_first, 3),
        "broker_acked": acked,
        "sockets_open": sum(p.count for p in sockets),
        "delivered": len(delivery.latencies_s),
        "lost": len(delivery.lost),
        "latency": lat,
        # where the time went: publish → the tracker has the fix → the websocket
        "stages": split,
        "last_alert_after_s": round(delivery.last_arrival - t_first, 3) if delivery.last_arrival else None,
        "sms_rows": sms_count,
        "sms_expected": len(phones),
        # the last row's created_at (the database's clock, this machine's) from the first publish
        "sms_last_after_s": round(sms_s, 2) if sms_s is not None else None,
        "sms_seen_after_s": round(sms_seen_at - t_first, 2) if sms_seen_at is not None else None,
        "tracker_cpu_share": round((cpu1 - cpu0) / (t_cpu1 - t_cpu0), 2) if t_cpu1 > t_cpu0 else None,
        # CPU seconds the tracker spent until the last alert was heard: what a busy machine inflates less
        "tracker_cpu_s": round(cpu1 - cpu0, 2),
        # the batch loop's seconds per stage until the last alert was heard (tracker_pipeline_stage_seconds)
        "stage_seconds": {
            k: round(v - stages0.get(k, 0.0), 2)
            for k, v in sorted(stages1.items())
            if v - stages0.get(k, 0.0) >= 0.005
        },
        # the client's own delay: how late its event loops' 10 ms ticks came during the burst
        "client_loop_lag": summary_ms(lags),
        "sockets_closed": sum(rep["closed"] for rep in reports),
    }
    log(
        f"  {name}: publish → websocket p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
        f"p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms; {out['lost']} lost; "
        f"SMS rows {sms_count:,}/{len(phones):,}, the last {out['sms_last_after_s']} s after the start; "
        f"tracker on {out['tracker_cpu_share']} of a CPU ({out['tracker_cpu_s']} CPU-s); client loop lag p99 "
        f"{out['client_loop_lag']['p99_ms']} ms, max {out['client_loop_lag']['max_ms']} ms"
    )
    log(
        "    p50 / p99 of publish → tracker has the fix "
        f"{split['to_tracker']['p50_ms']} / {split['to_tracker']['p99_ms']} ms, then → websocket "
        f"{split['to_websocket']['p50_ms']} / {split['to_websocket']['p99_ms']} ms"
    )
    log("    batch loop seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in out["stage_seconds"].items()))
    return out


async def issue_guardian_tokens(database_url: str, guardian_ids: Sequence[int]) -> list[str]:
    """One token per guardian, through the same function as the API (token-issue log included), eight
    connections at a time."""
    pool = await asyncpg.create_pool(database_url, min_size=8, max_size=8)
    try:
        return list(
            await asyncio.gather(
                *(
                    issue_token(pool, role="guardian", guardian_id=g, label="bench-burst")
                    for g in guardian_ids
                )
            )
        )
    finally:
        await pool.close()


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    n_sos = args.sos or (1_000 if args.quick else 5_000)
    n_sockets = args.sockets or (2_000 if args.quick else 20_000)
    if n_sockets < 2 * n_sos:
        raise SystemExit("--sockets must be at least twice --sos (each burst has its own children)")
    started = time.time()
    fd_limit = raise_fd_limit()
    requested = n_sockets
    if n_sockets + TRACKER_OTHER_FILES > fd_limit:
        # the tracker holds every socket in one process: it needs a descriptor each, and a few more
        n_sockets = fd_limit - TRACKER_OTHER_FILES
        log(
            f"the open-files limit is {fd_limit:,} and this user may not raise it: "
            f"{n_sockets:,} sockets instead of {requested:,}"
        )
        if n_sockets < 2 * n_sos:
            raise SystemExit(f"the open-files limit ({fd_limit:,}) leaves too few sockets for two bursts")
    cleanup: list[Any] = []
    try:
        mosq = OwnMosquitto(workdir, args.broker_inflight)
        cleanup.append(mosq.stop)
        broker = f"own mosquitto on port {mosq.port}, max_inflight_messages {args.broker_inflight}"
        database_url, db_name = await fresh_database(args.database_url, workdir, cleanup)
        log(f"broker: {broker}; database {db_name}; open files limit {fd_limit:,}")

        # the city: every child a guardian of its own (guardian c + 1 for child c: city.py with no
        # driven children puts one watch guardian first), a phone and websocket + SMS
        t = time.time()
        conn = await asyncpg.connect(database_url)
        await apply_migrations(conn)
        city = await register(
            conn, children=n_sockets, routes=max(1, n_sockets // 10), driven=0, seed=args.seed
        )
        rows = await conn.fetch(
            "SELECT c.id, r.geometry::text AS g FROM children c JOIN routes r ON r.id = c.route_id"
            " WHERE c.id <= $1",
            2 * n_sos,
        )
        positions = {r["id"]: mid_vertex(json.loads(r["g"])) for r in rows}
        admin_token = await issue_token(conn, role="admin", label="bench-burst")
        await conn.close()
        tokens = await issue_guardian_tokens(database_url, [c + 1 for c in range(1, n_sockets + 1)])
        log(
            f"city: {city.schools} schools, {city.routes:,} routes, {city.children:,} children, "
            f"{len(tokens):,} guardian tokens, in {time.time() - t:.1f} s"
        )

        prefix = f"burst-{uuid.uuid4().hex[:8]}/"
        tracker = TrackerProcess(
            database_url=database_url,
            mqtt_url=mosq.url,
            workdir=workdir,
            prefix=prefix,
            extra={k: v for k, v in (kv.split("=", 1) for kv in args.tracker_env)},
        )
        cleanup.append(tracker.stop)
        await tracker.wait_ready(args.start_timeout)
        rss0 = await settled_rss(tracker)
        log(f"tracker ready, RSS {rss0:,.0f} MiB with no socket open")
        publishers = Publishers(mosq.url, 1, workdir, args.publishers)
        sockets: list[SocketProcess] = []

        def stop_sockets() -> None:
            for p in sockets:
                p.stop()

        cleanup.append(stop_sockets)

        # burst 1: the first n_sos children's guardians' sockets open, nothing else
        log(f"opening {n_sos:,} guardians' websockets")
        sockets += await open_sockets(tracker.base, tokens[:n_sos], args.per_process, args.concurrency)
        rss1 = await settled_rss(tracker)
        kib1 = per_socket_kib(rss0, rss1, n_sos)
        log(f"  tracker RSS {rss1:,.0f} MiB: {kib1} KiB per socket")

        async def burst_of(name: str, children: range, n: int) -> dict[str, Any]:
            profile = Path(args.out) / f"tracker-burst-{n}.txt" if args.profile else None
            return await burst(
                name,
                children,
                positions,
                prefix,
                publishers,
                args.window,
                sockets,
                tracker,
                database_url,
                args.deadline,
                admin_token,
                profile,
            )

        b1 = await burst_of(f"burst with {n_sos:,} sockets", range(1, n_sos + 1), 1)

        # burst 2: every socket open; the next n_sos children's guardians hear it, the rest nothing
        log(f"opening {n_sockets - n_sos:,} more websockets")
        sockets += await open_sockets(tracker.base, tokens[n_sos:], args.per_process, args.concurrency)
        rss2 = await settled_rss(tracker)
        kib2 = per_socket_kib(rss0, rss2, n_sockets)
        log(f"  tracker RSS {rss2:,.0f} MiB with {n_sockets:,} sockets: {kib2} KiB per socket")
        b2 = await burst_of(f"burst with {n_sockets:,} sockets", range(n_sos + 1, 2 * n_sos + 1), 2)
        _, rss_peak = tracker.rss_mb()
        tracker.stop()

        bursts = {f"sockets_{n_sos}": b1, f"sockets_{n_sockets}": b2}
        p99s = [b["latency"]["p99_ms"] for b in bursts.values()]
        sms_s = [b["sms_last_after_s"] for b in bursts.values()]
        lost = [b["lost"] + b["sms_expected"] - b["sms_rows"] for b in bursts.values()]
        return {
            "bench": "burst",
            "quick": args.quick,
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "open_files": fd_limit},
            "broker": broker,
            "sos_per_burst": n_sos,
            "sockets": n_sockets,
            "sockets_requested": requested,
            "window_s": args.window,
            "publishers": args.publishers,
            "deadline_s": args.deadline,
            "bursts": bursts,
            "rss_mb": {
                "no_sockets": round(rss0, 1),
                f"sockets_{n_sos}": round(rss1, 1),
                f"sockets_{n_sockets}": round(rss2, 1),
                "peak": round(rss_peak, 1),
            },
            "rss_kib_per_socket": {f"sockets_{n_sos}": kib1, f"sockets_{n_sockets}": kib2},
            "targets": {
                "p99_le_1s": {
                    "value": p99s,
                    "met": all(p is not None and p <= TARGETS["p99_s"] * 1000 for p in p99s),
                },
                "sms_within_10s": {
                    "value": sms_s,
                    "met": all(s is not None and s <= TARGETS["sms_s"] for s in sms_s)
                    and all(b["sms_rows"] == b["sms_expected"] for b in bursts.values()),
                },
                "zero_lost": {"value": lost, "met": all(x == TARGETS["lost"] for x in lost)},
            },
            "seconds": round(time.time() - started, 1),
        }
    finally:
        await unwind(cleanup)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a smoke run: 1,000 SOS, 2,000 sockets")
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an admin URL: a fresh database is created there and dropped afterwards "
        "(if it does not answer: an embedded PostgreSQL)",
    )
    p.add_argument("--sos", type=int, help="SOS per burst, one per tag (default 5,000; quick 1,000)")
    p.add_argument(
        "--sockets", type=int, help="websockets open for the second burst (default 20,000; quick 2,000)"
    )
    p.add_argument(
        "--window", type=float, default=1.0, help="seconds the burst is published over (0: at once)"
    )
    p.add_argument(
        "--deadline", type=float, default=30.0, help="seconds after the last publish: later is lost"
    )
    p.add_argument("--publishers", type=int, default=2, help="publisher processes")
    p.add_argument("--per-process", type=int, default=5_000, help="websockets per client process")
    p.add_argument("--concurrency", type=int, default=100, help="websocket handshakes at a time per process")
    p.add_argument(
        "--broker-inflight", type=int, default=10_000, help="max_inflight_messages of the mosquitto"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--start-timeout", type=float, default=300.0, help="seconds the tracker may take to be ready"
    )
    p.add_argument(
        "--tracker-env",
        action="append",
        default=[],
        metavar="TRACKER_X=V",
        help="extra setting for the tracker process (repeatable)",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "out"), help="where burst.json goes")
    p.add_argument("--keep-workdir", action="store_true", help="keep the logs (tracker, mosquitto)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the tracker with py-spy during each burst (pip install py-spy); its stacks, "
        "collapsed, in --out as tracker-burst-N.txt",
    )
    args = p.parse_args(argv)
    if shutil.which("mosquitto") is None:
        p.error("mosquitto is not installed")
    Path(args.out).mkdir(parents=True, exist_ok=True)  # (--profile writes each burst's stacks there)
    report = run_and_clean_up(run, args, "tracker-burst-")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "burst.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
