"""The demo city that `make run` loads: real Seoul neighbourhoods, geometry the index accepts, danger
zones clear of every route corridor (walking a route must never alert), and idempotent loading."""

from __future__ import annotations

import shapely
from shapely.geometry import shape

from tracker.demo.city import load_demo_city
from tracker.geofence import LocalProjection
from tracker.registry_view import build_view
from tracker.store.db import connect
from tracker.store.registry_rows import load_registry


async def test_demo_city_is_sound_and_loads_once(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        first = await load_demo_city(conn, children=40)
        again = await load_demo_city(conn, children=40)
        rows = await load_registry(conn)
    finally:
        await conn.close()
    assert first.created and not again.created
    assert (again.schools, again.routes, again.children) == (first.schools, first.routes, 40)
    assert first.zones >= 3 * first.schools
    assert len(rows.tags) == 40 and all(rows.child_guardians[c] for c in rows.children)

    view = build_view(rows, default_timezone="Asia/Seoul")
    assert view.refused == {}
    assert {shape(z.geometry).geom_type for z in rows.zones.values()} >= {"Polygon", "MultiPolygon"}
    assert any(
        shape(z.geometry).interiors for z in rows.zones.values() if shape(z.geometry).geom_type == "Polygon"
    )

    proj = LocalProjection.around(
        [s.lon for s in rows.schools.values()],  # type: ignore[arg-type]
        [s.lat for s in rows.schools.values()],  # type: ignore[arg-type]
    )

    def metres(geojson: dict) -> shapely.Geometry:  # type: ignore[type-arg]
        return shapely.transform(
            shape(geojson), lambda xy: list(zip(*proj.to_xy(xy[:, 0], xy[:, 1]), strict=True))
        )

    zones = [metres(z.geometry) for z in rows.zones.values()]
    for route in rows.routes.values():
        corridor = metres(route.geojson).buffer(route.corridor_m)
        assert all(corridor.distance(z) > 20 for z in zones), f"a zone touches route {route.id}'s corridor"
