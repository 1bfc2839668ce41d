"""The message a guardian's websocket and a school's webhook receive is schemas/alert-message.v1.json,
whatever the fix said of its accuracy: a fix whose app stated none carries ``acc: null`` (0 would read
as an exact position), in both languages and for every transition."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from tracker.alerts.messages import alert_message
from tracker.store.alerts import AlertFacts

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "alert-message.v1.json").read_text(encoding="utf-8")
)
WHEN = datetime(2026, 12, 7, 8, 5, tzinfo=UTC)


def facts(*, acc: float | None, zone: bool = False, position: bool = True) -> AlertFacts:
    return AlertFacts(
        alert_id=7,
        kind="danger_zone" if zone else "sos",
        severity="critical",
        state="open",
        child_id=3,
        child_name="Jia",
        zone_id=11 if zone else None,
        zone_name="Site" if zone else None,
        zone_kind="construction" if zone else None,
        opened_at=WHEN,
        resolved_at=None,
        lon=127.05 if position else None,
        lat=37.5 if position else None,
        acc=acc,
        fix_ts=WHEN if position else None,
        fix_received_at=WHEN if position else None,
        timezone="Asia/Seoul",
    )


# (what the alert knows of its fix, the position's acc in the message: None = no position at all)
CASES = [
    ("an SOS from a fix with an accuracy", facts(acc=12.0), 12.0),
    ("an SOS from a fix whose app stated no accuracy", facts(acc=None), "null"),
    ("a zone entry", facts(acc=8.5, zone=True), 8.5),
    ("an alert raised by the clock, without a fix", facts(acc=None, position=False), None),
]


@pytest.mark.parametrize("language", ["ko", "en"])
@pytest.mark.parametrize("transition", ["opened", "escalated", "resolved"])
@pytest.mark.parametrize("what, alert, acc", CASES, ids=[c[0] for c in CASES])
def test_the_message_is_the_contract(
    what: str, alert: AlertFacts, acc: float | str | None, language: str, transition: str
) -> None:
    message = alert_message(alert, language, transition)
    jsonschema.validate(message, SCHEMA)
    if acc is None:
        assert message["position"] is None, what
    else:
        assert message["position"]["acc"] == (None if acc == "null" else acc), what
