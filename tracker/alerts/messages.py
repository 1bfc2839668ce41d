"""What a guardian reads: the alert message (schemas/alert-message.v1.json) and the SMS text, in
Korean or English by the guardian's choice."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from tracker.store.alerts import AlertFacts

_TEXTS: dict[str, dict[tuple[str, str], str]] = {
    "en": {
        ("left_route", "open"): "{child} has left the route to school ({place}).",
        ("left_route", "resolved"): "{child} is back on the route to school.",
        ("danger_zone", "open"): "{child} is in a danger zone: {zone} ({place}).",
        ("danger_zone", "resolved"): "{child} has left the danger zone {zone}.",
        ("sos", "open"): "SOS from {child} ({place}). Please call now.",
        ("sos", "resolved"): "The SOS from {child} is closed.",
        ("low_battery", "open"): "{child}'s tag battery is low. Please charge it tonight.",
        ("low_battery", "resolved"): "{child}'s tag battery is low. Please charge it tonight.",
    },
    "ko": {
        ("left_route", "open"): "{child} 학생이 통학로를 벗어났습니다 ({place}).",
        ("left_route", "resolved"): "{child} 학생이 통학로로 돌아왔습니다.",
        ("danger_zone", "open"): "{child} 학생이 위험 구역에 있습니다: {zone} ({place}).",
        ("danger_zone", "resolved"): "{child} 학생이 위험 구역 {zone}에서 벗어났습니다.",
        ("sos", "open"): "{child} 학생의 긴급 호출(SOS)입니다 ({place}). 바로 연락해 주세요.",
        ("sos", "resolved"): "{child} 학생의 긴급 호출이 종료되었습니다.",
        ("low_battery", "open"): "{child} 학생 단말기의 배터리가 부족합니다. 오늘 밤 충전해 주세요.",
        ("low_battery", "resolved"): "{child} 학생 단말기의 배터리가 부족합니다. 오늘 밤 충전해 주세요.",
    },
}
_PREFIX = {"en": "[School route]", "ko": "[통학 안전]"}


def text(facts: AlertFacts, language: str) -> str:
    lang = language if language in _TEXTS else "en"
    state = "resolved" if facts.state == "resolved" else "open"
    template = _TEXTS[lang].get((facts.kind, state), "{child}: {kind}")
    when = facts.fix_ts or facts.opened_at
    place = f"{when.astimezone(ZoneInfo(facts.timezone)):%H:%M}"
    if facts.lat is not None and facts.lon is not None:
        place += f", {facts.lat:.5f},{facts.lon:.5f}"
    return template.format(child=facts.child_name, zone=facts.zone_name or "?", place=place, kind=facts.kind)


def alert_message(facts: AlertFacts, language: str) -> dict[str, Any]:
    """The websocket/webhook message (schemas/alert-message.v1.json)."""
    position = None
    if facts.lat is not None and facts.lon is not None and facts.fix_ts is not None:
        position = {
            "lat": facts.lat,
            "lon": facts.lon,
            "acc": facts.acc or 0.0,
            "ts": facts.fix_ts.timestamp(),
        }
    zone = None
    if facts.zone_id is not None:
        zone = {"id": facts.zone_id, "name": facts.zone_name or "", "kind": facts.zone_kind or ""}
    return {
        "type": "alert",
        "version": 1,
        "alert_id": facts.alert_id,
        "state": facts.state,
        "kind": facts.kind,
        "severity": facts.severity,
        "child": {"id": facts.child_id, "name": facts.child_name},
        "zone": zone,
        "opened_at": facts.opened_at.isoformat(),
        "resolved_at": facts.resolved_at.isoformat() if facts.resolved_at else None,
        "position": position,
        "text": text(facts, language),
        "fix_received_at": facts.fix_received_at.timestamp() if facts.fix_received_at else None,
    }


def sms_text(facts: AlertFacts, language: str, public_url: str) -> str:
    lang = language if language in _PREFIX else "en"
    return f"{_PREFIX[lang]} {text(facts, language)} {public_url.rstrip('/')}/"
