"""Bulk import and export of routes and danger zones: all or nothing.

An import checks every feature first (the caller's right to write it, the references it makes, its
shape against the geofence index and its school) and reports every problem found; only when there is
none does it write them all, in one transaction. ``mode="upsert"`` updates the route or zone a
feature's id names and creates the others; ``mode="create"`` ignores ids and creates every feature.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from tracker.importers import Draft, GeometryProblem, Problem, validate_route_geometry, validate_zone_geometry
from tracker.importers.models import RouteProps, ZoneProps
from tracker.store import registry_crud
from tracker.store.tokens import Principal

Mode = Literal["upsert", "create"]


@dataclass
class ImportOutcome:
    created: list[dict[str, Any]] = field(default_factory=list)  # {"kind", "id", "name", "loc"}
    updated: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False


@dataclass(frozen=True)
class _Checked:
    draft: Draft
    school_id: int | None
    geometry: dict[str, Any]
    update: bool


async def apply_import(
    conn: asyncpg.Connection,
    who: Principal,
    drafts: Sequence[Draft],
    *,
    mode: Mode = "upsert",
    dry_run: bool = False,
    max_distance_m: float = 0.0,
    found: Sequence[Problem] = (),
) -> ImportOutcome | list[Problem]:
    """Write every draft, or nothing and the list of every problem: ``found`` are those already found in
    reading the file (the drafts are then still checked, so that one answer names them all)."""
    problems: list[Problem] = list(found)
    pending: list[tuple[Draft, int | None, bool]] = []
    seen: dict[tuple[str, int], Problem] = {}
    places: dict[int, tuple[float, float]] = {}
    for d in drafts:
        update = mode == "upsert" and d.id is not None
        if update:
            assert d.id is not None
            key = (d.kind, d.id)
            if key in seen:
                problems.append(
                    Problem(d.loc, f"{d.kind} {d.id} appears twice in the file (also at {seen[key].loc})")
                )
                continue
            seen[key] = Problem(d.loc, "")
            if not await registry_crud.visible(conn, who, d.kind, d.id, write=True):
                problems.append(
                    Problem(
                        (*d.loc, "id"),
                        f"no {d.kind} {d.id} that you may change: leave the id out to create a new one,"
                        " or import with mode=create",
                    )
                )
                continue
        if isinstance(d.props, ZoneProps):
            if who.role != "admin":
                problems.append(Problem(d.loc, "danger zones are registered by the city's administrators"))
                continue
            pending.append((d, None, update))
            continue
        school = await _route_school(conn, who, d, update)
        if isinstance(school, Problem):
            problems.append(school)
            continue
        if school not in places:
            place = await registry_crud.school_place(conn, school)
            assert place is not None
            places[school] = place
        pending.append((d, school, update))
    every_school = await registry_crud.school_places(conn)
    checked, found = await asyncio.to_thread(_check_shapes, pending, places, every_school, max_distance_m)
    problems += found
    if problems:
        return sorted(problems, key=lambda p: [str(x) for x in p.loc])
    outcome = ImportOutcome(dry_run=dry_run)
    if dry_run:
        for c in checked:
            entry: dict[str, Any] = {
                "kind": c.draft.kind,
                "id": c.draft.id if c.update else None,
                "name": c.draft.props.name,
            }
            (outcome.updated if c.update else outcome.created).append(entry | {"loc": list(c.draft.loc)})
        return outcome
    async with conn.transaction():
        for c in checked:
            values = _values(c)
            if c.update:
                assert c.draft.id is not None
                if c.draft.kind == "route":
                    await registry_crud.update_route(conn, who, c.draft.id, values)
                else:
                    await registry_crud.update_zone(conn, who, c.draft.id, values)
                new_id = c.draft.id
            elif c.draft.kind == "route":
                new_id = await registry_crud.create_route(conn, values)
            else:
                new_id = await registry_crud.create_zone(conn, values)
            done = {"kind": c.draft.kind, "id": new_id, "name": c.draft.props.name, "loc": list(c.draft.loc)}
            (outcome.updated if c.update else outcome.created).append(done)
    return outcome


async def _route_school(conn: asyncpg.Connection, who: Principal, d: Draft, update: bool) -> int | Problem:
    assert isinstance(d.props, RouteProps)
    school_id = d.props.school_id
    if school_id is None and update:
        assert d.id is not None
        school_id = await conn.fetchval("SELECT school_id FROM routes WHERE id = $1", d.id)
    if school_id is None:
        school_id = who.school_id if who.role == "school" else None
    if school_id is None:
        return Problem(
            (*d.loc, "properties", "school_id"),
            "a route needs a school_id (in the feature, or as ?school_id=)",
        )
    if not await registry_crud.visible(conn, who, "school", school_id, write=True):
        if who.role == "school":
            msg = f"school {school_id} is not your school: you may register routes for school {who.school_id}"
        else:
            msg = f"no school {school_id}"
        return Problem((*d.loc, "properties", "school_id"), msg)
    return int(school_id)


def _check_shapes(
    pending: list[tuple[Draft, int | None, bool]],
    places: dict[int, tuple[float, float]],
    every_school: list[tuple[float, float]],
    max_distance_m: float,
) -> tuple[list[_Checked], list[Problem]]:
    checked: list[_Checked] = []
    problems: list[Problem] = []
    for d, school_id, update in pending:
        try:
            if isinstance(d.props, RouteProps):
                assert school_id is not None
                geom = validate_route_geometry(
                    d.geometry, d.props.corridor_m, school=places[school_id], max_distance_m=max_distance_m
                )
            else:
                geom = validate_zone_geometry(d.geometry, schools=every_school, max_distance_m=max_distance_m)
        except GeometryProblem as e:
            problems.append(Problem((*d.loc, "geometry", *e.loc), f"{d.label}: {e.msg}"))
            continue
        checked.append(_Checked(d, school_id, geom, update))
    return checked, problems


def _values(c: _Checked) -> dict[str, Any]:
    p = c.draft.props
    if isinstance(p, RouteProps):
        return {
            "school_id": c.school_id,
            "name": p.name,
            "geometry": c.geometry,
            "corridor_m": p.corridor_m,
            "mode": p.mode,
            "windows": [w.model_dump() for w in p.windows],
            "arrivals": [a.model_dump() for a in p.arrivals],
        }
    return {
        "name": p.name,
        "kind": p.kind,
        "severity": p.severity,
        "geometry": c.geometry,
        "hours": None if p.hours is None else [w.model_dump() for w in p.hours],
        "active": p.active,
    }


async def export_features(
    conn: asyncpg.Connection | asyncpg.Pool,
    who: Principal,
    *,
    kind: Literal["route", "zone"] | None = None,
    school_id: int | None = None,
) -> list[dict[str, Any]]:
    """The routes and zones the caller may see, as features an import reads back (world.v1 style:
    ``properties.kind`` is "route" or "zone", a zone's own kind is ``zone_kind``)."""
    features: list[dict[str, Any]] = []
    page = 1000
    if kind in (None, "route"):
        offset = 0
        while True:
            rows, total = await registry_crud.list_routes(
                conn, who, school_id=school_id, limit=page, offset=offset
            )
            features += [_route_feature(r) for r in rows]
            offset += page
            if offset >= total:
                break
    if kind in (None, "zone") and school_id is None:
        offset = 0
        while True:
            rows, total = await registry_crud.list_zones(
                conn, who, kind=None, active=None, limit=page, offset=offset
            )
            features += [_zone_feature(z) for z in rows]
            offset += page
            if offset >= total:
                break
    return features


def _route_feature(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": r["id"],
        "geometry": r["geometry"],
        "properties": {
            "kind": "route",
            "id": r["id"],
            "name": r["name"],
            "school_id": r["school_id"],
            "corridor_m": float(r["corridor_m"]),
            "mode": r["mode"],
            "windows": r["windows"],
            "arrivals": r["arrivals"],
        },
    }


def _zone_feature(z: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": z["id"],
        "geometry": z["geometry"],
        "properties": {
            "kind": "zone",
            "id": z["id"],
            "name": z["name"],
            "zone_kind": z["kind"],
            "severity": z["severity"],
            "hours": z["hours"],
            "active": z["active"],
        },
    }
