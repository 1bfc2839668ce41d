"""Alert lifecycle: monitor events become alert rows and delivery rows, inside the batch's transaction.

One incident is one alert: an open alert for the same child, kind and zone is updated (fix count,
last position), never duplicated (the unique index alerts_one_open_idx makes that hold even across
processes). Every alert transition writes its outbox rows, one per (guardian, channel), in the same
transaction; the dispatcher delivers them after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from tracker.monitor import Event, EventKind

AlertKind = Literal["left_route", "danger_zone", "sos", "low_battery"]
CHANNELS = ("websocket", "sms")


@dataclass(frozen=True)
class AlertRule:
    kind: AlertKind
    action: Literal["open", "resolve", "notice"]  # notice: an info alert, resolved as it is made
    severity: str


RULES: dict[EventKind, AlertRule] = {
    EventKind.LEFT_ROUTE: AlertRule("left_route", "open", "warning"),
    EventKind.BACK_ON_ROUTE: AlertRule("left_route", "resolve", "warning"),
    EventKind.ENTERED_ZONE: AlertRule("danger_zone", "open", "critical"),
    EventKind.LEFT_ZONE: AlertRule("danger_zone", "resolve", "critical"),
    EventKind.SOS: AlertRule("sos", "open", "critical"),
    EventKind.LOW_BATTERY: AlertRule("low_battery", "notice", "info"),
}


@dataclass(frozen=True)
class ChildEvent:
    """A monitor event with what the alert row needs to say about it."""

    child_id: int
    event: Event
    lon: float
    lat: float
    acc: float
    received_at: float
    zone_severity: str | None = None


@dataclass(frozen=True)
class Recipient:
    guardian_id: int
    channels: tuple[str, ...]
    has_phone: bool


def _ts(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


async def apply_events(
    conn: asyncpg.Connection, events: list[ChildEvent], recipients: dict[int, list[Recipient]]
) -> int:
    """Write the alert transitions of `events` and their outbox rows; returns outbox rows written.

    Must run inside the batch's transaction. `recipients` maps child id -> guardians by priority.
    """
    outbox: list[tuple[int, str, int, str]] = []
    for ce in events:
        rule = RULES[ce.event.kind]
        zone = ce.event.zone_id
        at = _ts(ce.event.ts)
        if rule.action == "resolve":
            alert_id = await conn.fetchval(
                "UPDATE alerts SET state = 'resolved', resolved_at = $4, updated_at = $4"
                " WHERE child_id = $1 AND kind = $2 AND coalesce(zone_id, 0) = coalesce($3::bigint, 0)"
                " AND state = 'open' RETURNING id",
                ce.child_id,
                rule.kind,
                zone,
                at,
            )
            transition = "resolved"
        else:
            severity = ce.zone_severity or rule.severity
            row = await conn.fetchrow(
                "INSERT INTO alerts (child_id, kind, severity, zone_id, state, opened_at, updated_at,"
                " resolved_at, last_lon, last_lat, last_acc, last_fix_ts, fix_received_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $6, $11)"
                " ON CONFLICT (child_id, kind, coalesce(zone_id, 0)) WHERE state = 'open' DO UPDATE SET"
                " updated_at = EXCLUDED.updated_at, fix_count = alerts.fix_count + 1,"
                " last_lon = EXCLUDED.last_lon, last_lat = EXCLUDED.last_lat, last_acc = EXCLUDED.last_acc,"
                " last_fix_ts = EXCLUDED.last_fix_ts"
                " RETURNING id, (xmax = 0) AS inserted",
                ce.child_id,
                rule.kind,
                severity,
                zone,
                "resolved" if rule.action == "notice" else "open",
                at,
                at if rule.action == "notice" else None,
                ce.lon,
                ce.lat,
                ce.acc,
                _ts(ce.received_at),
            )
            alert_id = row["id"] if row["inserted"] else None
            transition = "opened"
        if alert_id is None:
            continue  # nothing to resolve, or an update of an incident already told
        for r in recipients.get(ce.child_id, []):
            for channel in r.channels:
                if channel in CHANNELS and (channel != "sms" or r.has_phone):
                    outbox.append((alert_id, transition, r.guardian_id, channel))
    if outbox:
        await conn.executemany(
            "INSERT INTO deliveries (alert_id, transition, guardian_id, channel) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            outbox,
        )
    return len(outbox)
