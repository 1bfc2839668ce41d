"""Registry endpoints with a shape, as GeoJSON Features: schools, routes, danger zones, RFID readers.

Who may do what is in tracker.store.scope; a role that may not use an endpoint at all gets 403, and
a row the caller may not see is 404, exactly as if it did not exist.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import shapely
import shapely.errors
import shapely.geometry
from fastapi import APIRouter, Depends, Response, status

from tracker.api.auth import context, require
from tracker.api.common import (
    CREATE,
    LIST,
    READ,
    WRITE,
    DeviceIdPath,
    IdPath,
    IdQuery,
    Limit,
    Offset,
    conflict,
    invalid,
    not_found,
    not_null,
)
from tracker.api.context import AppContext
from tracker.api.models import (
    FeaturePage,
    ReaderFeature,
    ReaderIn,
    ReaderPatch,
    RouteFeature,
    RouteIn,
    RoutePatch,
    SchoolFeature,
    SchoolIn,
    SchoolPatch,
    ZoneFeature,
    ZoneIn,
    ZonePatch,
)
from tracker.broker_config import broker_user_refusal
from tracker.geofence import RouteSpec, ZoneSpec, route_meets_zones
from tracker.importers import GeometryProblem, validate_route_geometry, validate_zone_geometry
from tracker.importers.geojson import validate_place
from tracker.importers.models import ZoneKind
from tracker.store import registry_crud
from tracker.store.devices import broker_user_taken
from tracker.store.tokens import Principal

router = APIRouter()
STAFF = ("admin", "school")
READERS = ("admin", "school", "guardian")


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def _dump(items: list[Any] | None) -> list[dict[str, Any]] | None:
    return None if items is None else [i.model_dump() for i in items]


async def _check(loc: list[str | int], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a geometry check off the event loop; its refusal is a 422 naming the place."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except GeometryProblem as e:
        invalid([*loc, *e.loc], e.msg, "geometry")


async def _own_school(
    conn: asyncpg.Connection, who: Principal, school_id: int | None, loc: list[str | int]
) -> tuple[int, tuple[float, float]]:
    """The school a new or moved row belongs to: school staff their own, admin any existing one."""
    if school_id is None:
        if who.role != "school" or who.school_id is None:
            invalid(loc, "school_id is required")
        school_id = who.school_id
    if who.role == "school" and school_id != who.school_id:
        invalid(
            loc, f"school {school_id} is not your school: you may register only for school {who.school_id}"
        )
    place = await registry_crud.school_place(conn, school_id)
    if place is None:
        invalid(loc, f"no school {school_id}")
    return school_id, place


# --- schools -------------------------------------------------------------------------------------------
def school_feature(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": r["id"],
        "geometry": _point(r["lon"], r["lat"]),
        "properties": {
            "name": r["name"],
            "timezone": r["timezone"],
            "windows": r["windows"],
            "closed_days": list(r["closed_days"]),
            "created_at": r["created_at"],
        },
    }


@router.get("/api/v1/schools", tags=["schools"], response_model=FeaturePage[SchoolFeature], responses=LIST)
async def list_schools(
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Schools the caller may see (school staff: their own; guardians: their children's)."""
    rows, total = await registry_crud.list_schools(ctx.pool, who, limit=limit, offset=offset)
    return {"features": [school_feature(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.post(
    "/api/v1/schools",
    tags=["schools"],
    status_code=status.HTTP_201_CREATED,
    response_model=SchoolFeature,
    responses=CREATE,
)
async def create_school(
    body: SchoolIn, who: Principal = Depends(require("admin")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Register a school (city administrators)."""
    p = body.properties
    lon, lat = body.geometry.coordinates[0], body.geometry.coordinates[1]
    async with ctx.pool.acquire() as conn:
        school_id = await registry_crud.create_school(
            conn,
            {
                "name": p.name,
                "timezone": p.timezone or ctx.settings.default_timezone,
                "lon": lon,
                "lat": lat,
                "windows": _dump(p.windows),
                "closed_days": sorted(set(p.closed_days)),
            },
        )
        row = await registry_crud.get_school(conn, who, school_id)
    assert row is not None
    return school_feature(row)


@router.get("/api/v1/schools/{school_id}", tags=["schools"], response_model=SchoolFeature, responses=READ)
async def get_school(
    school_id: IdPath, who: Principal = Depends(require(*READERS)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    row = await registry_crud.get_school(ctx.pool, who, school_id)
    if row is None:
        not_found("school", school_id)
    return school_feature(row)


@router.patch("/api/v1/schools/{school_id}", tags=["schools"], response_model=SchoolFeature, responses=WRITE)
async def update_school(
    school_id: IdPath,
    body: SchoolPatch,
    who: Principal = Depends(require(*STAFF)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Change a school (school staff: their own): place, name, time zone, windows, closed days."""
    values: dict[str, Any] = {}
    if body.properties is not None:
        values = not_null(body.properties.model_dump(exclude_unset=True), (), ["body", "properties"])
        if "windows" in values:
            values["windows"] = _dump(body.properties.windows)
        if "closed_days" in values:
            values["closed_days"] = sorted(set(values["closed_days"]))
    if body.geometry is not None:
        values["lon"], values["lat"] = body.geometry.coordinates[0], body.geometry.coordinates[1]
    async with ctx.pool.acquire() as conn, conn.transaction():
        if await registry_crud.update_school(conn, who, school_id, values) is None:
            not_found("school", school_id)
        row = await registry_crud.get_school(conn, who, school_id)
    assert row is not None
    return school_feature(row)


@router.delete(
    "/api/v1/schools/{school_id}", tags=["schools"], status_code=status.HTTP_204_NO_CONTENT, responses=READ
)
async def delete_school(
    school_id: IdPath, who: Principal = Depends(require("admin")), ctx: AppContext = Depends(context)
) -> Response:
    """Delete a school with its routes, children, tags and readers (city administrators)."""
    if not await registry_crud.delete_school(ctx.pool, who, school_id):
        not_found("school", school_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- routes --------------------------------------------------------------------------------------------
def route_feature(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": r["id"],
        "geometry": r["geometry"],
        "properties": {
            "name": r["name"],
            "school_id": r["school_id"],
            "corridor_m": round(float(r["corridor_m"]), 3),
            "mode": r["mode"],
            "meets_zones": r.get("meets_zones", []),
            "windows": r["windows"],
            "arrivals": r["arrivals"],
            "children": list(r["children"]),
            "created_at": r["created_at"],
        },
    }


async def with_meetings(conn: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The routes' rows with where each meets a zone (``meets_zones``), worked out against the zones
    that are on (shapely: tracker.geofence.route_meets_zones)."""
    if not rows:
        return rows
    zones = []
    for zone_id, geometry in await registry_crud.active_zone_geometries(conn):
        try:
            zones.append(ZoneSpec(zone_id, shapely.geometry.shape(geometry)))
        except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError):
            continue  # a zone the index leaves out meets nothing
    out = []
    for r in rows:
        try:
            route = RouteSpec(r["id"], shapely.geometry.shape(r["geometry"]), float(r["corridor_m"]))
            meets = [m.as_json() for m in route_meets_zones(route, zones)]
        except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError):
            meets = []
        out.append(dict(r) | {"meets_zones": meets})
    return out


@router.get("/api/v1/routes", tags=["routes"], response_model=FeaturePage[RouteFeature], responses=LIST)
async def list_routes(
    school_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Walking routes the caller may see (school staff: their school's; guardians: their children's)."""
    rows, total = await registry_crud.list_routes(
        ctx.pool, who, school_id=school_id, limit=limit, offset=offset
    )
    rows = await with_meetings(ctx.pool, rows)
    return {"features": [route_feature(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.post(
    "/api/v1/routes",
    tags=["routes"],
    status_code=status.HTTP_201_CREATED,
    response_model=RouteFeature,
    responses=CREATE,
)
async def create_route(
    body: RouteIn, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Register a route: a LineString or MultiLineString from home to school, a corridor half-width, and
    its commute windows. It is watched within a second, without a restart."""
    p = body.properties
    async with ctx.pool.acquire() as conn:
        school_id, place = await _own_school(conn, who, p.school_id, ["body", "properties", "school_id"])
        geometry = await _check(
            ["body", "geometry"],
            validate_route_geometry,
            body.geometry.geojson(),
            p.corridor_m,
            school=place,
            max_distance_m=ctx.settings.registry_max_distance_m,
        )
        route_id = await registry_crud.create_route(
            conn,
            {
                "school_id": school_id,
                "name": p.name,
                "geometry": geometry,
                "corridor_m": p.corridor_m,
                "mode": p.mode,
                "windows": _dump(p.windows),
                "arrivals": _dump(p.arrivals),
            },
        )
        row = await registry_crud.get_route(conn, who, route_id)
        assert row is not None
        (row,) = await with_meetings(conn, [row])
    return route_feature(row)


@router.get("/api/v1/routes/{route_id}", tags=["routes"], response_model=RouteFeature, responses=READ)
async def get_route(
    route_id: IdPath, who: Principal = Depends(require(*READERS)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    row = await registry_crud.get_route(ctx.pool, who, route_id)
    if row is None:
        not_found("route", route_id)
    (row,) = await with_meetings(ctx.pool, [row])
    return route_feature(row)


@router.patch("/api/v1/routes/{route_id}", tags=["routes"], response_model=RouteFeature, responses=WRITE)
async def update_route(
    route_id: IdPath,
    body: RoutePatch,
    who: Principal = Depends(require(*STAFF)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Change a route; a new shape, corridor or school is checked like a new route."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await registry_crud.get_route(conn, who, route_id)
        if current is None or not await registry_crud.visible(conn, who, "route", route_id, write=True):
            not_found("route", route_id)
        values: dict[str, Any] = {}
        if body.properties is not None:
            values = not_null(body.properties.model_dump(exclude_unset=True), (), ["body", "properties"])
            if "windows" in values:
                values["windows"] = _dump(body.properties.windows)
            if "arrivals" in values:
                values["arrivals"] = _dump(body.properties.arrivals)
        school_id = values.get("school_id", current["school_id"])
        _, place = await _own_school(conn, who, school_id, ["body", "properties", "school_id"])
        if body.geometry is not None or "corridor_m" in values or "school_id" in values:
            values["geometry"] = await _check(
                ["body", "geometry"],
                validate_route_geometry,
                body.geometry.geojson() if body.geometry is not None else current["geometry"],
                values.get("corridor_m", current["corridor_m"]),
                school=place,
                max_distance_m=ctx.settings.registry_max_distance_m,
            )
        await registry_crud.update_route(conn, who, route_id, values)
        row = await registry_crud.get_route(conn, who, route_id)
        assert row is not None
        (row,) = await with_meetings(conn, [row])
    return route_feature(row)


@router.delete(
    "/api/v1/routes/{route_id}", tags=["routes"], status_code=status.HTTP_204_NO_CONTENT, responses=READ
)
async def delete_route(
    route_id: IdPath, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> Response:
    """Delete a route; its children keep their registration without a route (not watched off-route)."""
    if not await registry_crud.delete_route(ctx.pool, who, route_id):
        not_found("route", route_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- danger zones --------------------------------------------------------------------------------------
def zone_feature(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": r["id"],
        "geometry": r["geometry"],
        "properties": {
            "name": r["name"],
            "kind": r["kind"],
            "severity": r["severity"],
            "hours": r["hours"],
            "active": r["active"],
            "created_at": r["created_at"],
        },
    }


@router.get("/api/v1/zones", tags=["zones"], response_model=FeaturePage[ZoneFeature], responses=LIST)
async def list_zones(
    kind: ZoneKind | None = None,
    active: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """The city's danger zones (everyone but devices may read them)."""
    rows, total = await registry_crud.list_zones(
        ctx.pool, who, kind=kind, active=active, limit=limit, offset=offset
    )
    return {"features": [zone_feature(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.post(
    "/api/v1/zones",
    tags=["zones"],
    status_code=status.HTTP_201_CREATED,
    response_model=ZoneFeature,
    responses=CREATE,
)
async def create_zone(
    body: ZoneIn, who: Principal = Depends(require("admin")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Register a danger zone (city administrators): a Polygon or MultiPolygon, holes allowed."""
    p = body.properties
    async with ctx.pool.acquire() as conn:
        geometry = await _check(
            ["body", "geometry"],
            validate_zone_geometry,
            body.geometry.geojson(),
            schools=await registry_crud.school_places(conn),
            max_distance_m=ctx.settings.registry_max_distance_m,
        )
        zone_id = await registry_crud.create_zone(
            conn,
            {
                "name": p.name,
                "kind": p.kind,
                "severity": p.severity,
                "geometry": geometry,
                "hours": _dump(p.hours),
                "active": p.active,
            },
        )
        row = await registry_crud.get_zone(conn, who, zone_id)
    assert row is not None
    return zone_feature(row)


@router.get("/api/v1/zones/{zone_id}", tags=["zones"], response_model=ZoneFeature, responses=READ)
async def get_zone(
    zone_id: IdPath, who: Principal = Depends(require(*READERS)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    row = await registry_crud.get_zone(ctx.pool, who, zone_id)
    if row is None:
        not_found("zone", zone_id)
    return zone_feature(row)


@router.patch("/api/v1/zones/{zone_id}", tags=["zones"], response_model=ZoneFeature, responses=WRITE)
async def update_zone(
    zone_id: IdPath,
    body: ZonePatch,
    who: Principal = Depends(require("admin")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Change a danger zone (city administrators); ``active: false`` takes it out of the index."""
    values: dict[str, Any] = {}
    if body.properties is not None:
        values = not_null(body.properties.model_dump(exclude_unset=True), ("hours",), ["body", "properties"])
        if "hours" in values:
            values["hours"] = _dump(body.properties.hours)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if body.geometry is not None:
            values["geometry"] = await _check(
                ["body", "geometry"],
                validate_zone_geometry,
                body.geometry.geojson(),
                schools=await registry_crud.school_places(conn),
                max_distance_m=ctx.settings.registry_max_distance_m,
            )
        if await registry_crud.update_zone(conn, who, zone_id, values) is None:
            not_found("zone", zone_id)
        row = await registry_crud.get_zone(conn, who, zone_id)
    assert row is not None
    return zone_feature(row)


@router.delete(
    "/api/v1/zones/{zone_id}", tags=["zones"], status_code=status.HTTP_204_NO_CONTENT, responses=READ
)
async def delete_zone(
    zone_id: IdPath, who: Principal = Depends(require("admin")), ctx: AppContext = Depends(context)
) -> Response:
    if not await registry_crud.delete_zone(ctx.pool, who, zone_id):
        not_found("zone", zone_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- RFID readers --------------------------------------------------------------------------------------
def reader_feature(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": r["id"],
        "geometry": _point(r["lon"], r["lat"]),
        "properties": {
            "name": r["name"],
            "school_id": r["school_id"],
            "role": r["role"],
            "created_at": r["created_at"],
        },
    }


@router.get("/api/v1/readers", tags=["readers"], response_model=FeaturePage[ReaderFeature], responses=LIST)
async def list_readers(
    school_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*STAFF)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """RFID readers at school gates and crossings (school staff: their school's)."""
    rows, total = await registry_crud.list_readers(
        ctx.pool, who, school_id=school_id, limit=limit, offset=offset
    )
    return {"features": [reader_feature(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.post(
    "/api/v1/readers",
    tags=["readers"],
    status_code=status.HTTP_201_CREATED,
    response_model=ReaderFeature,
    responses=CREATE,
)
async def create_reader(
    body: ReaderIn, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    p = body.properties
    if refusal := broker_user_refusal("reader id", body.id, ctx.settings.mqtt_url):
        invalid(["body", "id"], f"{refusal}; a reader's id is its MQTT user name")
    async with ctx.pool.acquire() as conn, conn.transaction():
        school_id, place = await _own_school(conn, who, p.school_id, ["body", "properties", "school_id"])
        lon, lat = await _check(
            ["body", "geometry"],
            validate_place,
            body.geometry.geojson(),
            school=place,
            max_distance_m=ctx.settings.registry_max_distance_m,
        )
        if (taken := await broker_user_taken(conn, body.id)) == "reader":
            conflict(f"reader {body.id!r} is already registered")
        if taken == "tag":
            conflict(f"{body.id!r} is a tag's id: tags and readers share one namespace (broker users)")
        await registry_crud.create_reader(
            conn,
            {"id": body.id, "school_id": school_id, "name": p.name, "role": p.role, "lon": lon, "lat": lat},
        )
        row = await registry_crud.get_reader(conn, who, body.id)
    assert row is not None
    return reader_feature(row)


@router.get("/api/v1/readers/{reader_id}", tags=["readers"], response_model=ReaderFeature, responses=READ)
async def get_reader(
    reader_id: DeviceIdPath, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    row = await registry_crud.get_reader(ctx.pool, who, reader_id)
    if row is None:
        not_found("reader", reader_id)
    return reader_feature(row)


@router.patch("/api/v1/readers/{reader_id}", tags=["readers"], response_model=ReaderFeature, responses=WRITE)
async def update_reader(
    reader_id: DeviceIdPath,
    body: ReaderPatch,
    who: Principal = Depends(require(*STAFF)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await registry_crud.get_reader(conn, who, reader_id)
        if current is None:
            not_found("reader", reader_id)
        values: dict[str, Any] = {}
        if body.properties is not None:
            values = not_null(body.properties.model_dump(exclude_unset=True), (), ["body", "properties"])
        school_id = values.get("school_id", current["school_id"])
        _, place = await _own_school(conn, who, school_id, ["body", "properties", "school_id"])
        geometry = (
            body.geometry.geojson() if body.geometry is not None else _point(current["lon"], current["lat"])
        )
        values["lon"], values["lat"] = await _check(
            ["body", "geometry"],
            validate_place,
            geometry,
            school=place,
            max_distance_m=ctx.settings.registry_max_distance_m,
        )
        await registry_crud.update_reader(conn, who, reader_id, values)
        row = await registry_crud.get_reader(conn, who, reader_id)
    assert row is not None
    return reader_feature(row)


@router.delete(
    "/api/v1/readers/{reader_id}", tags=["readers"], status_code=status.HTTP_204_NO_CONTENT, responses=READ
)
async def delete_reader(
    reader_id: DeviceIdPath, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> Response:
    if not await registry_crud.delete_reader(ctx.pool, who, reader_id):
        not_found("reader", reader_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
