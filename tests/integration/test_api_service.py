"""The API inside the running service (real PostgreSQL, real broker): a registry change reaches the
geofence index within a second without a restart, /metrics counts what the chain did, /readyz, and the
service purges old positions by itself."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np

from tests.helpers import Publisher, fix, lonlat, wait_until
from tests.integration.test_api_support import bearer, build_city, line, square
from tracker.geofence import kernels as geofence_kernels


def _zone_body(cx: float, cy: float) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": square(cx, cy, 40),
        "properties": {"name": "Trench", "kind": "construction"},
    }


async def test_registry_changes_reach_the_geofence_index_within_a_second(service) -> None:  # type: ignore[no-untyped-def]
    city = await build_city(service.pool)
    await service.reload_registry()
    base = f"http://127.0.0.1:{service.settings.http_port}"
    lon, lat = lonlat(-100, 400)
    async with httpx.AsyncClient(base_url=base, headers=bearer(city.admin)) as http:
        started = time.monotonic()
        r = await http.post("/api/v1/zones", json=_zone_body(-100, 400))
        assert r.status_code == 201
        zone_id = r.json()["id"]
        await wait_until(lambda: zone_id in service.view().index.zone_ids.tolist(), 1.0, interval=0.01)
        created_s = time.monotonic() - started
        verdict = service.view().index.check(
            np.array([lon]), np.array([lat]), np.array([5.0]), np.array([-1])
        )
        assert zone_id in verdict.certain(0)

        # moved away: the old place is no longer in it
        started = time.monotonic()
        r = await http.patch(f"/api/v1/zones/{zone_id}", json={"geometry": square(2000, 2000, 40)})
        assert r.status_code == 200

        def moved() -> bool:
            v = service.view().index.check(np.array([lon]), np.array([lat]), np.array([5.0]), np.array([-1]))
            return zone_id not in v.possible(0)

        await wait_until(moved, 1.0, interval=0.01)
        moved_s = time.monotonic() - started

        # a route's new shape is what the child is measured against
        r = await http.patch(
            f"/api/v1/routes/{city.a.route_id}", json={"geometry": line((-600, 200), (0, 200))}
        )
        assert r.status_code == 200
        slot = service.view().index.route_slot(city.a.route_id)

        def rerouted() -> bool:
            view = service.view()
            s = np.array([view.index.route_slot(city.a.route_id)])
            x, y = lonlat(-300, 200)
            return bool(
                view.index.check(np.array([x]), np.array([y]), np.array([5.0]), s).route_distance_m[0] < 1
            )

        await wait_until(rerouted, 1.0, interval=0.01)
        assert slot >= 0
    print(f"registry change -> index: zone created {created_s * 1000:.0f} ms, moved {moved_s * 1000:.0f} ms")


async def test_metrics_count_the_chain_and_readiness_reflects_the_servers(service, mqtt_url: str) -> None:  # type: ignore[no-untyped-def]
    city = await build_city(service.pool)
    await service.reload_registry()
    prefix = service.settings.topic_prefix
    publisher = Publisher(mqtt_url)
    try:
        now = time.time()
        publisher.publish(f"{prefix}tracker/v1/tags/{city.a.tag}/position", fix(-300, 0, now - 2))
        publisher.publish(f"{prefix}tracker/v1/tags/unknown-tag/position", fix(-300, 0, now - 1))
        publisher.publish(f"{prefix}tracker/v1/tags/{city.a.tag}/position", b"not json")
    finally:
        publisher.close()
    base = f"http://127.0.0.1:{service.settings.http_port}"
    async with httpx.AsyncClient(base_url=base) as http:

        async def scraped() -> str | None:
            text = (await http.get("/metrics")).text
            return text if re.search(r"^tracker_messages_in_total 3\.0$", text, re.M) else None

        text = await wait_until(scraped, 10)
        assert re.search(r"^tracker_fixes_in_total 1\.0$", text, re.M), text
        assert re.search(r"^tracker_fixes_judged_wide_total 0\.0$", text, re.M), text  # (a new tag)
        assert re.search(r'^tracker_fixes_rejected_total\{reason="unknown_tag"\} 1\.0$', text, re.M), text
        assert re.search(r'^tracker_fixes_rejected_total\{reason="[a-z_]+"\} 1\.0$', text, re.M)
        assert re.search(r'^tracker_alerts_open\{kind="sos"\} 2\.0$', text, re.M), text
        assert "# TYPE tracker_delivery_latency_seconds histogram" in text
        # how old the fixes were at each point: the three messages waited in the queue, the one fix
        # admitted was prepared and committed within the minute (its batch's 60 s bucket holds it)
        assert re.search(r'^tracker_fix_age_seconds_count\{point="queued"\} 3\.0$', text, re.M), text
        for point in ("prepared", "committed"):
            assert re.search(rf'^tracker_fix_age_seconds_count\{{point="{point}"\}} 1\.0$', text, re.M), text
            minute = rf'^tracker_fix_age_seconds_bucket\{{le="60.0",point="{point}"\}} 1\.0$'
            assert re.search(minute, text, re.M), text
        assert "# TYPE tracker_outbox_queue gauge" in text
        assert re.search(r"^tracker_mqtt_up 1\.0$", text, re.M) and re.search(
            r"^tracker_database_up 1\.0$", text, re.M
        )
        # which geofence kernels run: compiled ahead of time (1) or numba's JIT (0)
        aot = "1.0" if geofence_kernels.AHEAD_OF_TIME is not None else "0.0"
        assert re.search(rf"^tracker_geofence_kernels_ahead_of_time {aot}$", text, re.M), text
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["components"]["mqtt"] is True

        # the ingestor reports the broker's connection lost: not ready, and /metrics says which
        probes = service.context.readiness
        probes["mqtt"], connected = (lambda: False), probes["mqtt"]
        try:
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json() == {
                "ready": False,
                "components": {
                    "database": True,
                    "mqtt": False,
                    "pipeline": True,
                    "registry": True,
                    "tasks": True,
                },
            }
            assert re.search(r"^tracker_mqtt_up 0\.0$", (await http.get("/metrics")).text, re.M)
        finally:
            probes["mqtt"] = connected


async def test_the_service_purges_positions_older_than_the_retention_period(
    database_url: str, mqtt_url: str, settings_for
) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import forget_mqtt_session
    from tracker.service import Service

    settings = settings_for(database_url, mqtt_url, positions_retention_days=2, retention_interval_s=0.2)
    svc = Service(settings, database_url, mqtt_url)
    await svc.start(http=False)
    try:
        city = await build_city(svc.pool)
        now = datetime.now(UTC)
        for days in (5, 3, 1):
            await svc.pool.execute(
                "INSERT INTO positions (tag_id, ts, child_id, lon, lat, acc, received_at)"
                " VALUES ($1, $2, $3, 127.05, 37.5, 10, $2)",
                city.a.tag,
                now - timedelta(days=days),
                city.a.child_id,
            )

        async def purged() -> bool:
            return (
                await svc.pool.fetchval("SELECT count(*) FROM positions WHERE ts < now() - interval '2 days'")
                == 0
            )

        await wait_until(purged, 5)
        assert (
            await svc.pool.fetchval("SELECT count(*) FROM positions WHERE child_id = $1", city.a.child_id)
            == 2
        )
    finally:
        await svc.stop()
        await asyncio.to_thread(forget_mqtt_session, mqtt_url, settings.mqtt_client_id)
