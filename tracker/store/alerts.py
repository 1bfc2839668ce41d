"""Alert and delivery queries: what the dispatcher, the websocket and the API read and mark."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class AlertFacts:
    """One alert row with the names a message needs (what the dispatcher reads)."""

    alert_id: int
    kind: str
    severity: str
    state: str
    child_id: int
    child_name: str
    zone_id: int | None
    zone_name: str | None
    zone_kind: str | None
    opened_at: datetime
    resolved_at: datetime | None
    lon: float | None
    lat: float | None
    acc: float | None
    fix_ts: datetime | None
    fix_received_at: datetime | None
    timezone: str


_FACTS_SQL = """
SELECT a.id AS alert_id, a.kind, a.severity, a.state, a.child_id, c.name AS child_name,
       a.zone_id, z.name AS zone_name, z.kind AS zone_kind, a.opened_at, a.resolved_at,
       a.last_lon AS lon, a.last_lat AS lat, a.last_acc AS acc, a.last_fix_ts AS fix_ts,
       a.fix_received_at, coalesce(s.timezone, 'Asia/Seoul') AS timezone
FROM alerts a
JOIN children c ON c.id = a.child_id
LEFT JOIN schools s ON s.id = c.school_id
LEFT JOIN danger_zones z ON z.id = a.zone_id
"""


def _facts(r: asyncpg.Record) -> AlertFacts:
    values = dict(r.items())
    if values["acc"] is not None:
        values["acc"] = float(values["acc"])
    return AlertFacts(**values)


async def alert_facts(conn: asyncpg.Connection | asyncpg.Pool, alert_ids: list[int]) -> dict[int, AlertFacts]:
    rows = await conn.fetch(_FACTS_SQL + " WHERE a.id = ANY($1::bigint[])", alert_ids)
    return {r["alert_id"]: _facts(r) for r in rows}


async def unacknowledged_open_alerts(
    conn: asyncpg.Connection | asyncpg.Pool, guardian_id: int
) -> list[AlertFacts]:
    """Open alerts of the guardian's children that nobody has acknowledged, oldest first."""
    rows = await conn.fetch(
        _FACTS_SQL + " WHERE a.state = 'open' AND a.acknowledged_at IS NULL"
        " AND a.child_id IN (SELECT child_id FROM child_guardians WHERE guardian_id = $1)"
        " ORDER BY a.opened_at",
        guardian_id,
    )
    return [_facts(r) for r in rows]


async def acknowledge(conn: asyncpg.Connection | asyncpg.Pool, alert_id: int, guardian_id: int) -> bool:
    """Acknowledge an alert of one of the guardian's children; False if there is no such alert."""
    row = await conn.fetchrow(
        "UPDATE alerts SET acknowledged_at = coalesce(acknowledged_at, now()),"
        " acknowledged_by = coalesce(acknowledged_by, $2)"
        " WHERE id = $1 AND child_id IN (SELECT child_id FROM child_guardians WHERE guardian_id = $2)"
        " RETURNING id",
        alert_id,
        guardian_id,
    )
    return row is not None


@dataclass(frozen=True)
class DeliveryJob:
    delivery_id: int
    alert_id: int
    transition: str
    channel: str
    attempts: int
    guardian_id: int
    phone: str | None
    language: str


async def claim_due_deliveries(pool: asyncpg.Pool, limit: int = 200) -> list[DeliveryJob]:
    """Take due outbox rows (pending, or a retry whose time has come); SKIP LOCKED lets several
    dispatchers share one outbox. A claimed row is 'sending' until it is marked."""
    rows = await pool.fetch(
        "UPDATE deliveries d SET state = 'sending', attempts = d.attempts + 1"
        " FROM guardians g"
        " WHERE g.id = d.guardian_id AND d.id IN ("
        "   SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= now()"
        "   ORDER BY next_attempt_at, id FOR UPDATE SKIP LOCKED LIMIT $1)"
        " RETURNING d.id, d.alert_id, d.transition, d.channel, d.attempts, d.guardian_id,"
        " g.phone, g.language",
        limit,
    )
    return [DeliveryJob(*r) for r in rows]


async def mark_delivery(
    pool: asyncpg.Pool, delivery_id: int, state: str, *, error: str | None = None, retry_in_s: float = 0.0
) -> None:
    """state: sent | offline | failed | pending (a retry after retry_in_s)."""
    await pool.execute(
        "UPDATE deliveries SET state = $2, last_error = $3,"
        " sent_at = CASE WHEN $2 IN ('sent', 'offline') THEN now() ELSE sent_at END,"
        " next_attempt_at = now() + make_interval(secs => $4)"
        " WHERE id = $1",
        delivery_id,
        state,
        error,
        retry_in_s,
    )


async def release_stuck_deliveries(pool: asyncpg.Pool) -> int:
    """At start: rows left 'sending' by a process that died mid-delivery are due again."""
    status = await pool.execute("UPDATE deliveries SET state = 'pending' WHERE state = 'sending'")
    return int(status.split()[-1])
