"""Never lose silently to the broker's settings (issue 18, point 1), on Mosquittos of the test's own.

- A Mosquitto with its stock settings (only a listener): the tracker's probe at start finds that it
  drops what it queues beyond 1000 messages; /readyz is 503 naming max_queued_messages, the log says
  it at ERROR and /metrics counts it, before any burst. The burst then loses exactly what the probe
  foretold: with the tracker's commits held (a lock on positions, as when PostgreSQL is slow), the
  broker keeps the tracker's in-flight window and 1000 queued, and drops the rest.
- Over MQTT 3.1.1 the stock broker also throttles (20 in flight): the probe names
  max_inflight_messages too.
- An ACL from before the probe (the tracker's user may only read): the probe names the ACL.
- A Mosquitto that includes the settings file `tracker broker-config --settings-file` writes (with
  its password file and ACL, which let the tracker's user probe): the probe passes, /readyz is 200,
  and 5,000 SOS fixes from 5,000 tags sent while the tracker's commits are held (the broker queues
  all but the window) are all stored, each with its alert.

The tracker's in-flight window is made small here (an ingest queue and batches of 100: a Receive
Maximum of 300) so that the broker's queue, not the window, takes the burst.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.helpers import build_small_world, fix, wait_until
from tests.own_servers import OwnMosquitto
from tracker.ingest.broker_probe import BrokerProbe, Protocol, judge, observe, probe_topic
from tracker.ingest.mqtt import BrokerAddress
from tracker.service import Service
from tracker.store.db import connect
from tracker.store.tokens import mosquitto_hash

pytestmark = [
    pytest.mark.skipif(not __import__("shutil").which("mosquitto"), reason="needs mosquitto"),
    pytest.mark.timeout(180),
]
BURST = 5000
SMALL_WINDOW = {"ingest_queue_max": 100, "batch_max_messages": 100}  # Receive Maximum 300
WINDOW = 300
PROBE = {"broker_probe_interval_s": 300.0, "broker_probe_messages": 2000}


def stock_broker(directory: Path) -> OwnMosquitto:
    """Mosquitto as a distribution installs it: a listener, anonymous clients, nothing else."""
    broker = OwnMosquitto(directory)
    broker.conf.write_text(f"listener {broker.port} 127.0.0.1\nallow_anonymous true\n")
    return broker


def configured_broker(directory: Path, passwd: Path, acl: Path, settings_dir: Path) -> OwnMosquitto:
    """Mosquitto with broker-config's password file and ACL, including its settings file."""
    broker = OwnMosquitto(directory)
    lines = [
        f"listener {broker.port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {passwd}",
        f"acl_file {acl}",
        f"persistence_location {directory}/",
        *(["user root"] if os.geteuid() == 0 else []),  # it reads the test's 0600 files
        f"include_dir {settings_dir}",
    ]
    broker.conf.write_text("\n".join(lines) + "\n")
    return broker


async def broker_config(database_url: str, prefix: str, *args: str) -> None:
    """`tracker broker-config` as the operator runs it, with the tracker's own settings."""
    env = {
        **os.environ,
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_MQTT_URL": "mqtt://tracker:tracker-pw@x:1",
        "TRACKER_TOPIC_PREFIX": prefix,
        "TRACKER_INGEST_QUEUE_MAX": str(SMALL_WINDOW["ingest_queue_max"]),
        "TRACKER_BATCH_MAX_MESSAGES": str(SMALL_WINDOW["batch_max_messages"]),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from tracker.cli import main; main()", "broker-config", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


async def many_tags(database_url: str, n: int) -> list[str]:
    """n children at one school, each with a GPS tag (no guardian: the test counts fixes and alerts)."""
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, [])
        children = await conn.fetch(
            "INSERT INTO children (school_id, route_id, name)"
            " SELECT $1, $2, 'Child ' || g FROM generate_series(1, $3) g RETURNING id",
            world.school_id,
            world.route_id,
            n,
        )
        tags = [f"burst-{i}" for i in range(n)]
        await conn.executemany(
            "INSERT INTO tags (id, child_id, kind) VALUES ($1, $2, 'gps')",
            [(t, c["id"]) for t, c in zip(tags, children, strict=True)],
        )
        return tags
    finally:
        await conn.close()


@asynccontextmanager
async def running(settings: Any, database_url: str, mqtt_url: str) -> AsyncIterator[Service]:
    service = Service(settings, database_url, mqtt_url)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def readyz(service: Service) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{service.settings.http_port}/readyz")
    return r.status_code, r.json()


async def metric_lines(service: Service, name: str) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{service.settings.http_port}/metrics")).text
    return {m[1]: float(m[2]) for m in re.finditer(rf'^{name}\{{\w+="(\w+)"\}} (\S+)$', text, re.M)}


async def probed(service: Service) -> bool:
    return service.broker_probe is not None and service.broker_probe.findings is not None


@asynccontextmanager
async def commits_held(database_url: str) -> AsyncIterator[None]:
    """The tracker's batches cannot store their fixes while this holds (as with a slow PostgreSQL):
    it acknowledges nothing, and the broker keeps the rest of a burst queued, or drops it."""
    lock = await asyncpg.connect(database_url)
    try:
        await lock.execute("BEGIN; LOCK TABLE positions IN SHARE ROW EXCLUSIVE MODE")
        yield
        await lock.execute("ROLLBACK")
    finally:
        await lock.close()


def publish_burst(url: str, prefix: str, tags: list[str]) -> None:
    """One SOS fix from each tag, QoS 1, as fast as the broker takes them; returns once the broker
    has acknowledged every one (it has routed each to the tracker's session: sent, queued or dropped)."""
    a = BrokerAddress.parse(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"burst-{time.monotonic_ns()}")
    if a.username:
        client.username_pw_set(a.username, a.password)
    client.max_inflight_messages_set(1000)
    client.connect(a.host, a.port)
    client.loop_start()
    try:
        now = time.time()
        infos = [
            client.publish(
                f"{prefix}tracker/v1/tags/{tag}/position",
                json.dumps(fix(-300, 0, now - 1, acc=8, sos=True)),
                qos=1,
            )
            for tag in tags
        ]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def stored(database_url: str, at_least: int) -> int | None:
    conn = await asyncpg.connect(database_url)
    try:
        n = int(await conn.fetchval("SELECT count(*) FROM positions"))
    finally:
        await conn.close()
    return n if n >= at_least else None


async def test_a_stock_broker_is_named_before_a_burst_and_the_burst_loses_what_it_said(
    database_url: str, settings_for: Callable[..., Any], topic_prefix: str, tmp_path: Path, caplog: Any
) -> None:
    tags = await many_tags(database_url, BURST + 1)
    broker = stock_broker(tmp_path / "mosquitto")
    broker.start()
    try:
        settings = settings_for(database_url, broker.url(), **SMALL_WINDOW, **PROBE)
        with caplog.at_level(logging.ERROR, logger="tracker.ingest.broker_probe"):
            async with running(settings, database_url, broker.url()) as service:
                assert service.ingestor.mqtt5  # Mosquitto 2 speaks MQTT 5
                await wait_until(lambda: probed(service), 60)
                status, body = await readyz(service)
                assert status == 503 and body["components"]["broker_settings"] is False, body
                assert body["components"]["mqtt"] is True  # connected: only the settings are wrong
                problem = body["problems"]["broker_settings"]
                assert problem.startswith("max_queued_messages: the broker dropped"), problem
                # MQTT 5: the stock broker gives the Receive Maximum asked for; it does not throttle
                assert "max_inflight_messages" not in problem
                assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
                    f"the broker would lose or throttle the tracker's messages: {problem}"
                ]
                assert await metric_lines(service, "tracker_broker_probe_failures_total") == {
                    "max_queued_messages": 1.0
                }
                assert await metric_lines(service, "tracker_broker_probes_total") == {"failed": 1.0}

                # the burst the operator was told about: the window in flight, 1000 queued, the rest gone
                async with commits_held(database_url):
                    await asyncio.to_thread(publish_burst, broker.url(), topic_prefix, tags[:BURST])
                kept = WINDOW + 1000
                await wait_until(lambda: stored(database_url, kept), 60)
                # a closing fix, once the queue has room again: it comes after whatever the broker kept
                await asyncio.to_thread(publish_burst, broker.url(), topic_prefix, tags[BURST:])
                n = await wait_until(lambda: stored(database_url, kept + 1), 60)
                assert n == kept + 1
    finally:
        broker.stop()
    assert "Outgoing messages are being dropped" in (broker.dir / "mosquitto.log").read_text()


async def test_over_mqtt_3_1_1_a_stock_broker_also_throttles(tmp_path: Path) -> None:
    broker = stock_broker(tmp_path / "mosquitto")
    broker.start()
    try:
        seen = await observe(
            host="127.0.0.1",
            port=broker.port,
            username=None,
            password=None,
            protocol=Protocol.MQTT311,
            client_id="probe-311",
            topic="p/tracker/v1/probe/probe-311",
            window=100,
            burst=2000,
        )
    finally:
        broker.stop()
    assert (seen.sent, seen.in_flight, seen.delivered) == (2100, 20, 20 + 1000)
    assert [f.setting for f in judge(seen, 100)] == ["max_queued_messages", "max_inflight_messages"]


async def test_a_broker_configured_by_broker_config_passes_and_a_burst_of_5000_loses_nothing(
    database_url: str, settings_for: Callable[..., Any], topic_prefix: str, tmp_path: Path
) -> None:
    tags = await many_tags(database_url, BURST + 1)
    auth = tmp_path / "auth"
    passwd, acl, settings_file = auth / "passwd", auth / "acl", auth / "conf.d" / "tracker.conf"
    await broker_config(
        database_url,
        topic_prefix,
        *("--password-file", str(passwd), "--acl-file", str(acl), "--settings-file", str(settings_file)),
        *("--publisher", "sender:sender-pw"),
    )
    written = settings_file.read_text()
    assert f"max_inflight_messages {WINDOW}\n" in written and "max_queued_messages 1000000\n" in written
    assert f"topic readwrite {topic_prefix}tracker/v1/probe/#" in acl.read_text()
    broker = configured_broker(tmp_path / "mosquitto", passwd, acl, settings_file.parent)
    broker.start()  # Mosquitto 2.0 accepts the file (it exits on an option it does not know)
    try:
        url = broker.url("tracker", "tracker-pw")
        settings = settings_for(database_url, url, **SMALL_WINDOW, **PROBE)
        async with running(settings, database_url, url) as service:
            await wait_until(lambda: probed(service), 60)
            status, body = await readyz(service)
            assert status == 200 and body["components"]["broker_settings"] is True, body
            assert "problems" not in body
            assert await metric_lines(service, "tracker_broker_probes_total") == {"ok": 1.0}

            sender = broker.url("sender", "sender-pw")
            async with commits_held(database_url):
                await asyncio.to_thread(publish_burst, sender, topic_prefix, tags[:BURST])
            await asyncio.to_thread(publish_burst, sender, topic_prefix, tags[BURST:])
            n = await wait_until(lambda: stored(database_url, BURST + 1), 120)
            assert n == BURST + 1
            sos = await service.pool.fetchval("SELECT count(*) FROM alerts WHERE kind = 'sos'")
            assert sos == BURST + 1
            assert service.metrics.rejected == {}
    finally:
        broker.stop()
    assert "Outgoing messages are being dropped" not in (broker.dir / "mosquitto.log").read_text()


async def test_an_acl_without_the_probe_topic_is_named(tmp_path: Path) -> None:
    """An ACL from before the probe (the tracker may only read): the probe names the ACL, not a
    setting it could not measure."""
    auth = tmp_path / "auth"
    auth.mkdir()
    passwd, acl = auth / "passwd", auth / "acl"
    passwd.write_text(f"tracker:{mosquitto_hash('tracker-pw')}\n")
    acl.write_text("user tracker\ntopic read tracker/v1/#\n")
    (auth / "conf.d").mkdir()
    broker = configured_broker(tmp_path / "mosquitto", passwd, acl, auth / "conf.d")
    broker.start()
    try:
        for protocol in Protocol:
            probe = BrokerProbe(
                host="127.0.0.1",
                port=broker.port,
                username="tracker",
                password="tracker-pw",
                protocol=protocol,
                client_id="tracker-probe",
                topic=probe_topic("", "tracker"),
                window=100,
                burst=2000,
                interval_s=300,
            )
            findings = await probe.probe_once()
            assert findings is not None and [f.setting for f in findings] == ["acl_file"], protocol
            assert "topic readwrite tracker/v1/probe/#" in (probe.problem() or "")
    finally:
        broker.stop()
