"""What a guardian reads: the alert message (schemas/alert-message.v1.json) and the SMS text, in
Korean or English by the guardian's choice."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from tracker.store.alerts import AlertFacts

# (kind, "open" | "resolved") -> text; a notice (info alert) is born resolved and reads as "open".
_TEXTS: dict[str, dict[tuple[str, str], str]] = {
    "en": {
        ("left_route", "open"): "{child} has left the route to school ({place}).",
        ("left_route", "resolved"): "{child} is back on the route to school.",
        ("danger_zone", "open"): "{child} is in a danger zone: {zone} ({place}).",
        ("danger_zone", "resolved"): "{child} has left the danger zone {zone}.",
        ("sos", "open"): "SOS from {child} ({place}). Please call now.",
        ("sos", "resolved"): "The SOS from {child} is closed.",
        ("low_battery", "open"): "{child}'s tag battery is low. Please charge it tonight.",
        ("signal_lost", "open"): "No signal from {child}'s tag since {last} during the school commute.",
        ("signal_lost", "resolved"): "{child}'s tag is sending again ({place}).",
        ("not_arrived_school", "open"): "{child} has not arrived at school by the expected time.",
        ("not_arrived_school", "resolved"): "{child} has now arrived at school.",
        ("not_arrived_home", "open"): "{child} has not arrived home by the expected time.",
        ("not_arrived_home", "resolved"): "{child} has now arrived home.",
        ("arrived_school", "open"): "{child} arrived at school ({time}).",
        ("arrived_home", "open"): "{child} arrived home ({time}).",
        ("left_school", "open"): "{child} left school ({time}).",
    },
    "ko": {
        ("left_route", "open"): "{child} 학생이 통학로를 벗어났습니다 ({place}).",
        ("left_route", "resolved"): "{child} 학생이 통학로로 돌아왔습니다.",
        ("danger_zone", "open"): "{child} 학생이 위험 구역에 있습니다: {zone} ({place}).",
        ("danger_zone", "resolved"): "{child} 학생이 위험 구역 {zone}에서 벗어났습니다.",
        ("sos", "open"): "{child} 학생의 긴급 호출(SOS)입니다 ({place}). 바로 연락해 주세요.",
        ("sos", "resolved"): "{child} 학생의 긴급 호출이 종료되었습니다.",
        ("low_battery", "open"): "{child} 학생 단말기의 배터리가 부족합니다. 오늘 밤 충전해 주세요.",
        ("signal_lost", "open"): "등하교 중 {last} 이후 {child} 학생 단말기의 신호가 없습니다.",
        ("signal_lost", "resolved"): "{child} 학생 단말기의 신호가 다시 잡힙니다 ({place}).",
        ("not_arrived_school", "open"): "{child} 학생이 예정 시각까지 학교에 도착하지 않았습니다.",
        ("not_arrived_school", "resolved"): "{child} 학생이 학교에 도착했습니다.",
        ("not_arrived_home", "open"): "{child} 학생이 예정 시각까지 집에 도착하지 않았습니다.",
        ("not_arrived_home", "resolved"): "{child} 학생이 집에 도착했습니다.",
        ("arrived_school", "open"): "{child} 학생이 학교에 도착했습니다 ({time}).",
        ("arrived_home", "open"): "{child} 학생이 집에 도착했습니다 ({time}).",
        ("left_school", "open"): "{child} 학생이 학교를 나섰습니다 ({time}).",
    },
}
_PREFIX = {"en": "[School route]", "ko": "[통학 안전]"}
# What happened, in a few words: a push notification's title (the parent page's kind.* words)
_KIND_NAMES = {
    "en": {
        "left_route": "Left the route",
        "danger_zone": "Danger zone",
        "sos": "SOS",
        "low_battery": "Low battery",
        "signal_lost": "Signal lost",
        "not_arrived_school": "Not at school in time",
        "not_arrived_home": "Not home in time",
        "arrived_school": "Arrived at school",
        "arrived_home": "Arrived home",
        "left_school": "Left school",
    },
    "ko": {
        "left_route": "통학로 이탈",
        "danger_zone": "위험 구역",
        "sos": "긴급 호출(SOS)",
        "low_battery": "배터리 부족",
        "signal_lost": "신호 없음",
        "not_arrived_school": "학교 미도착",
        "not_arrived_home": "집 미도착",
        "arrived_school": "학교 도착",
        "arrived_home": "집 도착",
        "left_school": "하교",
    },
}
_RESOLVED = {"en": "Resolved", "ko": "해제"}
_ACKNOWLEDGE = {"en": "Acknowledge", "ko": "확인"}
_ESCALATED = {"en": "Not acknowledged yet: ", "ko": "아직 확인되지 않은 알림: "}


def text(facts: AlertFacts, language: str, transition: str = "opened") -> str:
    lang = language if language in _TEXTS else "en"
    state = "resolved" if facts.state == "resolved" and facts.severity != "info" else "open"
    if transition in ("opened", "escalated"):
        state = "open"
    template = _TEXTS[lang].get((facts.kind, state)) or _TEXTS[lang].get(
        (facts.kind, "open"), "{child}: {kind}"
    )
    tz = ZoneInfo(facts.timezone)
    when = (facts.fix_ts or facts.opened_at).astimezone(tz)
    hh_mm = f"{when.hour:02d}:{when.minute:02d}"  # (strftime's "%H:%M" costs 20 times as much)
    place = hh_mm
    if facts.lat is not None and facts.lon is not None:
        place += f", {facts.lat:.5f},{facts.lon:.5f}"
    body = template.format(
        child=facts.child_name,
        zone=facts.zone_name or "?",
        place=place,
        time=hh_mm,
        last=hh_mm,
        kind=facts.kind,
    )
    return (_ESCALATED[lang] + body) if transition == "escalated" else body


def alert_message(facts: AlertFacts, language: str, transition: str = "opened") -> dict[str, Any]:
    """The websocket/webhook message (schemas/alert-message.v1.json)."""
    position = None
    if facts.lat is not None and facts.lon is not None and facts.fix_ts is not None:
        position = {
            "lat": facts.lat,
            "lon": facts.lon,
            # a fix whose app stated no accuracy: null, never 0 (which would read as exact)
            "acc": facts.acc,
            "ts": facts.fix_ts.timestamp(),
        }
    zone = None
    if facts.zone_id is not None:
        zone = {"id": facts.zone_id, "name": facts.zone_name or "", "kind": facts.zone_kind or ""}
    return {
        "type": "alert",
        "version": 1,
        "alert_id": facts.alert_id,
        "transition": transition,
        "state": facts.state,
        "kind": facts.kind,
        "severity": facts.severity,
        "child": {"id": facts.child_id, "name": facts.child_name},
        "zone": zone,
        "opened_at": facts.opened_at.isoformat(),
        "resolved_at": facts.resolved_at.isoformat() if facts.resolved_at else None,
        "position": position,
        "text": text(facts, language, transition),
        "fix_received_at": facts.fix_received_at.timestamp() if facts.fix_received_at else None,
    }


def sms_text(facts: AlertFacts, language: str, public_url: str, transition: str = "opened") -> str:
    lang = language if language in _PREFIX else "en"
    return f"{_PREFIX[lang]} {text(facts, language, transition)} {public_url.rstrip('/')}/"


def title(facts: AlertFacts, language: str, transition: str = "opened") -> str:
    """A notification's title: what happened and to whom ("SOS — Minjun"); the text is its body."""
    lang = language if language in _KIND_NAMES else "en"
    what = f"{_KIND_NAMES[lang].get(facts.kind, facts.kind)} — {facts.child_name}"
    return f"{_RESOLVED[lang]}: {what}" if transition == "resolved" else what


def acknowledge_word(language: str) -> str:
    """The label of the button that acknowledges an alert."""
    return _ACKNOWLEDGE.get(language, _ACKNOWLEDGE["en"])
