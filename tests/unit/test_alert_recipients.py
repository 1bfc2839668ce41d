"""Who is told of an alert, the pure rules (tracker.alerts.lifecycle and tracker.alerts.escalation):
the cases the escalation test on the real servers does not reach (a guardian without a phone, a
school with no duty phone or webhook, a channel the tracker does not know)."""

from __future__ import annotations

from tracker.alerts.escalation import School, next_step
from tracker.alerts.lifecycle import Recipient, guardian_messages, school_messages

MOTHER = Recipient(11, ("websocket", "sms"), has_phone=True)
FATHER = Recipient(12, ("sms", "websocket", "carrier-pigeon"), has_phone=False)


def test_an_info_notice_goes_on_the_websocket_only_and_sms_needs_a_phone() -> None:
    assert guardian_messages(7, "opened", [MOTHER, FATHER], "info") == [
        (7, "opened", 11, None, "websocket"),
        (7, "opened", 12, None, "websocket"),
    ]
    assert guardian_messages(7, "opened", [MOTHER, FATHER], "warning") == [
        (7, "opened", 11, None, "websocket"),
        (7, "opened", 11, None, "sms"),
        (7, "opened", 12, None, "websocket"),
    ]


def test_the_school_webhook_hears_only_when_the_school_has_one() -> None:
    assert school_messages(7, "resolved", 3) == [(7, "resolved", None, 3, "webhook")]
    assert school_messages(7, "resolved", None) == []


def test_the_ladder_goes_guardian_by_guardian_then_to_the_school_and_stops() -> None:
    school = School(3, has_staff_phone=True, has_webhook=True)
    second = next_step(7, 1, [MOTHER, FATHER], school)
    assert second.to == {"guardian_id": 12}
    assert second.messages == [(7, "escalated", 12, None, "websocket")]  # no phone, no pigeon
    assert not second.last
    top = next_step(7, 2, [MOTHER, FATHER], school)
    assert top.to == {"school_id": 3}
    assert top.messages == [(7, "escalated", None, 3, "sms"), (7, "escalated", None, 3, "webhook")]
    assert top.last


def test_a_school_with_neither_duty_phone_nor_webhook_is_the_last_step_with_nothing_to_send() -> None:
    step = next_step(7, 1, [MOTHER], School(3, has_staff_phone=False, has_webhook=False))
    assert (step.to, step.messages, step.last) == ({"school_id": 3}, [], True)
