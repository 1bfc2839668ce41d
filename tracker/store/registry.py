"""Registry repository: schools, routes, danger zones, RFID readers, children, tags, guardians.

Geometry goes in and out as GeoJSON dicts (lon/lat, RFC 7946); it is checked before a write
(tracker.importers). ``load_registry`` is what the pipeline's index builder reads
(tracker.registry_view); the scoped functions below are what the HTTP API reads and writes, each
limited to what the caller may see or change (the rules are in tracker.store.scope): a row outside
the caller's scope is not found.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg

from tracker.store import scope
from tracker.store.tokens import Principal

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class SchoolRow:
    id: int
    name: str
    timezone: str
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class RouteRow:
    id: int
    school_id: int
    name: str
    geometry: dict[str, Any] | str
    """GeoJSON, or its JSON text as read by load_registry (a quarter of the memory of the decoded
    lists: at city scale the routes' vertices are the registry's largest part); see ``geojson``"""
    corridor_m: float
    windows: list[dict[str, Any]]

    @property
    def geojson(self) -> dict[str, Any]:
        return json.loads(self.geometry) if isinstance(self.geometry, str) else self.geometry


@dataclass(frozen=True, slots=True)
class ZoneRow:
    id: int
    name: str
    kind: str
    severity: str
    geometry: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChildRow:
    id: int
    school_id: int
    route_id: int | None
    name: str


@dataclass(frozen=True, slots=True)
class GuardianRow:
    id: int
    name: str
    phone: str | None
    language: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class RegistryRows:
    """Everything the pipeline needs from the registry, read in one transaction."""

    schools: dict[int, SchoolRow] = field(default_factory=dict)
    routes: dict[int, RouteRow] = field(default_factory=dict)
    zones: dict[int, ZoneRow] = field(default_factory=dict)
    children: dict[int, ChildRow] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)  # tag id -> child id
    guardians: dict[int, GuardianRow] = field(default_factory=dict)
    child_guardians: dict[int, tuple[int, ...]] = field(
        default_factory=dict
    )  # child -> guardians by priority
    devices: dict[str, str] = field(default_factory=dict)  # "owntracks:user/device" -> tag id


async def load_registry(conn: asyncpg.Connection) -> RegistryRows:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        schools = {
            r["id"]: SchoolRow(r["id"], r["name"], r["timezone"], r["lon"], r["lat"])
            for r in await conn.fetch("SELECT id, name, timezone, lon, lat FROM schools")
        }
        routes = {
            r["id"]: RouteRow(
                r["id"], r["school_id"], r["name"], r["geometry"], float(r["corridor_m"]), r["windows"]
            )
            for r in await conn.fetch(
                "SELECT id, school_id, name, geometry::text AS geometry, corridor_m, windows FROM routes"
            )
        }
        zones = {
            r["id"]: ZoneRow(r["id"], r["name"], r["kind"], r["severity"], r["geometry"])
            for r in await conn.fetch(
                "SELECT id, name, kind, severity, geometry FROM danger_zones WHERE active"
            )
        }
        children = {
            r["id"]: ChildRow(r["id"], r["school_id"], r["route_id"], r["name"])
            for r in await conn.fetch("SELECT id, school_id, route_id, name FROM children")
        }
        tags = {r["id"]: r["child_id"] for r in await conn.fetch("SELECT id, child_id FROM tags")}
        guardians = {
            r["id"]: GuardianRow(
                r["id"],
                r["name"],
                r["phone"],
                sys.intern(r["language"]),
                tuple(map(sys.intern, r["channels"])),
            )
            for r in await conn.fetch("SELECT id, name, phone, language, channels FROM guardians")
        }
        links: dict[int, list[int]] = {}
        for r in await conn.fetch(
            "SELECT child_id, guardian_id FROM child_guardians ORDER BY child_id, priority, guardian_id"
        ):
            links.setdefault(r["child_id"], []).append(r["guardian_id"])
        devices = {
            f"{r['protocol']}:{r['device']}": r["tag_id"]
            for r in await conn.fetch("SELECT protocol, device, tag_id FROM tag_devices")
        }
    return RegistryRows(
        schools, routes, zones, children, tags, guardians, {c: tuple(g) for c, g in links.items()}, devices
    )


async def add_school(
    conn: asyncpg.Connection, *, name: str, lon: float, lat: float, timezone: str = "Asia/Seoul"
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO schools (name, lon, lat, timezone) VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            lon,
            lat,
            timezone,
        )
    )


async def add_route(
    conn: asyncpg.Connection,
    *,
    school_id: int,
    name: str,
    geometry: dict[str, Any],
    corridor_m: float,
    windows: list[dict[str, Any]],
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO routes (school_id, name, geometry, corridor_m, windows)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            school_id,
            name,
            geometry,
            corridor_m,
            windows,
        )
    )


async def add_zone(
    conn: asyncpg.Connection, *, name: str, kind: str, geometry: dict[str, Any], severity: str = "critical"
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO danger_zones (name, kind, severity, geometry) VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            kind,
            severity,
            geometry,
        )
    )


async def add_child(conn: asyncpg.Connection, *, school_id: int, route_id: int | None, name: str) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO children (school_id, route_id, name) VALUES ($1, $2, $3) RETURNING id",
            school_id,
            route_id,
            name,
        )
    )


async def add_tag(conn: asyncpg.Connection, *, tag_id: str, child_id: int, kind: str = "gps") -> None:
    await conn.execute("INSERT INTO tags (id, child_id, kind) VALUES ($1, $2, $3)", tag_id, child_id, kind)


async def add_guardian(
    conn: asyncpg.Connection,
    *,
    name: str,
    phone: str | None,
    language: str = "ko",
    channels: tuple[str, ...] = ("websocket", "sms"),
    school_id: int | None = None,
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO guardians (name, phone, language, channels, school_id)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            name,
            phone,
            language,
            list(channels),
            school_id,
        )
    )


async def link_guardian(
    conn: asyncpg.Connection, *, child_id: int, guardian_id: int, priority: int = 1
) -> None:
    await conn.execute(
        "INSERT INTO child_guardians (child_id, guardian_id, priority) VALUES ($1, $2, $3)",
        child_id,
        guardian_id,
        priority,
    )


def world_geojson(rows: RegistryRows) -> dict[str, Any]:
    """The registry as a world.v1 FeatureCollection (schemas/world.v1.json): what the simulator reads."""
    by_route: dict[int, list[dict[str, Any]]] = {}
    tags_by_child: dict[int, list[str]] = {}
    for tag, child_id in sorted(rows.tags.items()):
        tags_by_child.setdefault(child_id, []).append(tag)
    for child in rows.children.values():
        if child.route_id is None:
            continue
        for tag in tags_by_child.get(child.id, []):
            by_route.setdefault(child.route_id, []).append({"id": child.id, "name": child.name, "tag": tag})
    features: list[dict[str, Any]] = []
    for s in rows.schools.values():
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                "properties": {"kind": "school", "id": s.id, "name": s.name},
            }
        )
    for r in rows.routes.values():
        features.append(
            {
                "type": "Feature",
                "geometry": r.geojson,
                "properties": {
                    "kind": "route",
                    "id": r.id,
                    "name": r.name,
                    "school_id": r.school_id,
                    "corridor_m": r.corridor_m,
                    "children": by_route.get(r.id, []),
                },
            }
        )
    for z in rows.zones.values():
        features.append(
            {
                "type": "Feature",
                "geometry": z.geometry,
                "properties": {
                    "kind": "zone",
                    "id": z.id,
                    "name": z.name,
                    "zone_kind": z.kind,
                    "severity": z.severity,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


# ---------------------------------------------------------------------------------------------------------
# Scoped reads and writes for the API. Every function takes the caller (a Principal); rows outside the
# caller's scope are neither returned nor changed. Writes return the id written, or None when the row
# does not exist for this caller; the caller re-reads what it needs.


async def _page(
    conn: Conn,
    who: Principal,
    *,
    columns: str,
    source: str,
    where: str,
    order: str,
    args: Sequence[Any],
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """One page of rows and the number of rows in all pages (one query unless the page is empty)."""
    n = 3 + len(args)
    rows = await conn.fetch(
        f"WITH {scope.ME} SELECT {columns}, count(*) OVER () AS total__ FROM {source}"
        f" WHERE {where} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}",
        *scope.me_args(who),
        *args,
        limit,
        offset,
    )
    if rows:
        total = int(rows[0]["total__"])
    else:
        total = int(
            await conn.fetchval(
                f"WITH {scope.ME} SELECT count(*) FROM {source} WHERE {where}", *scope.me_args(who), *args
            )
        )
    return [{k: v for k, v in r.items() if k != "total__"} for r in rows], total


async def _one(
    conn: Conn, who: Principal, *, columns: str, source: str, where: str, args: Sequence[Any]
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"WITH {scope.ME} SELECT {columns} FROM {source} WHERE {where}", *scope.me_args(who), *args
    )
    return None if row is None else dict(row.items())


async def _update(
    conn: Conn, who: Principal, *, table: str, alias: str, allowed: str, key: Any, values: dict[str, Any]
) -> Any | None:
    """UPDATE one row the caller may change; returns its id, or None when there is no such row."""
    cols = list(values)
    sets = ", ".join(f"{c} = ${5 + i}" for i, c in enumerate(cols)) or "id = id"
    row = await conn.fetchrow(
        f"WITH {scope.ME} UPDATE {table} {alias} SET {sets} FROM me"
        f" WHERE {alias}.id = $4 AND {allowed} RETURNING {alias}.id",
        *scope.me_args(who),
        key,
        *(values[c] for c in cols),
    )
    return None if row is None else row["id"]


async def _delete(conn: Conn, who: Principal, *, table: str, alias: str, allowed: str, key: Any) -> bool:
    row = await conn.fetchrow(
        f"WITH {scope.ME} DELETE FROM {table} {alias} USING me WHERE {alias}.id = $4 AND {allowed}"
        f" RETURNING {alias}.id",
        *scope.me_args(who),
        key,
    )
    return row is not None


async def _insert(conn: Conn, table: str, values: dict[str, Any]) -> Any:
    cols = list(values)
    marks = ", ".join(f"${i + 1}" for i in range(len(cols)))
    return await conn.fetchval(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) RETURNING id", *(values[c] for c in cols)
    )


async def visible(conn: Conn, who: Principal, kind: str, key: Any, *, write: bool = False) -> bool:
    """Does a row of this kind exist for the caller (to change it, with ``write``)?"""
    table, alias, rule = _KINDS[kind]
    return (
        await conn.fetchval(
            f"WITH {scope.ME} SELECT true FROM {table} {alias}, me WHERE {alias}.id = $4"
            f" AND {rule(who, alias, write=write)}",
            *scope.me_args(who),
            key,
        )
        is not None
    )


_KINDS: dict[str, tuple[str, str, Any]] = {
    "school": ("schools", "s", scope.schools),
    "route": ("routes", "r", scope.routes),
    "zone": ("danger_zones", "z", scope.zones),
    "reader": ("readers", "d", scope.readers),
    "child": ("children", "c", scope.children),
    "tag": ("tags", "t", scope.tags),
    "guardian": ("guardians", "g", scope.guardians),
}


# --- schools -------------------------------------------------------------------------------------------
_SCHOOL = "s.id, s.name, s.timezone, s.lon, s.lat, s.windows, s.closed_days, s.created_at"


async def list_schools(
    conn: Conn, who: Principal, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn,
        who,
        columns=_SCHOOL,
        source="schools s, me",
        where=scope.schools(who),
        order="s.id",
        args=(),
        limit=limit,
        offset=offset,
    )


async def get_school(conn: Conn, who: Principal, school_id: int) -> dict[str, Any] | None:
    return await _one(
        conn,
        who,
        columns=_SCHOOL,
        source="schools s, me",
        where=f"s.id = $4 AND {scope.schools(who)}",
        args=(school_id,),
    )


async def school_place(conn: Conn, school_id: int) -> tuple[float, float] | None:
    row = await conn.fetchrow("SELECT lon, lat FROM schools WHERE id = $1", school_id)
    return None if row is None else (row["lon"], row["lat"])


async def school_places(conn: Conn) -> list[tuple[float, float]]:
    return [(r["lon"], r["lat"]) for r in await conn.fetch("SELECT lon, lat FROM schools")]


async def create_school(conn: Conn, values: dict[str, Any]) -> int:
    return int(await _insert(conn, "schools", values))


async def update_school(conn: Conn, who: Principal, school_id: int, values: dict[str, Any]) -> int | None:
    return await _update(
        conn,
        who,
        table="schools",
        alias="s",
        allowed=scope.schools(who, write=True),
        key=school_id,
        values=values,
    )


async def delete_school(conn: Conn, who: Principal, school_id: int) -> bool:
    allowed = "true" if who.role == "admin" else "false"
    return await _delete(conn, who, table="schools", alias="s", allowed=allowed, key=school_id)


# --- routes --------------------------------------------------------------------------------------------
def _route_columns(who: Principal) -> str:
    return (
        "r.id, r.school_id, r.name, r.geometry, r.corridor_m, r.windows, r.arrivals, r.created_at,"
        " (SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}') FROM children c"
        f"  WHERE c.route_id = r.id AND {scope.children(who)}) AS children"
    )


async def list_routes(
    conn: Conn, who: Principal, *, school_id: int | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn,
        who,
        columns=_route_columns(who),
        source="routes r, me",
        where=f"{scope.routes(who)} AND ($4::bigint IS NULL OR r.school_id = $4)",
        order="r.id",
        args=(school_id,),
        limit=limit,
        offset=offset,
    )


async def get_route(conn: Conn, who: Principal, route_id: int) -> dict[str, Any] | None:
    return await _one(
        conn,
        who,
        columns=_route_columns(who),
        source="routes r, me",
        where=f"r.id = $4 AND {scope.routes(who)}",
        args=(route_id,),
    )


async def create_route(conn: Conn, values: dict[str, Any]) -> int:
    return int(await _insert(conn, "routes", values))


async def update_route(conn: Conn, who: Principal, route_id: int, values: dict[str, Any]) -> int | None:
    return await _update(
        conn,
        who,
        table="routes",
        alias="r",
        allowed=scope.routes(who, write=True),
        key=route_id,
        values=values,
    )


async def delete_route(conn: Conn, who: Principal, route_id: int) -> bool:
    return await _delete(
        conn, who, table="routes", alias="r", allowed=scope.routes(who, write=True), key=route_id
    )


# --- danger zones --------------------------------------------------------------------------------------
_ZONE = "z.id, z.name, z.kind, z.severity, z.geometry, z.hours, z.active, z.created_at"


async def list_zones(
    conn: Conn, who: Principal, *, kind: str | None, active: bool | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn,
        who,
        columns=_ZONE,
        source="danger_zones z, me",
        where=f"{scope.zones(who)} AND ($4::text IS NULL OR z.kind = $4)"
        " AND ($5::boolean IS NULL OR z.active = $5)",
        order="z.id",
        args=(kind, active),
        limit=limit,
        offset=offset,
    )


async def get_zone(conn: Conn, who: Principal, zone_id: int) -> dict[str, Any] | None:
    return await _one(
        conn,
        who,
        columns=_ZONE,
        source="danger_zones z, me",
        where=f"z.id = $4 AND {scope.zones(who)}",
        args=(zone_id,),
    )


async def create_zone(conn: Conn, values: dict[str, Any]) -> int:
    return int(await _insert(conn, "danger_zones", values))


async def update_zone(conn: Conn, who: Principal, zone_id: int, values: dict[str, Any]) -> int | None:
    return await _update(
        conn,
        who,
        table="danger_zones",
        alias="z",
        allowed=scope.zones(who, write=True),
        key=zone_id,
        values=values,
    )


async def delete_zone(conn: Conn, who: Principal, zone_id: int) -> bool:
    return await _delete(
        conn, who, table="danger_zones", alias="z", allowed=scope.zones(who, write=True), key=zone_id
    )


# --- RFID readers --------------------------------------------------------------------------------------
_READER = "d.id, d.school_id, d.name, d.role, d.lon, d.lat, d.created_at"


async def list_readers(
    conn: Conn, who: Principal, *, school_id: int | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn,
        who,
        columns=_READER,
        source="readers d, me",
        where=f"{scope.readers(who)} AND ($4::bigint IS NULL OR d.school_id = $4)",
        order="d.id",
        args=(school_id,),
        limit=limit,
        offset=offset,
    )


async def get_reader(conn: Conn, who: Principal, reader_id: str) -> dict[str, Any] | None:
    return await _one(
        conn,
        who,
        columns=_READER,
        source="readers d, me",
        where=f"d.id = $4 AND {scope.readers(who)}",
        args=(reader_id,),
    )


async def create_reader(conn: Conn, values: dict[str, Any]) -> str:
    return str(await _insert(conn, "readers", values))


async def update_reader(conn: Conn, who: Principal, reader_id: str, values: dict[str, Any]) -> str | None:
    return await _update(
        conn,
        who,
        table="readers",
        alias="d",
        allowed=scope.readers(who, write=True),
        key=reader_id,
        values=values,
    )


async def delete_reader(conn: Conn, who: Principal, reader_id: str) -> bool:
    return await _delete(
        conn, who, table="readers", alias="d", allowed=scope.readers(who, write=True), key=reader_id
    )


# --- children ------------------------------------------------------------------------------------------
def _child_columns(who: Principal) -> str:
    return (
        "c.id, c.name, c.school_id, c.route_id, c.created_at,"
        " (SELECT coalesce(array_agg(t.id ORDER BY t.id), '{}') FROM tags t WHERE t.child_id = c.id) AS tags,"
        " (SELECT coalesce(jsonb_agg(jsonb_build_object('guardian_id', cg.guardian_id,"
        "   'priority', cg.priority) ORDER BY cg.priority, cg.guardian_id), '[]'::jsonb)"
        "   FROM child_guardians cg WHERE cg.child_id = c.id) AS guardians,"
        " (SELECT count(*) FROM alerts a WHERE a.child_id = c.id AND a.state = 'open') AS open_alerts,"
        " p.ts AS p_ts, p.lon AS p_lon, p.lat AS p_lat, p.acc AS p_acc, p.batt AS p_batt,"
        " p.tag_id AS p_tag, p.route_distance_m AS p_route_distance_m"
    )


_CHILD_SOURCE = (
    "children c CROSS JOIN me LEFT JOIN LATERAL (SELECT ts, lon, lat, acc, batt, tag_id, route_distance_m"
    " FROM positions WHERE child_id = c.id ORDER BY ts DESC LIMIT 1) p ON true"
)


async def list_children(
    conn: Conn,
    who: Principal,
    *,
    school_id: int | None,
    route_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn,
        who,
        columns=_child_columns(who),
        source=_CHILD_SOURCE,
        where=f"{scope.children(who)} AND ($4::bigint IS NULL OR c.school_id = $4)"
        " AND ($5::bigint IS NULL OR c.route_id = $5)",
        order="c.id",
        args=(school_id, route_id),
        limit=limit,
        offset=offset,
    )


async def get_child(conn: Conn, who: Principal, child_id: int) -> dict[str, Any] | None:
    return await _one(
        conn,
        who,
        columns=_child_columns(who),
        source=_CHILD_SOURCE,
        where=f"c.id = $4 AND {scope.children(who)}",
        args=(child_id,),
    )


async def create_child(conn: Conn, values: dict[str, Any]) -> int:
    return int(await _insert(conn, "children", values))


async def update_child(conn: Conn, who: Principal, child_id: int, values: dict[str, Any]) -> int | None:
    return await _update(
        conn,
        who,
        table="children",
        alias="c",
        allowed=scope.children(who, write=True),
        key=child_id,
        values=values,
    )


async def delete_child(conn: Conn, who: Principal, child_id: int) -> bool:
    return await _delete(
        conn, who, table="children", alias="c", allowed=scope.children(who, write=True), key=child_id
    )


async def set_child_guardians(
    conn: asyncpg.Connection, child_id: int, links: Sequence[tuple[int, int]]
) -> None:
    """Replace the child's guardians by (guardian id, priority) pairs; run it in a transaction."""
    await conn.execute("DELETE FROM child_guardians WHERE child_id = $1", child_id)
    if links:
        await conn.executemany(
            "INSERT INTO child_guardians (child_id, guardian_id, priority) VALUES ($1, $2, $3)",
            [(child_id, g, p) for g, p in links],
        )


# --- tags ----------------------------------------------------------------------------------------------
_TAG = "t.id, t.child_id, t.kind, t.created_at, (t.mqtt_password_hash IS NOT NULL) AS has_mqtt_password"


async def list_tags(
    conn: Conn, who: Principal, *, child_id: int | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn,
        who,
        columns=_TAG,
        source="tags t, me",
        where=f"{scope.tags(who)} AND ($4::bigint IS NULL OR t.child_id = $4)",
        order="t.id",
        args=(child_id,),
        limit=limit,
        offset=offset,
    )


async def get_tag(conn: Conn, who: Principal, tag_id: str) -> dict[str, Any] | None:
    return await _one(
        conn, who, columns=_TAG, source="tags t, me", where=f"t.id = $4 AND {scope.tags(who)}", args=(tag_id,)
    )


async def create_tag(conn: Conn, values: dict[str, Any]) -> str:
    return str(await _insert(conn, "tags", values))


async def update_tag(conn: Conn, who: Principal, tag_id: str, values: dict[str, Any]) -> str | None:
    return await _update(
        conn, who, table="tags", alias="t", allowed=scope.tags(who, write=True), key=tag_id, values=values
    )


async def delete_tag(conn: Conn, who: Principal, tag_id: str) -> bool:
    return await _delete(conn, who, table="tags", alias="t", allowed=scope.tags(who, write=True), key=tag_id)


async def tag_exists(conn: Conn, tag_id: str) -> bool:
    """Is a tag id taken (by anyone: tag ids are hardware serials, unique in the city)?"""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tags WHERE id = $1)", tag_id))


# --- guardians -----------------------------------------------------------------------------------------
def _guardian_columns(who: Principal) -> str:
    return (
        "g.id, g.name, g.phone, g.language, g.channels, g.school_id, g.created_at,"
        " (SELECT coalesce(jsonb_agg(jsonb_build_object('child_id', cg.child_id, 'priority', cg.priority)"
        "   ORDER BY cg.child_id), '[]'::jsonb) FROM child_guardians cg JOIN children c ON c.id = cg.child_id"
        f"   WHERE cg.guardian_id = g.id AND {scope.children(who)}) AS children"
    )


async def list_guardians(
    conn: Conn, who: Principal, *, child_id: int | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn,
        who,
        columns=_guardian_columns(who),
        source="guardians g, me",
        where=f"{scope.guardians(who)} AND ($4::bigint IS NULL OR g.id IN"
        " (SELECT guardian_id FROM child_guardians WHERE child_id = $4))",
        order="g.id",
        args=(child_id,),
        limit=limit,
        offset=offset,
    )


async def get_guardian(conn: Conn, who: Principal, guardian_id: int) -> dict[str, Any] | None:
    return await _one(
        conn,
        who,
        columns=_guardian_columns(who),
        source="guardians g, me",
        where=f"g.id = $4 AND {scope.guardians(who)}",
        args=(guardian_id,),
    )


async def create_guardian(conn: Conn, values: dict[str, Any]) -> int:
    return int(await _insert(conn, "guardians", values))


async def update_guardian(conn: Conn, who: Principal, guardian_id: int, values: dict[str, Any]) -> int | None:
    return await _update(
        conn,
        who,
        table="guardians",
        alias="g",
        allowed=scope.guardians(who, write=True),
        key=guardian_id,
        values=values,
    )


async def delete_guardian(conn: Conn, who: Principal, guardian_id: int) -> bool:
    """Admin: any guardian; school staff: the guardians their school registered."""
    if who.role == "admin":
        allowed = "true"
    elif who.role == "school":
        allowed = "g.school_id = me.school_id"
    else:
        allowed = "false"
    return await _delete(conn, who, table="guardians", alias="g", allowed=allowed, key=guardian_id)
