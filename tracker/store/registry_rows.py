"""The registry as the pipeline reads it: its Row types and ``load_registry``, which reads them all in
one transaction. tracker.registry_view builds the pipeline's index from these rows; ``world_geojson``
turns them into the world the simulator and ``tracker replay`` read (the CLI and ``GET /api/v1/world``).

What the alert rules read beside these rows (school calendars, arrival times, zone hours, readers) is
tracker.store.alert_rules; the HTTP API's scoped reads and writes are tracker.store.registry_crud.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import msgspec

from tracker.store.alert_rules import AlertRuleRows, load_alert_rules

T = TypeVar("T")


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
    geometry: dict[str, Any] | str | None
    """GeoJSON, or its JSON text as read by load_registry (a quarter of the memory of the decoded
    lists: at city scale the routes' vertices are the registry's largest part); see ``geojson``.
    None in a registry view's rows: the view's index holds the route, the text is let go
    (tracker.registry_view.build_view)."""
    corridor_m: float
    windows: list[dict[str, Any]]
    mode: str = "walk"  # walk, bicycle, shuttle or bus (tracker.monitor.schedule.ROUTE_MODES)

    @property
    def geojson(self) -> dict[str, Any]:
        if self.geometry is None:
            raise ValueError(f"route {self.id}: its geometry is not kept in a registry view's rows")
        if isinstance(self.geometry, str):  # (msgspec: the values json.loads gives, a few times faster)
            geojson: dict[str, Any] = msgspec.json.decode(self.geometry)
            return geojson
        return self.geometry


@dataclass(frozen=True, slots=True)
class ZoneRow:
    id: int
    name: str
    kind: str
    severity: str
    geometry: dict[str, Any] | None
    """GeoJSON; None in a registry view's rows (its index holds the zone: see RouteRow.geometry)"""

    @property
    def geojson(self) -> dict[str, Any]:
        if self.geometry is None:
            raise ValueError(f"zone {self.id}: its geometry is not kept in a registry view's rows")
        return self.geometry


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
    """Everything the pipeline needs from the registry, read in one transaction.

    The per-child and per-guardian mappings are dicts when built by hand (tests, a world document),
    and arrays when read by ``load_registry`` (tracker.store.registry_tables: the same keys and
    values, without a Python object per row)."""

    schools: Mapping[int, SchoolRow] = field(default_factory=dict)
    routes: Mapping[int, RouteRow] = field(default_factory=dict)
    zones: Mapping[int, ZoneRow] = field(default_factory=dict)
    children: Mapping[int, ChildRow] = field(default_factory=dict)
    tags: Mapping[str, int] = field(default_factory=dict)  # tag id -> child id
    guardians: Mapping[int, GuardianRow] = field(default_factory=dict)
    child_guardians: Mapping[int, tuple[int, ...]] = field(
        default_factory=dict
    )  # child -> guardians by priority
    devices: dict[str, str] = field(default_factory=dict)  # "owntracks:user/device" -> tag id
    # "owntracks:user/device" -> the secretbox key of a device that encrypts (a secret: not in repr)
    device_keys: dict[str, bytes] = field(default_factory=dict, repr=False)


READ_CHUNK = 20_000
"""Rows of a per-child table read at a time by ``load_registry``."""


async def _parts(conn: asyncpg.Connection, query: str, part: Callable[[list[asyncpg.Record]], T]) -> list[T]:
    """A query's rows ``READ_CHUNK`` at a time through a cursor (in the caller's transaction), each
    chunk made arrays by ``part`` before the next is read. A city's 400,000 children or guardians
    fetched as Records at once, beside what was made of them, were a worker's peak at start: 700 MiB
    where it then held 560 (bench/worker_memory.py)."""
    cursor = await conn.cursor(query)
    parts: list[T] = []
    while rows := await cursor.fetch(READ_CHUNK):
        parts.append(part(rows))
    return parts


async def load_registry(conn: asyncpg.Connection) -> RegistryRows:
    from tracker.store.registry_tables import ChildTable, GuardianTable, LinkTable, TagTable

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        schools = {
            r["id"]: SchoolRow(r["id"], r["name"], r["timezone"], r["lon"], r["lat"])
            for r in await conn.fetch("SELECT id, name, timezone, lon, lat FROM schools")
        }
        routes = {
            r["id"]: RouteRow(
                r["id"],
                r["school_id"],
                r["name"],
                r["geometry"],
                float(r["corridor_m"]),
                r["windows"],
                r["mode"],
            )
            for r in await conn.fetch(
                "SELECT id, school_id, name, geometry::text AS geometry, corridor_m, windows, mode"
                " FROM routes"
            )
        }
        zones = {
            # (a geometry stored as JSON null, by hand: {}, which the view's index refuses alone)
            r["id"]: ZoneRow(r["id"], r["name"], r["kind"], r["severity"], r["geometry"] or {})
            for r in await conn.fetch(
                "SELECT id, name, kind, severity, geometry FROM danger_zones WHERE active"
            )
        }
        # the per-child tables a chunk at a time, each chunk made arrays before the next is read
        children = ChildTable.from_parts(
            await _parts(
                conn, "SELECT id, school_id, route_id, name FROM children ORDER BY id", ChildTable.part
            )
        )
        tags = TagTable.from_parts(await _parts(conn, "SELECT id, child_id FROM tags", TagTable.part))
        guardians = GuardianTable.from_parts(
            await _parts(
                conn,
                "SELECT id, name, phone, language, channels FROM guardians ORDER BY id",
                GuardianTable.part,
            )
        )
        links = LinkTable.from_parts(
            await _parts(
                conn,
                "SELECT child_id, guardian_id FROM child_guardians ORDER BY child_id, priority, guardian_id",
                LinkTable.part,
            )
        )
        devices: dict[str, str] = {}
        device_keys: dict[str, bytes] = {}
        for r in await conn.fetch("SELECT protocol, device, tag_id, secret_key FROM tag_devices"):
            devices[f"{r['protocol']}:{r['device']}"] = r["tag_id"]
            if r["secret_key"] is not None:
                device_keys[f"{r['protocol']}:{r['device']}"] = bytes(r["secret_key"])
    return RegistryRows(
        schools,
        routes,
        zones,
        children,
        tags,
        guardians,
        links,
        devices,
        device_keys,
    )


async def load_world(conn: asyncpg.Connection) -> dict[str, Any]:
    """The registry and its alert rules as one world document (``GET /api/v1/world``)."""
    return world_geojson(await load_registry(conn), await load_alert_rules(conn))


def world_geojson(rows: RegistryRows, rules: AlertRuleRows | None = None) -> dict[str, Any]:
    """The registry as a world.v1 FeatureCollection (schemas/world.v1.json): what the simulator reads,
    and, with the alert rules (school calendars and fences, route arrivals, zone hours), all that the
    monitor decides with, so that ``tracker replay`` judges fixes as the service does."""
    by_route: dict[int, list[dict[str, Any]]] = {}
    by_school: dict[int, list[dict[str, Any]]] = {}  # the children without a route
    tags_by_child: dict[int, list[str]] = {}
    for tag, child_id in sorted(rows.tags.items()):
        tags_by_child.setdefault(child_id, []).append(tag)
    for child in rows.children.values():
        if child.route_id is None:
            walkers = by_school.setdefault(child.school_id, [])
        else:
            walkers = by_route.setdefault(child.route_id, [])
        for tag in tags_by_child.get(child.id, []):
            walkers.append({"id": child.id, "name": child.name, "tag": tag})
    features: list[dict[str, Any]] = []
    for s in rows.schools.values():
        props: dict[str, Any] = {"kind": "school", "id": s.id, "name": s.name, "timezone": s.timezone}
        if rules is not None and (school := rules.schools.get(s.id)) is not None:
            props |= {
                "windows": school.windows,
                "closed_days": sorted(d.isoformat() for d in school.closed_days),
                "fence_m": school.fence_m,
            }
        if by_school.get(s.id):
            props["children"] = by_school[s.id]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                "properties": props,
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
                    "mode": r.mode,
                    "windows": r.windows,
                    "arrivals": [] if rules is None else rules.route_arrivals.get(r.id, []),
                    "children": by_route.get(r.id, []),
                },
            }
        )
    for z in rows.zones.values():
        features.append(
            {
                "type": "Feature",
                "geometry": z.geojson,
                "properties": {
                    "kind": "zone",
                    "id": z.id,
                    "name": z.name,
                    "zone_kind": z.kind,
                    "severity": z.severity,
                    "hours": None if rules is None else rules.zone_hours.get(z.id),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}
