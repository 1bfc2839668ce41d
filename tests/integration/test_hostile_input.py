"""Hostile input through the running service (real broker, real PostgreSQL): every bad message lands in
the dead-letter table with its reason and the service goes on; a flood from one tag is rate-limited
without hurting the others (issue 8, point 4)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import forget_mqtt_session
from tests.helpers import Publisher, build_small_world, fix, wait_until
from tracker.ingest.decode import Reason
from tracker.service import Service
from tracker.store.devices import link_device

MAX_PAYLOAD = 2048
# along the route, then 150 m off it for 30 s (fixes 6 s apart): one "left route" alert
WALK = [(-550, 0), (-540, 0), (-530, 0), (-520, 0), *[(-520, 150 + 5 * i) for i in range(6)]]
BURST, RATE = 30, 5.0


@pytest.fixture
async def strict_service(database_url: str, mqtt_url: str, settings_for) -> AsyncIterator[Service]:  # type: ignore[no-untyped-def]
    settings = settings_for(
        database_url, mqtt_url, max_payload_bytes=MAX_PAYLOAD, tag_burst=BURST, tag_rate_per_s=RATE
    )
    svc = Service(settings, database_url, mqtt_url)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
        await asyncio.to_thread(forget_mqtt_session, mqtt_url, settings.mqtt_client_id)


async def test_every_bad_message_is_dead_lettered_with_its_reason_and_the_service_goes_on(
    strict_service: Service, mqtt_url: str
) -> None:
    svc = strict_service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Ann", "Ben"])
        await link_device(conn, tag_id=world.kids["Ann"].tag, protocol="owntracks", device="ann/phone")
    await svc.reload_registry()
    p = svc.settings.topic_prefix
    ann, ben = world.kids["Ann"].tag, world.kids["Ben"].tag
    now = time.time()
    good = fix(-500, 0, now - 5)
    hostile: list[tuple[str, bytes, Reason]] = [
        (f"{p}tracker/v1/tags/{ann}/position", b'{"ts": 17000, "lat": oops', Reason.MALFORMED_JSON),
        (
            f"{p}tracker/v1/tags/{ann}/position",
            json.dumps(good)[:25].encode(),
            Reason.MALFORMED_JSON,
        ),  # truncated
        (f"{p}tracker/v1/tags/{ann}/position", b"[" * 1500 + b"]" * 1500, Reason.OVERSIZED),
        (f"{p}tracker/v1/tags/{ann}/position", b"[" * 1000 + b"]" * 1000, Reason.MALFORMED_JSON),  # too deep
        (
            f"{p}tracker/v1/tags/{ann}/position",
            json.dumps({**good, "lat": "north"}).encode(),
            Reason.SCHEMA_VIOLATION,
        ),
        (
            f"{p}tracker/v1/tags/{ann}/position",
            json.dumps({**good, "lat": 123.0}).encode(),
            Reason.SCHEMA_VIOLATION,
        ),
        (
            f"{p}tracker/v1/tags/{ann}/position",
            json.dumps({**good, "acc": float("nan")}).encode(),
            Reason.MALFORMED_JSON,
        ),
        (
            f"{p}tracker/v1/tags/{ann}/position",
            json.dumps({**good, "ts": now + 3600}).encode(),
            Reason.FUTURE_TIMESTAMP,
        ),
        (f"{p}tracker/v1/tags/nobody/position", json.dumps(good).encode(), Reason.UNKNOWN_TAG),
        (
            f"{p}tracker/v1/gateways/gw/positions",
            json.dumps(good).encode(),
            Reason.SCHEMA_VIOLATION,
        ),  # not an array
        (
            f"{p}tracker/v1/readers/nowhere/sightings",
            json.dumps({"ts": now, "tags": [ann]}).encode(),
            Reason.UNKNOWN_READER,
        ),
        (
            f"{p}owntracks/ann/phone",
            json.dumps({"_type": "location", "lat": 37.5, "lon": 1e400}).encode(),  # Infinity: not JSON
            Reason.MALFORMED_JSON,
        ),
        (
            f"{p}owntracks/eve/phone",
            json.dumps({"_type": "location", "lat": 37.5, "lon": 127, "acc": 5, "tst": int(now)}).encode(),
            Reason.UNKNOWN_DEVICE,
        ),
    ]
    pub = Publisher(mqtt_url)
    try:
        for topic, payload, _ in hostile:
            await asyncio.to_thread(pub.publish, topic, payload)
        await asyncio.to_thread(pub.publish, f"{p}tracker/v1/tags/{ann}/position", good)  # replayed ...
        await asyncio.to_thread(pub.publish, f"{p}tracker/v1/tags/{ann}/position", good)  # ... stored once
        await asyncio.to_thread(pub.publish, f"{p}tracker/v1/tags/{ben}/position", fix(-450, 0, now - 4))
        await wait_until(
            lambda: svc.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", ben), 10
        )
        rows = await wait_until(
            lambda: _when_count(
                svc, "SELECT topic, payload, reason, detail FROM dead_letters ORDER BY id", len(hostile)
            ),
            10,
        )
    finally:
        pub.close()
    # (in one batch, decoding refusals are written before admission refusals: compare as multisets)
    assert Counter((r["topic"], r["reason"]) for r in rows) == Counter(
        (t, why.value) for t, _, why in hostile
    )
    assert all(r["detail"] for r in rows)
    assert max(len(r["payload"]) for r in rows) <= MAX_PAYLOAD  # the oversized one keeps its beginning
    assert await svc.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", ann) == 1
    assert sum(svc.metrics.rejected.values()) == len(hostile)
    async with httpx.AsyncClient() as http:
        ready = await http.get(f"http://127.0.0.1:{svc.settings.http_port}/readyz")
    assert ready.status_code == 200 and ready.json()["components"]["tasks"] is True


async def _when_count(svc: Service, sql: str, n: int):  # type: ignore[no-untyped-def]
    rows = await svc.pool.fetch(sql)
    return rows if len(rows) >= n else None


async def test_a_flood_from_one_tag_is_rate_limited_without_hurting_the_others(
    strict_service: Service, mqtt_url: str
) -> None:
    svc = strict_service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Flo", "Gus"])
    await svc.reload_registry()
    p = svc.settings.topic_prefix
    flood_tag, calm = world.kids["Flo"].tag, world.kids["Gus"]
    flood = 600
    t0 = time.time() - flood - 60
    pub = Publisher(mqtt_url)
    calm_pub = Publisher(mqtt_url)

    def flood_all() -> None:
        for i in range(flood):
            pub.publish(f"{p}tracker/v1/tags/{flood_tag}/position", fix(-500, 0, t0 + i * 0.5))

    def calm_walk() -> None:  # along the route, then 150 m off it: one "left route" alert
        topic = f"{p}tracker/v1/tags/{calm.tag}/position"
        base = time.time() - 40
        for i, (x, y) in enumerate(WALK):
            calm_pub.publish(topic, fix(x, y, base + i * 6))

    try:
        await asyncio.gather(asyncio.to_thread(flood_all), asyncio.to_thread(calm_walk))
        await wait_until(lambda: _when_count(svc, "SELECT 1 FROM alerts WHERE kind = 'left_route'", 1), 15)
        await wait_until(
            lambda: _when_count(
                svc,
                "SELECT received_at FROM positions WHERE tag_id = $$" + flood_tag + "$$"
                " UNION ALL SELECT received_at FROM dead_letters WHERE reason = 'rate_limited'",
                flood,
            ),
            30,
        )
    finally:
        pub.close()
        calm_pub.close()
    stored = await svc.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", flood_tag)
    limited = await svc.pool.fetch("SELECT payload, detail FROM dead_letters WHERE reason = 'rate_limited'")
    span = await svc.pool.fetchval(
        "SELECT extract(epoch FROM max(r) - min(r)) FROM"
        " (SELECT received_at AS r FROM positions WHERE tag_id = $1"
        " UNION ALL SELECT received_at FROM dead_letters WHERE reason = 'rate_limited') AS t",
        flood_tag,
    )
    print(f"\nFLOOD sent={flood} stored={stored} rate_limited={len(limited)} over {float(span):.1f} s")
    assert stored + len(limited) == flood  # each one stored or dead-lettered, with the reason
    assert len(limited) > 0 and stored <= BURST + RATE * float(span) + 1
    assert all(json.loads(r["payload"])["tag"] == flood_tag and flood_tag in r["detail"] for r in limited)
    # the calm child: every fix stored, the alert raised
    assert await svc.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", calm.tag) == len(WALK)
    assert await svc.pool.fetchval("SELECT child_id FROM alerts WHERE kind = 'left_route'") == calm.child_id
    assert svc.metrics.rejected["rate_limited"] == len(limited)
