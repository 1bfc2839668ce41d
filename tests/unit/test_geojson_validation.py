"""GeoJSON geometry checks, pure: a table of shapes and what the tracker answers about each (what is
wrong, and where), and what a good shape is stored as (2-D, RFC 7946 winding)."""

from __future__ import annotations

from typing import Any

import pytest
import shapely
from pydantic import TypeAdapter, ValidationError
from shapely.geometry import shape

from tracker.importers import GeometryProblem, validate_route_geometry, validate_zone_geometry
from tracker.importers.features import pydantic_problems
from tracker.importers.geojson import RouteGeometry, ZoneGeometry, distance_m, validate_place

SEOUL = (127.056, 37.499)
ROUTE: TypeAdapter[Any] = TypeAdapter(RouteGeometry)
ZONE: TypeAdapter[Any] = TypeAdapter(ZoneGeometry)


def structure_problems(
    adapter: TypeAdapter[Any], geometry: dict[str, Any]
) -> list[tuple[tuple[Any, ...], str]]:
    try:
        adapter.validate_python(geometry)
    except ValidationError as e:
        return [(p.loc, p.msg) for p in pydantic_problems(e, ())]
    return []


@pytest.mark.parametrize(
    ("adapter", "geometry", "loc", "says"),
    [
        (
            ROUTE,
            {"type": "LineString", "coordinates": [[127.0, 37.5]]},
            ("coordinates",),
            "at least 2 positions",
        ),
        (
            ROUTE,
            {"type": "LineString", "coordinates": [[127.0, 37.5], [127.0]]},
            ("coordinates", 1),
            "at least 2",
        ),
        (
            ROUTE,
            {"type": "LineString", "coordinates": [[37.5, 127.0], [37.5, 127.1]]},
            ("coordinates", 0),
            "[lat, lon]",
        ),
        (
            ROUTE,
            {"type": "LineString", "coordinates": [[200, 10], [10, 10]]},
            ("coordinates", 0),
            "longitude 200",
        ),
        (
            ROUTE,
            {"type": "LineString", "coordinates": [[1e999, 10], [10, 10]]},
            ("coordinates", 0),
            "not a finite",
        ),
        (
            ROUTE,
            {"type": "MultiLineString", "coordinates": [[[127, 37.5], [127.1, 37.5]], [[127, 37]]]},
            ("coordinates", 1),
            "at least 2",
        ),
        (ROUTE, {"type": "Polygon", "coordinates": []}, (), "'LineString', 'MultiLineString'"),
        (
            ZONE,
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
            ("coordinates", 0),
            "at least 4 positions",
        ),
        (
            ZONE,
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
            ("coordinates", 0),
            "not closed",
        ),
        (ZONE, {"type": "MultiPolygon", "coordinates": [[]]}, ("coordinates", 0), "at least 1"),
        (ZONE, {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, (), "'Polygon', 'MultiPolygon'"),
    ],
)
def test_structure_problems_say_what_and_where(
    adapter: TypeAdapter[Any], geometry: dict[str, Any], loc: tuple[Any, ...], says: str
) -> None:
    problems = structure_problems(adapter, geometry)
    assert any(p_loc[: len(loc)] == loc and says in msg for p_loc, msg in problems), problems


def square(lon: float, lat: float, d: float) -> list[list[float]]:
    return [
        [lon - d, lat - d],
        [lon + d, lat - d],
        [lon + d, lat + d],
        [lon - d, lat + d],
        [lon - d, lat - d],
    ]


@pytest.mark.parametrize(
    ("geometry", "says"),
    [
        (
            {
                "type": "Polygon",
                "coordinates": [[[127.0, 37.0], [127.2, 37.2], [127.2, 37.0], [127.0, 37.2], [127.0, 37.0]]],
            },
            "self-intersection at lon 127.1, lat 37.1",
        ),
        (
            {"type": "Polygon", "coordinates": [square(127.0, 37.5, 0.01), square(127.5, 37.5, 0.001)[::-1]]},
            "hole lies outside shell",
        ),
        (
            {
                "type": "MultiPolygon",
                "coordinates": [[square(127.0, 37.5, 0.01)], [square(127.005, 37.5, 0.01)]],
            },
            "self-intersection",
        ),
        (
            {"type": "Polygon", "coordinates": [[[127, 37.5], [127.1, 37.5], [127.2, 37.5], [127, 37.5]]]},
            "encloses no area",
        ),
    ],
)
def test_invalid_polygons_are_refused_with_the_place(geometry: dict[str, Any], says: str) -> None:
    with pytest.raises(GeometryProblem) as refused:
        validate_zone_geometry(geometry)
    assert says in refused.value.msg.lower()


def test_a_good_zone_is_stored_2d_and_wound_like_rfc_7946() -> None:
    clockwise = square(127.0, 37.5, 0.01)[::-1]  # exterior clockwise: the "wrong" way
    hole_ccw = square(127.0, 37.5, 0.002)
    geometry = {"type": "Polygon", "coordinates": [[[*p, 30.0] for p in clockwise], hole_ccw]}
    stored = validate_zone_geometry(ZONE.validate_python(geometry).geojson())
    poly = shape(stored)
    assert not poly.has_z
    assert poly.exterior.is_ccw and not poly.interiors[0].is_ccw
    assert shapely.equals(poly, shape({"type": "Polygon", "coordinates": [clockwise, hole_ccw]}))


@pytest.mark.parametrize(
    ("coordinates", "corridor", "says"),
    [
        ([[127.0, 37.5], [127.0, 37.5]], 20, "all points of the line are identical"),
        ([[127.0, 37.5], [127.001, 37.5]], float("inf"), "corridor_m must be finite"),
    ],
)
def test_routes_the_index_refuses_are_refused_with_its_reason(
    coordinates: list[list[float]], corridor: float, says: str
) -> None:
    with pytest.raises(GeometryProblem) as refused:
        validate_route_geometry({"type": "LineString", "coordinates": coordinates}, corridor)
    assert says in refused.value.msg


def test_distance_from_the_school_bounds_a_route_and_finds_swapped_coordinates() -> None:
    near = {"type": "LineString", "coordinates": [[127.05, 37.5], [127.06, 37.5]]}
    assert validate_route_geometry(near, 20, school=SEOUL, max_distance_m=20_000) == near
    frankfurt = (8.68, 50.11)
    swapped = {"type": "LineString", "coordinates": [[50.11, 8.68], [50.12, 8.69]]}
    with pytest.raises(GeometryProblem) as refused:
        validate_route_geometry(swapped, 20, school=frankfurt, max_distance_m=20_000)
    assert "swapped" in refused.value.msg and refused.value.loc[0] == "coordinates"
    with pytest.raises(GeometryProblem) as far:
        validate_route_geometry(near, 20, school=frankfurt, max_distance_m=20_000)
    assert "km away from the route's school" in far.value.msg
    assert validate_route_geometry(near, 20, school=frankfurt, max_distance_m=0) == near  # 0: no limit
    # a zone must come near some school
    zone = {"type": "Polygon", "coordinates": [square(127.05, 37.5, 0.001)]}
    validate_zone_geometry(zone, schools=[frankfurt, SEOUL], max_distance_m=20_000)
    with pytest.raises(GeometryProblem):
        validate_zone_geometry(zone, schools=[frankfurt], max_distance_m=20_000)
    assert validate_place(
        {"type": "Point", "coordinates": [127.057, 37.499]}, school=SEOUL, max_distance_m=500
    ) == (127.057, 37.499)


def test_haversine_distance() -> None:
    # one degree of latitude is about 111.2 km; Seoul to Busan about 325 km
    assert distance_m(127.0, 37.0, 127.0, 38.0) == pytest.approx(111_195, rel=1e-3)
    assert distance_m(126.978, 37.5665, 129.0756, 35.1796) == pytest.approx(325_000, rel=0.02)


def test_positions_with_and_without_altitude_may_be_mixed() -> None:
    ring = [[127.0, 37.5], [127.01, 37.5, 12.0], [127.01, 37.51], [127.0, 37.51, 3.5], [127.0, 37.5]]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    stored = validate_zone_geometry(geometry)  # straight in, without the model
    assert all(len(p) == 2 for p in stored["coordinates"][0])
    assert ZONE.validate_python(geometry).geojson()["coordinates"][0][1] == [127.01, 37.5]
    line = {"type": "LineString", "coordinates": [[127.0, 37.5, 1.0], [127.01, 37.5]]}
    assert validate_route_geometry(line, 20)["coordinates"] == [[127.0, 37.5], [127.01, 37.5]]
