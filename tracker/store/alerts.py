"""Alert and delivery queries: what the dispatcher, the websocket and the API read and mark."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

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


FACTS_COLUMNS = """
a.id AS alert_id, a.kind, a.severity, a.state, a.child_id, c.name AS child_name,
a.zone_id, z.name AS zone_name, z.kind AS zone_kind, a.opened_at, a.resolved_at,
a.last_lon AS lon, a.last_lat AS lat, a.last_acc AS acc, a.last_fix_ts AS fix_ts,
a.fix_received_at, coalesce(s.timezone, 'Asia/Seoul') AS timezone
"""
# an alert (``a``) joined to what its facts name: the child, the child's school, the zone
FACTS_JOINS = """
JOIN children c ON c.id = a.child_id
LEFT JOIN schools s ON s.id = c.school_id
LEFT JOIN danger_zones z ON z.id = a.zone_id
"""
_FACTS_SQL = f"SELECT {FACTS_COLUMNS} FROM alerts a {FACTS_JOINS}"


def _facts(r: asyncpg.Record) -> AlertFacts:
    values = {k: r[k] for k in AlertFacts.__dataclass_fields__}
    if values["acc"] is not None:
        values["acc"] = float(values["acc"])
    return AlertFacts(**values)


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
    """Acknowledge an alert of one of the guardian's children; False if there is no such alert.

    Acknowledging stops the escalation; an SOS is closed by it (the guardian has taken over).
    A second acknowledgement changes nothing and keeps the first one's time and guardian."""
    row = await conn.fetchrow(
        "WITH target AS ("
        " SELECT id FROM alerts WHERE id = $1"
        " AND child_id IN (SELECT child_id FROM child_guardians WHERE guardian_id = $2)),"
        " acked AS ("
        " UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $2, next_escalation_at = NULL,"
        " state = CASE WHEN kind = 'sos' THEN 'resolved' ELSE state END,"
        " resolved_at = CASE WHEN kind = 'sos' THEN coalesce(resolved_at, now()) ELSE resolved_at END"
        " WHERE id IN (SELECT id FROM target) AND acknowledged_at IS NULL RETURNING id),"
        " noted AS ("
        " INSERT INTO alert_history (alert_id, step, detail)"
        " SELECT id, 'acknowledged', jsonb_build_object('guardian_id', $2::bigint) FROM acked)"
        " SELECT id FROM target",
        alert_id,
        guardian_id,
    )
    return row is not None


async def cancel_deliveries(
    conn: asyncpg.Connection, child_id: int, guardian_ids: Sequence[int], reason: str
) -> int:
    """Cancel what is still to be sent to these guardians about the child's alerts (they were unlinked
    from the child), each with a 'cancelled' step in its alert's history saying why; returns how many.
    A delivery a dispatcher holds at this moment ('sending') is already in its channel's hands."""
    status = await conn.execute(
        "WITH cancelled AS ("
        " UPDATE deliveries d SET state = 'cancelled', last_error = $3 FROM alerts a"
        " WHERE a.id = d.alert_id AND a.child_id = $1 AND d.guardian_id = ANY($2::bigint[])"
        " AND d.state = 'pending' RETURNING d.id, d.alert_id, d.guardian_id, d.channel, d.transition)"
        " INSERT INTO alert_history (alert_id, step, detail)"
        " SELECT alert_id, 'cancelled', jsonb_build_object('guardian_id', guardian_id, 'channel', channel,"
        " 'transition', transition, 'reason', $3::text) FROM cancelled ORDER BY id",
        child_id,
        list(guardian_ids),
        reason,
    )
    return int(status.split()[-1])


@dataclass(frozen=True)
class DeliveryJob:
    delivery_id: int
    alert_id: int
    transition: str
    channel: str
    attempts: int
    guardian_id: int | None
    school_id: int | None
    phone: str | None  # the guardian's, or the school's duty phone
    language: str
    webhook_url: str | None
    webhook_secret: str | None
    severity: str
    # False: a delivery to a guardian who is no longer linked to the alert's child (unlinked after it
    # was written): the dispatcher cancels it instead of sending it
    linked: bool = True


# whether a delivery's guardian (if any) is still linked to its alert's child (``a``): one unlinked
# after the row was written gets nothing; ``{delivery}``: the deliveries row's alias
LINKED = (
    "({delivery}.guardian_id IS NULL OR EXISTS (SELECT 1 FROM child_guardians cg"
    " WHERE cg.child_id = a.child_id AND cg.guardian_id = {delivery}.guardian_id))"
)


def facts_of(r: asyncpg.Record) -> tuple[DeliveryJob, AlertFacts]:
    """A delivery and its alert's facts, from a row of the job's columns and FACTS_COLUMNS (a school's
    delivery: with its webhook; a guardian's: without)."""
    job = DeliveryJob(
        r["delivery_id"], r["alert_id"], r["transition"], r["channel"], r["attempts"], r["guardian_id"],
        r["school_id"], r["phone"], r["language"], r["webhook_url"], r["webhook_secret"], r["severity"],
        r["linked"],
    )  # fmt: skip
    return job, _facts(r)


async def claim_due_deliveries(
    pool: asyncpg.Pool, limit: int = 200, *, channels: Sequence[str] | None = None, other: bool = False
) -> list[tuple[DeliveryJob, AlertFacts]]:
    """Take due outbox rows (pending, or a retry whose time has come), critical alerts' first, then
    warnings', then notices' (at the start of a commute thousands of 'arrived' notices can wait in
    the outbox: an SOS does not wait behind them), each kind oldest first, with what their messages
    say (the alert's facts), in one statement. SKIP LOCKED lets several dispatchers share one outbox
    (several tracker processes, each with its own): a row another claim holds locked is passed over,
    and one another claim took meanwhile is no longer 'pending' when this one gets to it (PostgreSQL
    reads the row's latest version again before locking it), so each row is claimed once. A claimed row
    is 'sending' until it is marked, with its claimer (this connection's ``tracker.worker_id``,
    migration 0016) and the time. Each row says whether its guardian is still linked to the alert's
    child (``linked``): one who is not gets nothing.

    ``channels``: only rows of those channels; with ``other``, only rows of every other channel (the
    dispatcher's lanes: the websocket does not wait behind SMS and webhooks)."""
    if channels is None:
        where = "true"
    else:
        where = "channel <> ALL($2::text[])" if other else "channel = ANY($2::text[])"
    rows = await pool.fetch(
        "WITH due AS ("
        f"   SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= now() AND {where}"
        "   ORDER BY priority, next_attempt_at, id FOR UPDATE SKIP LOCKED LIMIT $1),"
        " claimed AS ("
        "   UPDATE deliveries d SET state = 'sending', attempts = d.attempts + 1,"
        " claimed_by = tracker_worker(), claimed_at = now() FROM due WHERE d.id = due.id"
        "   RETURNING d.*)"
        " SELECT w.id AS delivery_id, w.transition, w.channel, w.attempts, w.guardian_id, w.school_id,"
        " coalesce(g.phone, ws.staff_phone) AS phone, coalesce(g.language, 'ko') AS language,"
        " ws.webhook_url, ws.webhook_secret,"
        f" {LINKED.format(delivery='w')} AS linked, {FACTS_COLUMNS}"
        f" FROM claimed w JOIN alerts a ON a.id = w.alert_id {FACTS_JOINS}"
        " LEFT JOIN guardians g ON g.id = w.guardian_id LEFT JOIN schools ws ON ws.id = w.school_id"
        " ORDER BY w.id",
        limit,
        *(() if channels is None else (list(channels),)),
    )
    return [facts_of(r) for r in rows]


async def sent_counts(
    pool: asyncpg.Pool, keys: list[tuple[int, str]], window_s: float
) -> dict[tuple[int, str], int]:
    """Messages sent to each (guardian, channel) in the last `window_s` seconds (the rate limit), for
    a dispatcher round's pairs in one query; a pair absent from the answer has none."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    rows = await pool.fetch(
        "SELECT d.guardian_id, d.channel, count(*) FROM deliveries d"
        " JOIN unnest($1::bigint[], $2::text[]) AS k(guardian_id, channel)"
        " ON d.guardian_id = k.guardian_id AND d.channel = k.channel"
        " WHERE d.state = 'sent' AND d.sent_at > now() - make_interval(secs => $3)"
        " GROUP BY d.guardian_id, d.channel",
        [g for g, _ in keys],
        [c for _, c in keys],
        window_s,
    )
    return {(r[0], r[1]): int(r[2]) for r in rows}


@dataclass(frozen=True)
class DeliveryMark:
    """What became of a delivery, and when (unix seconds). state: sent | offline | failed | suppressed |
    cancelled | pending (a retry after ``retry_in_s``). ``history``: (alert id, step, detail) of the
    alert_history row it adds."""

    delivery_id: int
    state: str
    at: float
    error: str | None = None
    retry_in_s: float = 0.0
    history: tuple[int, str, dict[str, object]] | None = None


MARK_STATEMENT = "/* a dispatcher round's outcomes */"
"""The mark's opening words, as PostgreSQL shows the running statement (the crash tests find it there)."""

# A round's outcomes, as arrays, in one statement. A delivery gone meanwhile (its alert deleted with its
# child) is marked nowhere and adds no history row; so is one whose last claimer is another process
# (this one was taken for dead and its rows released and claimed again: the new claimer's outcome
# stands, migration 0016).
_MARK_AND_TELL_SQL = (
    f"{MARK_STATEMENT} WITH m AS ("
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::bigint[], $6::text[],"
    " $7::jsonb[], $8::timestamptz[]) AS m(id, state, error, retry_in_s, alert_id, step, detail, at)),"
    " marked AS ("
    " UPDATE deliveries d SET state = m.state, last_error = m.error,"
    " sent_at = CASE WHEN m.state IN ('sent', 'offline', 'suppressed') THEN m.at ELSE d.sent_at END,"
    " next_attempt_at = m.at + make_interval(secs => m.retry_in_s)"
    " FROM m WHERE d.id = m.id AND d.claimed_by IS NOT DISTINCT FROM tracker_worker() RETURNING d.id)"
    " INSERT INTO alert_history (alert_id, at, step, detail)"
    " SELECT m.alert_id, m.at, m.step, m.detail FROM m JOIN marked ON marked.id = m.id"
    " WHERE m.alert_id IS NOT NULL ORDER BY m.id"
)


async def mark_deliveries(pool: asyncpg.Pool, marks: Sequence[DeliveryMark]) -> None:
    """Write a dispatcher round's outcomes, and their history rows, in one statement of arrays (all of
    them or none: it may be tried again): a statement per delivery took a pool connection each, and a
    round trip each on the event loop, which the batches' commits waited behind; pipelined, still a
    statement each for PostgreSQL to plan and run."""
    if not marks:
        return
    histories = [m.history or (None, None, None) for m in marks]
    await pool.execute(
        _MARK_AND_TELL_SQL,
        [m.delivery_id for m in marks],
        [m.state for m in marks],
        [m.error for m in marks],
        [m.retry_in_s for m in marks],
        [h[0] for h in histories],
        [h[1] for h in histories],
        [h[2] for h in histories],
        [datetime.fromtimestamp(m.at, UTC) for m in marks],
    )


CLAIM_TIMEOUT_S = 60.0
"""A row 'sending' whose claim is older than this is a dead process's (a live one refreshes the claims
it still holds every third of it: tracker.alerts.dispatcher)."""


async def release_stuck_deliveries(pool: asyncpg.Pool, claim_timeout_s: float = CLAIM_TIMEOUT_S) -> int:
    """At start: rows left 'sending' by a process that died mid-delivery are due again. Some of them
    may have reached their recipient before it died; sending them again is what keeps a message from
    being missed, and the channels keep the repeat harmless (tracker/alerts/channels.py).

    With several tracker processes on one PostgreSQL, only the rows this worker claimed itself (in an
    earlier life: it has claimed nothing yet in this one) and those whose claim is older than
    ``claim_timeout_s`` (a dead process's: a live one keeps its claims fresh) are released; another
    live process's rows are left to it. A worker's id must therefore be its own: two processes started
    with one id take each other's fresh rows for their own at start."""
    status = await pool.execute(
        "UPDATE deliveries SET state = 'pending' WHERE state = 'sending'"
        " AND (claimed_by IS NOT DISTINCT FROM tracker_worker() OR claimed_at IS NULL"
        " OR claimed_at < now() - make_interval(secs => $1))",
        claim_timeout_s,
    )
    return int(status.split()[-1])


async def release_abandoned_deliveries(pool: asyncpg.Pool, claim_timeout_s: float = CLAIM_TIMEOUT_S) -> int:
    """While running: rows another process claimed and has not refreshed for ``claim_timeout_s`` (it
    died, or is cut off from PostgreSQL) are due again; this process's own are never abandoned."""
    status = await pool.execute(
        "UPDATE deliveries SET state = 'pending' WHERE state = 'sending'"
        " AND claimed_by IS DISTINCT FROM tracker_worker()"
        " AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $1))",
        claim_timeout_s,
    )
    return int(status.split()[-1])


async def refresh_claims(pool: asyncpg.Pool, delivery_ids: Sequence[int]) -> None:
    """The heartbeat of a process's claims: the rows it is still sending are not a dead process's."""
    if delivery_ids:
        await pool.execute(
            "UPDATE deliveries SET claimed_at = now() WHERE id = ANY($1::bigint[]) AND state = 'sending'"
            " AND claimed_by IS NOT DISTINCT FROM tracker_worker()",
            list(delivery_ids),
        )


async def socket_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool, delivery_ids: Sequence[int]
) -> list[tuple[DeliveryJob, AlertFacts]]:
    """Websocket deliveries by id with what their messages say (another process claimed them and
    told this one, which holds sockets of their guardians: tracker.alerts.relay)."""
    rows = await conn.fetch(
        "SELECT w.id AS delivery_id, w.transition, w.channel, w.attempts, w.guardian_id, w.school_id,"
        " g.phone, coalesce(g.language, 'ko') AS language, NULL AS webhook_url,"
        f" NULL AS webhook_secret, {LINKED.format(delivery='w')} AS linked, {FACTS_COLUMNS}"
        f" FROM deliveries w JOIN alerts a ON a.id = w.alert_id {FACTS_JOINS}"
        " LEFT JOIN guardians g ON g.id = w.guardian_id"
        " WHERE w.id = ANY($1::bigint[]) AND w.channel = 'websocket' ORDER BY w.id",
        list(delivery_ids),
    )
    return [facts_of(r) for r in rows]


async def socket_deliveries_since(
    conn: asyncpg.Connection | asyncpg.Pool, since_s: float, guardian_ids: Sequence[int]
) -> list[tuple[DeliveryJob, AlertFacts]]:
    """Websocket deliveries to these guardians that another process claimed since ``since_s`` (unix
    seconds): what a relay whose listening connection was lost may have missed."""
    ids = await conn.fetch(
        "SELECT id FROM deliveries WHERE channel = 'websocket' AND guardian_id = ANY($2::bigint[])"
        " AND claimed_at >= to_timestamp($1) AND claimed_by IS DISTINCT FROM tracker_worker()"
        " AND state IN ('sending', 'sent', 'offline')",
        since_s,
        list(guardian_ids),
    )
    return await socket_deliveries(conn, [r["id"] for r in ids]) if ids else []
