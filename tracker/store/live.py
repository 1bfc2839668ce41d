"""Children's live view: the monitor's checkpointed state and the last fix, under the access rules."""

from __future__ import annotations

from typing import Any

import asyncpg

from tracker.store import scope
from tracker.store.tokens import Principal


def _source(who: Principal) -> str:
    """The child, its monitor state and its last fix; for the staff of a school the child moved to,
    none of them from before the move (tracker.store.scope.during_callers_school): a state last
    changed before it reads as no state yet."""
    return (
        "children c CROSS JOIN me LEFT JOIN child_state cs ON cs.child_id = c.id"
        f" AND {scope.during_callers_school(who, 'c', 'cs.updated_at')}"
        " LEFT JOIN LATERAL (SELECT q.ts, q.lon, q.lat, q.acc, q.batt FROM positions q"
        f" WHERE q.child_id = c.id AND {scope.during_callers_school(who, 'c', 'q.ts')}"
        " ORDER BY q.ts DESC LIMIT 1) p ON true"
    )


def _columns(who: Principal) -> str:
    return (
        "c.id, c.name, c.school_id, c.route_id, cs.state, cs.updated_at AS state_at,"
        " (SELECT count(*) FROM alerts a WHERE a.child_id = c.id AND a.state = 'open'"
        f"   AND {scope.during_callers_school(who, 'c', 'a.opened_at')}) AS open_alerts,"
        " p.ts AS p_ts, p.lon AS p_lon, p.lat AS p_lat, p.acc AS p_acc, p.batt AS p_batt"
    )


async def live_children(
    conn: asyncpg.Connection,
    who: Principal,
    *,
    school_id: int | None,
    child_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the children the caller may see, each with its monitor state (a dict, or None)."""
    where = (
        f"{scope.children(who)} AND ($4::bigint IS NULL OR c.school_id = $4)"
        " AND ($5::bigint IS NULL OR c.id = $5)"
    )
    args = (*scope.me_args(who), school_id, child_id)
    rows = await conn.fetch(
        f"WITH {scope.ME} SELECT {_columns(who)}, count(*) OVER () AS total__ FROM {_source(who)}"
        f" WHERE {where} ORDER BY c.id LIMIT $6 OFFSET $7",
        *args,
        limit,
        offset,
    )
    if rows:
        total = int(rows[0]["total__"])
    else:
        total = int(
            await conn.fetchval(f"WITH {scope.ME} SELECT count(*) FROM {_source(who)} WHERE {where}", *args)
        )
    return [dict(r) for r in rows], total
