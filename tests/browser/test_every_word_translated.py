"""Every word in both languages: the parent, school and city pages, each loaded with data (a child on
its route, alerts with their steps and deliveries, zones, tags, guardians), a toast and an error on
show, read in Korean for any English word and in English for any Hangul: the visible text, the
document's title and every title, aria-label, placeholder and alt attribute.

What the pages show but did not write (the names of children, schools, routes and zones, tag ids,
phone numbers: what people typed) is taken out before reading; what may stay in the other script is
the short list below."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.helpers import Publisher, build_small_world, fix, wait_until
from tracker.store.tokens import issue_token

expect = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]'").expect

# proper nouns, formats and units a Korean page writes in Latin letters
LATIN_ALLOWED = {"SOS", "GPS", "RFID", "MQTT", "GeoJSON", "GPX", "Leaflet", "OpenStreetMap", "km", "English"}
# a language's own name on the English page's switch
HANGUL_ALLOWED = {"한국어"}
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]+")
LATIN = re.compile(r"[A-Za-z]{2,}")

READ_PAGE = """() => {
  const attrs = [];
  for (const el of document.querySelectorAll("*")) {
    for (const a of ["title", "aria-label", "placeholder", "alt"]) {
      const v = el.getAttribute(a);
      if (v) attrs.push([`${el.tagName.toLowerCase()}[${a}]`, v]);
    }
  }
  // closed <details> hide their text from innerText: open them, as a reader would
  document.querySelectorAll("details").forEach((d) => { d.open = true; });
  return { title: document.title, text: document.body.innerText, attrs };
}"""


def foreign_words(page_text: dict[str, Any], lang: str, data: list[str]) -> list[str]:
    """The words of the other language in what the page shows, each with where it was found."""
    found = []
    pieces = [("title", page_text["title"]), *(("text", line) for line in page_text["text"].splitlines())]
    pieces += [(where, value) for where, value in page_text["attrs"]]
    for where, piece in pieces:
        clean = piece
        for d in sorted(data, key=len, reverse=True):
            clean = clean.replace(d, " ")
        if lang == "ko":
            bad = [w for w in LATIN.findall(clean) if w not in LATIN_ALLOWED]
        else:
            bad = [w for w in HANGUL.findall(clean) if w not in HANGUL_ALLOWED]
        found += [f"{where}: {w!r} in {piece!r}" for w in bad]
    return found


async def _world(svc: Any, mqtt_url: str) -> dict[str, Any]:
    """A school with a child walking its route (its fixes over MQTT, for real statuses and a track),
    a danger zone, a tag, a guardian, and alerts of several kinds with steps and deliveries."""
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun"])
        staff = await issue_token(conn, role="school", school_id=world.school_id, label="i18n")
        admin = await issue_token(conn, role="admin", label="i18n")
    await svc.reload_registry()
    kid = world.kids["Minjun"]
    pub = Publisher(mqtt_url)
    t0 = time.time() - 100
    try:
        topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position"
        for i in range(3):
            pub.publish(topic, fix(-500 + i * 40, 0, t0 + i * 15))
        for i in range(3):  # 150 m off the corridor: a real 'left route' alert with its deliveries
            pub.publish(topic, fix(-400, -150 - i * 5, t0 + 45 + i * 15))

        async def left_route() -> Any:
            return await svc.pool.fetchval(
                "SELECT id FROM alerts WHERE child_id = $1 AND kind = 'left_route'", kid.child_id
            )

        await wait_until(left_route, 10)
    finally:
        pub.close()
    # and others as the pipeline writes them: a resolved danger zone, an arrival notice, an escalation
    await svc.pool.execute(
        "INSERT INTO alerts (child_id, kind, severity, zone_id, state, opened_at, updated_at, resolved_at)"
        " VALUES ($1, 'danger_zone', 'critical', $2, 'resolved', now() - interval '2 days',"
        " now() - interval '2 days', now() - interval '2 days'),"
        " ($1, 'arrived_school', 'info', NULL, 'resolved', now(), now(), now())",
        kid.child_id,
        world.zone_id,
    )
    alert = await svc.pool.fetchval("SELECT id FROM alerts WHERE kind = 'left_route'")
    await svc.pool.execute(
        "INSERT INTO alert_history (alert_id, step, detail) VALUES ($1, 'escalated', '{\"level\": 1}'),"
        " ($1, 'suppressed', jsonb_build_object('channel', 'sms', 'guardian_id', $2::bigint))",
        alert,
        kid.guardian_id,
    )
    names = ["Minjun", "Test School", "East walk", "Construction site", "Parent of Minjun", kid.tag]
    return {"world": world, "kid": kid, "staff": staff, "admin": admin, "data": names}


async def _read(tab: Any, lang: str, data: list[str]) -> list[str]:
    text = await tab.page.evaluate(READ_PAGE)
    return foreign_words(text, lang, data)


@pytest.mark.parametrize("lang", ["ko", "en"])
async def test_every_page_speaks_one_language(service, mqtt_url: str, open_tab, lang: str) -> None:  # type: ignore[no-untyped-def]
    svc = service
    w = await _world(svc, mqtt_url)
    kid, data = w["kid"], w["data"]
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    locale = "ko-KR" if lang == "ko" else "en-US"
    problems: dict[str, list[str]] = {}

    # the parent page: children, the map, the alert history with its steps; a toast after catching up
    tab = await open_tab(locale=locale)
    page = tab.page
    await page.goto(f"{base}/#token={kid.token}")
    await expect(page.locator("html")).to_have_attribute("lang", lang)
    await expect(page.locator("#children [data-status]")).to_have_attribute("data-status", "off_route")
    await expect(page.locator("#alerts article")).to_have_count(3)
    await expect(page.locator("#banner")).to_be_visible()
    await svc.pool.execute("UPDATE alerts SET acknowledged_at = now() WHERE kind = 'left_route'")
    await page.evaluate("catchUp()")  # what the page does when its socket comes back
    await expect(page.locator(".toast")).to_be_visible()
    await tab.context.set_offline(True)  # an acknowledgement that cannot reach the tracker: an error
    await page.evaluate("state.socket && state.socket.close(); state.socket = null")
    await page.evaluate("acknowledge([...state.alerts.keys()][0])")
    await expect(page.locator(".toast")).to_have_count(2)
    problems["parent"] = await _read(tab, lang, data)
    await tab.context.set_offline(False)
    await tab.shoot(f"i18n-parent-{lang}")

    # a parent's sign-in link that is not known: the sign-in form says so
    tab = await open_tab(locale=locale)
    await tab.page.goto(f"{base}/#enrol=not-a-code")
    await expect(tab.page.locator("#signin small[role=alert]")).to_be_visible()
    problems["parent enrolment"] = await _read(tab, lang, data)

    # the school page: routes, the live map and its legend, the day's alerts (with notices), tables;
    # a route the API refuses (a window at 25:00): the error under the form
    tab = await open_tab(locale=locale)
    page = tab.page
    await page.goto(f"{base}/school#token={w['staff']}")
    await expect(page.locator("#alerts tbody tr")).to_have_count(1)  # today's, without notices
    await page.locator("#with-info").check()
    await expect(page.locator("#alerts tbody tr")).to_have_count(2)
    await expect(page.locator("#tags tbody tr")).to_have_count(1)
    await page.locator("#r-windows").fill("0-4 25:00-26:00")
    await page.locator("#route-save").click()
    await expect(page.locator("#route-msg.error")).to_be_visible()
    problems["school"] = await _read(tab, lang, data)
    await page.locator("#r-windows").fill("x 07:00-08:00")  # days that are not days: said before sending
    await page.locator("#route-save").click()
    await expect(page.locator("#route-msg.error")).to_contain_text("x")
    problems["school, days"] = await _read(tab, lang, data)
    await tab.shoot(f"i18n-school-{lang}")

    # the city page: the zones, an upload the API refuses
    tab = await open_tab(locale=locale)
    page = tab.page
    await page.goto(f"{base}/city#token={w['admin']}")
    await expect(page.locator("#zone-select option")).to_have_count(2)
    await page.locator("#upload-file").set_input_files(
        files=[
            {"name": "zones.geojson", "mimeType": "application/geo+json", "buffer": b'{"type": "nothing"}'}
        ]
    )
    await page.locator("#upload-form button[type=submit]").click()
    await expect(page.locator("#upload-msg.error")).to_be_visible()
    problems["city"] = await _read(tab, lang, data)
    await tab.shoot(f"i18n-city-{lang}")

    assert {k: v for k, v in problems.items() if v} == {}
    assert tab.errors == []


def test_the_reader_finds_the_other_languages_words_and_only_those() -> None:
    page = {
        "title": "통학 안전 알림",
        "text": "Minjun 학생이 통학로를 벗어났습니다.\nZoom in · SOS · 3 km\n오류: Not Found",
        "attrs": [["a[title]", "A JavaScript library"], ["div[aria-label]", "지도"]],
    }
    assert foreign_words(page, "ko", ["Minjun"]) == [
        "text: 'Zoom' in 'Zoom in · SOS · 3 km'",
        "text: 'in' in 'Zoom in · SOS · 3 km'",
        "text: 'Not' in '오류: Not Found'",
        "text: 'Found' in '오류: Not Found'",
        "a[title]: 'JavaScript' in 'A JavaScript library'",
        "a[title]: 'library' in 'A JavaScript library'",
    ]
    english = {
        "title": "School",
        "text": "한국어\nArrived at 학교",
        "attrs": [["button[aria-label]", "닫기"]],
    }
    assert foreign_words(english, "en", []) == [
        "text: '학교' in 'Arrived at 학교'",
        "button[aria-label]: '닫기' in '닫기'",
    ]
