"""Shared by the API tests (it holds no test of its own): the app in-process on a real PostgreSQL
database, and a city of two schools whose staff, guardians and devices the tests act as.

School A and school B each have a route, a child on it with a GPS tag, a guardian (registered by the
school), an RFID reader and a position; the city has one danger zone. Tokens: the city's
administrator, staff of each school, each guardian, the device of each tag.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.helpers import ALL_WEEK, LAT0, LON0, line, lonlat, square
from tracker.alerts.hub import WebSocketHub
from tracker.api import AppContext, create_app
from tracker.config import Settings
from tracker.store import seeding
from tracker.store.db import create_pool
from tracker.store.tokens import issue_token

REGISTRY_TABLES = (
    "schools",
    "routes",
    "danger_zones",
    "readers",
    "children",
    "tags",
    "guardians",
    "child_guardians",
    "api_tokens",
    "alerts",
)


@dataclass
class Side:
    """One school's part of the city."""

    dx: float  # metres east of (LON0, LAT0): where the school stands
    school_id: int
    route_id: int
    child_id: int
    tag: str
    reader: str
    guardian_id: int
    staff: str  # token of the school's staff
    guardian: str  # token of the child's guardian
    device: str  # token of the child's tag
    alert_id: int


@dataclass
class City:
    a: Side
    b: Side
    zone_id: int
    admin: str


@dataclass
class Api:
    ctx: AppContext
    http: httpx.AsyncClient

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ctx.pool


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "mqtt_url": "mqtt://unused:1",
        "data_dir": tmp_path,
    }
    return Settings(**(values | overrides))


@contextlib.asynccontextmanager
async def running_api(database_url: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Api]:
    """The FastAPI app in-process (httpx's ASGI transport) on a fresh, migrated database; each test
    module turns it into its `api` fixture."""
    pool = await create_pool(database_url)
    ctx = AppContext(settings=api_settings(database_url, tmp_path, **settings), pool=pool, hub=WebSocketHub())
    app = create_app(ctx)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tracker"
        ) as http:
            yield Api(ctx, http)
    finally:
        await pool.close()


async def _side(conn: asyncpg.Connection, name: str, dx: float) -> Side:
    lon, lat = lonlat(dx, 0)
    school = await seeding.add_school(conn, name=f"School {name}", lon=lon, lat=lat)
    route = await seeding.add_route(
        conn,
        school_id=school,
        name=f"Walk {name}",
        geometry=line((dx - 600, 0), (dx, 0)),
        corridor_m=30,
        windows=ALL_WEEK,
    )
    child = await seeding.add_child(conn, school_id=school, route_id=route, name=f"Child {name}")
    tag = f"tag-{name.lower()}"
    await seeding.add_tag(conn, tag_id=tag, child_id=child)
    reader = f"gate-{name.lower()}"
    await conn.execute(
        "INSERT INTO readers (id, school_id, name, role, lon, lat) VALUES ($1, $2, 'Gate', 'gate', $3, $4)",
        reader,
        school,
        lon,
        lat,
    )
    guardian = await seeding.add_guardian(
        conn, name=f"Parent {name}", phone="+821000000001", language="en", school_id=school
    )
    await seeding.link_guardian(conn, child_id=child, guardian_id=guardian)
    x, y = lonlat(dx - 300, 5)
    await conn.execute(
        "INSERT INTO positions (tag_id, ts, child_id, lon, lat, acc, batt, received_at, route_distance_m)"
        " VALUES ($1, now() - interval '1 minute', $2, $3, $4, 9, 80, now(), 5)",
        tag,
        child,
        x,
        y,
    )
    alert = await conn.fetchval(
        "INSERT INTO alerts (child_id, kind, severity, opened_at, updated_at, last_lon, last_lat, last_acc,"
        " last_fix_ts) VALUES ($1, 'sos', 'critical', now(), now(), $2, $3, 9, now()) RETURNING id",
        child,
        x,
        y,
    )
    return Side(
        dx=dx,
        school_id=school,
        route_id=route,
        child_id=child,
        tag=tag,
        reader=reader,
        guardian_id=guardian,
        staff=await issue_token(conn, role="school", school_id=school, label=f"staff {name}"),
        guardian=await issue_token(conn, role="guardian", guardian_id=guardian),
        device=await issue_token(conn, role="device", tag_id=tag),
        alert_id=alert,
    )


async def build_city(pool: asyncpg.Pool) -> City:
    async with pool.acquire() as conn:
        a = await _side(conn, "A", 0)
        b = await _side(conn, "B", 3000)
        zone = await seeding.add_zone(conn, name="Site", kind="construction", geometry=square(-300, 150, 40))
        admin = await issue_token(conn, role="admin", label="city")
    return City(a, b, zone, admin)


async def fingerprint(pool: asyncpg.Pool) -> str:
    """A digest of every registry row: equal before and after means nothing was written."""
    digest = hashlib.sha256()
    async with pool.acquire() as conn:
        for table in REGISTRY_TABLES:
            rows = await conn.fetch(f"SELECT to_jsonb(t)::text AS j FROM {table} t ORDER BY 1")
            digest.update(table.encode())
            for r in rows:
                digest.update(r["j"].encode())
    return digest.hexdigest()


def point(x: float, y: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": list(lonlat(x, y))}


def far_past(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


__all__ = [
    "LAT0",
    "LON0",
    "Api",
    "City",
    "bearer",
    "build_city",
    "fingerprint",
    "line",
    "point",
    "square",
]
