"""Children's status at a glance and the live map's feed (the parent and school pages poll these).

The status comes from the monitor's checkpointed state through :func:`tracker.monitor.status.child_status`
(the one place it is derived); the position is the child's last stored fix. Who sees which child is
tracker.store.scope's rule for children; staff reads are written to the position-read audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from tracker.api.auth import context, require
from tracker.api.common import LIST, READ, IdPath, IdQuery, Limit, Offset, not_found
from tracker.api.context import AppContext
from tracker.api.models import Page
from tracker.monitor.model import ChildState
from tracker.monitor.status import Status, child_status
from tracker.store import audit
from tracker.store.live import live_children
from tracker.store.tokens import Principal

router = APIRouter()
READERS = ("admin", "school", "guardian")


class LivePosition(BaseModel):
    ts: datetime
    lon: float
    lat: float
    acc: float | None = Field(description="metres; null: the app stated none")
    batt: int | None = None


class ChildStatus(BaseModel):
    child_id: int
    name: str
    school_id: int
    route_id: int | None
    status: Status = Field(
        description="the most urgent that holds: in_danger_zone, off_route, signal_lost, "
        "at_school, at_home, on_route; unknown before the first decided fix"
    )
    zones: list[int] = Field(description="danger zones the child is in (an open incident each)")
    open_alerts: int
    position: LivePosition | None = Field(description="the last stored fix, null if none is kept")
    status_at: datetime | None = Field(description="when the monitor last changed the child's state")


def live_item(r: dict[str, Any]) -> dict[str, Any]:
    """A row of tracker.store.live as GET /api/v1/live (and /ws/school's snapshot) shows it."""
    state = None if r["state"] is None else ChildState.from_json(r["state"])
    return {
        "child_id": r["id"],
        "name": r["name"],
        "school_id": r["school_id"],
        "route_id": r["route_id"],
        "status": child_status(state),
        "zones": sorted(state.zones_in) if state is not None else [],
        "open_alerts": r["open_alerts"],
        "position": None
        if r["p_ts"] is None
        else {
            "ts": r["p_ts"],
            "lon": r["p_lon"],
            "lat": r["p_lat"],
            "acc": None if r["p_acc"] is None else float(r["p_acc"]),
            "batt": r["p_batt"],
        },
        "status_at": r["state_at"],
    }


async def _audited(conn: Any, who: Principal, rows: list[dict[str, Any]], endpoint: str) -> None:
    await audit.record_position_reads(
        conn, who, {r["id"]: 1 for r in rows if r["p_ts"] is not None}, endpoint
    )


@router.get("/api/v1/live", tags=["positions"], response_model=Page[ChildStatus], responses=LIST)
async def live(
    school_id: IdQuery = None,
    limit: Limit = 1000,
    offset: Offset = 0,
    who: Principal = Depends(require(*READERS)),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Every child the caller may see (a school's staff: their school's; a guardian: their own), with
    status and last position: the feed of the live map, meant to be polled every few seconds."""
    async with ctx.pool.acquire() as conn:
        rows, total = await live_children(
            conn, who, school_id=school_id, child_id=None, limit=limit, offset=offset
        )
        await _audited(conn, who, rows, "GET /api/v1/live")
    return {"items": [live_item(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.get(
    "/api/v1/children/{child_id}/status", tags=["positions"], response_model=ChildStatus, responses=READ
)
async def status_of_child(
    child_id: IdPath, who: Principal = Depends(require(*READERS)), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """One child's status at a glance and last position."""
    async with ctx.pool.acquire() as conn:
        rows, _ = await live_children(conn, who, school_id=None, child_id=child_id, limit=1, offset=0)
        if not rows:
            not_found("child", child_id)
        await _audited(conn, who, rows, "GET /api/v1/children/{child_id}/status")
    return live_item(rows[0])
