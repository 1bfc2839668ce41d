"""Children's status at a glance and the live map's feed: the status comes from the monitor's
checkpointed state, the position from the last stored fix; the access rules are the children's, and
staff reads are audited. Also: the pages are served with everything they need from the tracker itself."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.test_api_support import Api, bearer, build_city, running_api
from tracker.monitor.model import ChildState


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(
        database_url, tmp_path, tile_url="https://{s}.tile.example.org/{z}/{x}/{y}.png"
    ) as a:
        yield a


async def _state(api: Api, child_id: int, state: ChildState) -> None:
    await api.pool.execute(
        "INSERT INTO child_state (child_id, state) VALUES ($1, $2)"
        " ON CONFLICT (child_id) DO UPDATE SET state = EXCLUDED.state",
        child_id,
        state.to_json(),
    )


async def test_status_of_a_child_from_the_monitor_state(api: Api) -> None:
    city = await build_city(api.pool)
    kid, parent = city.a, bearer(city.a.guardian)
    await api.pool.execute("DELETE FROM positions")
    r = await api.http.get(f"/api/v1/children/{kid.child_id}/status", headers=parent)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "unknown" and r.json()["position"] is None

    at = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)
    await api.pool.execute(
        "INSERT INTO positions (tag_id, ts, child_id, lon, lat, acc, batt, received_at)"
        " VALUES ($1, $2, $3, 127.05, 37.5, 9, 64, $2)",
        kid.tag,
        at,
        kid.child_id,
    )
    await _state(
        api, kid.child_id, ChildState(last_ts=at.timestamp(), off_route=True, zones_in={city.zone_id})
    )
    body = (await api.http.get(f"/api/v1/children/{kid.child_id}/status", headers=parent)).json()
    assert body["status"] == "in_danger_zone" and body["zones"] == [city.zone_id]
    assert body["position"] == {
        "ts": "2026-03-04T08:00:00Z",
        "lon": 127.05,
        "lat": 37.5,
        "acc": 9.0,
        "batt": 64,
    }
    assert body["name"] and body["school_id"] == kid.school_id and body["route_id"] == kid.route_id

    await _state(api, kid.child_id, ChildState(last_ts=at.timestamp(), at="school"))
    body = (await api.http.get(f"/api/v1/children/{kid.child_id}/status", headers=parent)).json()
    assert body["status"] == "at_school" and body["zones"] == []


async def test_live_feed_follows_the_access_rules_and_audits_staff(api: Api) -> None:
    city = await build_city(api.pool)
    await api.pool.execute("DELETE FROM position_reads")
    await _state(api, city.a.child_id, ChildState(last_ts=1.0, off_route=True))
    staff = bearer(city.a.staff)

    page = (await api.http.get("/api/v1/live", headers=staff)).json()
    ids = {i["child_id"]: i for i in page["items"]}
    assert city.a.child_id in ids and city.b.child_id not in ids and page["total"] == len(ids)
    assert ids[city.a.child_id]["status"] == "off_route"
    # another school's children are not there even when asked for by filter
    other = (await api.http.get(f"/api/v1/live?school_id={city.b.school_id}", headers=staff)).json()
    assert other["items"] == [] and other["total"] == 0
    r = await api.http.get(f"/api/v1/children/{city.b.child_id}/status", headers=staff)
    assert r.status_code == 404

    with_position = [i["child_id"] for i in page["items"] if i["position"] is not None]
    audited = await api.pool.fetch("SELECT child_id, endpoint FROM position_reads ORDER BY child_id")
    assert [(a["child_id"], a["endpoint"]) for a in audited] == [
        (c, "GET /api/v1/live") for c in sorted(with_position)
    ]

    # a guardian's reads of their own children are not audited
    await api.pool.execute("DELETE FROM position_reads")
    mine = (await api.http.get("/api/v1/live", headers=bearer(city.a.guardian))).json()
    assert [i["child_id"] for i in mine["items"]] == [city.a.child_id]
    assert await api.pool.fetchval("SELECT count(*) FROM position_reads") == 0


async def test_pages_are_served_with_what_they_need_and_nothing_from_elsewhere(api: Api) -> None:
    static = Path(__file__).parents[2] / "tracker" / "api" / "static"
    for path in ("/", "/school", "/city"):
        r = await api.http.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "https://*.tile.example.org" in csp
        # every script and style comes from the tracker itself, and is there
        refs = re.findall(r'(?:src|href)="([^"#]+)"', r.text)
        assert refs and all(ref.startswith("/") for ref in refs), refs
        for ref in refs:
            assert (await api.http.get(ref)).status_code == 200, ref
    config = (await api.http.get("/config.js")).text
    assert json.loads(config.split("=", 1)[1].rstrip().rstrip(";"))["tileUrl"].startswith("https://{s}.tile")
    # the vendored map libraries come with their licences, and no script names a CDN
    for lib in ("leaflet", "geoman"):
        assert (static / "vendor" / lib / "LICENSE").stat().st_size > 0
    for page in static.glob("*.js"):
        assert not re.search(r"https?://(unpkg|cdn|cdnjs|jsdelivr)", page.read_text(encoding="utf-8")), page
    districts = (await api.http.get("/static/seoul-districts.geojson")).json()
    assert len(districts["features"]) == 25
