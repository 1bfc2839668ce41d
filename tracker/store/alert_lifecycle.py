"""Alert lifecycle writes: the pipeline's alert transitions (alert rows, history rows and outbox rows,
inside the batch's transaction), the open incidents following their child, and the escalation of
what nobody acknowledged.

What an event does to alerts, who is told and who is next are rules of tracker.alerts.lifecycle and
tracker.alerts.escalation; this module only writes them. One incident is one alert even across
processes: the unique index alerts_one_open_idx lets an open alert of the same child, kind and zone
be updated, never duplicated.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tracker.alerts.escalation import Escalation, School, next_step
from tracker.alerts.lifecycle import (
    AlertRule,
    ChildEvent,
    OutboxRow,
    Recipient,
    guardian_messages,
    incident_zone,
    rules_for,
    school_messages,
    severity_of,
)
from tracker.cluster.partitions import Share
from tracker.monitor import Event, EventKind
from tracker.store import scope
from tracker.store.alerts import FACTS_COLUMNS, FACTS_JOINS, LINKED, AlertFacts, DeliveryJob, facts_of


def _ts(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


# A round's resolutions and openings, each one statement of arrays (at most one row per child in a
# round, so no row is touched twice by one statement): a statement per alert, pipelined, cost
# PostgreSQL a parse, plan and execution each, about half a millisecond per alert of a burst.
_RESOLVE = (
    "UPDATE alerts a SET state = 'resolved', resolved_at = o.at, updated_at = o.at,"
    " next_escalation_at = NULL"
    " FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[])"
    " AS o(child_id, kind, zone_id, at)"
    " WHERE a.child_id = o.child_id AND a.kind = o.kind AND coalesce(a.zone_id, 0) = coalesce(o.zone_id, 0)"
    " AND a.state = 'open' RETURNING a.id, a.escalation_level, a.child_id"
)
_OPEN = (
    "INSERT INTO alerts (child_id, kind, severity, zone_id, state, opened_at, updated_at,"
    " resolved_at, last_lon, last_lat, last_acc, last_fix_ts, fix_received_at, detail,"
    " next_escalation_at)"
    " SELECT o.child_id, o.kind, o.severity, o.zone_id, o.state, o.at, o.at, o.resolved_at, o.lon,"
    " o.lat, o.acc, o.at, o.received, o.detail, now() + o.escalate_after"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[],"
    " $7::timestamptz[], $8::float8[], $9::float8[], $10::real[], $11::timestamptz[], $12::jsonb[],"
    " $13::interval[])"
    " AS o(child_id, kind, severity, zone_id, state, at, resolved_at, lon, lat, acc, received, detail,"
    " escalate_after)"
    " ON CONFLICT (child_id, kind, coalesce(zone_id, 0)) WHERE state = 'open' DO UPDATE SET"
    " updated_at = EXCLUDED.updated_at, fix_count = alerts.fix_count + 1,"
    " last_lon = coalesce(EXCLUDED.last_lon, alerts.last_lon),"
    " last_lat = coalesce(EXCLUDED.last_lat, alerts.last_lat),"
    " last_acc = coalesce(EXCLUDED.last_acc, alerts.last_acc),"
    " last_fix_ts = EXCLUDED.last_fix_ts"
    " RETURNING id, (xmax = 0) AS inserted, child_id"
)


@dataclass
class OutboxWritten:
    """What a batch's alert transitions put in the outbox."""

    rows: int = 0
    # the critical websocket deliveries to guardians connected to this process, claimed in the same
    # transaction ('sending'): the caller sends them as soon as the transaction is committed, with
    # what each message says, and marks them (a crash in between: they are due again at the next start)
    at_once: list[tuple[DeliveryJob, AlertFacts]] = field(default_factory=list)


async def apply_events(
    conn: asyncpg.Connection,
    events: list[ChildEvent],
    recipients: dict[int, list[Recipient]],
    schools: dict[int, int | None],
    escalation: Escalation,
    at_once: Collection[int] = (),
) -> OutboxWritten:
    """Write the alert transitions of `events`, their history and their outbox rows. Must run inside
    the batch's transaction. `recipients`: child id -> guardians in escalation order; `schools`: child
    id -> school id when the school has a webhook; `at_once`: guardians whose critical websocket
    deliveries the caller sends itself right after the commit (they have a socket open on this
    process), instead of the dispatcher's next round.

    A child's transitions are applied in the order of its events; different children's touch different
    alerts, so they go in rounds (each child's first transition, then each one's second, ...), each
    round one statement of arrays per action: a few round trips per batch, not one per transition."""
    outbox: list[OutboxRow] = []
    history: list[tuple[int, datetime | None, str, dict[str, object]]] = []
    rounds: list[list[tuple[ChildEvent, AlertRule]]] = []
    nth: dict[int, int] = {}
    for ce in events:
        for rule in rules_for(ce.event):
            k = nth.get(ce.child_id, 0)
            nth[ce.child_id] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append((ce, rule))
    for transitions in rounds:  # at most one transition per child in a round
        resolving = [(ce, rule) for ce, rule in transitions if rule.action == "resolve"]
        if resolving:
            by_child = {ce.child_id: (ce, rule) for ce, rule in resolving}
            rows = await conn.fetch(
                _RESOLVE,
                *_columns(
                    [
                        (ce.child_id, rule.kind, incident_zone(ce, rule), _ts(ce.event.ts))
                        for ce, rule in resolving
                    ],
                    4,
                ),
            )
            for row in rows:
                ce, rule = by_child[row["child_id"]]
                at = _ts(ce.event.ts)
                history.append((row["id"], at, "resolved", {"by": ce.event.kind.value}))
                told = recipients.get(ce.child_id, [])[: row["escalation_level"] + 1]
                outbox += guardian_messages(row["id"], "resolved", told, rule.severity)
                outbox += school_messages(row["id"], "resolved", schools.get(ce.child_id))
        opening = [(ce, rule) for ce, rule in transitions if rule.action != "resolve"]
        if not opening:
            continue
        severities = [severity_of(ce, rule) for ce, rule in opening]
        rows = await conn.fetch(
            _OPEN,
            *_columns(
                [
                    (
                        ce.child_id,
                        rule.kind,
                        severity,
                        incident_zone(ce, rule),
                        "resolved" if rule.action == "notice" else "open",
                        _ts(ce.event.ts),
                        _ts(ce.event.ts) if rule.action == "notice" else None,
                        ce.lon,
                        ce.lat,
                        ce.acc,
                        _ts(ce.received_at),
                        {"event": ce.event.kind.value} | _detail(ce.event),
                        escalation.after(severity) if rule.action == "open" else None,
                    )
                    for (ce, rule), severity in zip(opening, severities, strict=True)
                ],
                13,
            ),
        )
        opened = {row["child_id"]: row for row in rows}  # (a set's rows come in no promised order)
        for (ce, _rule), severity in zip(opening, severities, strict=True):
            row = opened[ce.child_id]
            at = _ts(ce.event.ts)
            if not row["inserted"]:
                history.append((row["id"], at, "updated", {"by": ce.event.kind.value}))
                continue  # an incident already told: updated, not told again
            history.append((row["id"], at, "opened", {"severity": severity}))
            first = recipients.get(ce.child_id, [])[:1]
            outbox += guardian_messages(row["id"], "opened", first, severity)
            outbox += school_messages(row["id"], "opened", schools.get(ce.child_id))
    if not (history or outbox):
        return OutboxWritten()
    here = set(at_once)
    flags = [channel == "websocket" and guardian in here for _, _, guardian, _, channel in outbox]
    rows = await conn.fetch(_HISTORY_AND_OUTBOX, *_columns(history, 4), *_columns(outbox, 5), flags)
    return OutboxWritten(
        rows[0]["written"],
        [facts_of(r) for r in rows if r["delivery_id"] is not None],
    )


# the order the dispatcher claims deliveries in (migration 0005): critical alerts', warnings', notices'
_PRIORITY = "CASE alert.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"

# a delivery sent by the committing process as soon as the transaction is committed (the outbox row
# is written 'sending', as a dispatcher's claim would leave it)
# (the row's flag: a websocket delivery to a guardian connected here, worked out by the caller; an
# `= ANY(array)` of the connected guardians here was a scan of the array per row: 4,000 rows of a
# burst's batch against 2,000 guardians, twice)
_AT_ONCE = "(o.at_once AND alert.severity = 'critical')"

# history rows and outbox rows in one statement of arrays (a batch's were two pipelined statements of
# a row each: a round trip more for every batch with an alert, and a statement per row); it answers
# with the number of outbox rows written, and the rows claimed at once with what their messages say
# (one row with nulls when there are none)
_HISTORY_AND_OUTBOX = (
    "WITH history AS ("
    " INSERT INTO alert_history (alert_id, at, step, detail)"
    " SELECT h.alert_id, coalesce(h.at, now()), h.step, h.detail"
    " FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::jsonb[])"
    " WITH ORDINALITY AS h(alert_id, at, step, detail, n)"
    " ORDER BY h.n),"
    " written AS ("
    " INSERT INTO deliveries"
    " (alert_id, transition, guardian_id, school_id, channel, priority, state, attempts)"
    f" SELECT o.alert_id, o.transition, o.guardian_id, o.school_id, o.channel, {_PRIORITY},"
    f" CASE WHEN {_AT_ONCE} THEN 'sending' ELSE 'pending' END, CASE WHEN {_AT_ONCE} THEN 1 ELSE 0 END"
    " FROM unnest($5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bool[])"
    " AS o(alert_id, transition, guardian_id, school_id, channel, at_once)"
    " JOIN alerts alert ON alert.id = o.alert_id"
    " ON CONFLICT DO NOTHING"
    " RETURNING id, alert_id, transition, channel, attempts, guardian_id, state)"
    " SELECT n.written, j.* FROM (SELECT count(*) AS written FROM written) n LEFT JOIN ("
    "  SELECT w.id AS delivery_id, w.transition, w.channel, w.attempts, w.guardian_id,"
    "  NULL::bigint AS school_id, g.phone, coalesce(g.language, 'ko') AS language,"
    "  NULL AS webhook_url, NULL AS webhook_secret,"
    f" {LINKED.format(delivery='w')} AS linked, {FACTS_COLUMNS}"
    f"  FROM written w JOIN alerts a ON a.id = w.alert_id {FACTS_JOINS}"
    "  LEFT JOIN guardians g ON g.id = w.guardian_id"
    "  WHERE w.state = 'sending') j ON true"
)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (the arrays of an unnest)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def write_outbox(conn: asyncpg.Connection, rows: list[OutboxRow]) -> int:
    """Insert outbox rows (alert, transition, guardian or school, channel); a row already there is kept."""
    if rows:
        await conn.fetch(_HISTORY_AND_OUTBOX, *_columns([], 4), *_columns(rows, 5), [False] * len(rows))
    return len(rows)


async def touch_open_alerts(
    conn: asyncpg.Connection, fixes: list[tuple[int, float, float, float, float]]
) -> None:
    """An open route or zone incident follows the child: its last position is the child's latest fix
    (child, ts, lon, lat, acc), so the parent's page shows where the child is now."""
    if fixes:
        await conn.executemany(
            "UPDATE alerts SET last_lon = $3, last_lat = $4, last_acc = $5, last_fix_ts = to_timestamp($2),"
            " updated_at = greatest(updated_at, to_timestamp($2)), fix_count = fix_count + 1"
            " WHERE child_id = $1 AND state = 'open' AND kind IN ('left_route', 'danger_zone')"
            " AND (last_fix_ts IS NULL OR last_fix_ts < to_timestamp($2))",
            fixes,
        )


async def escalate_due(
    pool: asyncpg.Pool, escalation: Escalation, limit: int = 200, share: Share | None = None
) -> list[tuple[int, int]]:
    """Escalate every alert whose time has come; returns each escalated alert's id and child id (the
    caller tells the schools' live maps: tracker.service).

    Stateless between runs: what is due is read from the alerts table (`next_escalation_at`), and
    FOR UPDATE SKIP LOCKED lets several trackers share the work. ``share``: a worker's partitions
    (tracker.cluster): only the alerts of the children it owns, so that each child's escalations run
    on its owner (none while it owns nothing)."""
    escalated: list[tuple[int, int]] = []
    if share is not None and not share.tokens:
        return escalated
    owned, args = (
        ("", [])
        if share is None
        else (" AND a.child_id % $2 = ANY($3::int[])", [share.partitions, share.owned])
    )
    async with pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(
            "SELECT a.id, a.child_id, a.severity, a.escalation_level, s.id AS school_id,"
            " s.staff_phone, s.webhook_url"
            " FROM alerts a JOIN children c ON c.id = a.child_id"
            f" JOIN schools s ON s.id = {scope.school_at('c', 'a.opened_at')}"
            " WHERE a.state = 'open' AND a.acknowledged_at IS NULL AND a.next_escalation_at <= now()"
            f"{owned} ORDER BY a.next_escalation_at FOR UPDATE OF a SKIP LOCKED LIMIT $1",
            limit,
            *args,
        )
        for alert in due:
            # the next rung is the first guardian linked to the child now who has not been told yet:
            # one unlinked meanwhile is off the ladder, and the ones after them are not skipped
            untold = [
                Recipient(g["id"], tuple(g["channels"]), bool(g["phone"]))
                for g in await conn.fetch(
                    "SELECT g.id, g.phone, g.channels"
                    " FROM child_guardians cg JOIN guardians g ON g.id = cg.guardian_id"
                    " WHERE cg.child_id = $1 AND g.id NOT IN ("
                    "   SELECT d.guardian_id FROM deliveries d"
                    "   WHERE d.alert_id = $2 AND d.guardian_id IS NOT NULL"
                    "   UNION SELECT (h.detail->>'guardian_id')::bigint FROM alert_history h"
                    "   WHERE h.alert_id = $2 AND h.step = 'escalated' AND h.detail ? 'guardian_id')"
                    " ORDER BY cg.priority, cg.guardian_id",
                    alert["child_id"],
                    alert["id"],
                )
            ]
            level = alert["escalation_level"] + 1
            school = School(alert["school_id"], bool(alert["staff_phone"]), bool(alert["webhook_url"]))
            step = next_step(alert["id"], 0, untold, school)
            await conn.execute(
                "UPDATE alerts SET escalation_level = $2, next_escalation_at = now() + $3::interval"
                " WHERE id = $1",
                alert["id"],
                level,
                None if step.last else escalation.after(alert["severity"]),
            )
            await conn.execute(
                "INSERT INTO alert_history (alert_id, step, detail) VALUES ($1, 'escalated', $2)",
                alert["id"],
                step.to | {"level": level, "messages": len(step.messages)},
            )
            await write_outbox(conn, step.messages)
            escalated.append((alert["id"], alert["child_id"]))
    return escalated


def _detail(event: Event) -> dict[str, str]:
    """What the alert's detail says besides the event: the place (arrived, not arrived, left), or of
    an SOS that its time is the tracker's ("clock": "stamped at receipt", the tag's was out of range)."""
    if not event.detail:
        return {}
    return {"clock" if event.kind == EventKind.SOS else "place": event.detail}
