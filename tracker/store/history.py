"""What parents (and staff) read about what happened: a child's positions and its alert history with
every delivery and acknowledgement step. Scoped like the registry (tracker.store.scope), and bounded in
time for school staff: of a child who moved school, each school reads what happened while the child
was theirs (tracker.store.scope.during_callers_school)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from tracker.store import scope
from tracker.store.tokens import Principal

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
_POSITION = "p.ts, p.lon, p.lat, p.acc, p.batt, p.tag_id, p.route_distance_m, p.received_at"


async def child_timezone(conn: Conn, who: Principal, child_id: int, default: str) -> str:
    """The time zone a caller's days of the child are in: a school's staff's, their school's; anyone
    else's, the child's school's."""
    if who.role == "school":
        tz = await conn.fetchval("SELECT timezone FROM schools WHERE id = $1", who.school_id)
    else:
        tz = await conn.fetchval(
            "SELECT s.timezone FROM children c JOIN schools s ON s.id = c.school_id WHERE c.id = $1", child_id
        )
    return str(tz or default)


async def last_position(conn: Conn, who: Principal, child_id: int) -> dict[str, Any] | None:
    """The child's last fix that the caller may read (school staff: of their periods)."""
    row = await conn.fetchrow(
        f"WITH {scope.ME} SELECT {_POSITION} FROM positions p JOIN children c ON c.id = p.child_id"
        f" CROSS JOIN me WHERE p.child_id = $4 AND {scope.during_callers_school(who, 'c', 'p.ts')}"
        " ORDER BY p.ts DESC LIMIT 1",
        *scope.me_args(who),
        child_id,
    )
    return None if row is None else dict(row.items())


async def track_visible(conn: Conn, who: Principal, child_id: int, *, start: datetime, end: datetime) -> bool:
    """May the caller read the child's track of [start, end): a child they see, or (school staff) one
    who was at their school for part of that time."""
    return (
        await conn.fetchval(
            f"WITH {scope.ME} SELECT true FROM children c, me WHERE c.id = $4 AND ({scope.children(who)}"
            f" OR {scope.children_ever(who)} AND {scope.periods_overlap(who, 'c', '$5', '$6')})"
            " AND $5::timestamptz < $6::timestamptz",
            *scope.me_args(who),
            child_id,
            start,
            end,
        )
        is not None
    )


async def track(
    conn: Conn, who: Principal, child_id: int, *, start: datetime, end: datetime, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The child's fixes in [start, end) that the caller may read, oldest first, and how many there are."""
    source = "positions p JOIN children c ON c.id = p.child_id CROSS JOIN me"
    where = (
        f"p.child_id = $4 AND p.ts >= $5 AND p.ts < $6 AND {scope.during_callers_school(who, 'c', 'p.ts')}"
    )
    rows = await conn.fetch(
        f"WITH {scope.ME} SELECT {_POSITION}, count(*) OVER () AS total FROM {source}"
        f" WHERE {where} ORDER BY p.ts, p.tag_id LIMIT $7 OFFSET $8",
        *scope.me_args(who),
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
            f"WITH {scope.ME} SELECT count(*) FROM {source} WHERE {where}",
            *scope.me_args(who),
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


def _alert_visible(who: Principal) -> str:
    """An alert belongs to the school the child was at when it opened (its escalation reaches that
    school too: tracker.store.alert_lifecycle.escalate_due)."""
    return f"{scope.children_ever(who)} AND {scope.during_callers_school(who, 'c', 'a.opened_at')}"


@dataclass(frozen=True)
class AlertFilter:
    """What GET /api/v1/alerts narrows the list to; None: no condition on that field."""

    severities: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    state: str | None = None
    acknowledged: bool | None = None
    child_id: int | None = None
    since: datetime | None = None


async def list_alerts(
    conn: Conn, who: Principal, wanted: AlertFilter, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Alerts of the children the caller may see that pass the filter, newest first, and how many
    pass it (school staff: the alerts opened while the child was at their school, also of a child who
    has left it since)."""
    where = (
        f"{_alert_visible(who)} AND ($4::text[] IS NULL OR a.severity = ANY($4))"
        " AND ($5::text[] IS NULL OR a.kind = ANY($5)) AND ($6::text IS NULL OR a.state = $6)"
        " AND ($7::boolean IS NULL OR (a.acknowledged_at IS NOT NULL) = $7)"
        " AND ($8::bigint IS NULL OR a.child_id = $8) AND ($9::timestamptz IS NULL OR a.opened_at >= $9)"
    )
    args = (
        None if wanted.severities is None else list(wanted.severities),
        None if wanted.kinds is None else list(wanted.kinds),
        wanted.state,
        wanted.acknowledged,
        wanted.child_id,
        wanted.since,
    )
    rows = await conn.fetch(
        f"WITH {scope.ME} SELECT {_ALERT}, count(*) OVER () AS total FROM {_ALERT_SOURCE} WHERE {where}"
        " ORDER BY a.opened_at DESC, a.id DESC LIMIT $10 OFFSET $11",
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
        f"WITH {scope.ME} SELECT {_ALERT} FROM {_ALERT_SOURCE} WHERE a.id = $4 AND {_alert_visible(who)}",
        *scope.me_args(who),
        alert_id,
    )
    return None if row is None else dict(row.items())
