"""The cluster's front reads the MQTT listener's own stream (tracker.ingest.jetstream.FrontStage), on a
real nats-server with the tracker's subject mappings and real MQTT devices (paho):

- a QoS 1 message is what nats-server stored in ``$MQTT_msgs`` before its PUBACK: the front reads it
  there, and a QoS 0 one from the subject; each reaches its child's partition once;
- what devices publish before any worker fronts their partition is kept for the first front;
- a front taken over by another worker loses nothing of a steady stream (the new consumer is made
  before the old one is deleted: ``$MQTT_msgs`` drops at once what no consumer takes);
- a partition's stray consumer (one made in a race with a take) is swept by the partition's front, and
  a take by a worker that lost the partition (an older lease token) never deletes its new owner's;
- two takes of one partition at once make one front; a front whose consumer is deleted takes the
  partition anew;
- a cluster whose ``TRACKER_IN`` took the mapped subjects (before 2026-12-07) is moved on; QoS 0
  messages waiting for a front that cannot forward are bounded.

The node-loss case itself (the leader of ``$MQTT_msgs`` killed mid-stream) runs with the whole chain in
tests/e2e/test_cluster.py; bench/mqtt_leader_loss.py counts what a device's PUBACK covers.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from tests.helpers import build_small_world, fix, wait_until
from tracker.config import Settings
from tracker.embedded import EmbeddedNats
from tracker.ingest import jetstream
from tracker.ingest.forwarded import decode_forwarded
from tracker.registry_view import RegistryView, build_view
from tracker.store.alert_rules import load_alert_rules
from tracker.store.db import create_pool
from tracker.store.registry_rows import load_registry

pytestmark = pytest.mark.timeout(120)

PARTITIONS = 8
KIDS = ["Ara", "Bomi", "Chan", "Dami", "Eun", "Gyu"]


@pytest.fixture
def nats_node(tmp_path: Path) -> Iterator[EmbeddedNats]:
    node = EmbeddedNats(tmp_path / "nats", partitions=PARTITIONS)
    node.start()
    yield node
    node.stop()


class Engine:
    """A connection to the node, the streams as a worker makes them, and what reached the partitions."""

    def __init__(self, node: EmbeddedNats, pool: asyncpg.Pool, view: RegistryView, tags: list[str]) -> None:
        self.node, self.pool, self.view, self.tags = node, pool, view, tags
        self.settings = Settings(database_url="postgresql://unused", mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]
        self.connections: list[Any] = []
        self.fronts: list[jetstream.FrontStage] = []

    async def js(self) -> Any:
        nc = await jetstream.connect(self.node.url, f"test-{len(self.connections)}")
        self.connections.append(nc)
        js = nc.jetstream()
        await jetstream.ensure_streams(js, topic_prefix="", replicas=1, partitions=PARTITIONS)
        return js

    async def front(self, token_of: Any = lambda p: 1) -> jetstream.FrontStage:
        js = await self.js()
        front = jetstream.FrontStage(
            js,
            js._nc,
            self.pool,
            lambda: self.view,
            self.settings,
            PARTITIONS,
            token_of=token_of,
            sweep_s=0.2,
        )
        self.fronts.append(front)
        return front

    async def forwarded(self, at_least: int, timeout: float = 30) -> list[tuple[str, float]]:
        """(tag, time) of every fix the fronts put on the partitions' stream, read once the count
        reaches ``at_least`` (and a moment more, for any repeat)."""
        js = await self.js()
        sub = await js.pull_subscribe(f"{jetstream.PART_SUBJECT}.*", durable=f"count-{uuid.uuid4().hex[:6]}")
        got: list[tuple[str, float]] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            msgs = await jetstream._fetch(sub, 500, 0.5)
            for m in msgs:
                got += [(f.tag, f.ts) for f in decode_forwarded(m.data)]
                await m.ack()
            if len(got) >= at_least and quiet_until is None:
                quiet_until = time.monotonic() + 1.5
            if quiet_until is not None and time.monotonic() > quiet_until and not msgs:
                break
        return got

    async def close(self) -> None:
        for front in self.fronts:
            await front.stop()
        for nc in self.connections:
            await nc.close()


@pytest.fixture
async def engine(database_url: str, nats_node: EmbeddedNats) -> AsyncIterator[Engine]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        world = await build_small_world(conn, KIDS)
        view = build_view(
            await load_registry(conn), default_timezone="Asia/Seoul", rules=await load_alert_rules(conn)
        )
    e = Engine(nats_node, pool, view, [k.tag for k in world.kids.values()])
    try:
        yield e
    finally:
        await e.close()
        await pool.close()


async def published_qos_1(engine: Engine, n: int) -> list[tuple[str, float]]:
    """(tag, time) of ``n`` fixes a device published at QoS 1 and the broker acknowledged, one a
    second of ten minutes ago, the tags in turn."""
    device = Device(engine.node)
    t0 = time.time() - 600
    try:
        sent = [(engine.tags[i % len(engine.tags)], t0 + i) for i in range(n)]
        for tag, ts in sent:
            device.publish(tag, ts, 1)
        await asyncio.to_thread(device.wait)
    finally:
        device.close()
    return sent


class Device:
    """A paho client publishing fixes of several tags, as the tags' gateway would (MQTT 3.1.1)."""

    def __init__(self, node: EmbeddedNats) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", node.mqtt_port)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, tag: str, ts: float, qos: int) -> None:
        payload = json.dumps(fix(float(len(self.infos) % 50), 0.0, ts))
        self.infos.append(self.client.publish(f"tracker/v1/tags/{tag}/position", payload, qos=qos))

    def wait(self) -> None:
        for info in self.infos:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_qos_1_from_the_listeners_stream_and_qos_0_from_the_subject_each_once(engine: Engine) -> None:
    front = await engine.front()
    for p in range(PARTITIONS):
        await front.take(p)
    device = Device(engine.node)
    t0 = time.time() - 600
    try:
        sent = []
        for i in range(120):
            tag, qos = engine.tags[i % len(engine.tags)], i % 2
            device.publish(tag, t0 + i, qos)
            sent.append((tag, t0 + i))
        await asyncio.to_thread(device.wait)
    finally:
        device.close()
    got = await engine.forwarded(len(sent))
    assert sorted(got) == sorted(sent), "each fix once: QoS 1 from $MQTT_msgs, QoS 0 from its subject"


async def test_what_devices_publish_before_the_first_front_is_kept(engine: Engine) -> None:
    """``ensure_streams`` gave every partition a consumer: nothing PUBACKed is dropped meanwhile."""
    await engine.js()
    sent = await published_qos_1(engine, 60)
    front = await engine.front()
    for p in range(PARTITIONS):
        await front.take(p)
    assert sorted(await engine.forwarded(len(sent))) == sorted(set(sent))


async def test_a_front_taken_over_mid_stream_loses_nothing(engine: Engine) -> None:
    """Worker A fronts every partition; B takes them over one by one while a device publishes, as
    leases move. Every fix reaches its partition (some twice: what A fetched and had not acknowledged
    comes again to B, which the owner's commit takes as a repeat)."""
    a_owns, b_owns = set(range(PARTITIONS)), set[int]()
    a = await engine.front(token_of=lambda p: 1 if p in a_owns else None)
    b = await engine.front(token_of=lambda p: 2 if p in b_owns else None)  # a new owner's token is higher
    for p in range(PARTITIONS):
        await a.take(p)
    device = Device(engine.node)
    t0 = time.time() - 3600
    sent: list[tuple[str, float]] = []

    async def publish() -> None:
        for i in range(800):
            tag = engine.tags[i % len(engine.tags)]
            device.publish(tag, t0 + i, 1)
            sent.append((tag, t0 + i))
            await asyncio.sleep(0.004)

    try:
        publishing = asyncio.create_task(publish())
        for p in range(PARTITIONS):
            await asyncio.sleep(0.3)
            a_owns.discard(p)
            a.give_up(p)
            b_owns.add(p)
            await b.take(p)
        await publishing
        await asyncio.to_thread(device.wait)
    finally:
        device.close()
    got = await engine.forwarded(len(sent))
    assert set(got) == set(sent), f"{len(set(sent) - set(got))} fixes lost in a takeover"


async def test_a_stray_consumer_of_a_fronted_partition_is_swept(engine: Engine) -> None:
    js = await engine.js()
    front = await engine.front()
    await front.take(3)
    # made in a race with the take: ensure_streams' first consumer of the partition
    await js.add_consumer(
        jetstream.MQTT_STREAM, jetstream._front_config(jetstream.front_seed(3), jetstream.front_filter(3), 1)
    )
    sweeping = asyncio.create_task(front.run())
    try:
        assert await wait_until(lambda: _fronts(js, 3, 1), 10, interval=0.2) == [front._held[3].consumer]
    finally:
        sweeping.cancel()


async def test_a_late_take_never_deletes_the_new_owners_consumer(engine: Engine) -> None:
    """A worker that lost partition 2 (token 1) without knowing it yet takes it while its new owner
    (token 2) fronts it: the late consumer is made, the new owner's is not deleted; the new owner's
    sweep deletes the late one."""
    js = await engine.js()
    new = await engine.front(token_of=lambda p: 2)
    await new.take(2)
    late_owned = True
    late = await engine.front(token_of=lambda p: 1 if late_owned else None)
    await late.take(2)
    names = await jetstream._consumers_named(js, jetstream.MQTT_STREAM, jetstream.front_seed(2))
    assert new._held[2].consumer in names and late._held[2].consumer in names
    late_owned = False
    late.give_up(2)
    sweeping = asyncio.create_task(new.run())
    try:
        assert await wait_until(lambda: _fronts(js, 2, 1), 10, interval=0.2) == [new._held[2].consumer]
    finally:
        sweeping.cancel()


async def test_two_takes_of_one_partition_at_once_make_one_front(engine: Engine) -> None:
    js = await engine.js()
    front = await engine.front()
    await asyncio.gather(front.take(5), front.take(5))
    names = await jetstream._consumers_named(js, jetstream.MQTT_STREAM, jetstream.front_seed(5))
    assert names == [front._held[5].consumer]


async def test_a_front_whose_consumer_is_deleted_takes_its_partition_anew(engine: Engine) -> None:
    """(Someone else's mistake, or an operator's.) A pull on a deleted consumer is answered "no
    responders", a 503 like a consumer electing a leader: the fetch asks whether it still exists, and
    the front takes the partition anew at once. Every front's consumer is deleted here (which
    partitions the tags' messages map to is nats-server's hash); what comes after reaches the
    partitions."""
    js = await engine.js()
    front = await engine.front()
    for p in range(PARTITIONS):
        await front.take(p)
    victims = {p: front._held[p].consumer for p in range(PARTITIONS)}
    for name in victims.values():
        await js.delete_consumer(jetstream.MQTT_STREAM, name)

    def all_anew() -> bool:
        return all(p in front._held and front._held[p].consumer != victims[p] for p in range(PARTITIONS))

    await wait_until(all_anew, 20, interval=0.1)
    sent = await published_qos_1(engine, 60)
    assert sorted(await engine.forwarded(len(sent))) == sorted(sent)


async def _fronts(js: Any, partition: int, count: int) -> list[str] | None:
    """The partition's consumers of $MQTT_msgs once there are ``count`` of them."""
    names = await jetstream._consumers_named(js, jetstream.MQTT_STREAM, jetstream.front_seed(partition))
    return names if len(names) == count else None


async def test_a_cluster_made_before_the_fronts_read_mqtt_msgs_is_moved_on(engine: Engine) -> None:
    """A worker of an earlier version made ``TRACKER_IN`` take the mapped subjects and fronted them
    there. A worker now seeds every partition's consumer of ``$MQTT_msgs`` first, then cuts the mapped
    subjects from ``TRACKER_IN`` (the old fronts' consumers go with them): nothing keeps them
    forever in a work queue nobody reads, and devices' messages are kept for the fronts meanwhile."""
    nc = await jetstream.connect(engine.node.url, "old")
    engine.connections.append(nc)
    js = nc.jetstream()
    await js.add_stream(jetstream.earlier_in_stream(replicas=1))
    await js.add_consumer(
        jetstream.IN_STREAM,
        ConsumerConfig(durable_name="front-1-0a0b0c0d", filter_subject=f"{jetstream.FRONT_PREFIX}.1.>"),
    )
    await engine.js()  # a worker of this version starts: ensure_streams
    info = await js.stream_info(jetstream.IN_STREAM)
    assert not any(s.startswith(jetstream.FRONT_PREFIX) for s in info.config.subjects or [])
    assert await jetstream._consumers_named(js, jetstream.IN_STREAM, "front") == [jetstream.FRONT_CONSUMER]
    seeds = await jetstream._consumers_named(js, jetstream.MQTT_STREAM, "front")
    assert sorted(seeds) == sorted(jetstream.front_seed(p) for p in range(PARTITIONS))


async def test_qos_0_messages_a_front_cannot_forward_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the front cannot forward (the engine or PostgreSQL away) QoS 0 messages wait in memory up
    to a bound; more are dropped and counted. A QoS 1 copy on the subject is skipped."""
    monkeypatch.setattr(jetstream, "AT_MOST_ONCE_MAX", 3)
    inbox = jetstream._AtMostOnce()
    for i in range(5):
        await inbox.put(Msg(None, subject=f"tin.1.t{i}", headers={jetstream.MQTT_HEADER: "0"}))  # type: ignore[arg-type]
    await inbox.put(Msg(None, subject="tin.1.q1", headers={jetstream.MQTT_HEADER: "1"}))  # type: ignore[arg-type]
    await inbox.put(Msg(None, subject="tin.1.nats"))  # type: ignore[arg-type]  # (a NATS client's: QoS 0)
    msgs, received = await inbox.take()
    assert [m.subject for m in msgs] == ["tin.1.t0", "tin.1.t1", "tin.1.t2"]
    assert len(received) == 3 and inbox.dropped == 3
