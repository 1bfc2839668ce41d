"""The alert history: the alerts of the children the caller may see, each with its deliveries and
steps, and a guardian's acknowledgement (which stops the escalation)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from tracker.api.auth import context, require
from tracker.api.common import LIST, READ, IdPath, IdQuery, Limit, Offset, not_found
from tracker.api.context import AppContext
from tracker.api.models import Ack, AlertKind, AlertOut, AlertSeverity, AlertState, Page
from tracker.store import audit, history
from tracker.store.alerts import acknowledge
from tracker.store.db import DB_ERRORS
from tracker.store.history import AlertFilter
from tracker.store.tokens import Principal

router = APIRouter()
READERS = ("admin", "school", "guardian")


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
    severity: list[AlertSeverity] | None = Query(
        None,
        description="only these severities (repeat for several: severity=critical&severity=warning)",
    ),
    kind: list[AlertKind] | None = Query(None, description="only these kinds of alert (repeat for several)"),
    state: AlertState | None = Query(None, description="open: not resolved yet; resolved: over"),
    acknowledged: bool | None = Query(
        None, description="true: a guardian has acknowledged it; false: nobody has yet"
    ),
    child_id: IdQuery = None,
    since: AwareDatetime | None = Query(
        None,
        description="opened at or after: ISO 8601 with a time zone (2026-03-02T00:00:00+09:00)",
    ),
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Alerts of the children the caller may see, newest first, each with its delivery and
    acknowledgement steps. The filters combine (all must hold); ``total`` counts the alerts that pass
    them, so ``limit`` and ``offset`` page through the filtered list."""
    wanted = AlertFilter(
        severities=None if severity is None else tuple(severity),
        kinds=None if kind is None else tuple(kind),
        state=state,
        acknowledged=acknowledged,
        child_id=child_id,
        since=since,
    )
    async with ctx.pool.acquire() as conn:
        rows, total = await history.list_alerts(conn, who, wanted, limit=limit, offset=offset)
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
        "SELECT acknowledged_at, acknowledged_by, child_id FROM alerts WHERE id = $1", alert_id
    )
    assert row is not None
    await tell_school_live(ctx, alert_id, row["child_id"])
    return {
        "alert_id": alert_id,
        "acknowledged": True,
        "acknowledged_at": row["acknowledged_at"],
        "acknowledged_by": row["acknowledged_by"],
    }


async def tell_school_live(ctx: AppContext, alert_id: int, child_id: int | None = None) -> None:
    """An alert was acknowledged here (this API, or the parents' socket): the school's live map hears
    of it at once (an acknowledgement is no event of the pipeline, which tells it the rest). Its child
    is read only while some school watches; if it cannot be, the map misses this beat (the
    acknowledgement is done)."""
    feed = ctx.school_live
    if feed is None or not feed.watched:
        return
    if child_id is None:
        try:
            child_id = await ctx.pool.fetchval("SELECT child_id FROM alerts WHERE id = $1", alert_id)
        except DB_ERRORS:
            return
    if child_id is not None:
        feed.alerts_changed([(alert_id, child_id)])
