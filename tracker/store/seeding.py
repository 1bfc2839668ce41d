"""Seeding the registry: plain inserts of schools, routes, danger zones, children, tags and guardians,
each returning the id it wrote.

They are what the demo city (tracker.demo.city) and the tests build their worlds with. Unlike the
HTTP API's writes (tracker.store.registry_crud) they check nobody's scope and validate no geometry:
the caller is trusted, and GeoJSON goes in as given (lon/lat, RFC 7946).
"""

from __future__ import annotations

from typing import Any

import asyncpg


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
