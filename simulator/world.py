"""The world the simulator walks in: schools, routes with their children, danger zones.

It is read from a world.v1 GeoJSON FeatureCollection (``schemas/world.v1.json``), from a file or from
the tracker's HTTP API (``GET /api/v1/world``, with a Bearer token).
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape

from simulator.projection import LocalProjection

LonLat = tuple[float, float]

HTTP_TIMEOUT_S = 30.0


class WorldError(ValueError):
    """The world document cannot be read or does not follow world.v1."""


@dataclass(frozen=True, slots=True)
class School:
    id: int
    name: str
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class ChildSpec:
    id: int
    name: str
    tag: str


@dataclass(frozen=True, slots=True)
class Route:
    id: int
    school_id: int | None
    name: str
    corridor_m: float
    parts: tuple[tuple[LonLat, ...], ...]
    """lon/lat polyline parts (one for a LineString, several for a MultiLineString), in file order"""
    children: tuple[ChildSpec, ...]


@dataclass(frozen=True, slots=True)
class Zone:
    id: int
    name: str
    zone_kind: str
    severity: str
    polygon: Polygon | MultiPolygon
    """lon/lat, made valid"""


@dataclass(frozen=True, slots=True)
class World:
    schools: tuple[School, ...]
    routes: tuple[Route, ...]
    zones: tuple[Zone, ...]
    projection: LocalProjection = field(compare=False)
    """equirectangular projection around the centre of the world's bounding box"""

    @property
    def children_count(self) -> int:
        return sum(len(r.children) for r in self.routes)

    def school(self, school_id: int | None) -> School | None:
        return next((s for s in self.schools if s.id == school_id), None)


def load_world(path_or_url: str, token: str | None = None) -> World:
    """Read a world.v1 GeoJSON FeatureCollection from a file or an http(s) URL.

    ``token`` is sent as ``Authorization: Bearer <token>`` to an URL; it is ignored for a file.
    Raises WorldError on anything unreadable or off-contract.
    """
    if path_or_url.startswith(("http://", "https://")):
        raw = _fetch(path_or_url, token)
    else:
        try:
            raw = Path(path_or_url).read_bytes()
        except OSError as exc:
            raise WorldError(f"cannot read world file {path_or_url!r}: {exc}") from exc
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise WorldError(f"world {path_or_url!r} is not JSON: {exc}") from exc
    return parse_world(doc)


def _fetch(url: str, token: str | None) -> bytes:
    headers = {"Accept": "application/geo+json, application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise WorldError(f"GET {url} answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WorldError(f"GET {url} failed: {exc}") from exc


def parse_world(doc: Any) -> World:
    """A World from a decoded world.v1 document (a dict)."""
    if not isinstance(doc, Mapping) or doc.get("type") != "FeatureCollection":
        raise WorldError("a world is a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise WorldError("a world's 'features' must be a list")
    schools: list[School] = []
    routes: list[Route] = []
    zones: list[Zone] = []
    for n, feature in enumerate(features):
        try:
            kind, geometry, props = _feature_parts(feature)
            if kind == "school":
                schools.append(_school(geometry, props))
            elif kind == "route":
                routes.append(_route(geometry, props))
            elif kind == "zone":
                zones.append(_zone(geometry, props))
        except (KeyError, TypeError, ValueError) as exc:
            raise WorldError(f"feature #{n}: {exc}") from exc
    projection = _centre_projection(schools, routes, zones)
    return World(tuple(schools), tuple(routes), tuple(zones), projection)


def _feature_parts(feature: Any) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise ValueError("not a GeoJSON Feature")
    geometry = feature.get("geometry")
    props = feature.get("properties")
    if not isinstance(geometry, Mapping) or not isinstance(props, Mapping):
        raise ValueError("a feature needs a geometry and properties")
    kind = props.get("kind")
    if kind not in ("school", "route", "zone"):
        raise ValueError(f"unknown kind {kind!r}")
    if not isinstance(props.get("id"), int):
        raise ValueError("properties.id must be an integer")
    return str(kind), geometry, props


def _lonlat(pair: Sequence[Any]) -> LonLat:
    lon, lat = float(pair[0]), float(pair[1])
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0) or math.isnan(lon) or math.isnan(lat):
        raise ValueError(f"coordinate out of range: {pair!r}")
    return lon, lat


def _school(geometry: Mapping[str, Any], props: Mapping[str, Any]) -> School:
    if geometry["type"] != "Point":
        raise ValueError("a school is a Point")
    lon, lat = _lonlat(geometry["coordinates"])
    return School(id=props["id"], name=str(props.get("name", "")), lon=lon, lat=lat)


def _route(geometry: Mapping[str, Any], props: Mapping[str, Any]) -> Route:
    gtype, coords = geometry["type"], geometry["coordinates"]
    if gtype == "LineString":
        raw_parts = [coords]
    elif gtype == "MultiLineString":
        raw_parts = list(coords)
    else:
        raise ValueError("a route is a LineString or a MultiLineString")
    parts = tuple(tuple(_lonlat(p) for p in part) for part in raw_parts)
    parts = tuple(p for p in parts if len(set(p)) >= 2)
    if not parts:
        raise ValueError(f"route {props['id']} has no line with two distinct points")
    corridor = float(props.get("corridor_m", 30.0))
    if not corridor > 0:
        raise ValueError(f"route {props['id']}: corridor_m must be positive")
    children = tuple(
        ChildSpec(id=int(c["id"]), name=str(c.get("name", "")), tag=str(c["tag"]))
        for c in props.get("children") or ()
    )
    school_id = props.get("school_id")
    return Route(
        id=props["id"],
        school_id=int(school_id) if school_id is not None else None,
        name=str(props.get("name", "")),
        corridor_m=corridor,
        parts=parts,
        children=children,
    )


def _zone(geometry: Mapping[str, Any], props: Mapping[str, Any]) -> Zone:
    if geometry["type"] not in ("Polygon", "MultiPolygon"):
        raise ValueError("a zone is a Polygon or a MultiPolygon")
    geom = shape(geometry)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        polys = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon | MultiPolygon)]
        geom = shapely.union_all(polys)
    if geom.is_empty or not isinstance(geom, Polygon | MultiPolygon):
        raise ValueError(f"zone {props['id']} has no area")
    return Zone(
        id=props["id"],
        name=str(props.get("name", "")),
        zone_kind=str(props.get("zone_kind", "")),
        severity=str(props.get("severity", "warning")),
        polygon=geom,
    )


def _centre_projection(schools: list[School], routes: list[Route], zones: list[Zone]) -> LocalProjection:
    lons: list[float] = [s.lon for s in schools]
    lats: list[float] = [s.lat for s in schools]
    for route in routes:
        for part in route.parts:
            lons.extend(p[0] for p in part)
            lats.extend(p[1] for p in part)
    for zone in zones:
        minx, miny, maxx, maxy = zone.polygon.bounds
        lons += [minx, maxx]
        lats += [miny, maxy]
    if not lons:
        return LocalProjection(0.0, 0.0)
    return LocalProjection((min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2)
