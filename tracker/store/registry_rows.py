"""The registry as the pipeline reads it: its Row types and ``load_registry``, which reads them all in
one transaction. tracker.registry_view builds the pipeline's index from these rows; ``world_geojson``
turns them into the world the simulator and ``tracker replay`` read (the CLI and ``GET /api/v1/world``).

What the alert rules read beside these rows (school calendars, arrival times, zone hours, readers) is
tracker.store.alert_rules; the HTTP API's scoped reads and writes are tracker.store.registry_crud.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tracker.store.alert_rules import AlertRuleRows, load_alert_rules


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
    mode: str = "walk"  # walk, bicycle, shuttle or bus (tracker.monitor.ROUTE_MODES)

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
    # "owntracks:user/device" -> the secretbox key of a device that encrypts (a secret: not in repr)
    device_keys: dict[str, bytes] = field(default_factory=dict, repr=False)


async def load_registry(conn: asyncpg.Connection) -> RegistryRows:
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
        {c: tuple(g) for c, g in links.items()},
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
                "geometry": z.geometry,
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
