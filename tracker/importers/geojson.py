"""GeoJSON (RFC 7946) geometry for the registry: typed models, and the checks a shape passes before
it is stored.

Three layers, each saying what is wrong and where (a path such as ``coordinates[0][3]``):

1. structure (the pydantic models here): the geometry type, positions as ``[lon, lat]`` or
   ``[lon, lat, alt]`` with finite numbers in range (a position that looks like ``[lat, lon]`` says
   so), at least 2 positions per line, closed rings of at least 4 positions;
2. the geofence index's own validation (:func:`tracker.geofence.build_index`): what the API accepts is
   exactly what the index takes, so no second validator decides differently (empty or degenerate
   lines, wrong types, a corridor that is not > 0, polygons that cannot be indexed);
3. what the index would silently repair but a person should fix: an invalid polygon (a
   self-intersecting ring, a hole outside its shell) is refused with the place where it goes wrong,
   and a shape far from its school (e.g. latitude and longitude swapped) is refused with the distance.

Stored geometry is normalised: 2-D, polygons wound counter-clockwise outside and clockwise in holes
(RFC 7946 section 3.1.6).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import shapely
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from shapely.geometry import mapping, shape

from tracker.geofence import GeometryRefused, RouteSpec, ZoneSpec, build_index

__all__ = [
    "EARTH_RADIUS_M",
    "GeometryProblem",
    "LineStringGeometry",
    "MultiLineStringGeometry",
    "MultiPolygonGeometry",
    "PointGeometry",
    "PolygonGeometry",
    "RouteGeometry",
    "ZoneGeometry",
    "distance_m",
    "validate_place",
    "validate_route_geometry",
    "validate_zone_geometry",
]

EARTH_RADIUS_M = 6_371_008.8


class GeometryProblem(ValueError):
    """A shape that is refused: ``loc`` is the path inside the geometry, ``msg`` says why."""

    def __init__(self, msg: str, loc: Sequence[str | int] = ()) -> None:
        super().__init__(msg)
        self.msg = msg
        self.loc = tuple(loc)


# --- structure -----------------------------------------------------------------------------------------


def _position(value: list[float]) -> list[float]:
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"position {value} has a coordinate that is not a finite number")
    lon, lat = value[0], value[1]
    swapped = -90.0 <= lon <= 90.0 and -180.0 <= lat <= 180.0
    hint = " (it looks like [lat, lon]: GeoJSON positions are [lon, lat], RFC 7946)" if swapped else ""
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"longitude {lon} is out of range [-180, 180]{hint}")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"latitude {lat} is out of range [-90, 90]{hint}")
    return [lon, lat]  # an altitude is allowed in, and dropped: the tracker works in 2-D


Position = Annotated[
    list[float],
    Field(min_length=2, max_length=3),
    AfterValidator(_position),
    WithJsonSchema(
        {
            "type": "array",
            "description": "[longitude, latitude] or [longitude, latitude, altitude] (RFC 7946)",
            "prefixItems": [
                {"type": "number", "minimum": -180, "maximum": 180},
                {"type": "number", "minimum": -90, "maximum": 90},
                {"type": "number"},
            ],
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 3,
        }
    ),
]


def _ring(value: list[list[float]]) -> list[list[float]]:
    if value[0][:2] != value[-1][:2]:
        raise ValueError(
            f"ring is not closed: its first position {value[0]} and last position {value[-1]} differ"
            " (RFC 7946: a linear ring ends where it starts)"
        )
    return value


LinePositions = Annotated[list[Position], Field(min_length=2)]
Ring = Annotated[list[Position], Field(min_length=4), AfterValidator(_ring)]


class _Geometry(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a `bbox` member is allowed and ignored

    def geojson(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class PointGeometry(_Geometry):
    type: Literal["Point"]
    coordinates: Position


class LineStringGeometry(_Geometry):
    type: Literal["LineString"]
    coordinates: LinePositions


class MultiLineStringGeometry(_Geometry):
    type: Literal["MultiLineString"]
    coordinates: Annotated[list[LinePositions], Field(min_length=1)]


class PolygonGeometry(_Geometry):
    type: Literal["Polygon"]
    coordinates: Annotated[list[Ring], Field(min_length=1, description="exterior ring, then holes")]


class MultiPolygonGeometry(_Geometry):
    type: Literal["MultiPolygon"]
    coordinates: Annotated[list[Annotated[list[Ring], Field(min_length=1)]], Field(min_length=1)]


RouteGeometry = Annotated[LineStringGeometry | MultiLineStringGeometry, Field(discriminator="type")]
ZoneGeometry = Annotated[PolygonGeometry | MultiPolygonGeometry, Field(discriminator="type")]


# --- distance ------------------------------------------------------------------------------------------


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine on the mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _positions(geometry: dict[str, Any]) -> list[tuple[tuple[int, ...], list[float]]]:
    """Every position with its index path inside ``coordinates``."""
    out: list[tuple[tuple[int, ...], list[float]]] = []

    def walk(node: Any, path: tuple[int, ...]) -> None:
        if node and isinstance(node[0], int | float):
            out.append((path, node))
        else:
            for i, child in enumerate(node):
                walk(child, (*path, i))

    walk(geometry["coordinates"], ())
    return out


def _where(path: tuple[int, ...]) -> str:
    return "coordinates" + "".join(f"[{i}]" for i in path)


def _check_near(
    geometry: dict[str, Any], places: Sequence[tuple[float, float]], max_m: float, *, what: str, every: bool
) -> None:
    """Refuse a shape far from the places it belongs to (``every``: each position must be near the first
    place, the route's school; else: some position near some place, a zone near some school)."""
    if not places or max_m <= 0:
        return
    positions = _positions(geometry)

    def nearest(lon: float, lat: float) -> float:
        return min(distance_m(lon, lat, plon, plat) for plon, plat in places)

    if every:
        far = [(nearest(p[0], p[1]), path, p) for path, p in positions]
        worst = max(far, key=lambda t: t[0])
        if worst[0] <= max_m:
            return
        d, path, p = worst
        swapped_ok = all(-90 <= q[0] <= 90 and nearest(q[1], q[0]) <= max_m for _, q in positions)
    else:
        d, path, p = min(((nearest(p[0], p[1]), path, p) for path, p in positions), key=lambda t: t[0])
        if d <= max_m:
            return
        swapped_ok = any(-90 <= q[0] <= 90 and nearest(q[1], q[0]) <= max_m for _, q in positions)
    if swapped_ok:
        raise GeometryProblem(
            f"{_where(path)} {p} lies {d / 1000:.0f} km away from {what}, but would be near it with"
            " longitude and latitude swapped: GeoJSON positions are [lon, lat] (RFC 7946)",
            ("coordinates", *path),
        )
    raise GeometryProblem(
        f"{_where(path)} {p} lies {d / 1000:.1f} km away from {what}; at most {max_m / 1000:.1f} km is"
        " allowed (TRACKER_REGISTRY_MAX_DISTANCE_M)",
        ("coordinates", *path),
    )


# --- validation against the geofence index -------------------------------------------------------------


def _refused(e: Exception) -> GeometryProblem:
    reason = e.reason if isinstance(e, GeometryRefused) else str(e)
    return GeometryProblem(f"the geofence index refuses this shape: {reason}")


_VALID_REASON = re.compile(r"^(?P<what>[^\[]+)\[(?P<x>[-0-9.eE+]+) (?P<y>[-0-9.eE+]+)")


def _explain_invalid(geom: shapely.Geometry) -> str:
    reason = shapely.is_valid_reason(geom)
    m = _VALID_REASON.match(reason)
    if m is None:
        return f"invalid polygon: {reason}"
    return f"invalid polygon: {m['what'].strip().lower()} at lon {float(m['x']):.7g}, lat {float(m['y']):.7g}"


def validate_route_geometry(
    geometry: dict[str, Any],
    corridor_m: float,
    *,
    school: tuple[float, float] | None = None,
    max_distance_m: float = 0.0,
) -> dict[str, Any]:
    """A route's geometry as it will be stored, or :class:`GeometryProblem`.

    ``geometry`` has passed :data:`RouteGeometry`; ``school`` (lon, lat) and ``max_distance_m`` bound
    how far from its school a route may reach (0: unbounded).
    """
    geom = shape(_two_d(geometry))
    try:
        build_index([RouteSpec(0, geom, corridor_m)], [])
    except (GeometryRefused, ValueError) as e:
        raise _refused(e) from None
    out = mapping(geom)
    stored = {"type": out["type"], "coordinates": _lists(out["coordinates"])}
    if school is not None:
        _check_near(stored, [school], max_distance_m, what="the route's school", every=True)
    return stored


def validate_zone_geometry(
    geometry: dict[str, Any],
    *,
    schools: Sequence[tuple[float, float]] = (),
    max_distance_m: float = 0.0,
) -> dict[str, Any]:
    """A danger zone's geometry as it will be stored, or :class:`GeometryProblem`.

    ``geometry`` has passed :data:`ZoneGeometry`. An invalid polygon is refused even where the index
    could repair it: the person drawing it should see what is wrong. ``schools`` (lon, lat) and
    ``max_distance_m``: a zone must come within that distance of some school (0 or no school: unbounded).
    """
    geom = shape(_two_d(geometry))
    for i, part in enumerate(getattr(geom, "geoms", [geom])):
        if part.exterior.convex_hull.area == 0.0:
            where = f"polygon {i}: " if geometry["type"] == "MultiPolygon" else ""
            raise GeometryProblem(f"{where}the outer ring encloses no area (its points lie on one line)")
    if not geom.is_valid:
        raise GeometryProblem(_explain_invalid(geom))
    try:
        build_index([], [ZoneSpec(0, geom)])
    except (GeometryRefused, ValueError) as e:
        raise _refused(e) from None
    oriented = shapely.orient_polygons(geom, exterior_cw=False)
    out = mapping(oriented)
    stored = {"type": out["type"], "coordinates": _lists(out["coordinates"])}
    _check_near(stored, schools, max_distance_m, what="the nearest school", every=False)
    return stored


def _two_d(geometry: dict[str, Any]) -> dict[str, Any]:
    """The geometry with every position cut to [lon, lat] (mixed 2-D and 3-D positions are allowed)."""

    def cut(node: Any) -> Any:
        if node and isinstance(node[0], int | float):
            return [float(node[0]), float(node[1])]
        return [cut(n) for n in node]

    return {"type": geometry["type"], "coordinates": cut(geometry["coordinates"])}


def _lists(node: Any) -> Any:
    """shapely's nested tuples as JSON lists."""
    if isinstance(node, tuple | list):
        return [_lists(n) for n in node]
    return float(node)


def validate_place(
    geometry: dict[str, Any], *, school: tuple[float, float] | None = None, max_distance_m: float = 0.0
) -> tuple[float, float]:
    """A point (a reader at a school gate) as (lon, lat), refused when far from its school."""
    lon, lat = float(geometry["coordinates"][0]), float(geometry["coordinates"][1])
    if school is not None:
        _check_near(
            {"type": "Point", "coordinates": [lon, lat]},
            [school],
            max_distance_m,
            what="its school",
            every=True,
        )
    return lon, lat
