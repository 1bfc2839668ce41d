"""Many workers, one city (issue 16, point 7): tracker workers as processes of their own (`tracker run`
with TRACKER_ENGINE=nats) on three nats-server processes of the test's own, one PostgreSQL; devices
publish MQTT QoS 1 to a node's MQTT listener. In the middle of tests/e2e/test_crash_safety.py's
stream (five children, each with an SOS, two walks off the route, one into a danger zone):

- one worker of three is killed with SIGKILL: the others take its partitions over;
- one NATS node of three is killed with SIGKILL, the one leading ``$MQTT_msgs`` (where nats-server
  stores what it PUBACKs the devices, and the fronts read it; not the one the devices publish to), and
  started again later;
- a worker is added, and one is stopped gracefully (SIGTERM: it hands its partitions over).

Afterwards, the same checks as after a single tracker's crash: every fix stored once, every incident
alerted once, every SMS delivery sent has one SMS, nothing left 'sending'. Each test prints a FIGURES
line, with the time the partitions took to find live owners again where a worker was lost.

(The case of a worker cut off from the broker and PostgreSQL by a network cut is
tests/e2e/test_cluster_cut.py, in a network namespace of its own.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from pathlib import Path

import asyncpg
import nats
import pytest

from tests.e2e.test_crash_safety import (
    KIDS,
    STAMP_S,
    StreamPublisher,
    TrackerProcess,
    _settle_and_check,
    _stored_at_least,
    stream,
    walk,
)
from tests.helpers import CLUSTER_PARTITIONS, build_small_world, wait_until
from tracker.embedded import EmbeddedNats, free_port
from tracker.ingest.jetstream import MQTT_STREAM
from tracker.store.db import connect

pytestmark = pytest.mark.timeout(360)
PARTITIONS = CLUSTER_PARTITIONS
LEASE_TTL_S = 5.0
CLAIM_TIMEOUT_S = 6.0


def worker(database_url: str, nodes: list[EmbeddedNats], tmp_path: Path, name: str) -> TrackerProcess:
    env = {
        **os.environ,
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_ENGINE": "nats",
        "TRACKER_NATS_URL": ",".join(n.url for n in nodes),
        "TRACKER_NATS_REPLICAS": "3",
        "TRACKER_PARTITIONS": str(PARTITIONS),
        "TRACKER_LEASE_TTL_S": str(LEASE_TTL_S),
        "TRACKER_WORKER_ID": name,
        "TRACKER_HTTP_PORT": str(free_port()),
        "TRACKER_DATA_DIR": str(tmp_path / f"data-{name}"),
        "TRACKER_OFF_ROUTE_MIN_S": "3",
        "TRACKER_BATCH_WAIT_MS": "5",
        "TRACKER_TICK_S": "1",
        # a killed worker's claimed deliveries go to the others after this (60 s by default)
        "TRACKER_DELIVERY_CLAIM_TIMEOUT_S": str(CLAIM_TIMEOUT_S),
        "TRACKER_MQTT_CLIENT_ID": f"unused-{uuid.uuid4().hex[:6]}",
    }
    env.pop("TRACKER_TOPIC_PREFIX", None)
    return TrackerProcess(env, tmp_path / f"{name}.log")


async def owners(database_url: str) -> dict[int, str | None]:
    """Each partition's live owner (None: nobody holds it now)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT partition, CASE WHEN expires_at > now() THEN owner END AS owner FROM partition_leases"
        )
    finally:
        await conn.close()
    return {r["partition"]: r["owner"] for r in rows}


async def held_by(database_url: str, names: set[str]) -> bool:
    """Every partition held by one of ``names``, each of them holding some."""
    now = await owners(database_url)
    return len(now) == PARTITIONS and set(now.values()) == names


async def setup(database_url: str, nodes: list[EmbeddedNats], tmp_path: Path, names: list[str]):  # type: ignore[no-untyped-def]
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, KIDS)
    finally:
        await conn.close()
    workers = {n: worker(database_url, nodes, tmp_path, n) for n in names}
    for w in workers.values():
        w.start()
    for w in workers.values():
        await w.wait_ready()
    try:
        await wait_until(lambda: held_by(database_url, set(names)), 60, interval=0.2)
    except TimeoutError:
        raise AssertionError(f"partitions not shared by {names}: {await owners(database_url)}") from None
    tags = [world.kids[k].tag for k in KIDS]
    messages = stream(tags, time.time() - STAMP_S * len(walk()) - 5)
    publisher = StreamPublisher(nodes[0].mqtt_port, messages, pace_s=0.01)
    return world, workers, publisher


async def owner_of_most_kids(database_url: str, world, names: list[str]) -> str:  # type: ignore[no-untyped-def]
    now = await owners(database_url)
    count = {n: 0 for n in names}
    for k in KIDS:
        owner = now.get(world.kids[k].child_id % PARTITIONS)
        if owner in count:
            count[owner] += 1
    return max(count, key=lambda n: count[n])


async def test_a_worker_killed_mid_stream_has_its_partitions_taken_over(
    database_url: str, nats_nodes: list[EmbeddedNats], tmp_path: Path
) -> None:
    names = ["w1", "w2", "w3"]
    world, workers, publisher = await setup(database_url, nats_nodes, tmp_path, names)
    try:
        publisher.start()
        await _stored_at_least(database_url, len(publisher.messages) // 3)
        victim = await owner_of_most_kids(database_url, world, names)
        workers[victim].kill()
        killed_at = time.monotonic()
        alive = set(names) - {victim}
        await wait_until(lambda: held_by(database_url, alive), 60, interval=0.1)
        takeover_s = time.monotonic() - killed_at
        print(f"\nFIGURES takeover after SIGKILL of {victim}: {takeover_s:.1f} s (lease {LEASE_TTL_S:.0f} s)")
        await _settle_and_check(
            database_url, world, [workers[n] for n in sorted(alive)], publisher, "worker SIGKILL"
        )
    finally:
        publisher.close()
        for w in workers.values():
            w.stop()


async def leader_off(nodes: list[EmbeddedNats], stream: str, devices: EmbeddedNats) -> EmbeddedNats:
    """The node that leads ``stream``, after moving its leadership off the devices' node (a step-down;
    the devices' own node lost would close their connections, a different case)."""
    nc = await nats.connect(nodes[0].url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 60
        while True:
            info = await js.stream_info(stream)
            leader = info.cluster.leader if info.cluster is not None else None
            if leader and leader != devices.name:
                return next(n for n in nodes if n.name == leader)
            assert time.monotonic() < deadline, f"{stream}'s leader stays on {leader}"
            if leader:
                with contextlib.suppress(nats.errors.Error):
                    await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
            await asyncio.sleep(1)
    finally:
        await nc.close()


async def test_a_nats_node_killed_mid_stream_loses_nothing(
    database_url: str, nats_nodes: list[EmbeddedNats], tmp_path: Path
) -> None:
    """The node leading ``$MQTT_msgs``: what it PUBACKed is on the two others (R3), kept there until a
    front acknowledges it; what the devices publish while the stream elects another leader is not
    PUBACKed, and they send it again. (Before 2026-12-07 the fronts read a stream of the tracker's own,
    ``TRACKER_IN``, which the PUBACK did not wait for: its leader's loss lost what was published while
    it elected another.)"""
    names = ["w1", "w2"]
    world, workers, publisher = await setup(database_url, nats_nodes, tmp_path, names)
    try:
        publisher.start()
        await _stored_at_least(database_url, len(publisher.messages) // 3)
        victim = await leader_off(nats_nodes, MQTT_STREAM, devices=nats_nodes[0])
        victim.kill()
        await _stored_at_least(database_url, len(publisher.messages) // 2)
        await asyncio.to_thread(victim.start)  # back while the stream goes on
        await _settle_and_check(database_url, world, list(workers.values()), publisher, "NATS node SIGKILL")
    finally:
        publisher.close()
        for w in workers.values():
            w.stop()


async def test_a_worker_added_and_one_stopped_mid_stream(
    database_url: str, nats_nodes: list[EmbeddedNats], tmp_path: Path
) -> None:
    names = ["w1", "w2"]
    world, workers, publisher = await setup(database_url, nats_nodes, tmp_path, names)
    try:
        publisher.start()
        await _stored_at_least(database_url, len(publisher.messages) // 4)
        workers["w3"] = worker(database_url, nats_nodes, tmp_path, "w3")
        workers["w3"].start()
        await workers["w3"].wait_ready()
        await wait_until(lambda: held_by(database_url, {"w1", "w2", "w3"}), 60, interval=0.1)
        await _stored_at_least(database_url, len(publisher.messages) // 2)
        workers["w1"].stop()  # SIGTERM: hands its partitions over
        await wait_until(lambda: held_by(database_url, {"w2", "w3"}), 60, interval=0.1)
        await _settle_and_check(
            database_url, world, list(workers.values()), publisher, "worker added, one stopped"
        )
    finally:
        publisher.close()
        for w in workers.values():
            w.stop()
