"""What /metrics asks the database at scrape time: open alerts, the delivery outbox, delivery latency,
the broker accounts that cannot be written."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BROKER_CHECK_S = 300.0
"""How often a scrape looks at the broker accounts again: a city has hundreds of thousands of them, and
a bad one appears only when someone writes the registry by hand (the API refuses them)."""
# (id of the pool, the process's start) -> (monotonic time, counts): one entry per running app
_broker_checked: dict[tuple[int, datetime], tuple[float, dict[str, int]]] = {}


@dataclass
class DatabaseGauges:
    open_alerts: dict[str, int] = field(default_factory=dict)  # kind -> open alerts
    outbox: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, state) -> rows
    # channel -> (cumulative count per bucket of LATENCY_BUCKETS_S, count, sum of seconds)
    latency: dict[str, tuple[list[int], int, float]] = field(default_factory=dict)
    # why -> device accounts `tracker broker-config` leaves out of the broker's files (None: not asked)
    broker_left_out: dict[str, int] | None = None


async def database_gauges(
    pool: asyncpg.Pool, since: datetime, broker_reserved: frozenset[str] | None = None
) -> DatabaseGauges:
    """Open alerts by kind, outbox rows by channel and state (pending and sending are the queue), and
    the latency from a fix reaching the tracker to its alert being sent, for deliveries sent since
    ``since`` (this process's start: Prometheus counters restart with the process)."""
    out = DatabaseGauges()
    for r in await pool.fetch("SELECT kind, count(*) AS n FROM alerts WHERE state = 'open' GROUP BY kind"):
        out.open_alerts[r["kind"]] = r["n"]
    for r in await pool.fetch(
        "SELECT channel, state, count(*) AS n FROM deliveries WHERE state IN ('pending', 'sending')"
        " GROUP BY channel, state"
    ):
        out.outbox[(r["channel"], r["state"])] = r["n"]
    buckets = ", ".join(f"count(*) FILTER (WHERE l <= {b}) AS b{i}" for i, b in enumerate(LATENCY_BUCKETS_S))
    for r in await pool.fetch(
        f"SELECT channel, count(*) AS n, coalesce(sum(l), 0) AS s, {buckets} FROM ("
        "  SELECT d.channel, extract(epoch FROM d.sent_at - a.fix_received_at)::float8 AS l"
        "  FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
        "  WHERE d.state = 'sent' AND d.transition = 'opened' AND d.sent_at >= $1"
        "    AND a.fix_received_at IS NOT NULL) t GROUP BY channel",
        since,
    ):
        counts = [r[f"b{i}"] for i in range(len(LATENCY_BUCKETS_S))]
        out.latency[r["channel"]] = (counts, r["n"], float(r["s"]))
    if broker_reserved is not None:
        # the same decider as broker-config (tracker.broker_config.usable_accounts) over the registry
        # as it is now: what the last run left out, or the next one will, should someone have put a
        # bad account in since. (The names of --publisher accounts are broker-config's alone.)
        out.broker_left_out = await _broker_left_out(pool, since, broker_reserved)
    return out


async def _broker_left_out(pool: asyncpg.Pool, since: datetime, reserved: frozenset[str]) -> dict[str, int]:
    """The accounts left out, by reason, at most every BROKER_CHECK_S (the rule runs in a worker thread:
    a city's accounts would hold the event loop)."""
    from tracker.broker_config import usable_accounts
    from tracker.store.devices import broker_accounts

    key = (id(pool), since)
    checked = _broker_checked.get(key)
    if checked is not None and time.monotonic() - checked[0] < BROKER_CHECK_S:
        return checked[1]
    accounts = await broker_accounts(pool)
    _, left_out = await asyncio.to_thread(usable_accounts, accounts, reserved)
    counts: dict[str, int] = dict(Counter(a.reason for a in left_out))
    _broker_checked[key] = (time.monotonic(), counts)
    return counts
