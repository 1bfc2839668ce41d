"""What the HTTP layer is given by the service: the pool, the websocket hub, readiness, counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from tracker.alerts.hub import WebSocketHub
from tracker.api.ws_tokens import SocketTokens
from tracker.config import Settings
from tracker.metrics import Metrics

if TYPE_CHECKING:
    from tracker.api.live_feed import SchoolLiveFeed


@dataclass
class AppContext:
    settings: Settings
    pool: asyncpg.Pool
    hub: WebSocketHub
    metrics: Metrics = field(default_factory=Metrics)
    # component name -> is it up (e.g. "mqtt": ingestor.connected); /readyz reports them all
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)
    # component name -> what is wrong with it, said in /readyz while it is not ready (None: nothing)
    readiness_problems: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # HTTP ingest (tracker.ingest.http.HttpIngress): hands requests to the pipeline; None: not offered
    ingress: Any = None
    # this process's open websockets by token: closed when their token is revoked, deleted or expires
    sockets: SocketTokens = field(default_factory=SocketTokens)
    # what the pipeline commits, for the schools' live map sockets (/ws/school); None: not offered
    school_live: SchoolLiveFeed | None = None
