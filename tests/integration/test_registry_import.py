"""Bulk import and export of routes and danger zones (GeoJSON and GPX), over HTTP and from the
command line: all or nothing, every bad feature reported by where it is, exports that import back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_support import Api, bearer, build_city, fingerprint, line, running_api, square
from tracker.cli import main as tracker_cli


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


def feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


async def _counts(api: Api) -> tuple[int, int]:
    row = await api.pool.fetchrow(
        "SELECT (SELECT count(*) FROM routes) r, (SELECT count(*) FROM danger_zones) z"
    )
    return row["r"], row["z"]


async def test_an_import_is_all_or_nothing_and_names_every_bad_feature(api: Api) -> None:
    city = await build_city(api.pool)
    admin = bearer(city.admin)
    good_route = feature(
        line((-500, 50), (0, 0)), name="North walk", corridor_m=30, school_id=city.a.school_id
    )
    good_zone = feature(square(-200, 300, 30), name="Crane", zone_kind="construction", severity="warning")
    bow_tie = {
        "type": "Polygon",
        "coordinates": [
            [[127.050, 37.500], [127.052, 37.502], [127.052, 37.500], [127.050, 37.502], [127.050, 37.500]]
        ],
    }
    body = collection(
        good_route,
        feature(bow_tie, name="Bad site", zone_kind="construction"),  # 1: self-intersecting
        feature(line((0, 0), (10, 0)), name="No corridor", school_id=city.a.school_id),  # 2: corridor missing
        good_zone,
        feature({"type": "Point", "coordinates": [127.05, 37.5]}, name="A point"),  # 4: not a route or zone
        feature(
            line((0, 0), (10, 0)), name="Ghost school", corridor_m=20, school_id=999
        ),  # 5: no such school
        {
            "type": "Feature",
            "id": 4242,
            "geometry": line((0, 0), (10, 0)),
            "properties": {"name": "x", "corridor_m": 20},
        },
    )
    before = await fingerprint(api.pool)
    r = await api.http.post("/api/v1/import", headers=admin, json=body)
    assert r.status_code == 422, r.text
    where = {tuple(p["loc"][:3]): p["msg"] for p in r.json()["detail"]}
    assert set(where) == {("body", "features", i) for i in (1, 2, 4, 5, 6)}, where
    assert "self-intersection" in where[("body", "features", 1)]
    assert where[("body", "features", 2)] == "Field required"
    assert "cannot be imported" in where[("body", "features", 4)]
    assert where[("body", "features", 5)] == "no school 999"
    assert "no route 4242 that you may change" in where[("body", "features", 6)]
    assert await fingerprint(api.pool) == before  # nothing half-written

    routes, zones = await _counts(api)
    dry = await api.http.post(
        "/api/v1/import?dry_run=true", headers=admin, json=collection(good_route, good_zone)
    )
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    assert [(c["kind"], c["id"]) for c in dry.json()["created"]] == [("route", None), ("zone", None)]
    assert await _counts(api) == (routes, zones)
    done = await api.http.post("/api/v1/import", headers=admin, json=collection(good_route, good_zone))
    assert done.status_code == 200, done.text
    assert [c["kind"] for c in done.json()["created"]] == ["route", "zone"]
    assert await _counts(api) == (routes + 1, zones + 1)
    zone = (await api.http.get(f"/api/v1/zones/{done.json()['created'][1]['id']}", headers=admin)).json()
    assert zone["properties"]["kind"] == "construction" and zone["properties"]["severity"] == "warning"


async def test_school_staff_import_routes_for_their_school_only(api: Api) -> None:
    city = await build_city(api.pool)
    staff = bearer(city.a.staff)
    body = collection(
        feature(line((-300, 20), (0, 0)), name="Mine", corridor_m=25),  # no school_id: their own
        feature(line((2700, 20), (3000, 0)), name="Theirs", corridor_m=25, school_id=city.b.school_id),
        feature(square(0, 300, 20), name="Zone", zone_kind="river"),
    )
    r = await api.http.post("/api/v1/import", headers=staff, json=body)
    assert r.status_code == 422
    msgs = {p["loc"][2]: p["msg"] for p in r.json()["detail"]}
    assert set(msgs) == {1, 2} and "not your school" in msgs[1] and "city's administrators" in msgs[2]
    r = await api.http.post(
        "/api/v1/import?corridor_m=25", headers=staff, json=collection(body["features"][0])
    )
    assert r.status_code == 200
    created = r.json()["created"][0]["id"]
    assert (await api.http.get(f"/api/v1/routes/{created}", headers=staff)).json()["properties"][
        "school_id"
    ] == city.a.school_id


async def test_a_geojson_export_imports_back_as_updates_and_a_gpx_export_too(api: Api) -> None:
    city = await build_city(api.pool)
    admin = bearer(city.admin)
    hole = square(-300, 150, 10)["coordinates"][0][::-1]
    await api.http.post(
        "/api/v1/zones",
        headers=admin,
        json=feature(
            {"type": "Polygon", "coordinates": [square(-300, 150, 60)["coordinates"][0], hole]},
            name="Pond",
            kind="river",
        ),
    )
    exported = await api.http.get("/api/v1/export", headers=admin)
    assert exported.headers["content-type"].startswith("application/geo+json")
    fc = exported.json()
    assert {f["properties"]["kind"] for f in fc["features"]} == {"route", "zone"}
    counts = await _counts(api)
    # edit a name in the file, import it back: the same rows are updated, none is added
    fc["features"][0]["properties"]["name"] = "Renamed in QGIS"
    r = await api.http.post(
        "/api/v1/import", headers=admin, content=json.dumps(fc), params={"mode": "upsert"}
    )
    assert (
        r.status_code == 200 and r.json()["created"] == [] and len(r.json()["updated"]) == len(fc["features"])
    )
    assert await _counts(api) == counts
    assert (await api.http.get(f"/api/v1/routes/{fc['features'][0]['id']}", headers=admin)).json()[
        "properties"
    ]["name"] == "Renamed in QGIS"
    # mode=create makes copies
    r = await api.http.post("/api/v1/import?mode=create", headers=admin, content=json.dumps(fc))
    assert len(r.json()["created"]) == len(fc["features"])

    gpx = await api.http.get("/api/v1/export?format=gpx", headers=admin)
    assert (
        gpx.headers["content-type"].startswith("application/gpx+xml") and b"urn:tracker:gpx:1" in gpx.content
    )
    before = await api.pool.fetch("SELECT id, geometry FROM danger_zones ORDER BY id")
    r = await api.http.post(
        "/api/v1/import", headers=admin | {"content-type": "application/gpx+xml"}, content=gpx.content
    )
    assert r.status_code == 200 and r.json()["created"] == [], r.text
    after = await api.pool.fetch("SELECT id, geometry FROM danger_zones ORDER BY id")
    assert [(z["id"], z["geometry"]) for z in after] == [
        (z["id"], z["geometry"]) for z in before
    ]  # holes kept

    # a school's export has its routes and nothing of the other school's
    mine = (await api.http.get("/api/v1/export?kind=route", headers=bearer(city.a.staff))).json()
    assert {f["properties"]["school_id"] for f in mine["features"]} == {city.a.school_id}


async def test_a_broken_gpx_file_says_where(api: Api) -> None:
    city = await build_city(api.pool)
    admin = bearer(city.admin) | {"content-type": "application/gpx+xml"}
    r = await api.http.post("/api/v1/import", headers=admin, content=b"<gpx><trk><trkseg>")
    assert r.status_code == 422 and "not well-formed XML" in r.json()["detail"][0]["msg"]
    doc = (
        '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
        '<trk><name>Walk</name><trkseg><trkpt lat="37.5" lon="127.05"/><trkpt lat="37.501" lon="127.051"/>'
        "</trkseg></trk>"
        '<trk><name>Site</name><type>zone:construction</type><trkseg><trkpt lat="37.5" lon="127.05"/>'
        '<trkpt lat="37.501" lon="127.05"/></trkseg></trk></gpx>'
    )
    r = await api.http.post(
        f"/api/v1/import?school_id={city.a.school_id}", headers=admin, content=doc.encode()
    )
    assert r.status_code == 422
    where = {tuple(p["loc"]): p["msg"] for p in r.json()["detail"]}
    assert ("body", "trk", 0, "properties", "corridor_m") in where  # GPX cannot say a corridor
    assert "'Site'" in where[("body", "trk", 1)] and "at least 3" in where[("body", "trk", 1)]
    r = await api.http.post(
        f"/api/v1/import?school_id={city.a.school_id}&corridor_m=30",
        headers=admin,
        content=doc.replace(
            '<trkpt lat="37.501" lon="127.05"/></trkseg>',
            '<trkpt lat="37.501" lon="127.05"/><trkpt lat="37.501" lon="127.051"/></trkseg>',
        ).encode(),
    )
    assert r.status_code == 200, r.text
    assert [(c["kind"], c["name"]) for c in r.json()["created"]] == [("route", "Walk"), ("zone", "Site")]


async def test_an_import_file_larger_than_the_limit_is_refused(database_url: str, tmp_path: Path) -> None:
    async with running_api(database_url, tmp_path, max_import_bytes=10_000) as api:
        city = await build_city(api.pool)
        big = collection(*[feature(line((0, i), (10, i)), name=f"r{i}", corridor_m=20) for i in range(200)])
        r = await api.http.post("/api/v1/import", headers=bearer(city.admin), json=big)
        assert r.status_code == 413 and "10000 bytes" in r.json()["detail"]


async def test_the_command_line_imports_and_exports(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    city = await build_city(api.pool)
    monkeypatch.setenv("TRACKER_DATABASE_URL", api.ctx.settings.database_url or "")
    good = tmp_path / "routes.geojson"
    good.write_text(json.dumps(collection(feature(line((-100, 0), (0, 0)), name="CLI walk", corridor_m=20))))

    def run(*argv: str) -> int:
        try:
            tracker_cli(list(argv))
        except SystemExit as e:
            return int(e.code or 0)
        return 0

    assert await asyncio.to_thread(run, "import", str(good)) == 1  # no school: refused, nothing written
    assert await api.pool.fetchval("SELECT count(*) FROM routes WHERE name = 'CLI walk'") == 0
    assert await asyncio.to_thread(run, "import", str(good), "--school-id", str(city.a.school_id)) == 0
    assert await api.pool.fetchval("SELECT count(*) FROM routes WHERE name = 'CLI walk'") == 1
    out = tmp_path / "export.gpx"
    assert await asyncio.to_thread(run, "export", "--format", "gpx", "--kind", "route", "-o", str(out)) == 0
    assert out.read_text().count("<trk>") == await api.pool.fetchval("SELECT count(*) FROM routes")
