"""Every word in both languages, without a browser: the pages' word tables (tracker/api/static/common.js)
hold the same keys in English and Korean, every key the pages ask for is in them (a missing one would
show the key itself), and every alert text, SMS and notification title the server writes exists in
both languages for every kind of alert and every transition, in that language's script only (the
pages in both languages are read in Chromium by tests/browser/test_every_word_translated.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from tracker.alerts.messages import sms_text, text, title
from tracker.api.models import AlertKind, AlertSeverity
from tracker.store.alerts import AlertFacts

STATIC = Path(__file__).resolve().parents[2] / "tracker" / "api" / "static"
COMMON = (STATIC / "common.js").read_text(encoding="utf-8")
PAGES_JS = {p.name: p.read_text(encoding="utf-8") for p in STATIC.glob("*.js")}
PAGES_HTML = {p.name: p.read_text(encoding="utf-8") for p in STATIC.glob("*.html")}
KEY = re.compile(r'"([A-Za-z0-9_.]+)"\s*:')
CHILD_STATUSES = ("in_danger_zone", "off_route", "signal_lost", "at_school", "at_home", "on_route", "unknown")


def _blocks(lang: str) -> str:
    """The text of every part of common.js that adds to WORDS[lang]: its table, and the
    Object.assign(WORDS.lang, {...}) blocks other features add."""
    start = COMMON.index(f"\n  {lang}: {{")
    end = COMMON.index("\n  },", start)
    parts = [COMMON[start:end]]
    for m in re.finditer(rf"Object\.assign\(WORDS\.{lang}, \{{(.*?)\n\}}\);", COMMON, re.S):
        parts.append(m.group(1))
    return "\n".join(parts)


def words(lang: str) -> set[str]:
    return set(KEY.findall(_blocks(lang)))


def test_the_tables_are_found_and_hold_the_same_keys() -> None:
    en, ko = words("en"), words("ko")
    assert len(en) > 200 and "caughtup" in en and "kind.sos" in ko  # the parse found the tables
    assert sorted(en - ko) == [], "keys in English only"
    assert sorted(ko - en) == [], "keys in Korean only"


def _used_keys() -> dict[str, set[str]]:
    """Literal keys the pages ask for: t("..."), tOr("...", ..), setConn("..."), data-i18n*="..."."""
    used: dict[str, set[str]] = {}
    call = re.compile(r'\b(?:t|tOr|setConn)\(\s*"([A-Za-z0-9_.]+)"\s*[,)]')
    attr = re.compile(r'data-i18n(?:-label|-title|-placeholder)?="([A-Za-z0-9_.]+)"')
    for name, source in {**PAGES_JS, **PAGES_HTML}.items():
        for key in call.findall(source) + attr.findall(source):
            used.setdefault(key, set()).add(name)
    return used


def test_every_key_the_pages_use_is_in_the_tables() -> None:
    used = _used_keys()
    assert {"ack", "caughtup", "route.saved", "zone.saved", "school.title"} <= set(used)  # found them
    missing = {key: sorted(files) for key, files in used.items() if key not in words("en")}
    assert missing == {}


def test_every_code_the_pages_turn_into_words_has_them() -> None:
    """The keys the pages build from the API's codes ("kind." + a.kind, ...)."""
    en = words("en")
    wanted = [f"kind.{k}" for k in get_args(AlertKind)] + [f"text.{k}.open" for k in get_args(AlertKind)]
    wanted += [f"sev.{s}" for s in get_args(AlertSeverity)] + [f"status.{s}" for s in CHILD_STATUSES]
    wanted += ["state.open", "state.resolved", "place.school", "place.home", "lang.ko", "lang.en"]
    wanted += [f"step.{s}" for s in ("opened", "delivered", "escalated", "acknowledged", "resolved")]
    wanted += [f"err.{code}" for code in (401, 403, 404, 409, 413, 422, 500, 503)]
    assert [k for k in wanted if k not in en] == []


HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
TRANSITIONS = ("opened", "escalated", "resolved")


def _facts(kind: str, state: str) -> AlertFacts:
    now = datetime(2031, 5, 14, 8, 5, tzinfo=UTC)
    severity = "info" if kind.startswith(("arrived", "left_school", "low_battery")) else "warning"
    return AlertFacts(
        alert_id=1,
        kind=kind,
        severity=severity,
        state=state,
        child_id=2,
        child_name="CHILD",
        zone_id=3 if kind == "danger_zone" else None,
        zone_name="ZONE" if kind == "danger_zone" else None,
        zone_kind="construction" if kind == "danger_zone" else None,
        opened_at=now,
        resolved_at=now if state == "resolved" else None,
        lon=127.05,
        lat=37.5,
        acc=9.0,
        fix_ts=now,
        fix_received_at=now,
        timezone="Asia/Seoul",
    )


@pytest.mark.parametrize("kind", get_args(AlertKind))
def test_every_alert_text_sms_and_title_is_written_in_both_languages(kind: str) -> None:
    for transition in TRANSITIONS:
        facts = _facts(kind, "resolved" if transition == "resolved" else "open")
        for lang in ("en", "ko"):
            for written in (
                text(facts, lang, transition),
                sms_text(facts, lang, "https://tracker.example", transition),
                title(facts, lang, transition),
            ):
                said = (
                    written.replace("CHILD", "").replace("ZONE", "").replace("https://tracker.example/", "")
                )
                assert kind not in said, f"{lang} {transition}: the kind's code, not words: {written!r}"
                if lang == "ko":
                    assert HANGUL.search(said), f"no Korean in {written!r}"
                    assert [w for w in LATIN_WORD.findall(said) if w != "SOS"] == [], written
                else:
                    assert not HANGUL.search(said), written
    # a resolution reads differently from an opening (but for notices, which never stay open)
    if not kind.startswith(("arrived", "left_school", "low_battery")):
        for lang in ("en", "ko"):
            assert text(_facts(kind, "resolved"), lang, "resolved") != text(
                _facts(kind, "open"), lang, "opened"
            )
