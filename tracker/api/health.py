"""Health and metrics: is the process alive (``/healthz``), can it do its work (``/readyz``: the
database, the broker, the pipeline, the registry), and its Prometheus counters (``/metrics``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Response, status

from tracker.api.auth import context
from tracker.api.context import AppContext
from tracker.api.models import Health, Ready
from tracker.broker_config import reserved_broker_users
from tracker.geofence import kernels as geofence_kernels
from tracker.metrics import prometheus_text
from tracker.store.gauges import database_gauges

router = APIRouter()


@router.get("/healthz", tags=["health"], response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    response_model=Ready,
    response_model_exclude_none=True,
    responses={503: {"model": Ready, "description": "a component is down (it is named)"}},
)
async def readyz(response: Response, ctx: AppContext = Depends(context)) -> dict[str, Any]:
    """Every component the service needs is reachable: the database, the broker, the pipeline, the
    registry, and the broker's settings where they are probed (503 otherwise, with which one is not
    and, where it can say, in ``problems`` what to change)."""
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
    problems = {
        name: problem
        for name, said in ctx.readiness_problems.items()
        if not components.get(name, True) and (problem := said())
    }
    return {"ready": ready, "components": components} | ({"problems": problems} if problems else {})


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
        reserved = reserved_broker_users(ctx.settings.mqtt_url)
        db = await asyncio.wait_for(database_gauges(ctx.pool, ctx.started_at, reserved), 5)
        up = 1.0
    except Exception:
        db, up = None, 0.0
    gauges = {
        "tracker_database_up": up,
        "tracker_websocket_connections": float(ctx.hub.total),
        "tracker_db_pool_connections": float(ctx.pool.get_size()),
        "tracker_db_pool_idle_connections": float(ctx.pool.get_idle_size()),
        # 1: the geofence kernels compiled ahead of time run (no numba in the process); 0: numba's JIT
        "tracker_geofence_kernels_ahead_of_time": 0.0 if geofence_kernels.AHEAD_OF_TIME is None else 1.0,
    }
    for name, check in ctx.readiness.items():
        gauges[f"tracker_{name}_up"] = 1.0 if check() else 0.0
    body = prometheus_text(ctx.metrics, gauges=gauges, database=db)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
