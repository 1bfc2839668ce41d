"""HTTP endpoints of the first service: health, the guardian's children and alerts, acknowledgement,
and the operator's views (recorded SMS, dead letters, counters, the world for the simulator).

The complete registry API (create/update/delete with GeoJSON, roles for schools) is issue 5's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from tracker.api.auth import context, principal, require
from tracker.api.context import AppContext
from tracker.store.alerts import acknowledge
from tracker.store.registry import load_registry, world_geojson
from tracker.store.tokens import Principal

router = APIRouter()
Limit = Query(100, ge=1, le=1000, description="page size")
Offset = Query(0, ge=0, description="rows to skip")


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
async def readyz(response: Response, ctx: AppContext = Depends(context)) -> dict[str, Any]:
    """Every component the service needs is reachable (503 otherwise, with which one is not)."""
    components: dict[str, bool] = {}
    try:
        components["database"] = await ctx.pool.fetchval("SELECT true", timeout=2)
    except Exception:
        components["database"] = False
    for name, check in ctx.readiness.items():
        components[name] = bool(check())
    ready = all(components.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"ready": ready, "components": components}


@router.get("/api/v1/me", tags=["auth"])
async def me(who: Principal = Depends(principal), ctx: AppContext = Depends(context)) -> dict[str, Any]:
    out: dict[str, Any] = {"role": who.role, "guardian_id": who.guardian_id, "school_id": who.school_id}
    if who.guardian_id is not None:
        row = await ctx.pool.fetchrow("SELECT name, language FROM guardians WHERE id = $1", who.guardian_id)
        out |= {"name": row["name"], "language": row["language"]} if row else {}
    return out


def _scope(who: Principal) -> tuple[str, list[Any]]:
    """SQL condition on children.id (alias c) for what this principal may see."""
    if who.role == "admin":
        return "true", []
    if who.role == "guardian":
        return "c.id IN (SELECT child_id FROM child_guardians WHERE guardian_id = $1)", [who.guardian_id]
    if who.role == "school":
        return "c.school_id = $1", [who.school_id]
    return "false", []


@router.get("/api/v1/children", tags=["children"])
async def children(
    who: Principal = Depends(require("admin", "school", "guardian")),
    ctx: AppContext = Depends(context),
    limit: int = Limit,
    offset: int = Offset,
) -> list[dict[str, Any]]:
    """The children the caller may see, with their last known position and open alerts."""
    cond, args = _scope(who)
    n = len(args)
    rows = await ctx.pool.fetch(
        f"SELECT c.id, c.name, c.school_id, c.route_id, p.ts, p.lon, p.lat, p.acc, p.route_distance_m,"
        f" (SELECT count(*) FROM alerts a WHERE a.child_id = c.id AND a.state = 'open') AS open_alerts"
        f" FROM children c LEFT JOIN LATERAL (SELECT ts, lon, lat, acc, route_distance_m FROM positions"
        f"   WHERE child_id = c.id ORDER BY ts DESC LIMIT 1) p ON true"
        f" WHERE {cond} ORDER BY c.id LIMIT ${n + 1} OFFSET ${n + 2}",
        *args,
        limit,
        offset,
    )
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "school_id": r["school_id"],
            "route_id": r["route_id"],
            "open_alerts": r["open_alerts"],
            "last_position": None
            if r["ts"] is None
            else {
                "ts": r["ts"].isoformat(),
                "lon": r["lon"],
                "lat": r["lat"],
                "acc": r["acc"],
                "route_distance_m": r["route_distance_m"],
            },
        }
        for r in rows
    ]


@router.get("/api/v1/alerts", tags=["alerts"])
async def alerts(
    who: Principal = Depends(require("admin", "school", "guardian")),
    ctx: AppContext = Depends(context),
    state: str | None = Query(None, pattern="^(open|resolved)$"),
    limit: int = Limit,
    offset: int = Offset,
) -> list[dict[str, Any]]:
    """Alerts of the children the caller may see, newest first, each with its delivery steps."""
    cond, args = _scope(who)
    n = len(args)
    rows = await ctx.pool.fetch(
        f"SELECT a.*, c.name AS child_name, z.name AS zone_name,"
        f" coalesce((SELECT jsonb_agg(jsonb_build_object('guardian_id', d.guardian_id, 'channel', d.channel,"
        f"   'transition', d.transition, 'state', d.state, 'attempts', d.attempts, 'sent_at', d.sent_at,"
        f"   'last_error', d.last_error) ORDER BY d.id) FROM deliveries d WHERE d.alert_id = a.id),"
        f"   '[]'::jsonb)"
        f"   AS deliveries"
        f" FROM alerts a JOIN children c ON c.id = a.child_id LEFT JOIN danger_zones z ON z.id = a.zone_id"
        f" WHERE {cond} AND (${n + 1}::text IS NULL OR a.state = ${n + 1})"
        f" ORDER BY a.opened_at DESC, a.id DESC LIMIT ${n + 2} OFFSET ${n + 3}",
        *args,
        state,
        limit,
        offset,
    )
    return [
        {
            "id": r["id"],
            "kind": r["kind"],
            "severity": r["severity"],
            "state": r["state"],
            "child": {"id": r["child_id"], "name": r["child_name"]},
            "zone": None if r["zone_id"] is None else {"id": r["zone_id"], "name": r["zone_name"]},
            "opened_at": r["opened_at"].isoformat(),
            "resolved_at": r["resolved_at"].isoformat() if r["resolved_at"] else None,
            "acknowledged_at": r["acknowledged_at"].isoformat() if r["acknowledged_at"] else None,
            "fix_count": r["fix_count"],
            "position": None
            if r["last_lat"] is None
            else {"lat": r["last_lat"], "lon": r["last_lon"], "acc": r["last_acc"]},
            "deliveries": r["deliveries"],
        }
        for r in rows
    ]


@router.post("/api/v1/alerts/{alert_id}/ack", tags=["alerts"])
async def ack_alert(
    alert_id: int, who: Principal = Depends(require("guardian")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Acknowledge an alert of one of the caller's children (404 for any other alert)."""
    assert who.guardian_id is not None
    if not await acknowledge(ctx.pool, alert_id, who.guardian_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id} among your children's alerts")
    return {"alert_id": alert_id, "acknowledged": True}


@router.get("/api/v1/sms", tags=["operator"])
async def sms_messages(
    _: Principal = Depends(require("admin")),
    ctx: AppContext = Depends(context),
    phone: str | None = None,
    limit: int = Limit,
    offset: int = Offset,
) -> list[dict[str, Any]]:
    """SMS recorded by the stub provider, newest first."""
    rows = await ctx.pool.fetch(
        "SELECT id, delivery_id, phone, body, provider, created_at FROM sms_messages"
        " WHERE $1::text IS NULL OR phone = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        phone,
        limit,
        offset,
    )
    return [dict(r) | {"created_at": r["created_at"].isoformat()} for r in rows]


@router.get("/api/v1/dead-letters", tags=["operator"])
async def dead_letters(
    _: Principal = Depends(require("admin")),
    ctx: AppContext = Depends(context),
    reason: str | None = None,
    limit: int = Limit,
    offset: int = Offset,
) -> list[dict[str, Any]]:
    """Messages that decided nothing because they were bad, with the reason, newest first."""
    rows = await ctx.pool.fetch(
        "SELECT id, received_at, topic, payload, reason, detail FROM dead_letters"
        " WHERE $1::text IS NULL OR reason = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        reason,
        limit,
        offset,
    )
    return [
        {
            "id": r["id"],
            "received_at": r["received_at"].isoformat(),
            "topic": r["topic"],
            "payload": bytes(r["payload"]).decode("utf-8", "replace")[:4096],
            "reason": r["reason"],
            "detail": r["detail"],
        }
        for r in rows
    ]


@router.get("/api/v1/stats", tags=["operator"])
async def stats(
    _: Principal = Depends(require("admin")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Counters of this process since it started."""
    return ctx.metrics.snapshot() | {"websocket_connections": ctx.hub.total}


@router.get("/api/v1/world", tags=["operator"])
async def world(
    _: Principal = Depends(require("admin")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """The registry as one GeoJSON FeatureCollection (schemas/world.v1.json), for the simulator."""
    async with ctx.pool.acquire() as conn:
        return world_geojson(await load_registry(conn))
