"""Registry repository: schools, routes, danger zones, children, tags, guardians.

Geometry goes in and out as GeoJSON dicts (lon/lat). Validation of shapes happens before a write
(tracker.registry_view builds the geofence index from what is read here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg


@dataclass(frozen=True)
class SchoolRow:
    id: int
    name: str
    timezone: str
    lon: float
    lat: float


@dataclass(frozen=True)
class RouteRow:
    id: int
    school_id: int
    name: str
    geometry: dict[str, Any]
    corridor_m: float
    windows: list[dict[str, Any]]


@dataclass(frozen=True)
class ZoneRow:
    id: int
    name: str
    kind: str
    severity: str
    geometry: dict[str, Any]


@dataclass(frozen=True)
class ChildRow:
    id: int
    school_id: int
    route_id: int | None
    name: str


@dataclass(frozen=True)
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
            for r in await conn.fetch("SELECT id, school_id, name, geometry, corridor_m, windows FROM routes")
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
            r["id"]: GuardianRow(r["id"], r["name"], r["phone"], r["language"], tuple(r["channels"]))
            for r in await conn.fetch("SELECT id, name, phone, language, channels FROM guardians")
        }
        links: dict[int, list[int]] = {}
        for r in await conn.fetch(
            "SELECT child_id, guardian_id FROM child_guardians ORDER BY child_id, priority, guardian_id"
        ):
            links.setdefault(r["child_id"], []).append(r["guardian_id"])
    return RegistryRows(
        schools, routes, zones, children, tags, guardians, {c: tuple(g) for c, g in links.items()}
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
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO guardians (name, phone, language, channels) VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            phone,
            language,
            list(channels),
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
                "geometry": r.geometry,
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
