"""The audit logs: staff reading children's positions (privacy), and every token issued.

Position reads: who read which child's positions, through which endpoint, on which day, how often and
how many fixes in all. One row per staff session (the token it signed in with), child, day (in the
time zone of the child's school) and endpoint, with the number of reads, the fixes they held, and the
first (``at``) and last (``last_at``) read: a live map polled every few seconds, or pushed over
/ws/school, is one row per child and day, not one per poll (migration 0012; rows written before it
have no day and stand for one read each). Staff are school staff and the city's administrators; a
guardian reading their own child's position is not logged (and a staff member cannot read as a
guardian: no school's staff can get a sign-in for a guardian with a child at another school,
tracker.store.scope). The log is written before the answer is sent: a read that cannot be logged
fails.

Token issues: written by tracker.store.tokens.create_token with the token itself; read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import asyncpg

from tracker.store import scope
from tracker.store.tokens import Principal

STAFF_ROLES = ("admin", "school")


async def record_position_reads(
    conn: asyncpg.Connection | asyncpg.Pool,
    who: Principal,
    fixes_by_child: Mapping[int, int],
    endpoint: str,
    *,
    day: date | None = None,
    reads_by_child: Mapping[int, int] | None = None,
) -> int:
    """Log that ``who`` read ``fixes_by_child[c]`` positions of each child c, in one read per child
    (``reads_by_child``: as many reads as it says), on ``day`` (None: today in the time zone of the
    child's school, else of the reader's, else UTC): added to the day's row of the token, child and
    endpoint. Returns how many children. The children are written in id order, so that two requests
    of one token never wait on each other's rows in opposite orders."""
    if who.role not in STAFF_ROLES or not fixes_by_child:
        return 0
    children = sorted(fixes_by_child)
    reads = [1 if reads_by_child is None else reads_by_child.get(c, 1) for c in children]
    await conn.execute(
        "INSERT INTO position_reads AS l"
        " (token_id, role, school_id, label, child_id, endpoint, fixes, reads, day, at, last_at)"
        " SELECT $1, $2, $3, $4, t.c, $5, t.f, t.r,"
        "  coalesce($9::date, (now() AT TIME ZONE coalesce(s.timezone, rs.timezone, 'UTC'))::date),"
        "  now(), now()"
        " FROM unnest($6::bigint[], $7::int[], $8::int[]) WITH ORDINALITY AS t(c, f, r, n)"
        " LEFT JOIN children ch ON ch.id = t.c LEFT JOIN schools s ON s.id = ch.school_id"
        " LEFT JOIN schools rs ON rs.id = $3::bigint"
        " ORDER BY t.n"
        " ON CONFLICT (token_id, child_id, day, endpoint) WHERE day IS NOT NULL DO UPDATE SET"
        " reads = l.reads + EXCLUDED.reads, fixes = l.fixes + EXCLUDED.fixes, last_at = EXCLUDED.last_at",
        who.token_id,
        who.role,
        who.school_id,
        who.label,
        endpoint,
        children,
        [fixes_by_child[c] for c in children],
        reads,
        day,
    )
    return len(children)


def _visible(who: Principal) -> str:
    """Entries the caller may read: admin all; school staff their school's children's; guardians their
    own children's (a parent may see who looked at their child)."""
    if who.role == "admin":
        return "true"
    if who.role == "school":
        # of a child who moved school: each school's own reads, and the city's made while the child
        # was theirs (another school's reads are that school's, the family's and the city's business)
        return (
            "EXISTS (SELECT 1 FROM children c WHERE c.id = l.child_id"
            f" AND {scope.children_ever(who)} AND (l.school_id = me.school_id"
            f" OR (l.school_id IS NULL AND {scope.during_callers_school(who, 'c', 'l.at')})))"
        )
    if who.role == "guardian":
        return "l.child_id IN (SELECT child_id FROM child_guardians WHERE guardian_id = me.guardian_id)"
    return "false"


async def list_position_reads(
    conn: asyncpg.Connection | asyncpg.Pool,
    who: Principal,
    *,
    child_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    where = f"{_visible(who)} AND ($4::bigint IS NULL OR l.child_id = $4)"
    rows = await conn.fetch(
        f"WITH {scope.ME} SELECT l.id, l.at, coalesce(l.last_at, l.at) AS last_at, l.day, l.reads,"
        " l.token_id, l.role, l.school_id, l.label, l.child_id, l.endpoint, l.fixes,"
        f" count(*) OVER () AS total FROM position_reads l, me WHERE {where}"
        " ORDER BY l.id DESC LIMIT $5 OFFSET $6",
        *scope.me_args(who),
        child_id,
        limit,
        offset,
    )
    if rows:
        total = rows[0]["total"]
    else:
        total = await conn.fetchval(
            f"WITH {scope.ME} SELECT count(*) FROM position_reads l, me WHERE {where}",
            *scope.me_args(who),
            child_id,
        )
    return [{k: v for k, v in r.items() if k != "total"} for r in rows], int(total)


_TOKEN_ISSUE_COLUMNS = (
    "l.id, l.at, l.token_id, l.role, l.school_id, l.guardian_id, l.tag_id, l.label, l.expires_at,"
    " l.issued_via, l.issuer_token_id, l.issuer_role, l.issuer_school_id, l.issuer_label, l.enrolment_id"
)


async def list_token_issues(
    conn: asyncpg.Connection | asyncpg.Pool,
    who: Principal,
    *,
    guardian_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """The token-issue log entries the caller may read (tracker.store.scope.token_issues), newest first."""
    where = f"{scope.token_issues(who)} AND ($4::bigint IS NULL OR l.guardian_id = $4)"
    rows = await conn.fetch(
        f"WITH {scope.ME} SELECT {_TOKEN_ISSUE_COLUMNS}, count(*) OVER () AS total FROM token_issues l, me"
        f" WHERE {where} ORDER BY l.id DESC LIMIT $5 OFFSET $6",
        *scope.me_args(who),
        guardian_id,
        limit,
        offset,
    )
    if rows:
        total = rows[0]["total"]
    else:
        total = await conn.fetchval(
            f"WITH {scope.ME} SELECT count(*) FROM token_issues l, me WHERE {where}",
            *scope.me_args(who),
            guardian_id,
        )
    return [{k: v for k, v in r.items() if k != "total"} for r in rows], int(total)
