"""At-least-once delivery, exactly-once effect (issue 8, point 3): the tracker runs as its own process
(`tracker run`), a device-side publisher streams fixes with incidents (an SOS, two walks off the
route, one into a danger zone, for each of five children), and in the middle of the stream

- the tracker is killed with SIGKILL (twice) and started again: once while its batch waits on a lock
  the test holds on the positions table (certainly received and not committed), once wherever it is;
- the broker (a mosquitto of the test's own, with persistence) is stopped and started again;
- PostgreSQL (an embedded one of the test's own) is stopped and started again.

Afterwards every fix is stored exactly once and every incident alerted exactly once, no delivery is
left 'sending', and every SMS delivery sent has exactly one SMS; while the broker or the database is
away, /readyz says which one (503), and the tracker reconnects by itself. Each test prints a FIGURES
line (messages published, stored, lost, duplicate alerts, SMS) for the issue's note.

The SIGKILL test places its kills where a crash does harm (issue 14, point 9):
- the first also lands while a round of deliveries has recorded its SMS and not yet marked the
  deliveries sent (the test holds their rows): the next process sends them again, and each still has
  one SMS (tracker/alerts/channels.py);
- before the second, the tracker's acknowledgements are held back on their way to the broker (the
  tracker reaches the broker through a relay of the test's), so the kill certainly leaves committed,
  unacknowledged fixes: the broker gives them to the next process again, which counts them as
  received and already stored, and they change nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.helpers import build_small_world, fix, wait_until
from tests.own_servers import OwnMosquitto
from tracker.embedded import EmbeddedPostgres, free_port
from tracker.store.alerts import CLAIM_TIMEOUT_S, MARK_STATEMENT
from tracker.store.db import apply_migrations, connect

pytestmark = [
    pytest.mark.skipif(not __import__("shutil").which("mosquitto"), reason="needs mosquitto"),
    pytest.mark.timeout(300),
]
KIDS = ["Ara", "Bin", "Chae", "Dan", "Eun"]
# per child: one SOS, two walks off the route (the second one into the construction site), one zone
EXPECTED_ALERTS = {"sos": 1, "left_route": 2, "danger_zone": 1}


def walk() -> list[tuple[float, float]]:
    """A child's path in metres (see tests.helpers.SmallWorld), 10 m per fix: along the route, 80 m
    north of it and back, along again, north into the construction site (x -340..-260, y 110..190),
    a few seconds inside, back, and on along the route."""
    pts: list[tuple[float, float]] = []

    def go(x0: float, y0: float, x1: float, y1: float, dwell: int = 0) -> None:
        n = max(1, round(max(abs(x1 - x0), abs(y1 - y0)) / 10))
        pts.extend((x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(n))
        pts.extend([(x1, y1)] * dwell)

    go(-540, 0, -450, 0)
    go(-450, 0, -450, 80, dwell=4)
    go(-450, 80, -450, 0)
    go(-450, 0, -300, 0)
    go(-300, 0, -300, 150, dwell=4)
    go(-300, 150, -300, 0)
    go(-300, 0, -200, 0, dwell=1)
    return pts


STAMP_S = 5.0  # 10 m per fix: 2 m/s (the monitor knows a walking child from a ride, tracker.monitor)


def stream(tags: list[str], t0: float) -> list[tuple[str, bytes]]:
    """Every child's fixes, STAMP_S apart, the children interleaved; the 6th fix carries SOS.
    (A dwell repeats a place, never a timestamp.)"""
    path = walk()
    out = []
    for i, (x, y) in enumerate(path):
        for tag in tags:
            body = fix(x, y, t0 + STAMP_S * i, acc=8, sos=(i == 5))
            out.append((f"tracker/v1/tags/{tag}/position", json.dumps(body).encode()))
    return out


class StreamPublisher:
    """A device-side client (persistent session, QoS 1) that publishes a list of messages at a pace,
    in a thread, and keeps going across broker restarts (paho resends what was not acknowledged).

    Its messages reach the broker in the order they are published, as a tag's fixes do. paho alone
    does not keep that order across a reconnect: its CONNACK handler marks the session connected
    before it resends what it queued while away, and a message published from another thread in
    between goes first. (A cluster not ready for MQTT sessions refused the first connect for 5 s, so
    one fix per child reached the broker ahead of the 35 queued before it; the tracker judged those
    35 "older than the child's last decided fix", and the first departure went unalerted:
    tests/e2e/test_cluster_cut.py failed one run in two.) So nothing is published before the first
    connect, and after a lost connection nothing more until all that came before is acknowledged."""

    def __init__(self, port: int, messages: list[tuple[str, bytes]], pace_s: float) -> None:
        self.messages = messages
        self.pace_s = pace_s
        # the stream pauses before its last fifth until the test has done its damage, so that the
        # damage is done mid-stream however slow the machine is
        self.hold_at = len(messages) * 4 // 5
        self.release = threading.Event()
        self.port = port
        self.sent = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", clean_session=False
        )
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(0.2, 2)
        self._acked: set[int] = set()
        self._connected = threading.Event()
        self._lost = False  # the connection was lost since the last message published in order
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self._acked.add(mid)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._infos: list[mqtt.MQTTMessageInfo] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, _reason: Any, _p: Any) -> None:
        self._lost = True
        self._connected.clear()

    def start(self) -> None:
        self._thread.start()

    def _in_order(self) -> None:
        """Wait until a message published now goes after every earlier one (see the class)."""
        while True:
            if not self._connected.wait(0.05):
                continue
            if not self._lost:
                return
            if all(i.mid in self._acked for i in self._infos):
                self._lost = False
                return
            time.sleep(0.01)

    def _run(self) -> None:
        for i, (topic, payload) in enumerate(self.messages):
            if i == self.hold_at:
                self.release.wait(180)
            self._in_order()
            self._infos.append(self.client.publish(topic, payload, qos=1))
            self.sent += 1
            time.sleep(self.pace_s)

    def all_acknowledged(self) -> bool:
        # (while the broker is away, publish() queues the message and says "not connected"; paho
        # sends it after reconnecting, and the broker's PUBACK lands here)
        return not self._thread.is_alive() and all(i.mid in self._acked for i in self._infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AckHoldingRelay:
    """A TCP relay between the tracker and the broker. After `hold()`, what the tracker sends on the
    connections open then (its PUBACKs) is dropped, and what the broker sends still passes: the
    tracker goes on receiving and committing fixes that the broker never hears acknowledged. A
    connection opened later (the next process's) is relayed both ways."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = free_port()
        self._held: list[bool] = []  # per connection: is what the tracker sends dropped?
        self._server: asyncio.Server | None = None

    def hold(self) -> None:
        self._held = [True] * len(self._held)

    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _relay(self, tracker_in: asyncio.StreamReader, tracker_out: asyncio.StreamWriter) -> None:
        broker_in, broker_out = await asyncio.open_connection("127.0.0.1", self.broker_port)
        connection = len(self._held)
        self._held.append(False)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_tracker: bool) -> None:
            try:
                while data := await src.read(65536):
                    if from_tracker and self._held[connection]:
                        continue  # never reaches the broker
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(tracker_in, broker_out, True), pipe(broker_in, tracker_out, False))


class TrackerProcess:
    """`tracker run` in a child process, with settings from the environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = int(env["TRACKER_HTTP_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tracker.cli import main; main()", "run"],
            env=self.env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        self.starts += 1

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                r = await http.get(f"http://127.0.0.1:{self.port}/readyz")
            return r.status_code, r.json()
        except httpx.HTTPError:
            return 0, {}

    async def wait_ready(self, timeout: float = 90) -> None:
        async def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            return (await self.readyz())[0] == 200

        await wait_until(ready, timeout, interval=0.2)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[OwnMosquitto]:
    b = OwnMosquitto(tmp_path / "mosquitto", extra="allow_anonymous true\n", persistence=True)
    b.start()
    yield b
    b.stop()


@pytest.fixture
async def own_postgres() -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    # outside pytest's tmp_path (0700): the embedded server may run as its own user (as in conftest)
    folder = Path(tempfile.mkdtemp(prefix="tracker-crash-pg-"))
    os.chmod(folder, 0o755)
    server = EmbeddedPostgres(folder / "data")
    url = await asyncio.to_thread(server.start)
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    yield server, url
    await asyncio.to_thread(server.stop)
    shutil.rmtree(folder, ignore_errors=True)


async def _scenario(
    database_url: str, broker: OwnMosquitto, tmp_path: Path, tracker_mqtt_url: str | None = None
) -> tuple[Any, TrackerProcess, StreamPublisher]:
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, KIDS)
    finally:
        await conn.close()
    env = {
        **os.environ,
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_MQTT_URL": tracker_mqtt_url or broker.url(),
        "TRACKER_HTTP_PORT": str(free_port()),
        "TRACKER_MQTT_CLIENT_ID": f"tracker-crash-{uuid.uuid4().hex[:8]}",
        "TRACKER_DATA_DIR": str(tmp_path / "data"),
        "TRACKER_OFF_ROUTE_MIN_S": "3",
        "TRACKER_BATCH_WAIT_MS": "5",
        "TRACKER_TICK_S": "1",
    }
    env.pop("TRACKER_TOPIC_PREFIX", None)
    tracker = TrackerProcess(env, tmp_path / "tracker.log")
    tags = [world.kids[k].tag for k in KIDS]
    messages = stream(tags, time.time() - STAMP_S * len(walk()) - 5)
    publisher = StreamPublisher(broker.port, messages, pace_s=0.01)
    return world, tracker, publisher


async def _count(database_url: str, sql: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _stored_at_least(database_url: str, n: int, timeout: float = 120) -> None:
    async def enough() -> bool:
        try:
            return await _count(database_url, "SELECT count(*) FROM positions") >= n
        except (OSError, asyncpg.PostgresError):
            return False

    await wait_until(enough, timeout, interval=0.1)


async def _settle_and_check(
    database_url: str,
    world: Any,
    tracker: TrackerProcess | list[TrackerProcess],
    publisher: StreamPublisher,
    case: str,
    sent_again: frozenset[int] = frozenset(),
) -> None:
    """Wait for the whole stream, then prove nothing is still being redelivered (a last fix per child,
    published after everything, is stored after whatever came before it), then count; wait for the
    outbox to settle and check the SMS (`sent_again`: SMS deliveries the test knows a killed process
    recorded and did not mark)."""
    trackers = tracker if isinstance(tracker, list) else [tracker]  # one process, or a cluster's workers
    total = len(publisher.messages)
    publisher.release.set()
    await wait_until(publisher.all_acknowledged, 120, interval=0.1)
    await _stored_at_least(database_url, total)
    last_ts = max(json.loads(p)["ts"] for _, p in publisher.messages)
    closing = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    closing.connect("127.0.0.1", publisher.port)
    closing.loop_start()
    for k in KIDS:
        body = json.dumps(fix(-200, 0, last_ts + 1, acc=8))
        closing.publish(f"tracker/v1/tags/{world.kids[k].tag}/position", body, qos=1).wait_for_publish(10)
    closing.disconnect()
    closing.loop_stop()
    await _stored_at_least(database_url, total + len(KIDS))
    # a delivery a killed process had claimed waits for its claim to time out (CLAIM_TIMEOUT_S) and for
    # a live dispatcher's next look at abandoned claims before it is sent
    outbox = await _settled_outbox(database_url, timeout=CLAIM_TIMEOUT_S + 60)

    conn = await asyncpg.connect(database_url)
    try:
        # the stream's fixes, not the closing ones a second later (half a second apart from both: no
        # microsecond rounding of the float timestamps can move a fix across the line)
        stored = await conn.fetchval(
            "SELECT count(*) FROM positions WHERE ts < to_timestamp($1)", last_ts + 0.5
        )
        per_tag = Counter(
            {
                r["tag_id"]: r["n"]
                for r in await conn.fetch("SELECT tag_id, count(*) AS n FROM positions GROUP BY 1")
            }
        )
        alerts = await conn.fetch("SELECT child_id, kind FROM alerts")
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
        have = {
            (r["tag_id"], round(r["ts"].timestamp(), 3))
            for r in await conn.fetch("SELECT tag_id, ts FROM positions")
        }
        # every SMS delivery with its messages (a message's delivery is never deleted here)
        sms = await conn.fetch(
            "SELECT d.id, d.alert_id, a.kind, d.transition, d.guardian_id, d.state, d.attempts,"
            " count(m.id) AS messages"
            " FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
            " LEFT JOIN sms_messages m ON m.delivery_id = d.id WHERE d.channel = 'sms' GROUP BY d.id, a.kind"
        )
        unlinked_sms = await conn.fetchval("SELECT count(*) FROM sms_messages WHERE delivery_id IS NULL")
    finally:
        await conn.close()
    by_child: dict[int, Counter[str]] = {}
    for a in alerts:
        by_child.setdefault(a["child_id"], Counter())[a["kind"]] += 1
    sent = [(t.split("/")[3], round(json.loads(p)["ts"], 3)) for t, p in publisher.messages]
    missing = [(i, m) for i, m in enumerate(sent) if m not in have]
    lost = len(missing)  # each published fix looked up by (tag, ts)
    if missing:
        print(f"\nMISSING (index in the stream, (tag, ts)): {missing}")
    duplicates = sum(
        max(0, n - EXPECTED_ALERTS.get(kind, 0)) for c in by_child.values() for kind, n in c.items()
    )
    print(
        f"\nFIGURES {case}: published={total} stored={stored} lost={lost} duplicate_alerts={duplicates}"
        f" alerts={len(alerts)} tracker_starts={sum(t.starts for t in trackers)} dead_letters={dead}"
        f" sms={sum(d['messages'] for d in sms)} sms_deliveries={Counter(d['state'] for d in sms)}"
        f" sms_sent_again_after_their_record={len(sent_again)} deliveries={outbox}"
    )
    assert lost == 0 and stored == total and dead == 0
    for t in trackers:
        assert "crashed" not in t.log.read_text()  # every loop of every process survived
    assert set(per_tag.values()) == {len(walk()) + 1}, per_tag  # every fix once, every child complete
    for k in KIDS:
        assert by_child.get(world.kids[k].child_id) == Counter(EXPECTED_ALERTS), (k, by_child)
    # no delivery left 'sending' (nor due) once the outbox has settled, whatever was killed
    assert set(outbox) <= {"sent", "offline", "suppressed"}, outbox
    # one SMS per delivery sent, none for one not sent; so one per alert, transition and guardian
    # (the outbox has one delivery for each: its unique index)
    wrong = [dict(d) for d in sms if d["messages"] != (1 if d["state"] == "sent" else 0)]
    assert not wrong, wrong
    assert unlinked_sms == 0
    # every incident's opening reached its child's guardian by SMS (critical ones past any rate limit)
    guardians = {world.kids[k].guardian_id for k in KIDS}
    opened = Counter((d["guardian_id"], d["kind"]) for d in sms if d["transition"] == "opened")
    assert opened == Counter({(g, kind): n for g in guardians for kind, n in EXPECTED_ALERTS.items()})
    assert all(d["state"] == "sent" for d in sms if d["kind"] == "sos" and d["transition"] == "opened")
    # the deliveries the test caught recorded and not marked: given to their channel again, one SMS
    again = {d["id"]: (d["state"], d["attempts"], d["messages"]) for d in sms if d["id"] in sent_again}
    assert again == {i: ("sent", 2, 1) for i in sent_again}, again


async def _settled_outbox(database_url: str, timeout: float = 60) -> Counter[str]:
    """The deliveries by state once none is pending or sending (a retry's back-off is seconds here)."""

    async def settled() -> Counter[str] | None:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT state, count(*) AS n FROM deliveries GROUP BY state")
        finally:
            await conn.close()
        states = Counter({r["state"]: r["n"] for r in rows})
        return None if states["pending"] or states["sending"] else states

    try:
        states: Counter[str] = await wait_until(settled, timeout, interval=0.2)
        return states
    except TimeoutError:
        conn = await asyncpg.connect(database_url)
        try:
            left = await conn.fetch(
                "SELECT id, channel, state, attempts, last_error FROM deliveries"
                " WHERE state IN ('pending', 'sending')"
            )
        finally:
            await conn.close()
        raise AssertionError(f"deliveries never settled: {[dict(r) for r in left]}") from None


async def test_sigkill_mid_stream_loses_nothing_and_alerts_once(
    database_url: str, broker: OwnMosquitto, tmp_path: Path
) -> None:
    relay = AckHoldingRelay(broker.port)
    await relay.start()
    world, tracker, publisher = await _scenario(database_url, broker, tmp_path, relay.url())
    # the test's locks: on sms_messages (a round's SMS wait to be recorded), on the deliveries of
    # that round (their outcome waits to be marked), on positions (a batch waits to be stored)
    sms_lock, rows_lock, positions_lock = [await asyncpg.connect(database_url) for _ in range(3)]
    tracker.start()
    try:
        await tracker.wait_ready()
        await sms_lock.execute("BEGIN; LOCK TABLE sms_messages IN EXCLUSIVE MODE")
        publisher.start()
        total = len(publisher.messages)
        # the first round with an SMS (an SOS's): its SMS waits to be recorded, its deliveries are 'sending'
        await wait_until(partial(_waiting, database_url, "INSERT INTO sms_messages"), 60)
        await rows_lock.execute("BEGIN")
        caught = await rows_lock.fetch(
            "SELECT id, channel FROM deliveries WHERE state = 'sending' FOR NO KEY UPDATE"
        )
        sent_again = frozenset(r["id"] for r in caught if r["channel"] == "sms")
        assert sent_again
        # each of the dispatcher's lanes (the websocket; every other channel) with a round caught here
        # has its mark wait on these rows; so does a critical alert's send at once (its sockets'
        # deliveries, claimed by the commit), when one was caught too
        lanes_caught = len({r["channel"] == "websocket" for r in caught})
        await sms_lock.execute("ROLLBACK")  # the SMS are recorded; the round's mark waits on the rows
        await wait_until(partial(_waiting, database_url, MARK_STATEMENT), 30)
        for share, caught_committing in ((0.3, True), (0.6, False)):
            await _stored_at_least(database_url, int(total * share))
            assert publisher.sent < total  # the stream is still running (it waits at 80 %)
            if caught_committing:
                # first kill: certainly with a batch received and not committed, and a round of
                # deliveries recorded and not marked. The test's lock makes the tracker's next INSERT
                # into positions wait, and the tracker is killed while it waits.
                await positions_lock.execute("BEGIN; LOCK TABLE positions IN SHARE ROW EXCLUSIVE MODE")
                await wait_until(partial(_insert_waiting, database_url), 30)
                tracker.kill()
                # the round's mark was sent whole before the kill and would be written once the rows
                # are free: it dies with its process (as if killed before sending it)
                await _end_statements_of_the_dead(database_url, MARK_STATEMENT, lanes_caught)
                await rows_lock.execute("ROLLBACK")
                await positions_lock.execute("ROLLBACK")
            else:
                # second kill: with fixes certainly committed and not acknowledged (their PUBACKs go
                # nowhere), and wherever the tracker happens to be otherwise
                relay.hold()
                held_from = await _count(database_url, "SELECT count(*) FROM positions")
                publisher.release.set()  # the last fifth: fixes to commit while nothing is acknowledged
                await _stored_at_least(database_url, held_from + 1)
                tracker.kill()
                committed_unacknowledged = (
                    await _count(database_url, "SELECT count(*) FROM positions") - held_from
                )
            tracker.start()
            await tracker.wait_ready()
        await _settle_and_check(database_url, world, tracker, publisher, "sigkill", sent_again)
        # what the last process was given again (committed by the one killed before it acknowledged)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{tracker.port}/metrics")).text
        counts = dict(re.findall(r"^(tracker_fixes_in_total|tracker_fixes_stored_total) (\S+)$", text, re.M))
        again = float(counts["tracker_fixes_in_total"]) - float(counts["tracker_fixes_stored_total"])
        print(
            f"FIGURES sigkill: fixes the last process received that were already stored: {again:.0f}"
            f" (at least {committed_unacknowledged} committed while their acknowledgements were held)"
        )
        # the kill did cause redelivery: at least every fix committed after the acknowledgements were
        # held back came again (those committed just before may have had theirs on the way too). That
        # each of them changed nothing, _settle_and_check proved: every fix stored once, every
        # incident alerted once.
        assert again >= committed_unacknowledged >= 1
    finally:
        publisher.close()
        tracker.stop()
        for conn in (sms_lock, rows_lock, positions_lock):
            await conn.close()
        await relay.stop()


async def test_broker_restart_mid_stream(database_url: str, broker: OwnMosquitto, tmp_path: Path) -> None:
    world, tracker, publisher = await _scenario(database_url, broker, tmp_path)
    tracker.start()
    try:
        await tracker.wait_ready()
        publisher.start()
        await _stored_at_least(database_url, len(publisher.messages) // 3)
        assert publisher.sent < len(publisher.messages)  # the stream is still running
        await asyncio.to_thread(broker.stop)
        status, body = await wait_until(lambda: _not_ready(tracker), 30)
        assert status == 503 and body["components"]["mqtt"] is False
        await asyncio.to_thread(broker.start)
        await tracker.wait_ready()  # reconnected by itself (paho's back-off), same session
        await _settle_and_check(database_url, world, tracker, publisher, "broker-restart")
        assert tracker.starts == 1
    finally:
        publisher.close()
        tracker.stop()


async def test_postgres_restart_mid_stream(
    own_postgres: tuple[EmbeddedPostgres, str], broker: OwnMosquitto, tmp_path: Path
) -> None:
    server, database_url = own_postgres
    world, tracker, publisher = await _scenario(database_url, broker, tmp_path)
    tracker.start()
    try:
        await tracker.wait_ready()
        publisher.start()
        await _stored_at_least(database_url, len(publisher.messages) // 3)
        assert publisher.sent < len(publisher.messages)  # the stream is still running
        await asyncio.to_thread(server.stop)
        status, body = await wait_until(lambda: _not_ready(tracker), 30)
        assert status == 503 and body["components"]["database"] is False
        assert await asyncio.to_thread(server.start) == database_url
        await tracker.wait_ready()  # the pool reconnected by itself; the batch was retried
        await _settle_and_check(database_url, world, tracker, publisher, "postgres-restart")
        assert tracker.starts == 1
    finally:
        publisher.close()
        tracker.stop()


async def _insert_waiting(database_url: str, client_ports: set[int] | None = None) -> bool:
    """Is a write into positions (the COPY of the decided fixes, or the INSERT of the others) waiting
    for a lock? ``client_ports``: only a session from one of these ports (a process behind a relay).
    (Asked outside the lock's transaction: inside it, pg_stat_activity would show the snapshot of its
    first read.)"""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT client_port, wait_event_type, left(query, 60) AS q FROM pg_stat_activity"
            " WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    into_positions = re.compile(r'^\s*(INSERT INTO|COPY) "?positions"?\b')
    return any(
        (client_ports is None or r["client_port"] in client_ports)
        and r["wait_event_type"] == "Lock"
        and into_positions.search(r["q"])
        for r in rows
    )


async def _waiting(database_url: str, statement_start: str) -> bool:
    """Is a statement that begins so waiting for a lock? (Asked outside the locks' transactions.)"""
    conn = await asyncpg.connect(database_url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND starts_with(ltrim(query), $1)",
                statement_start,
            )
        )
    finally:
        await conn.close()


async def _end_statements_of_the_dead(database_url: str, statement_start: str, at_least: int = 1) -> None:
    """End the backends (``at_least`` of them) whose statement begins so and waits for a lock (a killed
    process's: PostgreSQL notices a dead client only when it next reads from it)."""
    conn = await asyncpg.connect(database_url)
    try:
        ended = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND starts_with(ltrim(query), $1)",
            statement_start,
        )
    finally:
        await conn.close()
    assert ended >= at_least


async def _not_ready(tracker: TrackerProcess) -> tuple[int, dict[str, Any]] | None:
    status, body = await tracker.readyz()
    return (status, body) if status == 503 else None
