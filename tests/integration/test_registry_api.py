"""The registry over HTTP against a real PostgreSQL: GeoJSON in and out, paging, references, and
bad input answered with a 4xx that says what is wrong and where, with nothing half-written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_support import (
    Api,
    bearer,
    build_city,
    fingerprint,
    line,
    point,
    running_api,
    square,
)


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


def route_body(*xy: tuple[float, float], corridor: float = 25, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": line(*xy),
        "properties": {"name": "Walk", "corridor_m": corridor} | props,
    }


def zone_body(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": {"name": "Pond", "kind": "river"} | props}


def only(detail: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(detail) == 1, detail
    return detail[0]


async def test_a_school_registers_a_route_child_tag_and_guardian_and_reads_them_back(api: Api) -> None:
    city = await build_city(api.pool)
    staff = bearer(city.a.staff)
    windows = [{"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00"}]
    arrivals = [{"days": [0, 1, 2, 3, 4], "time": "08:40", "to": "school"}]
    r = await api.http.post(
        "/api/v1/routes",
        headers=staff,
        json=route_body((-400, 10), (-200, 10), (0, 0), windows=windows, arrivals=arrivals),
    )
    assert r.status_code == 201, r.text
    route = r.json()
    assert route["type"] == "Feature" and route["geometry"]["type"] == "LineString"
    lon, lat = route["geometry"]["coordinates"][0]
    assert 126 < lon < 128 and 37 < lat < 38  # RFC 7946: [lon, lat]
    assert route["properties"] | {"created_at": None} == {
        "name": "Walk",
        "school_id": city.a.school_id,  # school staff register for their own school by default
        "corridor_m": 25.0,
        "mode": "walk",
        "meets_zones": [],
        "windows": windows,
        "arrivals": arrivals,
        "children": [],
        "created_at": None,
    }

    r = await api.http.post(
        "/api/v1/guardians",
        headers=staff,
        json={"name": "Grandma", "phone": "+821055550000", "language": "ko", "channels": ["sms"]},
    )
    assert r.status_code == 201, r.text
    grandma = r.json()
    assert grandma["school_id"] == city.a.school_id and grandma["channels"] == ["sms"]

    r = await api.http.post(
        "/api/v1/children",
        headers=staff,
        json={
            "name": "Minjun",
            "route_id": route["id"],
            "guardians": [
                {"guardian_id": city.a.guardian_id, "priority": 1},
                {"guardian_id": grandma["id"], "priority": 2},
            ],
        },
    )
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["school_id"] == city.a.school_id and child["route_id"] == route["id"]
    assert child["guardians"] == [
        {"guardian_id": city.a.guardian_id, "priority": 1},
        {"guardian_id": grandma["id"], "priority": 2},
    ]
    assert child["last_position"] is None and child["tags"] == []

    r = await api.http.post("/api/v1/tags", headers=staff, json={"id": "watch-77", "child_id": child["id"]})
    assert r.status_code == 201, r.text
    assert r.json()["credentials"]["mqtt_username"] == "watch-77"
    r = await api.http.post(
        "/api/v1/tags", headers=staff, json={"id": "card-77", "child_id": child["id"], "kind": "rfid"}
    )
    assert r.status_code == 201 and r.json()["credentials"] is None  # a card does not connect anywhere

    got = (await api.http.get(f"/api/v1/children/{child['id']}", headers=staff)).json()
    assert got["tags"] == ["card-77", "watch-77"]
    got_route = (await api.http.get(f"/api/v1/routes/{route['id']}", headers=staff)).json()
    assert got_route["properties"]["children"] == [child["id"]]

    # the escalation order is changed as a whole
    r = await api.http.put(
        f"/api/v1/children/{child['id']}/guardians",
        headers=staff,
        json=[{"guardian_id": grandma["id"], "priority": 1}],
    )
    assert r.status_code == 200 and r.json() == [{"guardian_id": grandma["id"], "priority": 1}]
    assert (await api.http.get(f"/api/v1/guardians/{grandma['id']}", headers=staff)).json()["children"] == [
        {"child_id": child["id"], "priority": 1}
    ]

    # changes and deletions
    r = await api.http.patch(
        f"/api/v1/routes/{route['id']}", headers=staff, json={"properties": {"corridor_m": 40}}
    )
    assert r.status_code == 200 and r.json()["properties"]["corridor_m"] == 40.0
    r = await api.http.patch(f"/api/v1/children/{child['id']}", headers=staff, json={"route_id": None})
    assert r.status_code == 200 and r.json()["route_id"] is None
    assert (await api.http.delete(f"/api/v1/routes/{route['id']}", headers=staff)).status_code == 204
    assert (await api.http.get(f"/api/v1/routes/{route['id']}", headers=staff)).status_code == 404
    assert (await api.http.delete("/api/v1/tags/watch-77", headers=staff)).status_code == 204
    assert (await api.http.delete(f"/api/v1/children/{child['id']}", headers=staff)).status_code == 204
    assert await api.pool.fetchval("SELECT count(*) FROM tags WHERE child_id = $1", child["id"]) == 0


async def test_the_city_registers_schools_zones_and_readers(api: Api) -> None:
    city = await build_city(api.pool)
    admin = bearer(city.admin)
    r = await api.http.post(
        "/api/v1/schools",
        headers=admin,
        json={
            "type": "Feature",
            "geometry": point(1000, 1000),
            "properties": {
                "name": "Dogok Elementary",
                "windows": [{"start": "07:40", "end": "09:00"}],
                "closed_days": ["2026-12-25", "2026-12-24"],
            },
        },
    )
    assert r.status_code == 201, r.text
    school = r.json()
    assert school["properties"]["timezone"] == "Asia/Seoul"  # TRACKER_DEFAULT_TIMEZONE
    assert school["properties"]["closed_days"] == ["2026-12-24", "2026-12-25"]
    assert school["properties"]["windows"] == [{"days": [0, 1, 2, 3, 4], "start": "07:40", "end": "09:00"}]

    hole = square(500, 500, 20)["coordinates"][0][::-1]
    r = await api.http.post(
        "/api/v1/zones",
        headers=admin,
        json=zone_body(
            {"type": "Polygon", "coordinates": [square(500, 500, 100)["coordinates"][0], hole]},
            severity="warning",
            hours=[{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}],
        ),
    )
    assert r.status_code == 201, r.text
    zone = r.json()
    assert zone["properties"]["kind"] == "river" and zone["properties"]["severity"] == "warning"
    assert len(zone["geometry"]["coordinates"]) == 2  # the hole is kept
    r = await api.http.patch(
        f"/api/v1/zones/{zone['id']}", headers=admin, json={"properties": {"active": False}}
    )
    assert r.status_code == 200 and r.json()["properties"]["active"] is False

    r = await api.http.post(
        "/api/v1/readers",
        headers=admin,
        json={
            "type": "Feature",
            "id": "gate-dogok-1",
            "geometry": point(1000, 990),
            "properties": {"name": "Main gate", "school_id": school["id"], "role": "gate"},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "gate-dogok-1" and r.json()["properties"]["role"] == "gate"
    again = await api.http.post(
        "/api/v1/readers",
        headers=admin,
        json={
            "type": "Feature",
            "id": "gate-dogok-1",
            "geometry": point(1000, 990),
            "properties": {"name": "Main gate", "school_id": school["id"], "role": "gate"},
        },
    )
    assert again.status_code == 409 and "gate-dogok-1" in again.json()["detail"]

    # deleting a school takes its readers, routes and children with it
    assert (await api.http.delete(f"/api/v1/schools/{city.b.school_id}", headers=admin)).status_code == 204
    assert (
        await api.pool.fetchval("SELECT count(*) FROM children WHERE school_id = $1", city.b.school_id) == 0
    )


async def test_lists_are_paged_and_say_their_total(api: Api) -> None:
    city = await build_city(api.pool)
    admin = bearer(city.admin)
    for i in range(5):
        r = await api.http.post(
            "/api/v1/children", headers=admin, json={"name": f"Kid {i}", "school_id": city.a.school_id}
        )
        assert r.status_code == 201
    first = (await api.http.get("/api/v1/children?limit=3", headers=admin)).json()
    second = (await api.http.get("/api/v1/children?limit=3&offset=3", headers=admin)).json()
    beyond = (await api.http.get("/api/v1/children?limit=3&offset=30", headers=admin)).json()
    assert first["total"] == second["total"] == beyond["total"] == 7
    ids = [c["id"] for c in first["items"] + second["items"]]
    assert len(ids) == 6 and len(set(ids)) == 6 and beyond["items"] == []
    zones = (await api.http.get("/api/v1/zones?limit=1", headers=admin)).json()
    assert zones["type"] == "FeatureCollection" and zones["total"] == 1 and zones["limit"] == 1
    filtered = (await api.http.get(f"/api/v1/children?school_id={city.b.school_id}", headers=admin)).json()
    assert [c["id"] for c in filtered["items"]] == [city.b.child_id]
    assert (await api.http.get("/api/v1/children?limit=0", headers=admin)).status_code == 422
    assert (await api.http.get("/api/v1/children?limit=5000", headers=admin)).status_code == 422


SELF_CROSSING = {
    "type": "Polygon",
    "coordinates": [
        [[127.050, 37.500], [127.052, 37.502], [127.052, 37.500], [127.050, 37.502], [127.050, 37.500]]
    ],
}


@pytest.mark.parametrize(
    ("path", "body", "status", "loc", "says"),
    [
        # a bow-tie: the index could repair it, a person should fix it; the answer says where it crosses
        (
            "/api/v1/zones",
            zone_body(SELF_CROSSING),
            422,
            ["body", "geometry"],
            "self-intersection at lon 127.051",
        ),
        (
            "/api/v1/zones",
            zone_body({"type": "Polygon", "coordinates": [[[127.05, 37.5], [127.06, 37.5], [127.05, 37.5]]]}),
            422,
            ["body", "geometry", "coordinates", 0],
            "at least 4",
        ),
        (
            "/api/v1/zones",
            zone_body(
                {
                    "type": "Polygon",
                    "coordinates": [[[127.05, 37.5], [127.06, 37.5], [127.06, 37.51], [127.05, 37.51]]],
                }
            ),
            422,
            ["body", "geometry", "coordinates", 0],
            "not closed",
        ),
        (
            "/api/v1/routes",
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[127.05, 37.5]]},
                "properties": {"name": "x", "corridor_m": 20},
            },
            422,
            ["body", "geometry", "coordinates"],
            "at least 2",
        ),
        (
            "/api/v1/routes",
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[127.05, 37.5], [127.05, 37.5]]},
                "properties": {"name": "x", "corridor_m": 20},
            },
            422,
            ["body", "geometry"],
            "all points of the line are identical",
        ),
        (
            "/api/v1/routes",
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[37.499, 127.05], [37.5, 127.056]]},
                "properties": {"name": "x", "corridor_m": 20},
            },
            422,
            ["body", "geometry", "coordinates", 0],
            "looks like [lat, lon]",
        ),
        (
            "/api/v1/routes",
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[127.05, 37.5], [181, 37.5]]},
                "properties": {"name": "x", "corridor_m": 20},
            },
            422,
            ["body", "geometry", "coordinates", 1],
            "longitude 181.0 is out of range",
        ),
        (
            "/api/v1/routes",
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": []},
                "properties": {"name": "x", "corridor_m": 20},
            },
            422,
            ["body", "geometry"],
            "'LineString', 'MultiLineString'",
        ),
        (
            "/api/v1/routes",
            {
                "type": "Feature",
                "geometry": line((0, 0), (100, 0)),
                "properties": {"name": "x", "corridor": 20},
            },
            422,
            ["body", "properties", "corridor"],
            "Extra inputs are not permitted",
        ),
        (
            "/api/v1/routes",
            {
                "type": "Feature",
                "geometry": line((0, 0), (100, 0)),
                "properties": {
                    "name": "x",
                    "corridor_m": 20,
                    "windows": [{"start": "09:00", "end": "08:00"}],
                },
            },
            422,
            ["body", "properties", "windows", 0],
            "must start before it ends",
        ),
        (
            "/api/v1/schools",
            {
                "type": "Feature",
                "geometry": point(0, 0),
                "properties": {"name": "x", "timezone": "Asia/Busan"},
            },
            422,
            ["body", "properties", "timezone"],
            "unknown time zone 'Asia/Busan'",
        ),
        (
            "/api/v1/guardians",
            {"name": "Dad", "channels": ["websocket", "sms"]},
            422,
            ["body"],
            "the sms channel needs a phone number",
        ),
        (
            "/api/v1/guardians",
            {"name": "Dad", "phone": "010-1234"},
            422,
            ["body", "phone"],
            "String should match",
        ),
        (
            "/api/v1/guardians",
            {"name": "Dad\x00", "phone": "+821012345678"},
            422,
            ["body", "name"],
            "control character",
        ),
    ],
)
async def test_bad_input_gets_a_4xx_saying_what_and_where_and_nothing_is_written(
    api: Api, path: str, body: dict[str, Any], status: int, loc: list[Any], says: str
) -> None:
    city = await build_city(api.pool)
    before = await fingerprint(api.pool)
    token = city.a.staff if path == "/api/v1/routes" else city.admin  # staff: routes of their school
    r = await api.http.post(path, headers=bearer(token), json=body)
    assert r.status_code == status, r.text
    problems = r.json()["detail"]
    assert any(p["loc"][: len(loc)] == loc and says in p["msg"] for p in problems), problems
    assert await fingerprint(api.pool) == before


async def test_a_route_has_a_mode_and_says_where_it_meets_a_zone(api: Api) -> None:
    """Issue 15.3: a route's mode (its speeds), and where it runs beside or across a danger zone."""
    city = await build_city(api.pool)
    admin, staff = bearer(city.admin), bearer(city.a.staff)
    road = square(-200, 60, 20)
    r = await api.http.post(
        "/api/v1/zones", headers=admin, json=zone_body(road, name="Road", kind="arterial_road")
    )
    assert r.status_code == 201, r.text
    zone_id = r.json()["id"]
    # east along y = 30 (10 m from the zone's edge at y = 40), then north over it at x = -200
    r = await api.http.post(
        "/api/v1/routes",
        headers=staff,
        json=route_body((-400, 30), (-200, 30), (-200, 100), (0, 100), (0, 0), corridor=20, mode="shuttle"),
    )
    assert r.status_code == 201, r.text
    props = r.json()["properties"]
    assert props["mode"] == "shuttle"
    assert [(m["zone_id"], m["how"]) for m in props["meets_zones"]] == [
        (zone_id, "across"),
        (zone_id, "beside"),
    ]
    across, beside = props["meets_zones"]
    assert across["length_m"] == pytest.approx(40, abs=1) and beside["length_m"] > 20
    route_id = r.json()["id"]
    r = await api.http.patch(
        f"/api/v1/routes/{route_id}", headers=staff, json={"properties": {"mode": "bus"}}
    )
    assert r.status_code == 200 and r.json()["properties"]["mode"] == "bus"
    listed = (await api.http.get("/api/v1/routes", headers=staff)).json()["features"]
    assert [f["properties"]["meets_zones"] for f in listed if f["id"] == route_id] == [props["meets_zones"]]
    r = await api.http.patch(
        f"/api/v1/routes/{route_id}", headers=staff, json={"properties": {"mode": "car"}}
    )
    assert r.status_code == 422
    # walked to school in the morning, the academy's shuttle home: the morning window says walk
    windows = [
        {"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00", "mode": "walk"},
        {"days": [0, 1, 2, 3, 4], "start": "13:00", "end": "16:30"},
    ]
    r = await api.http.patch(
        f"/api/v1/routes/{route_id}",
        headers=staff,
        json={"properties": {"mode": "shuttle", "windows": windows}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["windows"] == windows
    bad = [windows[0] | {"mode": "car"}]
    r = await api.http.patch(
        f"/api/v1/routes/{route_id}", headers=staff, json={"properties": {"windows": bad}}
    )
    assert r.status_code == 422 and "mode" in r.text, r.text
    r = await api.http.post(
        "/api/v1/zones",
        headers=admin,
        json=zone_body(square(300, 300, 20), hours=[{"start": "08:00", "end": "18:00", "mode": "walk"}]),
    )
    assert r.status_code == 422 and "mode" in r.text, r.text  # a zone's hours have no mode


async def test_a_route_far_from_its_school_or_with_swapped_coordinates_is_refused(api: Api) -> None:
    city = await build_city(api.pool)
    admin = bearer(city.admin)
    # a school in Germany: swapped coordinates stay in range there, only the distance gives them away
    r = await api.http.post(
        "/api/v1/schools",
        headers=admin,
        json={
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [8.68, 50.11]},
            "properties": {"name": "Frankfurt"},
        },
    )
    frankfurt = r.json()["id"]
    swapped = {"type": "LineString", "coordinates": [[50.11, 8.68], [50.112, 8.681]]}
    r = await api.http.post(
        "/api/v1/routes",
        headers=admin,
        json={
            "type": "Feature",
            "geometry": swapped,
            "properties": {"name": "x", "corridor_m": 20, "school_id": frankfurt},
        },
    )
    assert r.status_code == 422
    problem = only(r.json()["detail"])
    assert problem["loc"][:3] == ["body", "geometry", "coordinates"]
    assert "longitude and latitude swapped" in problem["msg"]
    # a route of school A reaching 50 km away is refused with the distance
    r = await api.http.post(
        "/api/v1/routes",
        headers=admin,
        json={
            "type": "Feature",
            "geometry": line((0, 0), (50_000, 0)),
            "properties": {"name": "x", "corridor_m": 20, "school_id": city.a.school_id},
        },
    )
    assert (
        r.status_code == 422
        and "49.9 km away from the route's school; at most 20.0 km" in only(r.json()["detail"])["msg"]
    )


async def test_unknown_references_and_duplicates_are_refused_without_a_trace(api: Api) -> None:
    city = await build_city(api.pool)
    staff = bearer(city.a.staff)
    before = await fingerprint(api.pool)
    # school B's route is unknown to school A's staff: the same answer as a route that does not exist
    other = await api.http.post(
        "/api/v1/children", headers=staff, json={"name": "x", "route_id": city.b.route_id}
    )
    none = await api.http.post("/api/v1/children", headers=staff, json={"name": "x", "route_id": 999_999})
    assert other.status_code == none.status_code == 422
    assert only(other.json()["detail"])["msg"] == f"no route {city.b.route_id}"
    assert only(none.json()["detail"])["msg"] == "no route 999999"
    # a child with a bad guardian in the list is not created at all (nothing half-written)
    r = await api.http.post(
        "/api/v1/children",
        headers=staff,
        json={
            "name": "x",
            "guardians": [{"guardian_id": city.a.guardian_id}, {"guardian_id": city.b.guardian_id}],
        },
    )
    assert r.status_code == 422 and only(r.json()["detail"])["loc"] == ["body", "guardians", 1, "guardian_id"]
    # tag ids are hardware serials, unique in the city
    r = await api.http.post(
        "/api/v1/tags", headers=staff, json={"id": city.b.tag, "child_id": city.a.child_id}
    )
    assert r.status_code == 409 and "already registered" in r.json()["detail"]
    # a child moved to a route of another school by the city's administrator is refused too
    r = await api.http.patch(
        f"/api/v1/children/{city.a.child_id}", headers=bearer(city.admin), json={"route_id": city.b.route_id}
    )
    assert r.status_code == 422 and "belongs to school" in only(r.json()["detail"])["msg"]
    r = await api.http.patch(f"/api/v1/children/{city.a.child_id}", headers=staff, json={"name": None})
    assert r.status_code == 422 and only(r.json()["detail"])["loc"] == ["body", "name"]
    assert await fingerprint(api.pool) == before


async def test_an_oversized_body_gets_413_before_it_is_read(api: Api) -> None:
    city = await build_city(api.pool)
    limit = api.ctx.settings.max_body_bytes
    coords = [[127.05 + i * 1e-6, 37.5] for i in range(limit // 10)]
    body = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": coords},
        "properties": {"name": "x", "corridor_m": 20},
    }
    before = await fingerprint(api.pool)
    r = await api.http.post("/api/v1/routes", headers=bearer(city.admin), json=body)
    assert r.status_code == 413 and f"larger than {limit} bytes" in r.json()["detail"], r.text[:500]

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(limit // 4096 + 2):
            yield b" " * 4096

    r = await api.http.post(
        "/api/v1/routes", headers=bearer(city.admin) | {"content-type": "application/json"}, content=chunks()
    )
    assert r.status_code == 413
    assert await fingerprint(api.pool) == before
