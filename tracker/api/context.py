"""What the HTTP layer is given by the service: the pool, the websocket hub, readiness, counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
