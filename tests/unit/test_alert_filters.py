"""The alert list's filter values (tracker.api.models.AlertKind, AlertSeverity) are exactly what the
lifecycle rules make: a kind the rules could make but the filter refused would hide real alerts."""

from __future__ import annotations

from typing import get_args

from tracker.alerts.lifecycle import rules_for
from tracker.api.models import AlertKind, AlertSeverity
from tracker.monitor import Event, EventKind


def test_the_filters_allow_every_kind_and_severity_the_rules_make_and_no_other() -> None:
    made = [
        rule
        for kind in EventKind
        for place in (None, "school", "home")
        for rule in rules_for(Event(kind=kind, ts=0.0, zone_id=1, detail=place))
    ]
    assert {r.kind for r in made} == set(get_args(AlertKind))
    # a zone's own severity (warning or critical) is the only other source of severities
    assert {r.severity for r in made} | {"warning", "critical"} == set(get_args(AlertSeverity))
