"""Benchmark: the whole chain under load — throughput against the broker's ceiling, latency, loss, memory.

Starts a real Mosquitto (its own, on a free port, unless ``--mqtt-url`` names one) and uses a real
PostgreSQL (a fresh database created on ``--database-url`` and dropped afterwards; an embedded one
when that server does not answer), registers a city of ``--children`` children in bulk, starts the
tracker (``tracker run``, i.e. tracker.service.Service, in its own process: its RSS is its own and the
publishers do not share its GIL), drives it with the simulator, listens on guardians' websockets,
and measures side by side in the same run:

* ceiling: messages per second a bare paho-mqtt subscriber receives from the same broker and the
  same publishers (the simulator's single-fix messages), QoS 0 and QoS 1;
* the tracker's sustained fixes per second for single-fix messages (QoS 1) and for gateway batches
  of 10 and 100 fixes, from the first publish until every fix is accounted for (received = stored +
  duplicates + dead-lettered; lost = sent − received, and the positions table is checked);
* latency from publish to the guardian's websocket for incident fixes (the fix that decided an SOS,
  danger-zone or left-route alert), p50/p95/p99, at a fixed offered load (10,000 fixes/s);
* peak RSS of the tracker process over the whole run, with all those children registered.

The simulator makes the fixes (walks, GPS noise, incidents, duplicates and late fixes) ahead of each
phase; ``--publishers`` processes publish them (as fast as the broker takes them, or paced). Prints
figures as it goes, writes ``e2e.json`` and a plot ``e2e.png`` into ``--out``, and prints the JSON
object as its last line. ``--quick``: a short run (20,000 children) for a laptop or CI.

What the bench sets on the tracker, and why: ``TRACKER_WATCH_ALL_DAY=true`` (incidents count at any
hour), ``TRACKER_SIGNAL_LOST_S`` a day (the simulated clock runs in the past, so "signal lost" would
fire for every child between phases), ``TRACKER_RATE_LIMIT_COUNT`` high (a few watch guardians receive
every driven child's alerts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing.process
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import websockets  # noqa: E402

from bench.load import drive  # noqa: E402
from bench.load.city import City, register, tag_of  # noqa: E402
from bench.load.drive import Publishers, ceiling  # noqa: E402
from bench.load.plot import plot  # noqa: E402
from simulator import FixGenerator, IncidentConfig, SimConfig  # noqa: E402
from simulator.messages import Fix, encode_batch, encode_position, gateway_topic, position_topic  # noqa: E402
from tracker.embedded import EmbeddedPostgres, free_port, port_open  # noqa: E402
from tracker.metrics import FIX_AGE_BUCKETS_S  # noqa: E402
from tracker.store.db import apply_migrations  # noqa: E402
from tracker.store.tokens import issue_token  # noqa: E402

INCIDENT_KINDS = ("sos", "danger_zone", "left_route")
TARGETS = {
    "single_qos1_vs_ceiling": 0.8,
    "batch100_fixes_per_s": 100_000.0,
    "latency_p99_ms": 250.0,
    "lost": 0,
    "rss_mb_at_400k": 1536.0,
}
MOSQUITTO_CONF = """\
# written by bench/e2e.py
listener {port} 127.0.0.1
allow_anonymous true
persistence false
# QoS 1 messages sent to a client and not yet acknowledged (default 20). The tracker acknowledges a
# message only after its batch is committed, so this is how many messages it can have in hand: at
# least two batches (TRACKER_BATCH_MAX_MESSAGES, 2000), one being committed while the next fills.
max_inflight_messages {inflight}
# messages queued per client beyond those in flight (default 1000: QoS 1 messages beyond it are
# dropped), and no byte limit
max_queued_messages 10000000
max_queued_bytes 0
"""


_LEFT: list[Any] = drive.LEFT  # the publishers' and the ceiling subscriber's processes go here too
"""what an interrupted run must still undo (processes started, the database created), newest last"""


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- servers --------------------------------------------------------------------------------------------


class OwnMosquitto:
    def __init__(self, workdir: Path, inflight: int) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(MOSQUITTO_CONF.format(port=self.port, inflight=inflight))
        self._log = open(workdir / "mosquitto.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stdout=self._log, stderr=self._log, start_new_session=True
        )
        _LEFT.append(self.proc)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start (see {workdir / 'mosquitto.log'})")
            time.sleep(0.05)
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _pg_answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _popen(cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, **kw)
    _LEFT.append(proc)
    return proc


def _undo_left() -> None:
    """After an interrupted run: stop the processes it started and drop its database."""
    for item in reversed(_LEFT):
        with contextlib.suppress(Exception):
            if isinstance(item, multiprocessing.process.BaseProcess):
                if item.is_alive():
                    item.terminate()
                    item.join(5)
            elif isinstance(item, subprocess.Popen):
                if item.poll() is None:
                    item.terminate()
                    try:
                        item.wait(15)
                    except subprocess.TimeoutExpired:
                        item.kill()
            else:
                admin_url, name = item
                asyncio.run(_drop_database(admin_url, name))
    _LEFT.clear()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def fresh_database(admin_url: str, workdir: Path, cleanup: list[Any]) -> tuple[str, str]:
    """A new database for one bench run on ``admin_url`` (an embedded PostgreSQL in ``workdir`` when
    that does not answer), dropped by ``cleanup`` (and by ``_undo_left`` if the run is cut short):
    (its URL, its name)."""
    if not await _pg_answers(admin_url):
        log(f"no PostgreSQL at {admin_url}: starting an embedded one")
        pg = EmbeddedPostgres(workdir / "postgres")
        admin_url = pg.start()
        cleanup.append(pg.stop)
    db_name = f"tracker_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    await admin.close()
    _LEFT.append((admin_url, db_name))

    async def drop() -> None:
        await _drop_database(admin_url, db_name)
        _LEFT.remove((admin_url, db_name))

    cleanup.append(drop)
    return _with_database(admin_url, db_name), db_name


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used (user + system, all its threads), from /proc; 0 once it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


class TrackerProcess:
    """``tracker run`` in its own process, configured by environment variables like a deployment."""

    def __init__(
        self,
        *,
        database_url: str,
        mqtt_url: str,
        workdir: Path,
        prefix: str,
        extra: dict[str, str],
        profile: Path | None = None,
        name: str = "tracker",
    ) -> None:
        """``name``: its log (``<name>.log``) and data directory in ``workdir`` (several workers of a
        cluster run side by side)."""
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            TRACKER_DATABASE_URL=database_url,
            TRACKER_MQTT_URL=mqtt_url,
            TRACKER_HTTP_PORT=str(self.port),
            TRACKER_TOPIC_PREFIX=prefix,
            TRACKER_MQTT_CLIENT_ID=f"bench-tracker-{prefix.strip('/')}",
            TRACKER_DATA_DIR=str(workdir / ("tracker-data" if name == "tracker" else f"{name}-data")),
            TRACKER_WATCH_ALL_DAY="true",
            TRACKER_SIGNAL_LOST_S="86400",
            TRACKER_RATE_LIMIT_COUNT="1000000000",
        )
        env.update(extra)
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-c", "from tracker.cli import main; main(['run'])"]
        if profile is not None:  # py-spy runs the tracker as its child and writes a flame graph at exit
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            fmt = ["--format", "raw"] if profile.suffix == ".txt" else []  # collapsed stacks, to filter
            cmd = [py_spy, "record", "--subprocesses", "--rate", "50", *fmt, "-o", str(profile), "--", *cmd]
        self.proc = _popen(
            cmd,
            env=env,
            stdout=self._log,
            stderr=self._log,
            cwd=workdir,
        )

    def pid(self) -> int:
        """The tracker's own process (under py-spy: its child)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            if children and "py-spy" in Path(f"/proc/{self.proc.pid}/cmdline").read_text():
                return int(children[0])
        return self.proc.pid

    def cpu_s(self) -> float:
        """CPU seconds the tracker process has used (user + system, all its threads)."""
        return cpu_seconds(self.pid())

    def rss_mb(self) -> tuple[float, float]:
        """(current RSS, peak RSS) in MiB, from /proc."""
        cur = peak = 0.0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid()}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
        return cur, peak

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the tracker exited with {self.proc.returncode}; see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.base + "/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.5)
        raise TimeoutError(f"the tracker was not ready within {timeout:.0f} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing committed, acknowledged or released on the way out."""
        if self.proc.poll() is None:
            os.kill(self.pid(), signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid(), signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --- what the tracker says --------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    messages_in: int
    fixes_in: int
    fixes_stored: int
    rejected: int
    rss_mb: float
    batches: int
    cpu_s: float
    stages: dict[str, float] = field(default_factory=dict)  # the batch loop's seconds per stage
    by_worker: tuple[tuple[int, float], ...] = ()  # several workers: each one's (fixes handled, CPU s)
    engine_cpu_s: float = 0.0  # CPU seconds of the engine's processes (Watch.engine_cpu), if watched
    fix_age: dict[str, list[int]] = field(default_factory=dict)  # the tracker's fix-age counts per point
    unmapped: int = 0  # a cluster's fronts: messages that came without the server's subject mappings


def _sum_samples(t: float, parts: Sequence[Sample]) -> Sample:
    stages: dict[str, float] = {}
    ages: dict[str, list[int]] = {}
    for p in parts:
        for k, v in p.stages.items():
            stages[k] = stages.get(k, 0.0) + v
        for point, counts in p.fix_age.items():
            ages[point] = [a + b for a, b in zip(ages.get(point, [0] * len(counts)), counts, strict=True)]
    return Sample(
        t,
        sum(p.messages_in for p in parts),
        sum(p.fixes_in for p in parts),
        sum(p.fixes_stored for p in parts),
        sum(p.rejected for p in parts),
        sum(p.rss_mb for p in parts),
        sum(p.batches for p in parts),
        sum(p.cpu_s for p in parts),
        stages,
        tuple((p.fixes_in + p.rejected, p.cpu_s) for p in parts),
        fix_age=ages,
        unmapped=sum(p.unmapped for p in parts),
    )


@dataclass
class Watch:
    """Polls the trackers' counters and RSS; keeps the samples (for the plot) and the latest one. With
    several trackers (a cluster's workers) a sample is their sum, each one's share in ``by_worker``; a
    worker that does not answer (killed) counts with its last answer."""

    trackers: Sequence[TrackerProcess]
    admin_token: str
    samples: list[Sample] = field(default_factory=list)
    every_s: float = 0.25
    per_worker: bool = False  # each tracker's share in Sample.by_worker (also with one)
    engine_cpu: Callable[[], float] | None = None  # the broker's CPU seconds, sampled with the counters
    cpu_from_first_publish: bool = False
    """a phase's CPU counted from the sample before its first publish (not from its start: the
    publishers' processes take seconds to start on a loaded machine, and several workers' and a
    cluster's idle costs over those seconds weighed on the per-fix figures)"""

    async def _one(self, http: httpx.AsyncClient, tracker: TrackerProcess) -> Sample:
        s = (await http.get(tracker.base + "/api/v1/stats")).json()
        return Sample(
            time.time(),
            s["messages_in"],
            s["fixes_in"],
            s["fixes_stored"],
            sum(s["rejected"].values()),
            tracker.rss_mb()[0],
            s["batches"],
            tracker.cpu_s(),
            s.get("stage_seconds", {}),
            fix_age=s.get("fix_age", {}).get("counts", {}),
            unmapped=s.get("fronted", {}).get("unmapped", 0),
        )

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        last: dict[int, Sample] = {}
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            while True:
                answers = await asyncio.gather(
                    *(self._one(http, t) for t in self.trackers), return_exceptions=True
                )
                for i, a in enumerate(answers):
                    if isinstance(a, Sample):
                        last[i] = a
                    elif not isinstance(a, httpx.HTTPError | ValueError):
                        raise a
                if len(last) == len(self.trackers):
                    parts = [last[i] for i in range(len(self.trackers))]
                    one = len(parts) == 1 and not self.per_worker
                    sample = parts[0] if one else _sum_samples(time.time(), parts)
                    if self.engine_cpu is not None:
                        sample.engine_cpu_s = self.engine_cpu()
                    self.samples.append(sample)
                await asyncio.sleep(self.every_s)

    async def fresh(self) -> Sample:
        n = len(self.samples)
        while len(self.samples) <= n:  # noqa: ASYNC110 - the poller appends
            await asyncio.sleep(0.02)
        return self.samples[-1]


@dataclass
class Sockets:
    """The watch guardians' websockets: every alert message with the moment it arrived."""

    base: str
    tokens: list[str]
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    async def _listen(self, token: str) -> None:
        while True:
            try:
                async with websockets.connect(f"{self.base}/ws?token={token}", max_size=None) as ws:
                    async for raw in ws:
                        self.received.append((time.time(), json.loads(raw)))
            except (OSError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.5)

    def start(self) -> list[asyncio.Task[None]]:
        base = self.base.replace("http://", "ws://")
        self.base = base
        return [asyncio.create_task(self._listen(t)) for t in self.tokens]


# --- phases ------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    t_start: float
    t_end: float


def single_messages(prefix: str, fixes: Sequence[Fix]) -> list[tuple[str, bytes]]:
    return [(position_topic(prefix, f.tag), encode_position(f)) for f in fixes]


def batch_messages(prefix: str, fixes: Sequence[Fix], size: int) -> list[tuple[str, bytes]]:
    """Gateway batches of ``size`` fixes: a gateway per school, its children's fixes in time order."""
    open_: dict[str, list[Fix]] = {}
    out: list[tuple[str, bytes]] = []
    for f in fixes:
        batch = open_.setdefault(f.gateway, [])
        batch.append(f)
        if len(batch) == size:
            out.append((gateway_topic(prefix, f.gateway), encode_batch(batch)))
            open_[f.gateway] = []
    out += [(gateway_topic(prefix, g), encode_batch(b)) for g, b in open_.items() if b]
    return out


def take_each(generator: FixGenerator, children: int, limit_s: float = 300.0) -> list[Fix]:
    """The simulator's fixes until each of ``children`` driven children has sent one (or ``limit_s``
    of simulated time has passed: a child gone silent by an incident sends none)."""
    fixes: list[Fix] = []
    tags: set[str] = set()
    until = generator.sim_time + limit_s
    while len(tags) < children and generator.sim_time < until:
        step = generator.advance(generator.sim_time + 1.0).fixes
        fixes += step
        tags.update(f.tag for f in step)
    return fixes


def take(generator: FixGenerator, n: int) -> list[Fix]:
    """The simulator's next ``n`` fixes (or a few more: a step ends on a whole simulated second)."""
    fixes: list[Fix] = []
    while len(fixes) < n:
        fixes += generator.advance(generator.sim_time + 1.0).fixes
    return fixes


async def tracker_phase(
    name: str,
    watch: Watch,
    publishers: Publishers,
    messages: list[tuple[str, bytes]],
    fixes: Sequence[Fix],
    phases: list[Phase],
    seen: set[tuple[str, float]],
    *,
    rate: float | None = None,
    stall_s: float = 60.0,
) -> tuple[dict[str, Any], np.ndarray]:
    """Publish; wait until the tracker has accounted for every fix (or made no progress for stall_s)."""
    before = await watch.fresh()
    t0 = time.time()
    results, times = await asyncio.to_thread(publishers.run, messages, rate=rate)
    sent = len(fixes)
    before_seen = len(seen)
    seen.update((f.tag, f.ts) for f in fixes)
    unique = len(seen) - before_seen  # a copy of a fix of an earlier phase is a duplicate here
    last, last_change = await watch.fresh(), time.time()
    while (last.fixes_in + last.rejected) - (before.fixes_in + before.rejected) < sent:
        s = await watch.fresh()
        if (s.fixes_in + s.rejected) != (last.fixes_in + last.rejected):
            last_change = time.time()
        last = s
        if time.time() - last_change > stall_s:
            log(f"  {name}: no progress for {stall_s:.0f} s; giving up waiting")
            break
    done = last
    t_first = min(r.t_first for r in results)
    if watch.cpu_from_first_publish:
        before = next((s for s in reversed(watch.samples) if s.t <= t_first), before)
    t_pub = max(r.t_last for r in results)
    received = (done.fixes_in - before.fixes_in) + (done.rejected - before.rejected)
    stored = done.fixes_stored - before.fixes_stored
    dead = done.rejected - before.rejected
    duplicates = (done.fixes_in - before.fixes_in) - stored
    phases.append(Phase(name, t0, done.t))
    out: dict[str, Any] = {
        "messages": len(messages),
        "fixes_sent": sent,
        "fixes_received": received,
        "fixes_stored": stored,
        "duplicates": duplicates,
        "duplicates_sent": sent - unique,
        "dead_lettered": dead,
        "lost": sent - received,
        "publisher_dropped": sum(r.dropped for r in results),
        "offered_fixes_per_s": round(sent / (t_pub - t_first), 1),
        "fixes_per_s": round(received / (done.t - t_first), 1) if done.t > t_first else 0.0,
        "seconds": round(done.t - t_first, 2),
        "messages_per_batch": round(len(messages) / max(1, done.batches - before.batches), 1),
        # the tracker's own CPU over the phase: its rate per CPU second does not depend on what else
        # the machine runs (on a shared machine the tracker may get far less than a core)
        "tracker_cpu_s": round(done.cpu_s - before.cpu_s, 1),
        "tracker_cpu_share": round((done.cpu_s - before.cpu_s) / (done.t - before.t), 2)
        if done.t > before.t
        else 0.0,
        "fixes_per_tracker_cpu_s": round(received / (done.cpu_s - before.cpu_s))
        if done.cpu_s > before.cpu_s
        else None,
        # where the batch loop's time went (seconds over the phase): waiting for messages (or for the
        # commit of the batch before), decode, geofence, monitor, commit_* (PostgreSQL), ack
        "stage_seconds": {
            k: round(v - before.stages.get(k, 0.0), 2)
            for k, v in sorted(done.stages.items())
            if v - before.stages.get(k, 0.0) >= 0.005
        },
    }
    if done.by_worker and len(done.by_worker) == len(before.by_worker):
        # several workers: what each one handled (as the owner of its partitions) and its own CPU
        out["per_worker"] = [
            {
                "fixes": n1 - n0,
                "cpu_s": round(c1 - c0, 2),
                "wall_s": round(done.t - before.t, 2),
                "fixes_per_cpu_s": round((n1 - n0) / (c1 - c0)) if c1 > c0 else None,
            }
            for (n0, c0), (n1, c1) in zip(before.by_worker, done.by_worker, strict=True)
        ]
    if done.unmapped - before.unmapped:  # (the phase measured the shared front, not the design's path)
        out["unmapped_messages"] = done.unmapped - before.unmapped
        log(f"  {name}: {out['unmapped_messages']} messages came without the server's subject mappings")
    if watch.engine_cpu is not None:
        engine = done.engine_cpu_s - before.engine_cpu_s
        out["engine_cpu_s"] = round(engine, 2)
        out["engine_cpu_us_per_fix"] = round(engine / max(sent, 1) * 1e6, 1)
    log(
        f"  {name}: {out['fixes_per_s']:,.0f} fixes/s sustained (offered {out['offered_fixes_per_s']:,.0f}; "
        f"tracker on {out['tracker_cpu_share']:.0%} of a CPU, "
        f"{out['fixes_per_tracker_cpu_s'] or 0:,} fixes per CPU s), "
        f"{sent} sent, {stored} stored, {duplicates} duplicates, {dead} dead-lettered, {out['lost']} lost"
    )
    log("    batch loop seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in out["stage_seconds"].items()))
    return out, times


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


RECEIPT_TO_SOCKET = "receipt → socket"


def fix_ages_ms(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, list[float]]:
    """p50 and p99 (ms) of the fixes' ages at each point of the tracker's pipeline (tracker.metrics'
    ``FixAges``: queued, prepared, committed; a cluster's fronts' fetched and forwarded, per message)
    over what the trackers counted between two samples: every fix of a phase, not only the few that
    decided an alert. Linear within the histogram's bucket (the
    first from 0, one above every bound read as that bound: a lower bound)."""
    bounds = np.asarray((0.0, *FIX_AGE_BUCKETS_S), dtype=np.float64)
    out: dict[str, list[float]] = {}
    for point, counts in after.items():
        n = np.asarray(counts, dtype=np.float64) - np.asarray(before.get(point, [0] * len(counts)))
        if n.sum() <= 0:
            continue
        cumulative = np.cumsum(n)
        quantiles = []
        for q in (0.5, 0.99):
            rank = q * cumulative[-1]
            i = int(np.searchsorted(cumulative, rank))
            if i >= len(FIX_AGE_BUCKETS_S):
                quantiles.append(FIX_AGE_BUCKETS_S[-1] * 1000)
                continue
            below = cumulative[i - 1] if i else 0.0
            share = (rank - below) / n[i] if n[i] else 1.0
            quantiles.append(round(float(bounds[i] + share * (bounds[i + 1] - bounds[i])) * 1000, 1))
        out[point] = quantiles
    return out


def latencies(
    sockets: Sockets, since: float, fixes: Sequence[Fix], times: np.ndarray, per_message: int
) -> tuple[list[tuple[float, float]], dict[str, list[float]], dict[int, float]]:
    """(arrival, publish → websocket seconds) of every incident alert decided by a fix of this phase,
    the latencies of each kind, and each of those alerts' first arrival (by alert id). A fix the
    simulator sent twice (a duplicate, a late copy) counts from its first publish: the first copy is
    the one that decides (timed from the second, latencies came out negative)."""
    sent_at: dict[tuple[str, float], float] = {}
    for i, f in enumerate(fixes):
        key, t = (f.tag, round(f.ts, 3)), float(times[i // per_message])
        sent_at[key] = min(t, sent_at.get(key, t))
    out: list[tuple[float, float]] = []
    kinds: dict[str, list[float]] = {}
    after_receipt: list[float] = []  # the tracker's receipt of the fix (its front's, in a cluster) → socket
    first: dict[int, float] = {}
    for arrived, m in list(sockets.received):
        if arrived < since or m.get("transition") != "opened" or m.get("kind") not in INCIDENT_KINDS:
            continue
        position = m.get("position") or {}
        key = (tag_of(m["child"]["id"]), round(float(position.get("ts", 0.0)), 3))
        if key in sent_at:
            out.append((arrived, arrived - sent_at[key]))
            kinds.setdefault(m["kind"], []).append(arrived - sent_at[key])
            if "alert_id" in m:
                first[int(m["alert_id"])] = min(arrived, first.get(int(m["alert_id"]), arrived))
            if m.get("fix_received_at") is not None:
                after_receipt.append(arrived - float(m["fix_received_at"]))
    kinds[RECEIPT_TO_SOCKET] = after_receipt
    return out, kinds, first


async def latency_phase(
    name: str,
    rate: float,
    seconds: float,
    batch: int,
    generator: FixGenerator,
    prefix: str,
    watch: Watch,
    publishers: Publishers,
    phases: list[Phase],
    seen: set[tuple[str, float]],
    sockets: Sockets,
    database_url: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[float, float]]]:
    """Publish at ``rate`` fixes/s for ``seconds``; latencies of the incident alerts it decided (and,
    given the database, where their time went: ``steps``)."""
    fixes = take(generator, int(rate * seconds))
    per = max(batch, 1)
    if batch:
        fixes.sort(key=lambda f: f.ts)
        messages = [
            (gateway_topic(prefix, "sim-latency"), encode_batch(fixes[i : i + per]))
            for i in range(0, len(fixes), per)
        ]
    else:
        messages = single_messages(prefix, fixes)
    since = time.time()
    ages_before = (await watch.fresh()).fix_age
    phase, times = await tracker_phase(
        f"latency at {rate:,.0f} fixes/s", watch, publishers, messages, fixes, phases, seen, rate=rate / per
    )
    await asyncio.sleep(2.0)  # the last alerts
    ages = fix_ages_ms(ages_before, (await watch.fresh()).fix_age)
    lat, kinds, alerts = latencies(sockets, since, fixes, times, per)
    ms = [x * 1000 for _, x in lat]
    out = {
        "offered_fixes_per_s": rate,
        "message": f"gateway batches of {per}" if batch else "single fixes",
        "incident_alerts": len(ms),
        "by_kind": {k: len(v) for k, v in kinds.items() if k != RECEIPT_TO_SOCKET},
        "p50_p99_ms_by_kind": {  # (and from the fix's receipt by the tracker to the socket, every kind)
            k: [round(percentile([x * 1000 for x in v], q), 1) for q in (50, 99)]
            for k, v in kinds.items()
            if v
        },
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
    }
    if database_url is not None:
        out["steps_p50_p99_ms"] = await steps(database_url, alerts)
    out["fix_age_p50_p99_ms"] = ages
    log(
        f"  {name}: publish → websocket over {len(ms)} incident alerts: p50 {out['p50_ms']} ms, "
        f"p95 {out['p95_ms']} ms, p99 {out['p99_ms']} ms"
        + (f"; steps {out['steps_p50_p99_ms']}" if "steps_p50_p99_ms" in out else "")
        + f"; every fix's age (queued: its message's wait in the worker) {ages}"
    )
    return phase, out, lat


async def steps(database_url: str, arrived: dict[int, float]) -> dict[str, list[float]]:
    """Where the incident alerts' time went (the alerts ``latencies`` timed, by id -> first arrival at
    a socket), p50 and p99 of each step (ms), from the alerts' and their websocket deliveries' rows:
    the tracker's receipt of the deciding fix (a cluster's: when the engine stored it) → the commit that
    made the delivery rows (its transaction's start, ``now()``) → the first dispatcher's send of one of
    them (``sent_at``, 'sent' or 'offline': a claimer without the guardian's socket tells the others)
    → the first socket's message. Several guardians: the first of each step, which may be different
    guardians'; with few alerts the p99 is about their maximum."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT d.alert_id, extract(epoch FROM a.fix_received_at)::float8 AS received,"
            " extract(epoch FROM min(d.created_at))::float8 AS committed,"
            " extract(epoch FROM min(d.sent_at))::float8 AS sent"
            " FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
            " WHERE d.alert_id = any($1::bigint[]) AND d.channel = 'websocket' AND d.transition = 'opened'"
            " GROUP BY d.alert_id, a.fix_received_at",
            list(arrived),
        )
    finally:
        await conn.close()
    parts: dict[str, list[float]] = {"receipt → commit": [], "commit → sent": [], "sent → socket": []}
    for r in rows:
        if r["received"] is None or r["sent"] is None:
            continue
        parts["receipt → commit"].append(r["committed"] - r["received"])
        parts["commit → sent"].append(r["sent"] - r["committed"])
        parts["sent → socket"].append(arrived[r["alert_id"]] - r["sent"])
    return {
        k: [round(percentile([x * 1000 for x in v], q), 1) for q in (50, 99)] for k, v in parts.items() if v
    }


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    children: int
    routes: int
    driven: int
    single_fixes: int
    batch10_fixes: int
    batch100_fixes: int
    latency_rate: float
    latency_s: float
    latency_batch: int


def plan_from(args: argparse.Namespace) -> Plan:
    q = args.quick
    children = args.children or (20_000 if q else 400_000)
    return Plan(
        children=children,
        routes=args.routes or max(1, children // 10),
        driven=min(children, args.driven or (5_000 if q else 20_000)),
        single_fixes=args.single_fixes or (30_000 if q else 150_000),
        batch10_fixes=args.batch10_fixes or (60_000 if q else 300_000),
        batch100_fixes=args.batch100_fixes or (150_000 if q else 1_000_000),
        latency_rate=args.latency_rate,
        latency_s=args.latency_seconds or (8.0 if q else 30.0),
        latency_batch=args.latency_batch,
    )


@dataclass
class CitySetup:
    """A fresh database with the city registered, the tokens the bench uses, and the simulator."""

    database_url: str
    db_name: str
    city: City
    admin_token: str
    watch_tokens: list[str]
    generator: FixGenerator


async def setup_city(args: argparse.Namespace, plan: Plan, workdir: Path, cleanup: list[Any]) -> CitySetup:
    """The database (dropped by ``cleanup``), the city of ``plan`` registered in it, an admin token and
    the watch guardians' tokens, and the simulator started three hours ago (fixes must not come from
    the future)."""
    database_url, db_name = await fresh_database(args.database_url, workdir, cleanup)
    log(f"database {db_name}")

    # the city
    t = time.time()
    conn = await asyncpg.connect(database_url)
    await apply_migrations(conn)
    city: City = await register(
        conn, children=plan.children, routes=plan.routes, driven=plan.driven, seed=args.seed
    )
    admin_token = await issue_token(conn, role="admin", label="bench")
    watch_tokens = [
        await issue_token(conn, role="guardian", guardian_id=g, label="bench") for g in city.watch_guardians
    ]
    await conn.close()
    log(
        f"city: {city.schools} schools, {city.routes} routes, {city.zones} danger zones, "
        f"{city.children:,} children ({city.driven:,} driven) registered in {time.time() - t:.1f} s"
    )

    # the simulator, from three hours ago (fixes must not come from the future)
    t = time.time()
    incidents = IncidentConfig(
        per_child_per_hour=args.incidents_per_hour or (6.0 if getattr(args, "workers", None) else 0.5),
        kind_weights={"leave_route": 0.4, "enter_zone": 0.4, "sos": 0.2},
    )
    config = SimConfig(
        seed=args.seed,
        incidents=incidents,
        duplicate_probability=args.duplicates,
        late_probability=args.late,
    )
    generator = FixGenerator(city.world, config, time.time() - 3 * 3600)
    log(f"simulator: {len(generator.children):,} virtual children ready in {time.time() - t:.1f} s")
    return CitySetup(database_url, db_name, city, admin_token, watch_tokens, generator)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    plan = plan_from(args)
    started = time.time()
    cleanup: list[Any] = []
    try:
        # servers
        if args.mqtt_url:
            mqtt_url, broker = args.mqtt_url, f"given: {args.mqtt_url}"
        else:
            mosq = OwnMosquitto(workdir, args.broker_inflight)
            cleanup.append(mosq.stop)
            mqtt_url = mosq.url
            broker = f"own mosquitto on port {mosq.port}, max_inflight_messages {args.broker_inflight}"
        log(f"broker: {broker}")
        setup = await setup_city(args, plan, workdir, cleanup)
        city, admin_token, watch_tokens, generator = (
            setup.city,
            setup.admin_token,
            setup.watch_tokens,
            setup.generator,
        )
        database_url = setup.database_url
        publishers = Publishers(mqtt_url, 1, workdir, args.publishers)
        prefix = f"bench-{uuid.uuid4().hex[:8]}/"
        # every driven child's first fix, sent before the measured phases (the tracker then holds
        # each one's state, as a tracker that has run for a while does): the single-fix phase measures
        # a running tracker, not its start (docs/performance.md, 2026-12-07, thirteenth session)
        warm_fixes = take_each(generator, len(generator.children))
        single_fixes = take(generator, plan.single_fixes)

        # the ceiling, before the tracker runs (nothing else on the CPUs)
        ceil = {}
        for qos in (0, 1):
            c_prefix = f"ceiling-{uuid.uuid4().hex[:6]}/"
            c = await asyncio.to_thread(
                ceiling, mqtt_url, c_prefix, qos, single_messages(c_prefix, single_fixes), publishers
            )
            ceil[f"qos{qos}_msg_per_s"] = round(c["msg_per_s"], 1)
            log(
                f"ceiling QoS {qos}: a bare paho subscriber receives {c['msg_per_s']:,.0f} msg/s "
                f"(publishers offered {c['offered_msg_per_s']:,.0f})"
            )

        # the tracker
        t = time.time()
        tracker = TrackerProcess(
            database_url=database_url,
            mqtt_url=mqtt_url,
            workdir=workdir,
            prefix=prefix,
            extra={k: v for k, v in (kv.split("=", 1) for kv in args.tracker_env)},
            profile=Path(args.out) / "tracker-profile.svg" if args.profile else None,
        )
        cleanup.append(tracker.stop)
        await tracker.wait_ready(args.start_timeout)
        t_ready = time.time() - t
        log(f"tracker ready in {t_ready:.1f} s, RSS {tracker.rss_mb()[0]:,.0f} MiB")
        watch = Watch([tracker], admin_token)
        tasks = [asyncio.create_task(watch.run())]
        sockets = Sockets(tracker.base, watch_tokens)
        tasks += sockets.start()
        cleanup.append(lambda: [t.cancel() for t in tasks])
        await asyncio.sleep(1.0)
        phases: list[Phase] = []
        seen: set[tuple[str, float]] = set()

        results: dict[str, Any] = {}
        batch10, batch100 = take(generator, plan.batch10_fixes), take(generator, plan.batch100_fixes)
        for key, label, fixes, messages in (
            (
                "warm_up",
                "warm-up, each driven child's first fix (single, QoS 1; not a target)",
                warm_fixes,
                single_messages(prefix, warm_fixes),
            ),
            ("single_qos1", "single fixes, QoS 1", single_fixes, single_messages(prefix, single_fixes)),
            ("batch10", "gateway batches of 10", batch10, batch_messages(prefix, batch10, 10)),
            ("batch100", "gateway batches of 100", batch100, batch_messages(prefix, batch100, 100)),
        ):
            results[key], _ = await tracker_phase(label, watch, publishers, messages, fixes, phases, seen)

        # latency at the fixed offered load, then at half what the tracker sustained with single fixes
        # (what an operator sees when the tracker keeps up; above its capacity latency is the backlog)
        def at(name: str, rate: float, seconds: float, batch: int) -> Any:
            return latency_phase(
                name,
                rate,
                seconds,
                batch,
                generator,
                prefix,
                watch,
                publishers,
                phases,
                seen,
                sockets,
                database_url=database_url,
            )

        results["latency_phase"], results["latency"], lat = await at(
            "latency_phase", plan.latency_rate, plan.latency_s, plan.latency_batch
        )
        # the same offered load from gateways (batches of 10 fixes): what a deployment whose tags report
        # through school gateways sees, and the tracker's capacity in that form is above 10,000 fixes/s
        lat_gw: list[tuple[float, float]] = []
        if plan.latency_batch == 0:
            results["latency_gateway_phase"], results["latency_gateway"], lat_gw = await at(
                "latency_gateway", plan.latency_rate, plan.latency_s, 10
            )
        keep_up = round(0.5 * results["single_qos1"]["fixes_per_s"], -2) or 100.0
        results["latency_keep_up_phase"], results["latency_keep_up"], lat_keep = await at(
            "latency_keep_up", keep_up, plan.latency_s / 2, 0
        )

        # the database agrees: every unique fix is stored once
        conn = await asyncpg.connect(database_url)
        in_db = await conn.fetchval("SELECT count(*) FROM positions")
        dead_db = await conn.fetchval("SELECT count(*) FROM dead_letters")
        await conn.close()
        _, peak = tracker.rss_mb()
        watch_samples = list(watch.samples)
        for t_ in tasks:
            t_.cancel()
        tracker.stop()

        phase_keys = tuple(
            k
            for k in (
                "warm_up",
                "single_qos1",
                "batch10",
                "batch100",
                "latency_phase",
                "latency_gateway_phase",
                "latency_keep_up_phase",
            )
            if k in results
        )
        lost = sum(results[k]["lost"] for k in phase_keys)
        expected_rows = sum(results[k]["fixes_sent"] - results[k]["duplicates_sent"] for k in phase_keys)
        single = results["single_qos1"]["fixes_per_s"]
        ratio = single / ceil["qos1_msg_per_s"] if ceil["qos1_msg_per_s"] else 0.0
        at_400k = plan.children >= 400_000
        report = {
            "bench": "e2e",
            "quick": args.quick,
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "broker": broker,
            "children_registered": city.children,
            "routes": city.routes,
            "danger_zones": city.zones,
            "children_driven": city.driven,
            "publishers": args.publishers,
            "tracker_ready_s": round(t_ready, 1),
            "ceiling": ceil,
            "tracker": {
                "single_qos1_fixes_per_tracker_cpu_s": results["single_qos1"]["fixes_per_tracker_cpu_s"],
                "batch100_fixes_per_tracker_cpu_s": results["batch100"]["fixes_per_tracker_cpu_s"],
                "single_qos1_fixes_per_s": single,
                "single_qos1_vs_ceiling_qos1": round(ratio, 3),
                "batch10_fixes_per_s": results["batch10"]["fixes_per_s"],
                "batch100_fixes_per_s": results["batch100"]["fixes_per_s"],
            },
            "phases": {k: results[k] for k in phase_keys},
            "accounting": {
                "fixes_sent": sum(results[k]["fixes_sent"] for k in phase_keys),
                "lost": lost,
                "positions_in_db": in_db,
                "positions_expected": expected_rows,
                "dead_letters_in_db": dead_db,
            },
            "latency": results["latency"],
            "latency_gateway": results.get("latency_gateway"),
            "latency_keep_up": results["latency_keep_up"],
            "rss_peak_mb": round(peak, 1),
            "targets": {
                "single_qos1_ge_0.8_ceiling": {
                    "value": round(ratio, 3),
                    "met": ratio >= TARGETS["single_qos1_vs_ceiling"],
                },
                "batch100_ge_100k_fixes_per_s": {
                    "value": results["batch100"]["fixes_per_s"],
                    "met": results["batch100"]["fixes_per_s"] >= TARGETS["batch100_fixes_per_s"],
                },
                "latency_p99_le_250ms_at_10k": {
                    "value": results["latency"]["p99_ms"],
                    "met": bool(lat)
                    and results["latency"]["p99_ms"] <= TARGETS["latency_p99_ms"]
                    and plan.latency_rate >= 10_000,
                },
                "latency_p99_le_250ms_at_10k_in_gateway_batches_of_10": {
                    "value": results["latency_gateway"]["p99_ms"],
                    "met": bool(lat_gw)
                    and results["latency_gateway"]["p99_ms"] <= TARGETS["latency_p99_ms"]
                    and plan.latency_rate >= 10_000,
                }
                if "latency_gateway" in results
                else None,
                "zero_lost": {"value": lost, "met": lost == 0 and in_db == expected_rows},
                "rss_le_1.5GB_at_400k": {
                    "value": round(peak, 1),
                    "met": (peak <= TARGETS["rss_mb_at_400k"]) if at_400k else None,
                },
            },
            "seconds": round(time.time() - started, 1),
        }
        out = Path(args.out)
        await asyncio.to_thread(_write, out, report)
        plot(out / "e2e.png", watch_samples, phases, lat + lat_gw + lat_keep, report)
        log(f"wrote {out / 'e2e.json'} and {out / 'e2e.png'}")
        return report
    finally:
        await unwind(cleanup)


async def unwind(cleanup: list[Any]) -> None:
    """Undo a run's set-up, last first (a step that fails does not keep the others from running)."""
    for stop in reversed(cleanup):
        with contextlib.suppress(Exception):
            r = stop()
            if asyncio.iscoroutine(r):
                await r


def _write(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a short run: 20,000 children, fewer fixes per phase")
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an admin URL: a fresh database is created there and dropped afterwards "
        "(if it does not answer: an embedded PostgreSQL)",
    )
    p.add_argument("--mqtt-url", help="use this broker (default: start mosquitto on a free port)")
    p.add_argument(
        "--broker-inflight",
        type=int,
        default=10_000,
        help="max_inflight_messages of the mosquitto the bench starts",
    )
    p.add_argument("--children", type=int, help="children registered (default 400,000; quick 20,000)")
    p.add_argument("--routes", type=int, help="routes registered (default: one per ten children)")
    p.add_argument("--driven", type=int, help="children the simulator walks (default 20,000; quick 5,000)")
    p.add_argument("--single-fixes", type=int, help="fixes in the single-message phase")
    p.add_argument("--batch10-fixes", type=int, help="fixes in the batches-of-10 phase")
    p.add_argument("--batch100-fixes", type=int, help="fixes in the batches-of-100 phase")
    p.add_argument(
        "--latency-rate", type=float, default=10_000.0, help="offered fixes/s in the latency phase"
    )
    p.add_argument("--latency-seconds", type=float, help="length of the latency phase (default 30; quick 8)")
    p.add_argument("--latency-batch", type=int, default=0, help="0: single-fix messages; N: batches of N")
    p.add_argument(
        "--incidents-per-hour",
        type=float,
        help="per driven child, simulated time (default 0.5; with --workers 6: its rates are lower, and the "
        "latency phase needs incidents)",
    )
    p.add_argument(
        "--duplicates", type=float, default=0.005, help="fraction of fixes the simulator sends twice"
    )
    p.add_argument("--late", type=float, default=0.005, help="fraction of fixes the simulator sends late")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--start-timeout", type=float, default=600.0, help="seconds the tracker may take to be ready"
    )
    p.add_argument(
        "--tracker-env",
        action="append",
        default=[],
        metavar="TRACKER_X=V",
        help="extra setting for the tracker process (repeatable)",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "out"), help="where e2e.json and e2e.png go")
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the tracker under py-spy (pip install py-spy); flame graph in --out",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the logs (tracker, mosquitto)")
    p.add_argument(
        "--workers",
        help="N[,N...]: the phases on a NATS cluster with N tracker workers, each N in turn "
        "(bench/e2e_workers.py) instead of one tracker on Mosquitto",
    )
    p.add_argument("--nats-nodes", type=int, default=3, help="nats-server nodes with --workers (3: R3)")
    p.add_argument(
        "--partitions", type=int, default=64, help="with --workers: the tags' partitions (TRACKER_PARTITIONS)"
    )
    p.add_argument(
        "--takeover-seconds", type=float, help="with --workers: the stream one worker is killed in"
    )
    args = p.parse_args(argv)
    if not args.workers and not args.mqtt_url and shutil.which("mosquitto") is None:
        p.error("mosquitto is not installed: install it or pass --mqtt-url")
    Path(args.out).mkdir(parents=True, exist_ok=True)  # (py-spy writes its flame graph there first)
    if args.workers:  # a cluster of workers on NATS instead of one tracker on Mosquitto
        from bench.e2e_workers import run_workers

        report = run_and_clean_up(run_workers, args, "tracker-e2e-workers-")
        print(json.dumps(report, separators=(",", ":")))
        return 0
    report = run_and_clean_up(run, args, "tracker-e2e-")
    print(json.dumps(report, separators=(",", ":")))
    return 0


def run_and_clean_up(
    run: Callable[[argparse.Namespace, Path], Awaitable[dict[str, Any]]],
    args: argparse.Namespace,
    prefix: str,
) -> dict[str, Any]:
    """A bench's run in a work directory of its own; whatever it started (tracker, broker, publishers,
    sockets, its database) is stopped and dropped afterwards, and on Ctrl-C or SIGTERM too. The work
    directory goes with it unless ``args.keep_workdir``."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))

    def interrupted(signum: int, _frame: object) -> None:
        log(f"interrupted ({signal.Signals(signum).name}): stopping what the run started")
        undo = threading.Thread(target=_undo_left)  # a thread of its own: it runs an event loop
        undo.start()
        undo.join(90)
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        os._exit(130)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        return asyncio.run(run(args, workdir))
    finally:
        _undo_left()
        if args.keep_workdir:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
