"""What the HTTP layer is given by the service: the pool, the websocket hub, readiness, counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tracker.alerts.hub import WebSocketHub
from tracker.config import Settings
from tracker.metrics import Metrics


@dataclass
class AppContext:
    settings: Settings
    pool: asyncpg.Pool
    hub: WebSocketHub
    metrics: Metrics = field(default_factory=Metrics)
    # component name -> is it up (e.g. "mqtt": ingestor.connected); /readyz reports them all
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # HTTP ingest (tracker.ingest.http.HttpIngress): hands requests to the pipeline; None: not offered
    ingress: Any = None
    # token id -> this process's open websockets on it (closed at once when the token is revoked here)
    sockets: dict[int, set[Any]] = field(default_factory=dict)
