"""Escalation rules: an open warning or critical alert that nobody has acknowledged goes, after a set
time, to the child's next guardian, then to the school (its duty phone and its webhook).

Pure: tracker.store.alert_lifecycle.escalate_due reads what is due from the alerts table and writes
these decisions, so an alert opened before a restart still escalates after it, and several trackers
can share the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from tracker.alerts.lifecycle import CHANNELS, OutboxRow, Recipient


@dataclass(frozen=True)
class Escalation:
    """After how long an unacknowledged alert of each severity goes to the next person."""

    warning_s: float = 300.0
    critical_s: float = 120.0

    def after(self, severity: str) -> timedelta | None:
        seconds = {"warning": self.warning_s, "critical": self.critical_s}.get(severity)
        return None if seconds is None else timedelta(seconds=seconds)


@dataclass(frozen=True)
class School:
    """Who answers for a child at school when the guardians do not."""

    school_id: int
    has_staff_phone: bool
    has_webhook: bool


@dataclass(frozen=True)
class Step:
    """One step up the ladder: who is told now (``to``, for the alert's history), the messages, and
    whether a further step follows (the school is the last)."""

    to: dict[str, object]
    messages: list[OutboxRow]
    last: bool


def next_step(alert_id: int, level: int, guardians: Sequence[Recipient], school: School) -> Step:
    """Level ``level`` of the ladder: the child's guardians in priority order (level 0 was told when
    the alert opened), then the school. A guardian is told on each of their channels (SMS only with a
    phone); the school on its duty phone by SMS and on its webhook, whichever it has."""
    if level < len(guardians):
        g = guardians[level]
        return Step(
            {"guardian_id": g.guardian_id},
            [
                (alert_id, "escalated", g.guardian_id, None, ch)
                for ch in g.channels
                if ch in CHANNELS and (ch != "sms" or g.has_phone)
            ],
            last=False,
        )
    messages: list[OutboxRow] = []
    if school.has_staff_phone:
        messages.append((alert_id, "escalated", None, school.school_id, "sms"))
    if school.has_webhook:
        messages.append((alert_id, "escalated", None, school.school_id, "webhook"))
    return Step({"school_id": school.school_id}, messages, last=True)
