"""The operators' views (administrators only): the SMS the stub provider recorded, the dead letters,
this process's counters, and the world for the simulator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from tracker.api.auth import context, require
from tracker.api.common import LIST, Limit, Offset
from tracker.api.context import AppContext
from tracker.api.models import DeadLetter, Page, Sms
from tracker.importers.models import Text
from tracker.store.registry_rows import load_world
from tracker.store.tokens import Principal

router = APIRouter()


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
    """The registry as one GeoJSON FeatureCollection (schemas/world.v1.json), with what the alert
    rules read (school calendars, route windows and arrivals, zone hours): for the simulator and for
    ``tracker replay``."""
    async with ctx.pool.acquire() as conn:
        return await load_world(conn)
