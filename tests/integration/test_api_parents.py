"""What a parent sees (the child's last position, today's track, the alert history with its delivery
and acknowledgement steps, acknowledging over HTTP) and the privacy rules around it: staff reads of
positions are audited, and positions are purged after the retention period."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.integration.test_api_support import Api, bearer, build_city, running_api
from tracker.store.retention import purge_old_positions


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


async def _fix(api: Api, tag: str, child: int, at: datetime, lon: float = 127.05, lat: float = 37.5) -> None:
    await api.pool.execute(
        "INSERT INTO positions (tag_id, ts, child_id, lon, lat, acc, batt, received_at)"
        " VALUES ($1, $2, $3, $4, $5, 12, 77, $2)",
        tag,
        at,
        child,
        lon,
        lat,
    )


async def test_a_parent_sees_the_last_position_and_todays_track_in_the_schools_time_zone(api: Api) -> None:
    city = await build_city(api.pool)
    kid, parent = city.a, bearer(city.a.guardian)
    seoul = ZoneInfo("Asia/Seoul")
    today = datetime.now(seoul).replace(hour=0, minute=0, second=0, microsecond=0)
    await api.pool.execute("DELETE FROM positions")
    # yesterday 23:50 Seoul time is not today's, even though it is the same UTC date for part of the day
    await _fix(api, kid.tag, kid.child_id, today - timedelta(minutes=10))
    for minutes in (1, 2, 3):
        await _fix(
            api, kid.tag, kid.child_id, today + timedelta(minutes=minutes), lon=127.05 + minutes * 1e-4
        )

    last = (await api.http.get(f"/api/v1/children/{kid.child_id}/position", headers=parent)).json()
    assert last["type"] == "Feature" and last["geometry"]["coordinates"] == [127.0503, 37.5]
    assert last["properties"]["acc"] == 12 and last["properties"]["batt"] == 77

    track = (await api.http.get(f"/api/v1/children/{kid.child_id}/track", headers=parent)).json()
    assert track["type"] == "FeatureCollection" and track["timezone"] == "Asia/Seoul"
    assert track["date"] == today.date().isoformat() and track["total"] == 3
    assert [f["geometry"]["coordinates"][0] for f in track["features"]] == [127.0501, 127.0502, 127.0503]
    page = (
        await api.http.get(f"/api/v1/children/{kid.child_id}/track?limit=2&offset=2", headers=parent)
    ).json()
    assert len(page["features"]) == 1 and page["total"] == 3
    yesterday = (today - timedelta(days=1)).date().isoformat()
    older = (
        await api.http.get(f"/api/v1/children/{kid.child_id}/track?date={yesterday}", headers=parent)
    ).json()
    assert older["total"] == 1

    # a child without any kept position: a Feature with no geometry, not an error
    await api.pool.execute("DELETE FROM positions")
    none = (await api.http.get(f"/api/v1/children/{kid.child_id}/position", headers=parent)).json()
    assert none["geometry"] is None and none["properties"] == {
        "child_id": kid.child_id,
        "ts": None,
        "acc": None,
        "batt": None,
        "tag_id": None,
        "route_distance_m": None,
        "received_at": None,
    }


async def test_the_alert_history_shows_deliveries_and_acknowledgement_and_a_parent_acknowledges(
    api: Api,
) -> None:
    city = await build_city(api.pool)
    kid, parent = city.a, bearer(city.a.guardian)
    alert = await api.pool.fetchval(
        "INSERT INTO alerts (child_id, kind, severity, opened_at, updated_at, last_lon, last_lat, last_acc,"
        " last_fix_ts) VALUES ($1, 'left_route', 'warning', now() - interval '2 min', now(), 127.05, 37.5, 9,"
        " now()) RETURNING id",
        kid.child_id,
    )
    await api.pool.execute(
        "INSERT INTO alert_history (alert_id, at, step, detail) VALUES"
        " ($1, now() - interval '2 min', 'opened', '{\"severity\": \"warning\"}'),"
        " ($1, now() - interval '1 min', 'delivered', $2)",
        alert,
        {"guardian_id": kid.guardian_id, "channel": "sms"},
    )
    await api.pool.execute(
        "INSERT INTO deliveries (alert_id, transition, guardian_id, channel, state, attempts, sent_at)"
        " VALUES ($1, 'opened', $2, 'sms', 'sent', 1, now() - interval '1 min')",
        alert,
        kid.guardian_id,
    )
    r = await api.http.post(f"/api/v1/alerts/{alert}/ack", headers=parent)
    assert r.status_code == 200 and r.json()["acknowledged"] is True
    assert r.json()["acknowledged_by"] == kid.guardian_id
    first_ack = r.json()["acknowledged_at"]
    again = await api.http.post(f"/api/v1/alerts/{alert}/ack", headers=parent)
    assert again.status_code == 200 and again.json()["acknowledged_at"] == first_ack  # the first one stays

    got = (await api.http.get(f"/api/v1/alerts/{alert}", headers=parent)).json()
    assert [s["step"] for s in got["steps"]] == ["opened", "delivered", "acknowledged"]
    assert got["steps"][1]["detail"] == {"guardian_id": kid.guardian_id, "channel": "sms"}
    assert got["deliveries"][0] | {"id": 0, "created_at": None, "sent_at": None} == {
        "id": 0,
        "guardian_id": kid.guardian_id,
        "school_id": None,
        "channel": "sms",
        "transition": "opened",
        "state": "sent",
        "attempts": 1,
        "created_at": None,
        "sent_at": None,
        "last_error": None,
    }
    assert got["position"]["lon"] == 127.05 and got["child"] == {"id": kid.child_id, "name": "Child A"}

    history = (
        await api.http.get(f"/api/v1/alerts?child_id={kid.child_id}&kind=left_route", headers=parent)
    ).json()
    assert [a["id"] for a in history["items"]] == [alert]
    since = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await api.http.get("/api/v1/alerts", params={"since": since}, headers=parent)).json()[
        "total"
    ] == 0
    # the other family's alert cannot be acknowledged, nor seen
    assert (await api.http.post(f"/api/v1/alerts/{city.b.alert_id}/ack", headers=parent)).status_code == 404


async def test_every_staff_read_of_a_position_is_audited_and_parents_can_see_who_looked(api: Api) -> None:
    city = await build_city(api.pool)
    kid = city.a
    staff, admin, parent = bearer(kid.staff), bearer(city.admin), bearer(kid.guardian)
    # guardians reading their own child's position are not staff: nothing is logged
    for path in (f"/api/v1/children/{kid.child_id}/position", f"/api/v1/children/{kid.child_id}/track"):
        assert (await api.http.get(path, headers=parent)).status_code == 200
    assert await api.pool.fetchval("SELECT count(*) FROM position_reads") == 0

    reads = [
        (staff, f"/api/v1/children/{kid.child_id}/position", "GET /api/v1/children/{child_id}/position"),
        (staff, f"/api/v1/children/{kid.child_id}/track", "GET /api/v1/children/{child_id}/track"),
        (staff, f"/api/v1/children/{kid.child_id}", "GET /api/v1/children/{child_id}"),
        (staff, "/api/v1/children", "GET /api/v1/children"),
        (admin, f"/api/v1/alerts/{kid.alert_id}", "GET /api/v1/alerts/{alert_id}"),
    ]
    for who, path, _ in reads:
        assert (await api.http.get(path, headers=who)).status_code == 200
    log = await api.pool.fetch("SELECT * FROM position_reads ORDER BY id")
    assert [(r["endpoint"], r["child_id"]) for r in log] == [(e, kid.child_id) for _, _, e in reads]
    assert {r["role"] for r in log} == {"school", "admin"} and log[0]["school_id"] == kid.school_id
    assert log[0]["label"] == "staff A" and log[1]["fixes"] == 1

    seen = (await api.http.get("/api/v1/audit/position-reads", headers=parent)).json()
    assert seen["total"] == len(reads) and {i["child_id"] for i in seen["items"]} == {kid.child_id}
    # school B's staff read their own child: school A and its parents do not see that entry
    await api.http.get(f"/api/v1/children/{city.b.child_id}/position", headers=bearer(city.b.staff))
    assert (await api.http.get("/api/v1/audit/position-reads", headers=staff)).json()["total"] == len(reads)
    assert (await api.http.get("/api/v1/audit/position-reads", headers=admin)).json()["total"] == len(
        reads
    ) + 1


async def test_positions_and_dead_letters_older_than_the_retention_period_are_purged(api: Api) -> None:
    city = await build_city(api.pool)
    kid = city.a
    now = datetime.now(UTC)
    for days in (45, 31, 29, 1):
        await _fix(api, kid.tag, kid.child_id, now - timedelta(days=days))
    await api.pool.execute(
        "INSERT INTO dead_letters (received_at, topic, payload, reason) VALUES"
        " (now() - interval '40 days', 't', '\\x7b7d', 'malformed'), (now(), 't', '\\x7b7d', 'malformed')"
    )
    kept_before = await api.pool.fetchval("SELECT count(*) FROM positions")
    purged = await purge_old_positions(api.pool, keep=timedelta(days=30), batch=1)  # several small batches
    assert purged.positions == 2 and purged.dead_letters == 1
    assert await api.pool.fetchval("SELECT count(*) FROM positions") == kept_before - 2
    oldest = await api.pool.fetchval("SELECT min(ts) FROM positions")
    assert oldest > now - timedelta(days=30)
    again = await purge_old_positions(api.pool, keep=timedelta(days=30))
    assert again.positions == again.dead_letters == 0
