"""The registry as the HTTP API reads and writes it (and the GeoJSON import, tracker.store.imports):
schools, routes, danger zones, RFID readers, children, tags, guardians.

The reads, updates and deletes take the caller (a Principal) and are limited to what the caller may
see or change (the rules are in tracker.store.scope): a row outside the caller's scope is neither
returned nor changed, exactly as if it did not exist. Writes return the id written, or None when the
row does not exist for this caller; the caller re-reads what it needs.

The inserts (``create_*``) and ``set_child_guardians`` take no caller: their endpoint has checked
first that the caller may write there (by role, or ``visible`` on the school or child the rows belong
to). Nor do the facts that are nobody's secret (``school_place``, ``tag_exists``: tag ids are
hardware serials, unique in the city). Geometry goes in and out as GeoJSON dicts (lon/lat, RFC 7946),
checked before a write (tracker.importers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from tracker.store import scope
from tracker.store.alerts import cancel_deliveries
from tracker.store.tokens import Principal

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


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
        "r.id, r.school_id, r.name, r.geometry, r.corridor_m, r.mode, r.windows, r.arrivals, r.created_at,"
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


async def active_zone_geometries(conn: Conn) -> list[tuple[int, dict[str, Any]]]:
    """Every zone that is on (id, GeoJSON): where routes meet zones is worked out against them."""
    rows = await conn.fetch("SELECT id, geometry FROM danger_zones WHERE active ORDER BY id")
    return [(r["id"], r["geometry"]) for r in rows]


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
    """A child's record; its open alerts and last position only of the caller's periods (school staff
    of a child who moved school: from the move on, tracker.store.scope.during_callers_school)."""
    return (
        "c.id, c.name, c.school_id, c.route_id, c.school_since, c.created_at,"
        " (SELECT coalesce(array_agg(t.id ORDER BY t.id), '{}') FROM tags t WHERE t.child_id = c.id) AS tags,"
        " (SELECT coalesce(jsonb_agg(jsonb_build_object('guardian_id', cg.guardian_id,"
        "   'priority', cg.priority) ORDER BY cg.priority, cg.guardian_id), '[]'::jsonb)"
        "   FROM child_guardians cg WHERE cg.child_id = c.id) AS guardians,"
        " (SELECT count(*) FROM alerts a WHERE a.child_id = c.id AND a.state = 'open'"
        f"   AND {scope.during_callers_school(who, 'c', 'a.opened_at')}) AS open_alerts,"
        " p.ts AS p_ts, p.lon AS p_lon, p.lat AS p_lat, p.acc AS p_acc, p.batt AS p_batt,"
        " p.tag_id AS p_tag, p.route_distance_m AS p_route_distance_m"
    )


def _child_source(who: Principal) -> str:
    return (
        "children c CROSS JOIN me LEFT JOIN LATERAL (SELECT q.ts, q.lon, q.lat, q.acc, q.batt, q.tag_id,"
        " q.route_distance_m FROM positions q WHERE q.child_id = c.id"
        f" AND {scope.during_callers_school(who, 'c', 'q.ts')} ORDER BY q.ts DESC LIMIT 1) p ON true"
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
        source=_child_source(who),
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
        source=_child_source(who),
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
) -> list[int]:
    """Replace the child's guardians by (guardian id, priority) pairs; run it in a transaction. Returns
    the guardians unlinked: from now on they see nothing of the child (tracker.store.scope), and what
    was still to be sent to them about the child is cancelled (tracker.store.alerts.cancel_deliveries),
    so their open websockets get nothing more of it either."""
    kept = [g for g, _ in links]
    removed = [
        r["guardian_id"]
        for r in await conn.fetch(
            "DELETE FROM child_guardians WHERE child_id = $1 AND NOT (guardian_id = ANY($2::bigint[]))"
            " RETURNING guardian_id",
            child_id,
            kept,
        )
    ]
    if links:
        await conn.executemany(
            "INSERT INTO child_guardians (child_id, guardian_id, priority) VALUES ($1, $2, $3)"
            " ON CONFLICT (child_id, guardian_id) DO UPDATE SET priority = EXCLUDED.priority",
            [(child_id, g, p) for g, p in links],
        )
    if removed:
        await cancel_deliveries(conn, child_id, removed, "guardian unlinked from the child")
    return sorted(removed)


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
        # the filter names a child the caller may see, else it finds nothing: a school filtering by
        # another school's child must not learn which of its own guardians are linked to it
        where=f"{scope.guardians(who)} AND ($4::bigint IS NULL OR g.id IN"
        " (SELECT guardian_id FROM child_guardians WHERE child_id = $4"
        f" AND child_id IN (SELECT c.id FROM children c WHERE {scope.children(who)})))",
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
    """Admin: any guardian; school staff: a guardian their school registered and who is theirs alone
    (no child at another school, never signed in: tracker.store.scope)."""
    if who.role == "admin":
        allowed = "true"
    elif who.role == "school":
        allowed = f"g.school_id = me.school_id AND {scope.guardian_theirs_alone('g')}"
    else:
        allowed = "false"
    return await _delete(conn, who, table="guardians", alias="g", allowed=allowed, key=guardian_id)


@dataclass(frozen=True)
class GuardianStanding:
    """Why a school's staff may or may not change a guardian they see (the reasons of a 403)."""

    registered_here: bool  # the caller's school registered them
    children_elsewhere: bool  # linked to a child of another school
    signed_in: bool  # has ever had a guardian token

    @property
    def theirs_alone(self) -> bool:
        return not self.children_elsewhere and not self.signed_in

    def why_not(self, guardian_id: int, action: str, who_can: str) -> str:
        """The reason a staff member may not ``action`` ("change their contact details"), and who can."""
        if self.children_elsewhere:
            why = "also has children at another school"
        elif self.signed_in:
            why = "has signed in (their record and sign-in are theirs)"
        else:
            why = "was registered by another school or the city"
        return f"guardian {guardian_id} {why}: a school's staff cannot {action}; {who_can}"


async def guardian_standing(conn: Conn, who: Principal, guardian_id: int) -> GuardianStanding:
    """The guardian's standing for the calling school's staff (the caller sees the guardian)."""
    row = await conn.fetchrow(
        f"WITH {scope.ME} SELECT g.school_id IS NOT DISTINCT FROM me.school_id AS registered_here,"
        f" {scope.guardian_children_elsewhere('g')} AS children_elsewhere,"
        f" {scope.guardian_signed_in('g')} AS signed_in FROM guardians g, me WHERE g.id = $4",
        *scope.me_args(who),
        guardian_id,
    )
    assert row is not None
    return GuardianStanding(row["registered_here"], row["children_elsewhere"], row["signed_in"])
