"""Health, metrics, who am I, the alert history with acknowledgement, and the operators' views
(recorded SMS, dead letters, counters, the world for the simulator)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from tracker.api.auth import context, principal, require
from tracker.api.common import LIST, READ, IdPath, IdQuery, Limit, Offset, not_found
from tracker.api.context import AppContext
from tracker.api.models import Ack, AlertOut, DeadLetter, Health, Me, Page, Ready, Sms
from tracker.importers.models import Text
from tracker.metrics import prometheus_text
from tracker.store import audit, history
from tracker.store.alerts import acknowledge
from tracker.store.gauges import database_gauges
from tracker.store.registry import load_registry, world_geojson
from tracker.store.tokens import Principal

router = APIRouter()
READERS = ("admin", "school", "guardian")


@router.get("/healthz", tags=["health"], response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    response_model=Ready,
    responses={503: {"model": Ready, "description": "a component is down (it is named)"}},
)
async def readyz(response: Response, ctx: AppContext = Depends(context)) -> dict[str, Any]:
    """Every component the service needs is reachable: the database, the broker, the pipeline, the
    registry (503 otherwise, with which one is not)."""
    components: dict[str, bool] = {}
    try:
        components["database"] = bool(await ctx.pool.fetchval("SELECT true", timeout=2))
    except Exception:
        components["database"] = False
    for name, check in ctx.readiness.items():
        components[name] = bool(check())
    ready = all(components.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"ready": ready, "components": components}


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}},
)
async def metrics(ctx: AppContext = Depends(context)) -> Response:
    """Prometheus text: fixes in, rejected by reason, monitor events and open alerts by kind, delivery
    latency, the outbox queue, websocket connections, database connections."""
    try:
        db = await asyncio.wait_for(database_gauges(ctx.pool, ctx.started_at), 5)
        up = 1.0
    except Exception:
        db, up = None, 0.0
    gauges = {
        "tracker_database_up": up,
        "tracker_websocket_connections": float(ctx.hub.total),
        "tracker_db_pool_connections": float(ctx.pool.get_size()),
        "tracker_db_pool_idle_connections": float(ctx.pool.get_idle_size()),
    }
    for name, check in ctx.readiness.items():
        gauges[f"tracker_{name}_up"] = 1.0 if check() else 0.0
    body = prometheus_text(ctx.metrics, gauges=gauges, database=db)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/api/v1/me", tags=["auth"], response_model=Me, responses=READ)
async def me(who: Principal = Depends(principal), ctx: AppContext = Depends(context)) -> dict[str, Any]:
    """Who the token speaks for."""
    out: dict[str, Any] = {
        "token_id": who.token_id,
        "role": who.role,
        "label": who.label,
        "expires_at": who.expires_at,
        "school_id": who.school_id,
        "guardian_id": who.guardian_id,
        "tag_id": who.tag_id,
    }
    if who.guardian_id is not None:
        row = await ctx.pool.fetchrow("SELECT name, language FROM guardians WHERE id = $1", who.guardian_id)
        out |= {"name": row["name"], "language": row["language"]} if row else {}
    elif who.school_id is not None:
        out["name"] = await ctx.pool.fetchval("SELECT name FROM schools WHERE id = $1", who.school_id)
    return out


# --- alerts --------------------------------------------------------------------------------------------
def alert_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "kind": r["kind"],
        "severity": r["severity"],
        "state": r["state"],
        "child": {"id": r["child_id"], "name": r["child_name"]},
        "zone": None
        if r["zone_id"] is None
        else {"id": r["zone_id"], "name": r["zone_name"], "kind": r["zone_kind"]},
        "opened_at": r["opened_at"],
        "updated_at": r["updated_at"],
        "resolved_at": r["resolved_at"],
        "acknowledged_at": r["acknowledged_at"],
        "acknowledged_by": r["acknowledged_by"],
        "escalation_level": r["escalation_level"],
        "fix_count": r["fix_count"],
        "position": None
        if r["last_lat"] is None
        else {
            "lon": r["last_lon"],
            "lat": r["last_lat"],
            "acc": None if r["last_acc"] is None else float(r["last_acc"]),
            "ts": r["last_fix_ts"],
        },
        "deliveries": r["deliveries"],
        "steps": r["steps"],
    }


async def _audit_alerts(conn: Any, who: Principal, rows: list[dict[str, Any]], endpoint: str) -> None:
    """An alert carries the child's position at the time: a staff read of it is logged too."""
    counts: dict[int, int] = {}
    for r in rows:
        if r["last_lat"] is not None:
            counts[r["child_id"]] = counts.get(r["child_id"], 0) + 1
    await audit.record_position_reads(conn, who, counts, endpoint)


@router.get("/api/v1/alerts", tags=["alerts"], response_model=Page[AlertOut], responses=LIST)
async def alerts(
    state: Literal["open", "resolved"] | None = None,
    child_id: IdQuery = None,
    kind: Text | None = Query(None, max_length=40),
    since: datetime | None = Query(None, description="opened at or after (ISO 8601 with a time zone)"),
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Alerts of the children the caller may see, newest first, each with its delivery and
    acknowledgement steps."""
    async with ctx.pool.acquire() as conn:
        rows, total = await history.list_alerts(
            conn, who, state=state, child_id=child_id, kind=kind, since=since, limit=limit, offset=offset
        )
        await _audit_alerts(conn, who, rows, "GET /api/v1/alerts")
    return {"items": [alert_out(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.get("/api/v1/alerts/{alert_id}", tags=["alerts"], response_model=AlertOut, responses=READ)
async def alert(
    alert_id: IdPath, who: Principal = Depends(require(*READERS)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    async with ctx.pool.acquire() as conn:
        row = await history.get_alert(conn, who, alert_id)
        if row is None:
            not_found("alert", alert_id)
        await _audit_alerts(conn, who, [row], "GET /api/v1/alerts/{alert_id}")
    return alert_out(row)


@router.post("/api/v1/alerts/{alert_id}/ack", tags=["alerts"], response_model=Ack, responses=READ)
async def ack_alert(
    alert_id: IdPath, who: Principal = Depends(require("guardian")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Acknowledge an alert of one of the caller's children (404 for any other alert). Acknowledging
    twice keeps the first acknowledgement."""
    assert who.guardian_id is not None
    if not await acknowledge(ctx.pool, alert_id, who.guardian_id):
        not_found("alert", f"{alert_id} among your children's alerts")
    row = await ctx.pool.fetchrow(
        "SELECT acknowledged_at, acknowledged_by FROM alerts WHERE id = $1", alert_id
    )
    assert row is not None
    return {"alert_id": alert_id, "acknowledged": True, **dict(row.items())}


# --- operators -----------------------------------------------------------------------------------------
@router.get("/api/v1/sms", tags=["operator"], response_model=Page[Sms], responses=LIST)
async def sms_messages(
    phone: Text | None = Query(None, max_length=32),
    limit: Limit = 100,
    offset: Offset = 0,
    _: Principal = Depends(require("admin")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """SMS recorded by the stub provider, newest first."""
    rows = await ctx.pool.fetch(
        "SELECT id, delivery_id, phone, body, provider, created_at, count(*) OVER () AS total"
        " FROM sms_messages WHERE $1::text IS NULL OR phone = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        phone,
        limit,
        offset,
    )
    total = (
        rows[0]["total"]
        if rows
        else await ctx.pool.fetchval(
            "SELECT count(*) FROM sms_messages WHERE $1::text IS NULL OR phone = $1", phone
        )
    )
    items = [{k: v for k, v in r.items() if k != "total"} for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/api/v1/dead-letters", tags=["operator"], response_model=Page[DeadLetter], responses=LIST)
async def dead_letters(
    reason: Text | None = Query(None, max_length=64),
    limit: Limit = 100,
    offset: Offset = 0,
    _: Principal = Depends(require("admin")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Messages that decided nothing because they were bad, with the reason, newest first."""
    rows = await ctx.pool.fetch(
        "SELECT id, received_at, topic, payload, reason, detail, count(*) OVER () AS total FROM dead_letters"
        " WHERE $1::text IS NULL OR reason = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        reason,
        limit,
        offset,
    )
    total = (
        rows[0]["total"]
        if rows
        else await ctx.pool.fetchval(
            "SELECT count(*) FROM dead_letters WHERE $1::text IS NULL OR reason = $1", reason
        )
    )
    items = [
        {
            "id": r["id"],
            "received_at": r["received_at"],
            "topic": r["topic"],
            "payload": bytes(r["payload"]).decode("utf-8", "replace")[:4096],
            "reason": r["reason"],
            "detail": r["detail"],
        }
        for r in rows
    ]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/api/v1/stats", tags=["operator"], response_model=dict[str, Any], responses=LIST)
async def stats(
    _: Principal = Depends(require("admin")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Counters of this process since it started (the same as /metrics, as JSON)."""
    return ctx.metrics.snapshot() | {"websocket_connections": ctx.hub.total}


@router.get("/api/v1/world", tags=["operator"], response_model=dict[str, Any], responses=LIST)
async def world(
    _: Principal = Depends(require("admin")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """The registry as one GeoJSON FeatureCollection (schemas/world.v1.json), for the simulator."""
    async with ctx.pool.acquire() as conn:
        return world_geojson(await load_registry(conn))
