"""Workers on a NATS cluster (issue 16): devices publish MQTT to any node of three nats-server processes
of the test's own; two tracker workers (Services with TRACKER_ENGINE=nats, in this process) share the
children's partitions by their PostgreSQL leases. Every fix is stored once and every incident alerted
once, whichever worker fronted a message and whichever owns the child; a gateway message carrying
several children's fixes is split between their owners; a message on the partition stream's
subject from a device is not taken as forwarded fixes; HTTP ingest on either worker reaches the owner.

The process-level cases (SIGKILL, a node's loss, a network cut, a worker added and one stopped) are
tests/e2e/test_cluster.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import CLUSTER_PARTITIONS, Publisher, build_small_world, fix, lonlat, wait_until
from tracker.embedded import EmbeddedNats
from tracker.ingest import jetstream
from tracker.service import Service
from tracker.store.db import connect
from tracker.store.devices import link_device
from tracker.store.tokens import issue_token

pytestmark = pytest.mark.timeout(240)
KIDS = [f"Kid{i}" for i in range(8)]
PARTITIONS = CLUSTER_PARTITIONS


async def start_worker(settings_for: Any, database_url: str, nodes: list[EmbeddedNats], name: str) -> Service:
    settings = settings_for(
        database_url,
        "mqtt://unused:1",
        engine="nats",
        nats_url=",".join(n.url for n in nodes),
        nats_replicas=3,
        worker_id=name,
        partitions=PARTITIONS,
        lease_ttl_s=6.0,
        topic_prefix="",
        tick_s=1.0,
        off_route_min_s=3.0,
    )
    svc = Service(settings, database_url, "mqtt://unused:1")
    await svc.start()
    return svc


@pytest.fixture
async def workers(
    database_url: str, settings_for: Any, nats_nodes: list[EmbeddedNats]
) -> AsyncIterator[list[Service]]:
    started: list[Service] = []
    try:
        for name in ("w1", "w2"):
            started.append(await start_worker(settings_for, database_url, nats_nodes, name))
        yield started
    finally:
        for svc in started:
            await svc.stop()


async def owners(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT owner, count(*) AS n FROM partition_leases WHERE expires_at > now() GROUP BY owner"
        )
        return {r["owner"]: r["n"] for r in rows}
    finally:
        await conn.close()


async def test_two_workers_store_every_fix_once_and_alert_each_incident_once(
    database_url: str, nats_nodes: list[EmbeddedNats], workers: list[Service]
) -> None:
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, KIDS)
    finally:
        await conn.close()
    for svc in workers:
        await svc.reload_registry()

    async def shared() -> bool:
        held = await owners(database_url)
        return sum(held.values()) == PARTITIONS and len(held) == 2

    await wait_until(shared, 30, interval=0.2)  # both hold a share of the partitions

    t0 = time.time() - 120
    # published from a thread: the workers share this event loop, and a blocked loop misses its leases
    sent = await asyncio.to_thread(publish_all, [n.mqtt_url for n in nats_nodes], world, t0)

    async def count(sql: str) -> int:
        c = await asyncpg.connect(database_url)
        try:
            return int(await c.fetchval(sql))
        finally:
            await c.close()

    try:
        await wait_until(lambda: _at_least(count, "SELECT count(*) FROM positions", sent), 60, interval=0.2)
    except TimeoutError:
        stored = await count("SELECT count(*) FROM positions")
        dead = await count("SELECT count(*) FROM dead_letters")
        c = await asyncpg.connect(database_url)
        reasons = await c.fetch("SELECT topic, reason, detail FROM dead_letters LIMIT 3")
        await c.close()
        raise AssertionError(f"{stored} of {sent} fixes stored, {dead} dead letters: {reasons}") from None
    await asyncio.sleep(2)
    assert await count("SELECT count(*) FROM positions") == sent
    assert await count("SELECT count(DISTINCT (tag_id, ts)) FROM positions") == sent
    sos = await count("SELECT count(*) FROM alerts WHERE kind = 'sos'")
    assert sos == len(KIDS)  # each kid's SOS alerted once, by its owner
    # the device's message on the partition stream: a dead letter, never fixes, never a bug
    assert await count("SELECT count(*) FROM dead_letters WHERE reason = 'internal_error'") == 0
    refused = "SELECT count(*) FROM dead_letters WHERE topic = 'tracker_part/0' AND reason = 'unknown_topic'"
    assert await count(refused) == 1
    fronted = [svc.front.forwarded for svc in workers]
    assert all(n > 0 for n in fronted), fronted  # the engine spread the messages over both fronts
    # by the server's mappings: each device's messages on the front of its partition, none shared
    assert [svc.metrics.fronted["unmapped"] for svc in workers] == [0, 0]
    # ... as the metrics tell an operator (each message the fronts took once, by its path), and how old
    # the fixes were when fronted, forwarded and committed
    paths = [svc.metrics.snapshot()["fronted"] for svc in workers]
    messages = sent - len(KIDS) + 1  # (the gateway's fixes came in one message)
    assert sum(p.get("stored", 0) + p.get("at_most_once", 0) for p in paths) >= messages
    assert all("unmapped" not in p for p in paths), paths
    for point, least in (("fetched", messages), ("forwarded", messages), ("committed", sent)):
        assert sum(sum(svc.metrics.fix_ages.counts[point]) for svc in workers) >= least, point


def publish_all(urls: list[str], world: Any, t0: float) -> int:
    """Every kid's walk (an SOS in it), each fix through one of the three nodes in turn; a gateway's
    message with one fix of every kid; and a device's message on the partition stream's subject.
    Returns the fixes published."""
    pubs = [Publisher(url) for url in urls]
    sent = 0
    try:
        for step in range(12):
            for k, name in enumerate(KIDS):
                tag = world.kids[name].tag
                body = fix(-500 + 10 * step, 0, t0 + 5 * step, sos=(step == 3))
                pubs[(k + step) % 3].publish(f"tracker/v1/tags/{tag}/position", body)
                sent += 1
        items = [{"tag": world.kids[n].tag, **fix(-380, 100, t0 + 65)} for n in KIDS]
        pubs[0].publish("tracker/v1/gateways/gw-1/positions", json.dumps(items))
        sent += len(items)
        pubs[1].publish("tracker_part/0", b"\x91\x00")  # never taken as forwarded fixes
    finally:
        for p in pubs:
            p.close()
    return sent


async def _at_least(count: Any, sql: str, n: int) -> bool:
    return int(await count(sql)) >= n


async def test_http_ingest_on_any_worker_reaches_the_owner(
    database_url: str, nats_nodes: list[EmbeddedNats], workers: list[Service]
) -> None:
    """HTTP ingest on a worker goes through its front: the answer says what the front knows (the fix
    went on to its owner, or the part refused at the front); what the owner refuses after the answer
    (a timestamp an hour ahead) is a dead letter."""
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, ["Bob"])
        bob = world.kids["Bob"]
        await link_device(conn, tag_id=bob.tag, protocol="osmand", device="bob-phone")
        token = await issue_token(conn, role="device", tag_id=bob.tag)
    finally:
        await conn.close()
    for svc in workers:
        await svc.reload_registry()
    now = time.time()

    def osmand(ts: float) -> dict[str, object]:
        lon, lat = lonlat(-200, 0)
        return {
            "id": "bob-phone",
            "lat": lat,
            "lon": lon,
            "timestamp": int(ts),
            "accuracy": 8,
            "token": token,
        }

    # (what the app sends, to which worker, status, detail)
    scenario: list[tuple[str, dict[str, object], int, int, str]] = [
        ("a fix, to the first worker", osmand(now - 60), 0, 200, ""),
        ("another, to the second worker", osmand(now - 50), 1, 200, ""),
        ("the first again (the app retries)", osmand(now - 60), 1, 200, ""),
        ("a latitude that is no latitude", {**osmand(now - 45), "lat": 123.0}, 0, 400, "schema_violation"),
        ("stamped an hour ahead: the owner refuses it", osmand(now + 3600), 1, 200, ""),
    ]  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as http:
        for what, params, to, status, detail in scenario:
            url = f"http://127.0.0.1:{workers[to].settings.http_port}/ingest/osmand"
            r = await http.post(url, params=params)
            assert r.status_code == status, (what, r.text)
            if detail:
                assert r.json()["detail"].startswith(f"{detail}: "), (what, r.text)

    async def settled() -> bool:
        c = await asyncpg.connect(database_url)
        try:
            dead = {r["reason"] for r in await c.fetch("SELECT reason FROM dead_letters")}
            stored = await c.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", bob.tag)
        finally:
            await c.close()
        return dead == {"schema_violation", "future_timestamp"} and stored == 2

    await wait_until(settled, 30, interval=0.2)


async def test_a_message_a_bug_meets_at_the_front_is_kept_and_the_others_go_on(
    database_url: str,
    nats_nodes: list[EmbeddedNats],
    workers: list[Service],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, ["Ann"])
    finally:
        await conn.close()
    for svc in workers:
        await svc.reload_registry()
    real_route = jetstream.route

    def route(messages: list[Any], *args: Any) -> Any:
        if any(b'"batt": 13' in m.payload for m in messages):
            raise RuntimeError("a bug this message triggers")
        return real_route(messages, *args)

    monkeypatch.setattr(jetstream, "route", route)
    tag, t0 = world.kids["Ann"].tag, time.time() - 60

    def publish() -> None:
        pub = Publisher(nats_nodes[0].mqtt_url)
        try:
            for i, batt in enumerate([80, 13, 79]):
                pub.publish(
                    f"tracker/v1/tags/{tag}/position", {**fix(-500 + 10 * i, 0, t0 + 5 * i), "batt": batt}
                )
        finally:
            pub.close()

    await asyncio.to_thread(publish)

    async def settled() -> bool:
        c = await asyncpg.connect(database_url)
        try:
            dead = [r["reason"] for r in await c.fetch("SELECT reason FROM dead_letters")]
            stored = await c.fetchval("SELECT count(*) FROM positions")
        finally:
            await c.close()
        return dead == ["internal_error"] and stored == 2

    await wait_until(settled, 30, interval=0.2)
