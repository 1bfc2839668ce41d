"""A worker cut off from the broker and PostgreSQL, coming back after its partitions moved (issue 16,
point 7): it commits nothing for them.

Two workers on tests/e2e/test_cluster.py's three nats-server processes: "host" runs in this machine's
network namespace, "cut" in a network namespace the test makes (a veth pair on a private /30). "cut"
reaches PostgreSQL and the NATS nodes, which listen on loopback only, through TCP relays the test runs
on the veth's host address. In the middle of the stream with incidents, while "cut" holds partitions
with children in them, the veth is brought down: no packet passes either way and no connection is
closed (a network cut, not a crash). The cut lasts longer than the lease: "host" takes every partition
over, and the cut is healed.

The cut is placed where it does harm: "cut" has a batch in its commit, past the fencing check (its
lease rows held FOR SHARE), its COPY into positions waiting on a lock the test holds; the lock is let
go once the cut is made, so PostgreSQL answers into the cut and waits for the COPY's rows. Then

- the takeover must not wait for that transaction (it would wait as long as the cut: PostgreSQL never
  hears that its client is gone): "host"'s lease keeper ends the sessions of a worker that is no longer
  live which are inside a transaction (tracker.cluster.leases);
- after the cut heals, "cut" tries its batch again, prepared under the tokens it held before the cut:
  the fencing check refuses it (its log says so), and the partitions it lost are not its any more;
- "cut" rejoins and takes a share again;
- and the end state is a single tracker's: every fix stored once, every incident alerted once, one
  SMS per delivery (tests/e2e/test_crash_safety.py's ``_settle_and_check``).

The test prints FIGURES lines: how long the takeover took, how long the cut lasted, what became of
the batch "cut" had in flight, and how long it took to rejoin.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.e2e.test_cluster import LEASE_TTL_S, PARTITIONS, held_by, owners, worker
from tests.e2e.test_crash_safety import (
    KIDS,
    STAMP_S,
    StreamPublisher,
    TrackerProcess,
    _insert_waiting,
    _settle_and_check,
    _stored_at_least,
    stream,
    walk,
)
from tests.helpers import build_small_world, wait_until
from tracker.embedded import EmbeddedNats, free_port
from tracker.store.db import connect

pytestmark = pytest.mark.timeout(420)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def _netns_possible() -> str | None:
    """Why a network namespace cannot be made here (None: it can)."""
    if shutil.which("ip") is None:
        return "no 'ip' command"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


@dataclass
class Namespace:
    """A network namespace joined to this one by a veth pair: ``host_addr`` on this side,
    ``ns_addr`` inside."""

    name: str
    veth: str  # this side's end
    host_addr: str
    ns_addr: str

    def run(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """No packet either way from now on; no connection is told."""
        self._link("down")

    def heal(self) -> None:
        self._link("up")

    def _link(self, state: str) -> None:
        r = _ip("link", "set", self.veth, state)
        assert r.returncode == 0, r.stderr


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    why = _netns_possible()
    if why is not None:
        pytest.skip(why)  # (CI=true fails on a skip: CI runs as root with iproute2)
    used = _ip("-4", "addr").stdout
    for _ in range(100):
        x = random.randrange(1, 255)
        if f"10.231.{x}." not in used:
            break
    suffix = uuid.uuid4().hex[:6]
    ns = Namespace(f"trkcut-{suffix}", f"vc{suffix}h", f"10.231.{x}.1", f"10.231.{x}.2")
    inner = f"vc{suffix}n"
    try:
        steps = [
            ["netns", "add", ns.name],
            ["link", "add", ns.veth, "type", "veth", "peer", "name", inner],
            ["link", "set", inner, "netns", ns.name],
            ["addr", "add", f"{ns.host_addr}/30", "dev", ns.veth],
            ["link", "set", ns.veth, "up"],
            ["netns", "exec", ns.name, "ip", "addr", "add", f"{ns.ns_addr}/30", "dev", inner],
            ["netns", "exec", ns.name, "ip", "link", "set", inner, "up"],
            ["netns", "exec", ns.name, "ip", "link", "set", "lo", "up"],
        ]
        for i, step in enumerate(steps):
            r = _ip(*step)
            if i == 0 and r.returncode != 0 and "ermission" in r.stderr:
                pytest.skip(f"cannot make a network namespace here: {r.stderr.strip()}")
            assert r.returncode == 0, (step, r.stderr)
        yield ns
    finally:
        _ip("netns", "del", ns.name)  # (takes the veth pair with it)
        _ip("link", "del", ns.veth)


class Relay:
    """A TCP relay on ``host:port`` of this namespace to ``127.0.0.1:target`` (PostgreSQL and the NATS
    nodes listen on loopback only). It never closes a connection by itself unless one side does:
    a cut of the veth is seen by nobody. ``upstream_ports``: the local ports of its connections to the
    target (PostgreSQL's ``client_port`` of the sessions that came through it)."""

    def __init__(self, host: str, target: int) -> None:
        self.host = host
        self.target = target
        self.port = free_port()
        self.upstream_ports: set[int] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        try:
            up_in, up_out = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_out.close()
            return
        self.upstream_ports.add(up_out.get_extra_info("sockname")[1])

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        for coro in (pipe(client_in, up_out), pipe(up_in, client_out)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


class NamespacedTracker(TrackerProcess):
    """`tracker run` inside a network namespace; its HTTP port is asked on the namespace's address."""

    def __init__(self, env: dict[str, str], log: Path, ns: Namespace) -> None:
        super().__init__(env, log)
        self.ns = ns

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.ns.run(sys.executable, "-c", "from tracker.cli import main; main()", "run"),
            env=self.env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        self.starts += 1

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5) as http:
            return await http.get(f"http://{self.ns.ns_addr}:{self.port}{path}")

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            r = await self.get("/readyz")
            return r.status_code, r.json()
        except httpx.HTTPError:
            return 0, {}


def _through(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    at = f"{netloc[0]}@" if len(netloc) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{at}{host}:{port}"))


def _stored_metric(text: str) -> float:
    m = re.search(r"^tracker_fixes_stored_total (\S+)$", text, re.M)
    assert m is not None
    return float(m.group(1))


async def test_a_worker_cut_off_commits_nothing_after_its_partitions_moved(
    database_url: str, nats_nodes: list[EmbeddedNats], namespace: Namespace, tmp_path: Path
) -> None:
    ns = namespace
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, KIDS)
    finally:
        await conn.close()
    pg_port = urlsplit(database_url).port or 5432
    pg_relay = Relay(ns.host_addr, pg_port)
    nats_relays = [Relay(ns.host_addr, n.port) for n in nats_nodes]
    for r in (pg_relay, *nats_relays):
        await r.start()

    host = worker(database_url, nats_nodes, tmp_path, "host")
    cut_env = worker(database_url, nats_nodes, tmp_path, "cut").env
    cut_env.update(
        TRACKER_DATABASE_URL=_through(database_url, ns.host_addr, pg_relay.port),
        TRACKER_NATS_URL=",".join(f"nats://{ns.host_addr}:{r.port}" for r in nats_relays),
        TRACKER_HTTP_HOST="0.0.0.0",  # asked from this namespace on the veth's far address
    )
    cut = NamespacedTracker(cut_env, tmp_path / "cut.log", ns)
    workers = {"host": host, "cut": cut}
    tags = [world.kids[k].tag for k in KIDS]
    publisher = StreamPublisher(
        nats_nodes[0].mqtt_port, stream(tags, time.time() - STAMP_S * len(walk()) - 5), pace_s=0.01
    )
    lock = await asyncpg.connect(database_url)
    healed = True
    try:
        for w in workers.values():
            w.start()
        for w in workers.values():
            await w.wait_ready()
        try:
            await wait_until(lambda: held_by(database_url, {"host", "cut"}), 60, interval=0.2)
        except TimeoutError:
            raise AssertionError(f"partitions not shared: {await owners(database_url)}") from None
        now = await owners(database_url)
        cut_kids = [k for k in KIDS if now.get(world.kids[k].child_id % PARTITIONS) == "cut"]
        # (the kids' ids are consecutive: five of eight partitions, some in each half of the split)
        assert cut_kids, now

        publisher.start()
        await _stored_at_least(database_url, len(publisher.messages) // 3)
        assert publisher.sent < len(publisher.messages)
        # "cut"'s next commit waits on the test's lock, past its fencing check: the cut lands there
        await lock.execute("BEGIN; LOCK TABLE positions IN SHARE ROW EXCLUSIVE MODE")
        await wait_until(lambda: _insert_waiting(database_url, pg_relay.upstream_ports), 60, interval=0.05)
        stored_before_cut = _stored_metric((await cut.get("/metrics")).text)
        ns.cut()
        healed = False
        cut_at = time.monotonic()
        log_at_cut = cut.log.stat().st_size
        await lock.execute("ROLLBACK")  # PostgreSQL answers "cut"'s COPY into the cut

        try:
            await wait_until(lambda: held_by(database_url, {"host"}), 60, interval=0.1)
        except TimeoutError:
            raise AssertionError(f"no takeover during the cut: {await owners(database_url)}") from None
        takeover_s = time.monotonic() - cut_at
        ended = re.findall(r"worker host ended session \d+ of worker cut", host.log.read_text())
        # the stream goes on through "host" alone: every fix published up to the stream's pause (four
        # fifths) is stored, the fenced batch's and every later one of "cut"'s children too; the cut
        # lasts at least two leases
        await _stored_at_least(database_url, publisher.hold_at)
        await asyncio.sleep(max(0.0, cut_at + 2 * LEASE_TTL_S - time.monotonic()))
        ns.heal()
        healed = True
        cut_s = time.monotonic() - cut_at
        healed_at = time.monotonic()
        publisher.release.set()  # the last fifth while "cut" comes back and takes a share again

        # the batch "cut" had in flight is tried again and refused by the fencing check
        def after_cut() -> str:
            with open(cut.log, "rb") as f:
                f.seek(log_at_cut)
                return f.read().decode(errors="replace")

        fenced = re.compile(
            r"batch of (\d+) messages not committed: fenced: partitions (\[[\d, ]+\]) changed hands"
        )
        try:
            in_flight = await wait_until(lambda: fenced.search(after_cut()), 90, interval=0.1)
        except TimeoutError:
            raise AssertionError(
                f"no fenced batch in cut's log after the cut:\n{after_cut()[-4000:]}"
            ) from None
        fenced_s = time.monotonic() - healed_at
        lost = re.findall(r"worker cut lost partitions (\[[\d, ]+\]) \(([^)]*)\)", after_cut())
        assert lost, after_cut()[-4000:]

        # "cut" rejoins and takes a share again
        await wait_until(lambda: held_by(database_url, {"host", "cut"}), 90, interval=0.1)
        rejoin_s = time.monotonic() - healed_at
        shares = await owners(database_url)
        print(
            f"\nFIGURES cut: takeover by host {takeover_s:.1f} s after the cut (lease {LEASE_TTL_S:.0f} s),"
            f" cut held {cut_s:.1f} s; cut's lost partitions: {lost}"
        )
        print(
            f"FIGURES cut in-flight batch: {in_flight[1]} messages of partitions {in_flight[2]}, its COPY"
            f" waiting at the cut; host ended {len(ended)} session(s) of cut inside a transaction;"
            f" the batch was tried again {fenced_s:.1f} s after the heal and fenced (cut had stored"
            f" {stored_before_cut:.0f} fixes before the cut); cut rejoined"
            f" {rejoin_s:.1f} s after the heal holding {sorted(p for p, o in shares.items() if o == 'cut')}"
        )
        assert ended  # (the takeover could not have happened otherwise: the batch held cut's leases)
        await _settle_and_check(database_url, world, [host, cut], publisher, "worker cut off")
    finally:
        if not healed:
            ns.heal()
        await lock.close()
        publisher.close()
        for w in workers.values():
            w.stop()
        for r in (pg_relay, *nats_relays):
            await r.stop()
