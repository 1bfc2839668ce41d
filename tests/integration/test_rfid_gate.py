"""RFID readers on the real broker and database: a gate sighting is arrival at school, a sighting
is stored like a fix (a redelivery is a duplicate), and an unknown reader is dead-lettered."""

from __future__ import annotations

import json
import time

from tests.helpers import LAT0, LON0, Publisher, build_small_world, wait_until


async def test_a_gate_sighting_is_arrival_at_school(service, mqtt_url: str) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Soyul", "Ian"])
        await conn.execute(
            "INSERT INTO readers (id, school_id, name, role, lon, lat)"
            " VALUES ('gate-1', $1, 'Main gate', 'gate', $2, $3)",
            world.school_id,
            LON0,
            LAT0,
        )
    await svc.reload_registry()
    kid, other = world.kids["Soyul"], world.kids["Ian"]
    sighting = json.dumps({"ts": time.time() - 5, "tags": [kid.tag, kid.tag, other.tag]})
    prefix = svc.settings.topic_prefix
    pub = Publisher(mqtt_url)
    try:
        pub.publish(f"{prefix}tracker/v1/readers/gate-1/sightings", sighting)
        pub.publish(f"{prefix}tracker/v1/readers/gate-1/sightings", sighting)  # the broker redelivers
        pub.publish(f"{prefix}tracker/v1/readers/gate-9/sightings", sighting)
    finally:
        pub.close()

    async def arrivals() -> list[object]:
        rows = await svc.pool.fetch(
            "SELECT child_id FROM alerts WHERE kind = 'arrived_school' ORDER BY child_id"
        )
        return [r["child_id"] for r in rows] if len(rows) >= 2 else []

    assert await wait_until(arrivals, 5) == sorted([kid.child_id, other.child_id])
    await wait_until(lambda: svc.pool.fetchval("SELECT count(*) FROM dead_letters"), 5)
    assert await svc.pool.fetchval("SELECT count(*) FROM positions") == 2  # once per child
    dead = await svc.pool.fetch("SELECT reason, detail FROM dead_letters")
    assert {d["reason"] for d in dead} == {"unknown_reader"} and "gate-9" in dead[0]["detail"]
    assert await svc.pool.fetchval("SELECT count(*) FROM alerts") == 2  # the redelivery changed nothing
