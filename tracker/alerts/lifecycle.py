"""Alert lifecycle rules: what a monitor event does to alerts, and who is told of it.

One incident is one alert: an open alert for the same child, kind and zone is updated (fix count,
last position), never duplicated. An alert that opens goes to the child's first guardian (and the
school's webhook); unacknowledged, a warning or critical alert escalates (tracker.alerts.escalation).
Resolutions go to every guardian who was told of the alert.

Pure: tracker.store.alert_lifecycle writes these decisions as alert rows, history rows and outbox
rows, inside the batch's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from tracker.monitor import Event, EventKind

Action = Literal["open", "resolve", "notice"]  # notice: an info alert, resolved as it is made
CHANNELS = ("websocket", "sms", "push")  # a guardian's; a school's are its duty phone and its webhook

OutboxRow: TypeAlias = tuple[int, str, int | None, int | None, str]
"""One message to send: (alert id, transition, guardian id or None, school id or None, channel)."""


@dataclass(frozen=True)
class AlertRule:
    kind: str
    action: Action
    severity: str


def rules_for(event: Event) -> list[AlertRule]:
    """What an event does to alerts (the table of events in docs/alert-quality.md)."""
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


def incident_zone(ce: ChildEvent, rule: AlertRule) -> int | None:
    """The zone that is part of the incident's identity: a danger-zone alert is one per zone, every
    other kind one per child."""
    return ce.event.zone_id if rule.kind == "danger_zone" else None


def severity_of(ce: ChildEvent, rule: AlertRule) -> str:
    """A danger-zone alert has the severity set on its zone (when the event carries it); every other
    alert the rule's."""
    return ce.zone_severity if rule.kind == "danger_zone" and ce.zone_severity else rule.severity


IncidentKey: TypeAlias = tuple[int, str, int | None]
"""(child, alert kind, zone or None): at most one open alert per key (the unique index
alerts_one_open_idx, migration 0001)."""

Change = Literal["opened", "updated", "resolved", "noticed", "none"]


def incident_key(ce: ChildEvent, rule: AlertRule) -> IncidentKey:
    """The identity of the incident a transition belongs to."""
    return ce.child_id, rule.kind, incident_zone(ce, rule)


def transitions(events: list[ChildEvent]) -> list[tuple[ChildEvent, AlertRule]]:
    """Every (event, rule) pair of ``events``, in the events' order: what apply_events writes."""
    return [(ce, rule) for ce in events for rule in rules_for(ce.event)]


def change_of(rule: AlertRule, is_open: bool) -> Change:
    """What a transition does to alerts, given whether an alert of its incident (``incident_key``) is
    open: an opening rule opens one, or updates the open one (one incident is one alert); a resolving
    rule resolves the open one, or does nothing; a notice is made resolved (it never stays open).

    tracker.store.alert_lifecycle.apply_events writes exactly this in SQL (INSERT ... ON CONFLICT on
    the open-alert index, UPDATE ... WHERE state = 'open'); ``tracker replay`` keeps its open alerts
    with it, in memory."""
    if rule.action == "resolve":
        return "resolved" if is_open else "none"
    if rule.action == "notice":
        return "noticed"
    return "updated" if is_open else "opened"


def guardian_messages(
    alert_id: int, transition: str, people: list[Recipient], severity: str
) -> list[OutboxRow]:
    """Outbox rows for these guardians on their channels. Info notices (arrived, low battery) go on
    the websocket and push only (a push notice is shown silently): an SMS for every arrival of every
    child would cost and numb."""
    return [
        (alert_id, transition, r.guardian_id, None, channel)
        for r in people
        for channel in r.channels
        if channel in CHANNELS and (channel != "sms" or (r.has_phone and severity != "info"))
    ]


def school_messages(alert_id: int, transition: str, school_id: int | None) -> list[OutboxRow]:
    """The school's webhook hears of every alert that opens or resolves (``school_id``: the child's
    school when it has a webhook, else None)."""
    return [] if school_id is None else [(alert_id, transition, None, school_id, "webhook")]
