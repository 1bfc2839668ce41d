"""Children, their tags and guardians (with the escalation order), and the children's positions.

Every staff read of a child's position (school staff, city administrators) is written to the audit log
(tracker.store.audit) before the answer leaves; a guardian's reads of their own children are not.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

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
    ChildIn,
    ChildOut,
    ChildPatch,
    FixFeature,
    GuardianIn,
    GuardianLink,
    GuardianOut,
    GuardianPatch,
    Page,
    PositionRead,
    TagCreated,
    TagCredentials,
    TagIn,
    TagOut,
    TagPatch,
    Track,
)
from tracker.api.ws import close_guardian_sockets
from tracker.broker_config import broker_user_refusal
from tracker.store import audit, history, registry_crud
from tracker.store.devices import broker_user_taken
from tracker.store.tokens import Issuer, Principal, create_token, mosquitto_hash, new_mqtt_password

router = APIRouter()
STAFF = ("admin", "school")
READERS = ("admin", "school", "guardian")


# --- children ------------------------------------------------------------------------------------------
def _position(r: dict[str, Any]) -> dict[str, Any] | None:
    if r["p_ts"] is None:
        return None
    return {
        "ts": r["p_ts"],
        "lon": r["p_lon"],
        "lat": r["p_lat"],
        "acc": None if r["p_acc"] is None else float(r["p_acc"]),
        "batt": r["p_batt"],
        "tag_id": r["p_tag"],
        "route_distance_m": None if r["p_route_distance_m"] is None else float(r["p_route_distance_m"]),
    }


def child_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "school_id": r["school_id"],
        "school_since": r["school_since"],
        "route_id": r["route_id"],
        "guardians": r["guardians"],
        "tags": list(r["tags"]),
        "open_alerts": r["open_alerts"],
        "last_position": _position(r),
        "created_at": r["created_at"],
    }


async def _audited(conn: Any, who: Principal, rows: list[dict[str, Any]], endpoint: str) -> None:
    """Log the positions a staff answer holds (one per child that has one)."""
    await audit.record_position_reads(
        conn, who, {r["id"]: 1 for r in rows if r["p_ts"] is not None}, endpoint
    )


@router.get("/api/v1/children", tags=["children"], response_model=Page[ChildOut], responses=LIST)
async def list_children(
    school_id: IdQuery = None,
    route_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """The children the caller may see, with their last known position and open alerts."""
    async with ctx.pool.acquire() as conn:
        rows, total = await registry_crud.list_children(
            conn, who, school_id=school_id, route_id=route_id, limit=limit, offset=offset
        )
        await _audited(conn, who, rows, "GET /api/v1/children")
    return {"items": [child_out(r) for r in rows], "total": total, "limit": limit, "offset": offset}


async def _check_child_refs(
    conn: asyncpg.Connection,
    who: Principal,
    *,
    school_id: int,
    route_id: int | None,
    guardians: list[GuardianLink] | None,
) -> None:
    if route_id is not None:
        route_school = (
            await conn.fetchval("SELECT school_id FROM routes WHERE id = $1", route_id)
            if await registry_crud.visible(conn, who, "route", route_id)
            else None
        )
        if route_school is None:
            invalid(["body", "route_id"], f"no route {route_id}")
        if route_school != school_id:
            invalid(
                ["body", "route_id"],
                f"route {route_id} belongs to school {route_school}, not to the child's school {school_id}",
            )
    for i, g in enumerate(guardians or []):
        if not await registry_crud.visible(conn, who, "guardian", g.guardian_id):
            invalid(["body", "guardians", i, "guardian_id"], f"no guardian {g.guardian_id}")


@router.post(
    "/api/v1/children",
    tags=["children"],
    status_code=status.HTTP_201_CREATED,
    response_model=ChildOut,
    responses=CREATE,
)
async def create_child(
    body: ChildIn, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Register a child of a school, optionally on a route and with guardians in escalation order."""
    school_id = body.school_id if body.school_id is not None else who.school_id
    if school_id is None:
        invalid(["body", "school_id"], "school_id is required")
    if who.role == "school" and school_id != who.school_id:
        invalid(["body", "school_id"], f"school {school_id} is not your school ({who.school_id})")
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await registry_crud.visible(conn, who, "school", school_id, write=True):
            invalid(["body", "school_id"], f"no school {school_id}")
        await _check_child_refs(
            conn, who, school_id=school_id, route_id=body.route_id, guardians=body.guardians
        )
        child_id = await registry_crud.create_child(
            conn, {"name": body.name, "school_id": school_id, "route_id": body.route_id}
        )
        await registry_crud.set_child_guardians(
            conn, child_id, [(g.guardian_id, g.priority) for g in body.guardians]
        )
        row = await registry_crud.get_child(conn, who, child_id)
    assert row is not None
    return child_out(row)


@router.get("/api/v1/children/{child_id}", tags=["children"], response_model=ChildOut, responses=READ)
async def get_child(
    child_id: IdPath, who: Principal = Depends(require(*READERS)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    async with ctx.pool.acquire() as conn:
        row = await registry_crud.get_child(conn, who, child_id)
        if row is None:
            not_found("child", child_id)
        await _audited(conn, who, [row], "GET /api/v1/children/{child_id}")
    return child_out(row)


@router.patch("/api/v1/children/{child_id}", tags=["children"], response_model=ChildOut, responses=WRITE)
async def update_child(
    child_id: IdPath,
    body: ChildPatch,
    who: Principal = Depends(require(*STAFF)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Change a child: name, route, guardians (replaced as a whole), school (administrators).

    A move to another school takes effect from the start of today in the receiving school's time zone:
    from then on the old school's staff see nothing more of the child, and the new school's see the
    child's positions, status and alerts from then on only (tracker.store.scope, "time-bounded
    visibility"). Only the city's administrators move a child: the receiving school cannot take a
    child by itself, and a school cannot hand a child (and their family's contact) to another school
    on its own. The child's route goes with the old school: the move sets a route of the new school,
    or none."""
    values = not_null(body.model_dump(exclude_unset=True, exclude={"guardians"}), ("route_id",), ["body"])
    if "guardians" in body.model_fields_set and body.guardians is None:
        invalid(["body", "guardians"], "guardians cannot be null (an empty list removes them all)")
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await registry_crud.get_child(conn, who, child_id)
        if current is None:
            not_found("child", child_id)
        school_id = values.get("school_id", current["school_id"])
        if school_id != current["school_id"]:
            if who.role != "admin":
                invalid(
                    ["body", "school_id"], "only the city's administrators move a child to another school"
                )
            if not await registry_crud.visible(conn, who, "school", school_id):
                invalid(["body", "school_id"], f"no school {school_id}")
            if "route_id" not in values:
                values["route_id"] = None  # the old school's route is no longer the child's
        await _check_child_refs(
            conn, who, school_id=school_id, route_id=values.get("route_id"), guardians=body.guardians
        )
        await registry_crud.update_child(conn, who, child_id, values)
        if body.guardians is not None:
            await registry_crud.set_child_guardians(
                conn, child_id, [(g.guardian_id, g.priority) for g in body.guardians]
            )
        row = await registry_crud.get_child(conn, who, child_id)
    assert row is not None
    return child_out(row)


@router.put(
    "/api/v1/children/{child_id}/guardians",
    tags=["children"],
    response_model=list[GuardianLink],
    responses=WRITE,
)
async def set_guardians(
    child_id: IdPath,
    body: list[GuardianLink],
    who: Principal = Depends(require(*STAFF)),
    ctx: AppContext = Depends(context),
) -> list[dict[str, Any]]:
    """Replace the child's guardians and their escalation order (priority 1 is told first). The link rows
    are the child's school's: linking or unlinking a guardian (any guardian the school sees, a shared
    one too) changes what they see and receive of this child only, never of another school's child."""
    if len(body) > 10:
        invalid(["body"], f"at most 10 guardians per child, got {len(body)}")
    ids = [g.guardian_id for g in body]
    dup = next((g for g in ids if ids.count(g) > 1), None)
    if dup is not None:
        invalid(["body"], f"guardian {dup} is listed twice")
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await registry_crud.get_child(conn, who, child_id)
        if current is None or not await registry_crud.visible(conn, who, "child", child_id, write=True):
            not_found("child", child_id)
        await _check_child_refs(conn, who, school_id=current["school_id"], route_id=None, guardians=body)
        await registry_crud.set_child_guardians(conn, child_id, [(g.guardian_id, g.priority) for g in body])
        row = await registry_crud.get_child(conn, who, child_id)
    assert row is not None
    return list(row["guardians"])


@router.delete(
    "/api/v1/children/{child_id}", tags=["children"], status_code=status.HTTP_204_NO_CONTENT, responses=READ
)
async def delete_child(
    child_id: IdPath, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> Response:
    """Delete a child with its tags, alerts and state (positions age out with the retention period)."""
    if not await registry_crud.delete_child(ctx.pool, who, child_id):
        not_found("child", child_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- positions -----------------------------------------------------------------------------------------
def fix_feature(child_id: int, p: dict[str, Any] | None) -> dict[str, Any]:
    if p is None:
        return {"type": "Feature", "geometry": None, "properties": {"child_id": child_id, "ts": None}}
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [p["lon"], p["lat"]]},
        "properties": {
            "child_id": child_id,
            "ts": p["ts"],
            "acc": None if p["acc"] is None else float(p["acc"]),
            "batt": p["batt"],
            "tag_id": p["tag_id"],
            "route_distance_m": None if p["route_distance_m"] is None else float(p["route_distance_m"]),
            "received_at": p["received_at"],
        },
    }


@router.get(
    "/api/v1/children/{child_id}/position", tags=["positions"], response_model=FixFeature, responses=READ
)
async def child_position(
    child_id: IdPath, who: Principal = Depends(require(*READERS)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """The child's last known position (geometry null when none is kept; for the staff of a school the
    child moved to, none from before the move)."""
    async with ctx.pool.acquire() as conn:
        if not await registry_crud.visible(conn, who, "child", child_id):
            not_found("child", child_id)
        p = await history.last_position(conn, who, child_id)
        if p is not None:
            await audit.record_position_reads(
                conn, who, {child_id: 1}, "GET /api/v1/children/{child_id}/position"
            )
    return fix_feature(child_id, p)


@router.get("/api/v1/children/{child_id}/track", tags=["positions"], response_model=Track, responses=READ)
async def child_track(
    child_id: IdPath,
    day: date | None = Query(
        None, alias="date", description="a day in the school's time zone (default: today there)"
    ),
    limit: int = Query(5000, ge=1, le=10000, description="page size"),
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """The child's fixes of one day, oldest first, as GeoJSON Points. A school's staff read the fixes
    of the periods when the child was at their school only: the school a child left keeps its days
    before the move (its staff's reads audited as any; a day after it is 404, as for any child not
    theirs), the school the child moved to sees the fixes from the move on; the day is one in the
    caller's school's time zone."""
    async with ctx.pool.acquire() as conn:
        tz_name = await history.child_timezone(conn, who, child_id, ctx.settings.default_timezone)
        tz = ZoneInfo(tz_name)
        if day is None:
            day = datetime.now(tz).date()
        if not date(1970, 1, 2) <= day <= date(9999, 12, 30):
            invalid(["query", "date"], f"date {day} is out of range")
        start = datetime.combine(day, time.min, tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time.min, tz).astimezone(UTC)
        if not await history.track_visible(conn, who, child_id, start=start, end=end):
            not_found("child", child_id)
        rows, total = await history.track(
            conn, who, child_id, start=start, end=end, limit=limit, offset=offset
        )
        if rows:
            await audit.record_position_reads(
                conn, who, {child_id: len(rows)}, "GET /api/v1/children/{child_id}/track"
            )
    return {
        "features": [fix_feature(child_id, r) for r in rows],
        "date": day,
        "timezone": tz_name,
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get(
    "/api/v1/audit/position-reads", tags=["positions"], response_model=Page[PositionRead], responses=LIST
)
async def position_reads(
    child_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Who among the staff read children's positions, newest first (school staff: their school's
    children; guardians: their own children)."""
    rows, total = await audit.list_position_reads(
        ctx.pool, who, child_id=child_id, limit=limit, offset=offset
    )
    return {"items": rows, "total": total, "limit": limit, "offset": offset}


# --- tags ----------------------------------------------------------------------------------------------
def tag_out(r: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "child_id": r["child_id"],
        "kind": r["kind"],
        "has_mqtt_password": r["has_mqtt_password"],
        "mqtt_topic": f"{prefix}tracker/v1/tags/{r['id']}/position" if r["kind"] == "gps" else None,
        "created_at": r["created_at"],
    }


async def _new_credentials(
    conn: asyncpg.Connection, tag_id: str, ctx: AppContext, who: Principal
) -> dict[str, Any]:
    """A new MQTT password and device token for a GPS tag; the tag's older device tokens are revoked."""
    password = new_mqtt_password()
    await conn.execute(
        "UPDATE tags SET mqtt_password_hash = $2 WHERE id = $1", tag_id, mosquitto_hash(password)
    )
    await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE tag_id = $1 AND revoked_at IS NULL", tag_id
    )
    issued = await create_token(
        conn,
        role="device",
        tag_id=tag_id,
        label=f"tag {tag_id}",
        ttl=timedelta(days=ctx.settings.device_token_days),
        issued_by=Issuer.caller(who),
    )
    return {
        "mqtt_username": tag_id,
        "mqtt_password": password,
        "mqtt_topic": f"{ctx.settings.topic_prefix}tracker/v1/tags/{tag_id}/position",
        "device_token": issued.token,
        "device_token_id": issued.id,
        "device_token_expires_at": issued.expires_at,
    }


@router.get("/api/v1/tags", tags=["tags"], response_model=Page[TagOut], responses=LIST)
async def list_tags(
    child_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    rows, total = await registry_crud.list_tags(ctx.pool, who, child_id=child_id, limit=limit, offset=offset)
    prefix = ctx.settings.topic_prefix
    return {"items": [tag_out(r, prefix) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.post(
    "/api/v1/tags",
    tags=["tags"],
    status_code=status.HTTP_201_CREATED,
    response_model=TagCreated,
    responses=CREATE,
)
async def create_tag(
    body: TagIn, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Give a child a GPS tag or an RFID card. A GPS tag's MQTT password and device token are in the
    answer, once (only their hashes are kept)."""
    if body.kind == "gps" and (refusal := broker_user_refusal("tag id", body.id, ctx.settings.mqtt_url)):
        invalid(["body", "id"], f"{refusal}; a GPS tag's id is its MQTT user name (an RFID card may keep it)")
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await registry_crud.visible(conn, who, "child", body.child_id, write=True):
            invalid(["body", "child_id"], f"no child {body.child_id}")
        if (taken := await broker_user_taken(conn, body.id)) == "tag":
            conflict(f"tag {body.id!r} is already registered (tag ids are unique in the city)")
        if taken == "reader":
            conflict(f"{body.id!r} is a reader's id: tags and readers share one namespace (broker users)")
        await registry_crud.create_tag(conn, {"id": body.id, "child_id": body.child_id, "kind": body.kind})
        credentials = await _new_credentials(conn, body.id, ctx, who) if body.kind == "gps" else None
        row = await registry_crud.get_tag(conn, who, body.id)
    assert row is not None
    return tag_out(row, ctx.settings.topic_prefix) | {"credentials": credentials}


@router.get("/api/v1/tags/{tag_id}", tags=["tags"], response_model=TagOut, responses=READ)
async def get_tag(
    tag_id: DeviceIdPath,
    who: Principal = Depends(require("admin", "school", "guardian", "device")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """A tag (a device token: its own tag)."""
    row = await registry_crud.get_tag(ctx.pool, who, tag_id)
    if row is None:
        not_found("tag", tag_id)
    return tag_out(row, ctx.settings.topic_prefix)


@router.patch("/api/v1/tags/{tag_id}", tags=["tags"], response_model=TagOut, responses=WRITE)
async def update_tag(
    tag_id: DeviceIdPath,
    body: TagPatch,
    who: Principal = Depends(require(*STAFF)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Give the tag to another child (of the caller's school), or change its kind."""
    values = not_null(body.model_dump(exclude_unset=True), (), ["body"])
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await registry_crud.get_tag(conn, who, tag_id)
        if current is None:
            not_found("tag", tag_id)
        if "child_id" in values and not await registry_crud.visible(
            conn, who, "child", values["child_id"], write=True
        ):
            invalid(["body", "child_id"], f"no child {values['child_id']}")
        if values.get("kind") == "gps" and (
            refusal := broker_user_refusal("tag id", tag_id, ctx.settings.mqtt_url)
        ):
            invalid(["body", "kind"], f"{refusal}, so the tag cannot be a GPS tag (an RFID card may keep it)")
        await registry_crud.update_tag(conn, who, tag_id, values)
        if values.get("kind") == "rfid":  # a card has no MQTT credentials
            await conn.execute("UPDATE tags SET mqtt_password_hash = NULL WHERE id = $1", tag_id)
            await conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE tag_id = $1 AND revoked_at IS NULL", tag_id
            )
        row = await registry_crud.get_tag(conn, who, tag_id)
    assert row is not None
    return tag_out(row, ctx.settings.topic_prefix)


@router.post(
    "/api/v1/tags/{tag_id}/credentials", tags=["tags"], response_model=TagCredentials, responses=WRITE
)
async def rotate_credentials(
    tag_id: DeviceIdPath, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """New MQTT password and device token for a GPS tag; the old ones stop working."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await registry_crud.get_tag(conn, who, tag_id)
        if current is None or not await registry_crud.visible(conn, who, "tag", tag_id, write=True):
            not_found("tag", tag_id)
        if current["kind"] != "gps":
            invalid(["path", "tag_id"], f"tag {tag_id!r} is an RFID card: it has no credentials")
        if refusal := broker_user_refusal("tag id", tag_id, ctx.settings.mqtt_url):
            invalid(["path", "tag_id"], refusal)  # a tag registered before the rule: re-register it
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM readers WHERE id = $1)", tag_id):
            conflict(f"{tag_id!r} is also a reader's id: the broker cannot tell the two apart")
        return await _new_credentials(conn, tag_id, ctx, who)


@router.delete("/api/v1/tags/{tag_id}", tags=["tags"], status_code=status.HTTP_204_NO_CONTENT, responses=READ)
async def delete_tag(
    tag_id: DeviceIdPath, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> Response:
    """Delete a tag; its device tokens go with it, and its fixes are refused from then on."""
    if not await registry_crud.delete_tag(ctx.pool, who, tag_id):
        not_found("tag", tag_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- guardians -----------------------------------------------------------------------------------------
def guardian_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "phone": r["phone"],
        "language": r["language"],
        "channels": list(r["channels"]),
        "school_id": r["school_id"],
        "children": r["children"],
        "created_at": r["created_at"],
    }


@router.get("/api/v1/guardians", tags=["guardians"], response_model=Page[GuardianOut], responses=LIST)
async def list_guardians(
    child_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Guardians the caller may see (a guardian: themselves)."""
    rows, total = await registry_crud.list_guardians(
        ctx.pool, who, child_id=child_id, limit=limit, offset=offset
    )
    return {"items": [guardian_out(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.post(
    "/api/v1/guardians",
    tags=["guardians"],
    status_code=status.HTTP_201_CREATED,
    response_model=GuardianOut,
    responses=CREATE,
)
async def create_guardian(
    body: GuardianIn, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Register a guardian, optionally linked to children with an escalation priority each."""
    school_id = body.school_id
    if who.role == "school":
        if school_id is not None and school_id != who.school_id:
            invalid(["body", "school_id"], f"school {school_id} is not your school ({who.school_id})")
        school_id = who.school_id
    async with ctx.pool.acquire() as conn, conn.transaction():
        if school_id is not None and not await registry_crud.visible(conn, who, "school", school_id):
            invalid(["body", "school_id"], f"no school {school_id}")
        for i, link in enumerate(body.children):
            if not await registry_crud.visible(conn, who, "child", link.child_id, write=True):
                invalid(["body", "children", i, "child_id"], f"no child {link.child_id}")
        guardian_id = await registry_crud.create_guardian(
            conn,
            {
                "name": body.name,
                "phone": body.phone,
                "language": body.language,
                "channels": list(body.channels),
                "school_id": school_id,
            },
        )
        if body.children:
            await conn.executemany(
                "INSERT INTO child_guardians (child_id, guardian_id, priority) VALUES ($1, $2, $3)",
                [(link.child_id, guardian_id, link.priority) for link in body.children],
            )
        row = await registry_crud.get_guardian(conn, who, guardian_id)
    assert row is not None
    return guardian_out(row)


@router.get("/api/v1/guardians/{guardian_id}", tags=["guardians"], response_model=GuardianOut, responses=READ)
async def get_guardian(
    guardian_id: IdPath, who: Principal = Depends(require(*READERS)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    row = await registry_crud.get_guardian(ctx.pool, who, guardian_id)
    if row is None:
        not_found("guardian", guardian_id)
    return guardian_out(row)


@router.patch(
    "/api/v1/guardians/{guardian_id}", tags=["guardians"], response_model=GuardianOut, responses=WRITE
)
async def update_guardian(
    guardian_id: IdPath,
    body: GuardianPatch,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Change a guardian's name, phone, language or channels (a guardian: their own; school staff: only
    while the guardian is theirs alone, tracker.store.scope: every child at their school, never signed
    in, so that no school redirects the alerts of another school's child)."""
    values = not_null(body.model_dump(exclude_unset=True), ("phone",), ["body"])
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await registry_crud.get_guardian(conn, who, guardian_id)
        if current is None:
            not_found("guardian", guardian_id)
        if who.role == "school" and values.keys() & {"name", "phone", "language", "channels"}:
            standing = await registry_crud.guardian_standing(conn, who, guardian_id)
            if not standing.theirs_alone:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    standing.why_not(
                        guardian_id,
                        "change their name, phone, language or channels",
                        "the guardian changes them, or the city's administrator",
                    ),
                )
        if "school_id" in values and values["school_id"] != current["school_id"]:
            if who.role != "admin":
                invalid(
                    ["body", "school_id"], "only the city's administrators change who registered a guardian"
                )
            if not await registry_crud.visible(conn, who, "school", values["school_id"]):
                invalid(["body", "school_id"], f"no school {values['school_id']}")
        channels = values.get("channels", current["channels"])
        phone = values.get("phone", current["phone"])
        if "sms" in channels and phone is None:
            invalid(
                ["body", "channels" if "channels" in values else "phone"],
                "the sms channel needs a phone number",
            )
        if "channels" in values:
            values["channels"] = list(values["channels"])
        await registry_crud.update_guardian(conn, who, guardian_id, values)
        row = await registry_crud.get_guardian(conn, who, guardian_id)
    assert row is not None
    return guardian_out(row)


@router.delete(
    "/api/v1/guardians/{guardian_id}",
    tags=["guardians"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=READ,
)
async def delete_guardian(
    guardian_id: IdPath, who: Principal = Depends(require(*STAFF)), ctx: AppContext = Depends(context)
) -> Response:
    """Delete a guardian with their tokens (school staff: a guardian their school registered, while
    theirs alone; others they may only unlink from their children)."""
    async with ctx.pool.acquire() as conn:
        if not await registry_crud.visible(conn, who, "guardian", guardian_id):
            not_found("guardian", guardian_id)
        if not await registry_crud.delete_guardian(conn, who, guardian_id):
            standing = await registry_crud.guardian_standing(conn, who, guardian_id)
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                standing.why_not(
                    guardian_id,
                    "delete them",
                    "unlink them from your children (PUT /api/v1/children/{id}/guardians) instead",
                ),
            )
    await close_guardian_sockets(ctx, guardian_id)  # their tokens went with them: closed now
    return Response(status_code=status.HTTP_204_NO_CONTENT)
