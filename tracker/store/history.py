"""What parents (and staff) read about what happened: a child's positions and its alert history with
every delivery and acknowledgement step. Scoped like the registry (tracker.store.scope)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from tracker.store import scope
from tracker.store.tokens import Principal

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
_POSITION = "ts, lon, lat, acc, batt, tag_id, route_distance_m, received_at"


async def child_timezone(conn: Conn, child_id: int, default: str) -> str:
    tz = await conn.fetchval(
        "SELECT s.timezone FROM children c JOIN schools s ON s.id = c.school_id WHERE c.id = $1", child_id
    )
    return str(tz or default)


async def last_position(conn: Conn, child_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_POSITION} FROM positions WHERE child_id = $1 ORDER BY ts DESC LIMIT 1", child_id
    )
    return None if row is None else dict(row.items())


async def track(
    conn: Conn, child_id: int, *, start: datetime, end: datetime, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The child's fixes in [start, end), oldest first, and how many there are."""
    rows = await conn.fetch(
        f"SELECT {_POSITION}, count(*) OVER () AS total FROM positions"
        " WHERE child_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, tag_id LIMIT $4 OFFSET $5",
        child_id,
        start,
        end,
        limit,
        offset,
    )
    if rows:
        total = rows[0]["total"]
    else:
        total = await conn.fetchval(
            "SELECT count(*) FROM positions WHERE child_id = $1 AND ts >= $2 AND ts < $3",
            child_id,
            start,
            end,
        )
    return [{k: v for k, v in r.items() if k != "total"} for r in rows], int(total)


_ALERT = (
    "a.id, a.kind, a.severity, a.state, a.child_id, c.name AS child_name, a.zone_id, z.name AS zone_name,"
    " z.kind AS zone_kind, a.opened_at, a.updated_at, a.resolved_at, a.acknowledged_at, a.acknowledged_by,"
    " a.fix_count, a.last_lon, a.last_lat, a.last_acc, a.last_fix_ts, a.fix_received_at,"
    " a.escalation_level,"
    " coalesce((SELECT jsonb_agg(jsonb_build_object('id', d.id, 'guardian_id', d.guardian_id,"
    "   'school_id', d.school_id, 'channel', d.channel, 'transition', d.transition, 'state', d.state,"
    "   'attempts', d.attempts, 'created_at', d.created_at, 'sent_at', d.sent_at,"
    "   'last_error', d.last_error) ORDER BY d.id)"
    "   FROM deliveries d WHERE d.alert_id = a.id), '[]'::jsonb) AS deliveries,"
    " coalesce((SELECT jsonb_agg(jsonb_build_object('at', h.at, 'step', h.step, 'detail', h.detail)"
    "   ORDER BY h.at, h.id) FROM alert_history h WHERE h.alert_id = a.id), '[]'::jsonb) AS steps"
)
_ALERT_SOURCE = (
    "alerts a JOIN children c ON c.id = a.child_id LEFT JOIN danger_zones z ON z.id = a.zone_id CROSS JOIN me"
)


async def list_alerts(
    conn: Conn,
    who: Principal,
    *,
    state: str | None,
    child_id: int | None,
    kind: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Alerts of the children the caller may see, newest first."""
    where = (
        f"{scope.children(who)} AND ($4::text IS NULL OR a.state = $4)"
        " AND ($5::bigint IS NULL OR a.child_id = $5) AND ($6::text IS NULL OR a.kind = $6)"
        " AND ($7::timestamptz IS NULL OR a.opened_at >= $7)"
    )
    args = (state, child_id, kind, since)
    rows = await conn.fetch(
        f"WITH {scope.ME} SELECT {_ALERT}, count(*) OVER () AS total FROM {_ALERT_SOURCE} WHERE {where}"
        " ORDER BY a.opened_at DESC, a.id DESC LIMIT $8 OFFSET $9",
        *scope.me_args(who),
        *args,
        limit,
        offset,
    )
    if rows:
        total = rows[0]["total"]
    else:
        total = await conn.fetchval(
            f"WITH {scope.ME} SELECT count(*) FROM {_ALERT_SOURCE} WHERE {where}", *scope.me_args(who), *args
        )
    return [{k: v for k, v in r.items() if k != "total"} for r in rows], int(total)


async def get_alert(conn: Conn, who: Principal, alert_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"WITH {scope.ME} SELECT {_ALERT} FROM {_ALERT_SOURCE} WHERE a.id = $4 AND {scope.children(who)}",
        *scope.me_args(who),
        alert_id,
    )
    return None if row is None else dict(row.items())
