"""The simulator against a real MQTT broker: messages arrive, follow the contract, survive an outage.

The broker is the one named by TRACKER_TEST_MQTT_URL, else the one tests/conftest.py starts (the
``mqtt_url`` fixture). No broker means a failed test, never a skipped one. Every test publishes under
its own topic prefix.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from referencing import Registry, Resource

from simulator.core import FixGenerator
from simulator.incidents import read_truth
from simulator.messages import encode_position
from simulator.projection import LocalProjection
from simulator.publisher import parse_mqtt_url
from simulator.runner import SimOptions, Simulator
from simulator.world import load_world

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
PROJ = LocalProjection(127.0, 37.5)
START = 1_750_000_000.0


def ll(x: float, y: float) -> list[float]:
    lon, lat = PROJ.to_lonlat(x, y)
    return [lon, lat]


@pytest.fixture
def world_path(tmp_path: Path) -> Path:
    """A school at the end of a 1 km route with three children, and a construction site beside it."""
    kids = [{"id": 100 + i, "name": f"Kid {i}", "tag": f"tag-{i}"} for i in range(3)]
    zone = [ll(200, -100), ll(400, -100), ll(400, -300), ll(200, -300), ll(200, -100)]
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": ll(600, 410)},
            "properties": {"kind": "school", "id": 1},
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [ll(0, 0), ll(600, 0), ll(600, 400)]},
            "properties": {"kind": "route", "id": 10, "school_id": 1, "corridor_m": 40.0, "children": kids},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [zone]},
            "properties": {"kind": "zone", "id": 20, "zone_kind": "construction", "severity": "critical"},
        },
    ]
    path = tmp_path / "world.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture
def prefix() -> str:
    return f"test-sim-{uuid.uuid4().hex[:12]}/"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schemas = {
        n: json.loads((SCHEMAS / n).read_text())
        for n in ("position.v1.json", "gateway-batch.v1.json", "rfid-sighting.v1.json")
    }
    registry: Registry = Registry().with_resources((n, Resource.from_contents(s)) for n, s in schemas.items())
    return jsonschema.Draft202012Validator(schemas[name], registry=registry)


class Subscriber:
    """A plain paho client that records every message under a prefix."""

    def __init__(self, url: str, prefix: str, topics: tuple[str, ...] = ("tracker/v1/#",)) -> None:
        target = parse_mqtt_url(url)
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:10]}")
        if target.username:
            self._client.username_pw_set(target.username, target.password)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(target.host, target.port)  # no broker: this raises, and the test fails
        self._client.loop_start()
        self._client.subscribe([(f"{prefix}{t}", 1) for t in topics])
        assert self._subscribed.wait(10), "no SUBACK from the broker"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.05)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def subscriber(mqtt_url: str, prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url, prefix)
    yield sub
    sub.close()


def options(world: Path, url: str, prefix: str, **overrides: Any) -> SimOptions:
    values: dict[str, Any] = {
        "world": str(world),
        "mqtt_url": url,
        "prefix": prefix,
        "children": 6,
        "speed": 60.0,
        "duration_s": 300.0,
        "start_ts": START,
        "seed": 3,
        "incidents_per_hour": 0.0,
        "incident_fraction": 1.0,
        "incident_kinds": {"sos": 1.0},
        "quiet": True,
    }
    values.update(overrides)
    return SimOptions(**values)


def test_fixes_arrive_follow_the_schema_and_are_the_seeded_run(
    world_path: Path, mqtt_url: str, prefix: str, subscriber: Subscriber, tmp_path: Path
) -> None:
    truth_path = tmp_path / "truth.jsonl"
    opts = options(world_path, mqtt_url, prefix, truth_path=str(truth_path))
    summary = Simulator(opts, log=lambda _: None).run()
    assert summary.children == 6 and summary.fixes > 6 * 300 / 15 * 0.8
    assert summary.messages == summary.fixes == summary.acked and summary.dropped == 0
    received = subscriber.wait_for(summary.messages)
    assert len(received) == summary.messages

    check = validator("position.v1.json")
    per_tag: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for topic, payload in received:
        assert topic.startswith(f"{prefix}tracker/v1/tags/") and topic.endswith("/position")
        doc = json.loads(payload)
        check.validate(doc)
        assert set(doc) == {"ts", "lat", "lon", "acc", "batt", "seq", "sos"}
        assert START <= doc["ts"] <= START + 300
        per_tag[topic.split("/")[-2]].append(doc)
    assert set(per_tag) == {"tag-0", "tag-1", "tag-2", "tag-0-r1", "tag-1-r1", "tag-2-r1"}
    for docs in per_tag.values():
        assert [d["seq"] for d in docs] == list(range(len(docs))), "in order, none lost, none doubled"

    # exactly what the core makes for this seed and start, without a broker
    generator = FixGenerator(load_world(str(world_path)), opts.sim_config(), START)
    expected = sorted(encode_position(f) for f in generator.advance(START + 300).fixes)
    assert sorted(payload for _, payload in received) == expected

    truth = read_truth(truth_path)
    assert len(truth) == 6 and {r.kind for r in truth} == {"sos"}
    sos = {(t.split("/")[-2], json.loads(p)["ts"]) for t, p in received if json.loads(p)["sos"]}
    assert sos == {(r.tag, r.start_ts) for r in truth}


def test_gateway_batches_follow_the_schema(
    world_path: Path, mqtt_url: str, prefix: str, subscriber: Subscriber
) -> None:
    summary = Simulator(options(world_path, mqtt_url, prefix, batch=4), log=lambda _: None).run()
    assert summary.messages < summary.fixes and summary.acked == summary.messages
    received = subscriber.wait_for(summary.messages)
    assert len(received) == summary.messages
    check = validator("gateway-batch.v1.json")
    items = []
    for topic, payload in received:
        assert topic == f"{prefix}tracker/v1/gateways/sim-school-1/positions"
        batch = json.loads(payload)
        check.validate(batch)
        assert 1 <= len(batch) <= 4
        items += batch
    assert len(items) == summary.fixes
    assert {i["tag"] for i in items} == {"tag-0", "tag-1", "tag-2", "tag-0-r1", "tag-1-r1", "tag-2-r1"}


def test_the_command_line_publishes_and_prints_a_summary(
    world_path: Path, mqtt_url: str, prefix: str, subscriber: Subscriber, tmp_path: Path
) -> None:
    truth = tmp_path / "truth.jsonl"
    argv = [
        *(sys.executable, "-m", "simulator", "--world", str(world_path), "--mqtt-url", mqtt_url),
        *("--prefix", prefix, "--speed", "30", "--duration", "120", "--interval", "10", "--seed", "4"),
        *("--incident-fraction", "1", "--incident-kinds", "sos", "--truth", str(truth), "--quiet"),
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "simulator: 3 children" in done.stderr and "0 dropped" in done.stderr
    received = subscriber.wait_for(3 * 120 // 10)
    assert len(received) >= 3 * 120 / 10 * 0.8
    assert len(truth.read_text().splitlines()) == 3


def test_publisher_reconnects_and_delivers_what_it_queued_while_the_broker_was_away(
    world_path: Path, prefix: str
) -> None:
    from tracker.embedded import EmbeddedBroker, free_port  # a broker of our own, to stop and start

    broker = EmbeddedBroker(free_port(), use_mosquitto=True)
    url = broker.start()
    stop = threading.Event()
    opts = options(
        world_path,
        url,
        prefix,
        speed=1.0,
        duration_s=None,
        start_ts=None,
        interval_s=0.5,
        incident_fraction=0.0,
    )
    simulator = Simulator(opts, log=lambda _: None)
    worker = threading.Thread(target=simulator.run, args=(stop,), daemon=True)
    subscriber: Subscriber | None = None
    try:
        worker.start()
        wait_until(lambda: simulator.summary().acked > 10)
        broker.stop()
        down_at = time.time()
        wait_until(lambda: not simulator.broker_connected)
        time.sleep(2.0)  # fixes made now wait in the publisher's queue
        up_at = time.time()
        broker.start()
        subscriber = Subscriber(url, prefix)
        wait_until(lambda: simulator.broker_connected, timeout=30)
        wait_until(lambda: simulator.summary().acked == simulator.summary().messages)
    finally:
        stop.set()
        worker.join(30)
        broker.stop()
    assert subscriber is not None
    received = subscriber.wait_for(1, timeout=5)
    subscriber.close()
    summary = simulator.summary()
    assert summary.disconnects >= 1 and summary.dropped == 0
    assert summary.acked == summary.messages
    during_outage = [p for _, p in received if down_at + 0.2 < json.loads(p)["ts"] < up_at]
    assert len(during_outage) >= 6, "fixes made while the broker was away arrive after it is back"


def wait_until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def test_run_simulator_from_asyncio_stops_on_an_event(
    world_path: Path, mqtt_url: str, prefix: str, subscriber: Subscriber
) -> None:
    import asyncio

    from simulator.runner import run_simulator

    stop = asyncio.Event()
    opts = options(world_path, mqtt_url, prefix, speed=30.0, duration_s=None, start_ts=None, interval_s=5.0)
    task = asyncio.create_task(run_simulator(opts, stop=stop))
    await asyncio.sleep(2.0)
    assert not task.done()
    stop.set()
    summary = await asyncio.wait_for(task, 15)
    assert summary.fixes_sent > 6 and summary.acked == summary.messages
    assert 30.0 <= summary.sim_seconds <= 120.0
    assert len(subscriber.wait_for(summary.messages)) == summary.messages


def test_owntracks_format_and_rfid_gate_sightings(world_path: Path, mqtt_url: str, prefix: str) -> None:
    sub = Subscriber(mqtt_url, prefix, topics=("owntracks/#", "tracker/v1/#"))
    try:
        opts = options(
            world_path,
            mqtt_url,
            prefix,
            format="owntracks",
            owntracks_device="watch",
            rfid=True,
            duration_s=3600.0,
            speed=1800.0,
            incident_fraction=0.0,
        )
        summary = Simulator(opts, log=lambda _: None).run()
        received = sub.wait_for(summary.messages)
    finally:
        sub.close()
    assert summary.dropped == 0 and summary.acked == summary.messages == summary.fixes + summary.sightings
    assert len(received) == summary.messages
    locations = [(t, json.loads(p)) for t, p in received if "/owntracks/" in f"/{t}"]
    sightings = [(t, json.loads(p)) for t, p in received if t.endswith("/sightings")]
    assert len(locations) == summary.fixes and len(sightings) == summary.sightings
    tags = {"tag-0", "tag-1", "tag-2", "tag-0-r1", "tag-1-r1", "tag-2-r1"}
    for topic, doc in locations:
        # the OwnTracks booklet's _type=location: whole-second tst, whole-metre acc, a two-letter tid
        _, user, device = topic.removeprefix(prefix).split("/")
        assert user in tags and device == "watch"
        assert set(doc) == {"_type", "lat", "lon", "tst", "acc", "batt", "tid"}
        assert doc["_type"] == "location" and doc["tid"] == user[-2:]
        assert isinstance(doc["tst"], int) and START <= doc["tst"] <= START + 3600
        assert isinstance(doc["acc"], int) and 1 <= doc["acc"] <= 150 and 0 <= doc["batt"] <= 100
    check = validator("rfid-sighting.v1.json")
    arrived = set()
    for topic, doc in sightings:
        assert topic == f"{prefix}tracker/v1/readers/sim-gate-1/sightings"
        check.validate(doc)
        arrived.update(doc["tags"])
    assert arrived == tags, "every child passes the gate on its way to school within the hour"
