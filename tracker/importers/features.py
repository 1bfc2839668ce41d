"""Reading an import file (a GeoJSON FeatureCollection or a GPX document) into drafts of routes and
danger zones, collecting every problem with where it is instead of stopping at the first.

A feature is a route or a zone by ``properties.kind`` (``"route"`` or ``"zone"``, as an export writes
it), else by its geometry (lines are routes, polygons zones). A zone's kind (construction, river, ...)
is ``properties.zone_kind`` (the export's name), or ``properties.kind`` when that is neither "route"
nor "zone" (the API's name). Properties the tracker does not know are ignored; the ones it knows are
checked as strictly as the API checks them. An ``id`` (the feature's, or ``properties.id``) names an
existing route or zone to update.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from tracker.importers.geojson import RouteGeometry, ZoneGeometry
from tracker.importers.gpx import GpxError, read_gpx
from tracker.importers.models import MAX_ID, CommuteWindow, RouteProps, ZoneProps

__all__ = [
    "Draft",
    "ImportDefaults",
    "Problem",
    "WorldChild",
    "WorldFeatures",
    "WorldSchool",
    "pydantic_problems",
    "read_import",
    "read_world",
    "readable",
    "where",
]

Loc = tuple[str | int, ...]
_ROUTE_KEYS = ("name", "school_id", "corridor_m", "windows", "arrivals", "mode")
_ZONE_KEYS = ("name", "severity", "hours", "active")
_ROUTE_GEOMETRY: TypeAdapter[Any] = TypeAdapter(RouteGeometry)
_ZONE_GEOMETRY: TypeAdapter[Any] = TypeAdapter(ZoneGeometry)
_GEOMETRY_KIND = {
    "LineString": "route",
    "MultiLineString": "route",
    "Polygon": "zone",
    "MultiPolygon": "zone",
}


@dataclass(frozen=True)
class Problem:
    """What is wrong (``msg``) and where (``loc``: a path from the document's root)."""

    loc: Loc
    msg: str


@dataclass(frozen=True)
class ImportDefaults:
    """Values for what a feature leaves out (GPX cannot say a corridor width or a school)."""

    school_id: int | None = None
    corridor_m: float | None = None
    zone_kind: str | None = None
    name: str | None = None  # for a feature without one (a file made for `tracker replay`)


@dataclass(frozen=True)
class Draft:
    """A feature that passed the structural checks; its shape is checked against the index later."""

    loc: Loc
    kind: Literal["route", "zone"]
    id: int | None
    geometry: dict[str, Any]
    props: RouteProps | ZoneProps

    @property
    def label(self) -> str:
        return f"{self.kind} {self.props.name!r}"


_TAGS = frozenset([*_GEOMETRY_KIND, "Point"])


def readable(error: Mapping[str, Any]) -> tuple[Loc, str]:
    """A pydantic error's place and message as a person reads them: without the geometry type a
    discriminated union puts into the path, without pydantic's "Value error, " prefix, and with the
    GeoJSON rule named where a list of positions is too short."""
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and (p in _TAGS or "[" in p)))
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error.get("type") == "too_short" and "coordinates" in loc:
        need = (error.get("ctx") or {}).get("min_length")
        if need == 4:
            msg = "a polygon ring needs at least 4 positions: 3 corners and the first one again to close it"
        elif need == 2:
            msg = "a line needs at least 2 positions"
    return loc, msg


def pydantic_problems(error: ValidationError, prefix: Loc) -> list[Problem]:
    """A pydantic error as problems, each readable (see :func:`readable`)."""
    out = []
    for e in error.errors(include_url=False):
        loc, msg = readable(e)
        out.append(Problem((*prefix, *loc), msg))
    return out


def _geometry(kind: str, raw: Any, loc: Loc) -> tuple[dict[str, Any] | None, list[Problem]]:
    adapter = _ROUTE_GEOMETRY if kind == "route" else _ZONE_GEOMETRY
    try:
        model: BaseModel = adapter.validate_python(raw)
    except ValidationError as e:
        return None, pydantic_problems(e, (*loc, "geometry"))
    return model.model_dump(mode="json", exclude_none=True, exclude={"bbox"}), []


def _draft(
    loc: Loc, geometry: Any, props: dict[str, Any], feature_id: Any, defaults: ImportDefaults
) -> tuple[Draft | None, list[Problem]]:
    gtype = geometry.get("type") if isinstance(geometry, dict) else None
    declared = props.get("kind")
    if declared in ("route", "zone"):
        kind = declared
    elif gtype in _GEOMETRY_KIND:
        kind = _GEOMETRY_KIND[gtype]
    else:
        what = f"geometry type {gtype!r}" if gtype else "a feature without a geometry"
        return None, [
            Problem(
                (*loc, "geometry"),
                f"{what} cannot be imported: routes are LineString or MultiLineString, danger zones"
                " Polygon or MultiPolygon",
            )
        ]
    problems: list[Problem] = []
    if feature_id is None:
        feature_id = props.get("id")
    if feature_id is not None and not (
        isinstance(feature_id, int) and not isinstance(feature_id, bool) and 1 <= feature_id <= MAX_ID
    ):
        problems.append(Problem((*loc, "id"), f"id {feature_id!r} is not a {kind} id (a positive integer)"))
        feature_id = None
    geom, geom_problems = _geometry(kind, geometry, loc)
    problems += geom_problems
    if kind == "route":
        values = {k: props[k] for k in _ROUTE_KEYS if props.get(k) is not None}
        if "name" not in values and defaults.name is not None:
            values["name"] = defaults.name
        if "school_id" not in values and defaults.school_id is not None:
            values["school_id"] = defaults.school_id
        if "corridor_m" not in values and defaults.corridor_m is not None:
            values["corridor_m"] = defaults.corridor_m
        model: type[RouteProps] | type[ZoneProps] = RouteProps
    else:
        values = {k: props[k] for k in _ZONE_KEYS if props.get(k) is not None}
        if "name" not in values and defaults.name is not None:
            values["name"] = defaults.name
        zone_kind = props.get("zone_kind")
        if zone_kind is None and declared not in (None, "route", "zone"):
            zone_kind = declared
        values["kind"] = zone_kind if zone_kind is not None else defaults.zone_kind
        if values["kind"] is None:
            del values["kind"]
        model = ZoneProps
    try:
        parsed = model.model_validate(values)
    except ValidationError as e:
        problems += pydantic_problems(e, (*loc, "properties"))
        parsed = None
    if problems or geom is None or parsed is None:
        return None, problems
    return Draft(loc, kind, feature_id, geom, parsed), []


def _geojson_features(data: bytes) -> tuple[list[tuple[Loc, dict[str, Any], dict[str, Any]]], list[Problem]]:
    """(where, feature, its properties) of each feature of a GeoJSON document, and what is wrong with
    the document or a feature's frame."""
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as e:
        return [], [Problem(("body",), f"not UTF-8 text: byte {e.start} cannot be decoded")]
    except json.JSONDecodeError as e:
        return [], [Problem(("body",), f"not JSON: {e.msg} at line {e.lineno}, column {e.colno}")]
    if not isinstance(doc, dict) or doc.get("type") not in ("FeatureCollection", "Feature"):
        return [], [Problem(("body", "type"), "expected a GeoJSON FeatureCollection or Feature")]
    if doc["type"] == "Feature":
        items: list[tuple[Loc, Any]] = [(("body",), doc)]
    elif not isinstance(doc.get("features"), list):
        return [], [Problem(("body", "features"), "a FeatureCollection needs a list of features")]
    else:
        items = [(("body", "features", i), f) for i, f in enumerate(doc["features"])]
    out: list[tuple[Loc, dict[str, Any], dict[str, Any]]] = []
    problems: list[Problem] = []
    for loc, f in items:
        if not isinstance(f, dict) or f.get("type") != "Feature":
            problems.append(Problem(loc, 'expected a GeoJSON Feature ({"type": "Feature", ...})'))
            continue
        props = f.get("properties") or {}
        if not isinstance(props, dict):
            problems.append(Problem((*loc, "properties"), "properties must be an object"))
            continue
        out.append((loc, f, props))
    return out, problems


def _read_geojson(data: bytes, defaults: ImportDefaults) -> tuple[list[Draft], list[Problem]]:
    features, problems = _geojson_features(data)
    drafts: list[Draft] = []
    for loc, f, props in features:
        draft, found = _draft(loc, f.get("geometry"), props, f.get("id"), defaults)
        problems += found
        if draft is not None:
            drafts.append(draft)
    return drafts, problems


def _read_gpx(data: bytes, defaults: ImportDefaults) -> tuple[list[Draft], list[Problem]]:
    try:
        raw = read_gpx(data)
    except GpxError as e:
        return [], [Problem(("body", *e.loc), e.msg)]
    drafts: list[Draft] = []
    problems: list[Problem] = []
    for item in raw:
        loc = ("body", *item.loc)
        if item.problem is not None or item.geometry is None:
            name = item.properties.get("name")
            problems.append(Problem(loc, f"{name!r}: {item.problem}" if name else str(item.problem)))
            continue
        props = dict(item.properties)
        feature_id = props.pop("id", None)
        draft, found = _draft(loc, item.geometry, props, feature_id, defaults)
        problems += found
        if draft is not None:
            drafts.append(draft)
    return drafts, problems


def read_import(
    data: bytes, media_type: str | None, defaults: ImportDefaults = ImportDefaults()
) -> tuple[list[Draft], list[Problem]]:
    """Drafts of every good feature and every problem found. GPX when the media type says so (or the
    body starts with '<'), else GeoJSON."""
    media = (media_type or "").split(";")[0].strip().lower()
    if "gpx" in media or media.endswith("/xml"):
        fmt = "gpx"
    elif "json" in media:
        fmt = "geojson"
    else:
        fmt = "gpx" if data.lstrip()[:1] == b"<" else "geojson"
    if not data.strip():
        return [], [Problem(("body",), "the file is empty")]
    drafts, problems = (_read_gpx if fmt == "gpx" else _read_geojson)(data, defaults)
    if not drafts and not problems:
        problems.append(Problem(("body",), "the file holds no route and no danger zone"))
    return drafts, problems


class WorldChild(BaseModel):
    """A child who walks a route, as a world document lists it (``properties.children``)."""

    model_config = ConfigDict(extra="ignore")
    id: int = Field(ge=1, le=MAX_ID)
    tag: str | None = None
    name: str | None = None


_CHILDREN: TypeAdapter[list[WorldChild]] = TypeAdapter(list[WorldChild])


class WorldSchool(BaseModel):
    """A school of a world document: its place, and what the alert rules read of it (the world of
    ``GET /api/v1/world``; a hand-made world may leave all but the id and the point out)."""

    model_config = ConfigDict(extra="ignore")
    id: int = Field(ge=1, le=MAX_ID)
    name: str = ""
    lon: float = Field(ge=-180.0, le=180.0)
    lat: float = Field(ge=-90.0, le=90.0)
    timezone: str | None = None  # None: the tracker's default time zone
    windows: list[CommuteWindow] = Field(default_factory=list)
    closed_days: list[date] = Field(default_factory=list)
    fence_m: float | None = Field(None, gt=0)  # None: the schools table's default
    children: list[WorldChild] = Field(default_factory=list)  # its children without a route

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Asia/Seoul')") from None
        return value


@dataclass(frozen=True)
class WorldFeatures:
    """The routes and danger zones of a world document, each checked as an import checks it, who
    walks each route (route id -> its children), and the schools."""

    routes: list[Draft]
    zones: list[Draft]
    children: dict[int, list[WorldChild]]
    schools: list[WorldSchool] = field(default_factory=list)


def read_world(
    data: bytes, defaults: ImportDefaults = ImportDefaults()
) -> tuple[WorldFeatures, list[Problem]]:
    """A world GeoJSON (``schemas/world.v1.json``, as ``GET /api/v1/world`` writes it; a file of only
    zones or only routes will do): its routes and zones read exactly as an import reads them, every
    one with an id (the world's features are named by id); its schools (Points)."""
    features, problems = _geojson_features(data)
    routes: list[Draft] = []
    zones: list[Draft] = []
    children: dict[int, list[WorldChild]] = {}
    schools: list[WorldSchool] = []
    for loc, f, props in features:
        geometry = f.get("geometry")
        if props.get("kind") == "school" or (isinstance(geometry, dict) and geometry.get("type") == "Point"):
            school, found = _school(loc, geometry, props, f.get("id"))
            problems += found
            if school is not None:
                schools.append(school)
            continue
        draft, found = _draft(loc, geometry, props, f.get("id"), defaults)
        problems += found
        if draft is None:
            continue
        if draft.id is None:
            problems.append(
                Problem((*loc, "id"), f"{draft.label} has no id (the feature's id or properties.id)")
            )
            continue
        if draft.kind == "zone":
            zones.append(draft)
            continue
        routes.append(draft)
        try:
            children[draft.id] = _CHILDREN.validate_python(props.get("children") or [])
        except ValidationError as e:
            problems += pydantic_problems(e, (*loc, "properties", "children"))
    return WorldFeatures(routes, zones, children, schools), problems


def _school(
    loc: Loc, geometry: Any, props: dict[str, Any], feature_id: Any
) -> tuple[WorldSchool | None, list[Problem]]:
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if not (
        isinstance(geometry, dict)
        and geometry.get("type") == "Point"
        and isinstance(coords, list)
        and len(coords) >= 2
    ):
        return None, [
            Problem((*loc, "geometry"), 'a school is a Point: {"type": "Point", "coordinates": [lon, lat]}')
        ]
    values = {k: v for k, v in props.items() if k != "kind" and v is not None}
    values.setdefault("id", feature_id)
    try:
        return WorldSchool.model_validate(values | {"lon": coords[0], "lat": coords[1]}), []
    except ValidationError as e:
        found = pydantic_problems(e, (*loc, "properties"))
        return None, [
            Problem((*loc, "geometry", "coordinates"), p.msg) if p.loc[-1:] in (("lon",), ("lat",)) else p
            for p in found
        ]


def where(loc: Loc) -> str:
    """A problem's place as a person reads it: ``features[3].properties.corridor_m``."""
    out = ""
    for part in loc[1:] if loc[:1] == ("body",) else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the document"
