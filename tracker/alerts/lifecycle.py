"""Alert lifecycle: monitor events become alert rows, history rows and outbox rows, inside the
batch's transaction.

One incident is one alert: an open alert for the same child, kind and zone is updated (fix count,
last position), never duplicated (the unique index alerts_one_open_idx makes that hold even across
processes). An alert that opens goes to the child's first guardian (and the school's webhook);
unacknowledged, a warning or critical alert escalates (tracker.alerts.escalation). Resolutions go to
every guardian who was told of the alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from tracker.monitor import Event, EventKind

Action = Literal["open", "resolve", "notice"]  # notice: an info alert, resolved as it is made
CHANNELS = ("websocket", "sms")


@dataclass(frozen=True)
class AlertRule:
    kind: str
    action: Action
    severity: str


def rules_for(event: Event) -> list[AlertRule]:
    """What an event does to alerts (DESIGN.md's table of events)."""
    place = event.detail or "school"
    match event.kind:
        case EventKind.LEFT_ROUTE:
            return [AlertRule("left_route", "open", "warning")]
        case EventKind.BACK_ON_ROUTE:
            return [AlertRule("left_route", "resolve", "warning")]
        case EventKind.ENTERED_ZONE:
            return [AlertRule("danger_zone", "open", "critical")]
        case EventKind.LEFT_ZONE:
            return [AlertRule("danger_zone", "resolve", "critical")]
        case EventKind.SOS:
            return [AlertRule("sos", "open", "critical")]
        case EventKind.LOW_BATTERY:
            return [AlertRule("low_battery", "notice", "info")]
        case EventKind.SIGNAL_LOST:
            return [AlertRule("signal_lost", "open", "warning")]
        case EventKind.SIGNAL_BACK:
            return [AlertRule("signal_lost", "resolve", "warning")]
        case EventKind.NOT_ARRIVED:
            return [AlertRule(f"not_arrived_{place}", "open", "warning")]
        case EventKind.ARRIVED:
            return [
                AlertRule(f"not_arrived_{place}", "resolve", "warning"),
                AlertRule(f"arrived_{place}", "notice", "info"),
            ]
        case EventKind.LEFT_PLACE:
            return [AlertRule("left_school", "notice", "info")] if place == "school" else []
    return []


@dataclass(frozen=True)
class ChildEvent:
    """A monitor event with what the alert row needs to say about it."""

    child_id: int
    event: Event
    lon: float | None
    lat: float | None
    acc: float | None
    received_at: float | None
    zone_severity: str | None = None


@dataclass(frozen=True)
class Recipient:
    guardian_id: int
    channels: tuple[str, ...]
    has_phone: bool


@dataclass(frozen=True)
class Escalation:
    """After how long an unacknowledged alert of each severity goes to the next person."""

    warning_s: float = 300.0
    critical_s: float = 120.0

    def after(self, severity: str) -> timedelta | None:
        seconds = {"warning": self.warning_s, "critical": self.critical_s}.get(severity)
        return None if seconds is None else timedelta(seconds=seconds)


def _ts(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


_RESOLVE = (
    "UPDATE alerts SET state = 'resolved', resolved_at = $4, updated_at = $4, next_escalation_at = NULL"
    " WHERE child_id = $1 AND kind = $2 AND coalesce(zone_id, 0) = coalesce($3::bigint, 0)"
    " AND state = 'open' RETURNING id, escalation_level, child_id"
)
_OPEN = (
    "INSERT INTO alerts (child_id, kind, severity, zone_id, state, opened_at, updated_at,"
    " resolved_at, last_lon, last_lat, last_acc, last_fix_ts, fix_received_at, detail,"
    " next_escalation_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $6, $11, $12, now() + $13::interval)"
    " ON CONFLICT (child_id, kind, coalesce(zone_id, 0)) WHERE state = 'open' DO UPDATE SET"
    " updated_at = EXCLUDED.updated_at, fix_count = alerts.fix_count + 1,"
    " last_lon = coalesce(EXCLUDED.last_lon, alerts.last_lon),"
    " last_lat = coalesce(EXCLUDED.last_lat, alerts.last_lat),"
    " last_acc = coalesce(EXCLUDED.last_acc, alerts.last_acc),"
    " last_fix_ts = EXCLUDED.last_fix_ts"
    " RETURNING id, (xmax = 0) AS inserted, child_id"
)


async def apply_events(
    conn: asyncpg.Connection,
    events: list[ChildEvent],
    recipients: dict[int, list[Recipient]],
    schools: dict[int, int | None],
    escalation: Escalation,
) -> int:
    """Write the alert transitions of `events`, their history and their outbox rows; returns the
    number of outbox rows. Must run inside the batch's transaction. `recipients`: child id ->
    guardians in escalation order; `schools`: child id -> school id when the school has a webhook.

    A child's transitions are applied in the order of its events; different children's touch different
    alerts, so they go in rounds (each child's first transition, then each one's second, ...), each
    round a pipelined statement per action (`fetchmany`): a few round trips per batch, not one per
    transition."""
    outbox: list[tuple[int, str, int | None, int | None, str]] = []
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
            rows = await conn.fetchmany(
                _RESOLVE,
                [(ce.child_id, rule.kind, _zone(ce, rule), _ts(ce.event.ts)) for ce, rule in resolving],
            )
            for row in rows:
                ce, rule = by_child[row["child_id"]]
                at = _ts(ce.event.ts)
                history.append((row["id"], at, "resolved", {"by": ce.event.kind.value}))
                told = recipients.get(ce.child_id, [])[: row["escalation_level"] + 1]
                outbox += _fan_out(row["id"], "resolved", told, rule.severity)
                outbox += _school_webhook(row["id"], "resolved", schools.get(ce.child_id))
        opening = [(ce, rule) for ce, rule in transitions if rule.action != "resolve"]
        if not opening:
            continue
        severities = [
            ce.zone_severity if rule.kind == "danger_zone" and ce.zone_severity else rule.severity
            for ce, rule in opening
        ]
        rows = await conn.fetchmany(
            _OPEN,
            [
                (
                    ce.child_id,
                    rule.kind,
                    severity,
                    _zone(ce, rule),
                    "resolved" if rule.action == "notice" else "open",
                    _ts(ce.event.ts),
                    _ts(ce.event.ts) if rule.action == "notice" else None,
                    ce.lon,
                    ce.lat,
                    ce.acc,
                    _ts(ce.received_at),
                    {"event": ce.event.kind.value} | ({"place": ce.event.detail} if ce.event.detail else {}),
                    escalation.after(severity) if rule.action == "open" else None,
                )
                for (ce, rule), severity in zip(opening, severities, strict=True)
            ],
        )
        for (ce, _rule), severity, row in zip(opening, severities, rows, strict=True):
            at = _ts(ce.event.ts)
            if not row["inserted"]:
                history.append((row["id"], at, "updated", {"by": ce.event.kind.value}))
                continue  # an incident already told: updated, not told again
            history.append((row["id"], at, "opened", {"severity": severity}))
            first = recipients.get(ce.child_id, [])[:1]
            outbox += _fan_out(row["id"], "opened", first, severity)
            outbox += _school_webhook(row["id"], "opened", schools.get(ce.child_id))
    if history or outbox:
        await conn.execute(_HISTORY_AND_OUTBOX, *_columns(history, 4), *_columns(outbox, 5))
    return len(outbox)


# the order the dispatcher claims deliveries in (migration 0005): critical alerts', warnings', notices'
_PRIORITY = "CASE alert.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"

# history rows and outbox rows in one statement of arrays (a batch's were two pipelined statements of
# a row each: a round trip more for every batch with an alert, and a statement per row)
_HISTORY_AND_OUTBOX = (
    "WITH history AS ("
    " INSERT INTO alert_history (alert_id, at, step, detail)"
    " SELECT h.alert_id, coalesce(h.at, now()), h.step, h.detail"
    " FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::jsonb[])"
    " WITH ORDINALITY AS h(alert_id, at, step, detail, n)"
    " ORDER BY h.n)"
    " INSERT INTO deliveries (alert_id, transition, guardian_id, school_id, channel, priority)"
    f" SELECT o.*, {_PRIORITY}"
    " FROM unnest($5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::text[])"
    " AS o(alert_id, transition, guardian_id, school_id, channel)"
    " JOIN alerts alert ON alert.id = o.alert_id"
    " ON CONFLICT DO NOTHING"
)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (the arrays of an unnest)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _zone(ce: ChildEvent, rule: AlertRule) -> int | None:
    return ce.event.zone_id if rule.kind == "danger_zone" else None


def _fan_out(
    alert_id: int, transition: str, people: list[Recipient], severity: str
) -> list[tuple[int, str, int | None, int | None, str]]:
    """Outbox rows for these guardians on their channels. Info notices (arrived, low battery) go on
    the websocket only: an SMS for every arrival of every child would cost and numb."""
    return [
        (alert_id, transition, r.guardian_id, None, channel)
        for r in people
        for channel in r.channels
        if channel in CHANNELS and (channel != "sms" or (r.has_phone and severity != "info"))
    ]


def _school_webhook(
    alert_id: int, transition: str, school_id: int | None
) -> list[tuple[int, str, int | None, int | None, str]]:
    return [] if school_id is None else [(alert_id, transition, None, school_id, "webhook")]


async def write_outbox(
    conn: asyncpg.Connection, rows: list[tuple[int, str, int | None, int | None, str]]
) -> int:
    """Insert outbox rows (alert, transition, guardian or school, channel); a row already there is kept."""
    if rows:
        await conn.execute(_HISTORY_AND_OUTBOX, *_columns([], 4), *_columns(rows, 5))
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
