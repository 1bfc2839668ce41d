"""A NATS node of three lost (SIGKILL), on three real nats-server processes: what a worker and a device
need from the survivors at once, without waiting for the node to come back (docs/scaling.md, "A NATS
node's loss").

- A device connects again: nats-server closes a device's connection when a QoS 1 publish is not stored
  within 5 s, and the MQTT listener's own streams (sessions, ``$MQTT_sess``) were R2 in
  ``EmbeddedNats``' cluster (nats-server counts the configured routes when not told, and each node
  listed the other two only): one with a replica on the lost node had no quorum until it came back,
  and no session could be read. tests/e2e/test_cluster.py's node kill stalled so.
- A partition whose consumer's leader was on the lost node is taken anew at the first try:
  ``consumers_info`` left such a consumer out (after 4 s), so it was not deleted and the new one was
  refused (10100, "filtered consumer not unique on workqueue stream") until it had a leader again.
  (Met first with the fronts' consumers, on ``TRACKER_IN``; the fronts now read ``$MQTT_msgs``, an
  interest stream, and the partitions' stream is the work queue where it matters.)

(What a device's PUBACK covers when a node is lost: tests/e2e/test_cluster.py kills the leader of
``$MQTT_msgs`` with the whole chain running; bench/mqtt_leader_loss.py counts it.)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest

from tracker.embedded import EmbeddedNats
from tracker.ingest import jetstream

pytestmark = pytest.mark.timeout(180)


def _mqtt_session(port: int, timeout: float) -> bool:
    """Whether a device's persistent session (clean_session=False, as the devices') connects to the
    MQTT listener on ``port`` within ``timeout``."""
    connected = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}", clean_session=False
    )

    def on_connect(_c: object, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if not reason.is_failure:
            connected.set()

    client.on_connect = on_connect
    client.reconnect_delay_set(0.2, 1)
    try:
        client.connect("127.0.0.1", port)
        client.loop_start()
        return connected.wait(timeout)
    finally:
        client.loop_stop()
        client.disconnect()


async def _peers(js: object, stream: str) -> list[str]:
    """The nodes holding a replica of ``stream``, its leader first (asked until it has one)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cluster = (await js.stream_info(stream)).cluster  # type: ignore[attr-defined]
            if cluster is not None and cluster.leader:
                return [cluster.leader, *(r.name for r in cluster.replicas or [])]
        except Exception:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def test_a_device_connects_again_after_a_node_holding_its_sessions_is_lost(
    nats_nodes: list[EmbeddedNats],
) -> None:
    devices = nats_nodes[0]
    assert await asyncio.to_thread(_mqtt_session, devices.mqtt_port, 30)  # makes the MQTT streams
    nc = await jetstream.connect(",".join(n.url for n in nats_nodes), "test")
    try:
        js = nc.jetstream()
        # a node of the sessions' stream other than the devices' own, its leader if it can be (at R2
        # there always was one: the stream lost its quorum with it)
        peers = await _peers(js, "$MQTT_sess")
        victim = next(n for name in peers for n in nats_nodes if n.name == name and n is not devices)
        victim.kill()
        # a device whose connection dropped comes back at once (a new leader's election, seconds), not
        # when the lost node does
        assert await asyncio.to_thread(_mqtt_session, devices.mqtt_port, 30), (
            "no MQTT session on the surviving nodes: the listener's streams lost their quorum"
        )
    finally:
        await nc.close()


async def test_a_partition_whose_consumer_lost_its_leader_is_taken_anew_at_once(
    nats_nodes: list[EmbeddedNats], caplog: pytest.LogCaptureFixture
) -> None:
    nc = await jetstream.connect(",".join(n.url for n in nats_nodes), "test")
    try:
        js = nc.jetstream()
        await jetstream.ensure_streams(js, topic_prefix="", replicas=3, partitions=8)

        def make(p: int) -> Any:  # as PartitionIngest.take makes partition p's consumer
            return jetstream._consumer_anew(
                js,
                jetstream.PART_STREAM,
                jetstream.part_consumer(p),
                jetstream.part_subject(p),
                replicas=3,
                max_ack_pending=100,
                owned=lambda: True,
            )

        for sub in await asyncio.gather(*(make(p) for p in range(8))):
            await sub.unsubscribe()
        # a partition whose consumer's leader is not the meta leader (which answers the listing and the
        # deletes: its own loss stops every take until the next one is elected)
        meta = await _meta_leader(nats_nodes[0])
        leaders: dict[int, str] = {}
        deadline = time.monotonic() + 30
        while len(leaders) < 8:
            for p in set(range(8)) - set(leaders):
                (old,) = await jetstream._consumers_named(
                    js, jetstream.PART_STREAM, jetstream.part_consumer(p)
                )
                cluster = (await js.consumer_info(jetstream.PART_STREAM, old)).cluster
                if cluster is not None and cluster.leader:
                    leaders[p] = cluster.leader
            assert time.monotonic() < deadline, leaders
        p = next(p for p, leader in sorted(leaders.items()) if leader != meta)
        victim = next(n for n in nats_nodes if n.name == leaders[p])
        victim.kill()

        # listed though its leader is gone, deleted, and the new one made on the first try
        started = time.monotonic()
        caplog.clear()
        sub = await asyncio.wait_for(make(p), 60)
        took = time.monotonic() - started
        assert sub is not None
        refused = [r.getMessage() for r in caplog.records if "cannot make it anew" in r.getMessage()]
        assert not refused, refused
        assert await jetstream._consumers_named(js, jetstream.PART_STREAM, jetstream.part_consumer(p)) == [
            sub._consumer
        ]
        print(
            f"\nFIGURES partition {p} taken anew {took:.1f} s after its consumer's leader's node was killed"
        )

        # and it is read: a message on the partition's subject comes to it (published once the stream has
        # a leader again: the lost node may have held it)
        deadline = time.monotonic() + 30
        while True:
            try:
                await js.publish(jetstream.part_subject(p), b"{}", stream=jetstream.PART_STREAM)
                break
            except (nats.errors.Error, nats.js.errors.Error):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        # (its own R3 group may still be electing a leader: the readers' fetch waits out the 503)
        msgs = await jetstream._fetch(sub, 1, 10)
        assert [m.data for m in msgs] == [b"{}"]
        await sub.unsubscribe()
    finally:
        await nc.close()


async def _meta_leader(node: EmbeddedNats) -> str:
    """The cluster's meta leader, as a node's monitoring port says."""

    def ask() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/jsz", timeout=5) as r:
            return str(json.load(r)["meta_cluster"]["leader"])

    return await asyncio.to_thread(ask)


def test_the_embedded_cluster_gives_the_mqtt_listener_its_replicas(tmp_path: Path) -> None:
    """(What the first test depends on, said in the configuration.)"""
    nodes = EmbeddedNats.cluster(3, tmp_path)
    assert all("stream_replicas: 3" in n.config() for n in nodes)
    assert "stream_replicas" not in EmbeddedNats(tmp_path / "one").config()
