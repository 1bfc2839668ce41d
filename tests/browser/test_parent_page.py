"""The parent page in a real Chromium: a parent signs in, sees the child, gets an alert caused by fixes
published over MQTT to the real service, acknowledges it with one tap (the acknowledgement is in the
database); the page says when its websocket is down and catches up after."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import Publisher, build_small_world, fix, wait_until

expect = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]'").expect


async def test_parent_signs_in_gets_an_alert_and_acknowledges_it(service, mqtt_url: str, open_tab) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun"])
    await svc.reload_registry()
    kid = world.kids["Minjun"]
    topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position"
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    pub = Publisher(mqtt_url)
    t0 = time.time() - 100  # recent: an older last fix would be 'signal lost' by now
    try:
        # walking the route: the page shows the child on it
        for i in range(3):
            pub.publish(topic, fix(-500 + i * 40, 0, t0 + i * 15))  # past the home fence

        async def stored(n: int) -> bool:
            return bool(
                await svc.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", kid.tag) >= n
            )

        await wait_until(lambda: stored(3), 10)

        tab = await open_tab()
        page = tab.page
        await page.goto(f"{base}/#token={kid.token}")
        # notifications not decided yet: the page offers to ask; once allowed, it stops offering
        await expect(page.get_by_role("button", name="Allow notifications")).to_be_visible()
        await tab.context.grant_permissions(["notifications"], origin=base)
        await page.reload()
        await expect(page.get_by_role("button", name="Allow notifications")).to_be_hidden()
        await expect(page.locator("#children")).to_contain_text("Minjun")
        await expect(page.locator("#children [data-status]")).to_have_attribute("data-status", "on_route")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "conn.live")
        assert "#token=" not in page.url  # the token does not stay in the address bar
        await page.wait_for_timeout(300)
        await tab.shoot("parent-on-route")

        # three fixes 150 m off the corridor over 30 s: "left route", live on the page
        pub.publish(topic, fix(-400, -150, t0 + 45))
        pub.publish(topic, fix(-395, -155, t0 + 60))
        pub.publish(topic, fix(-390, -160, t0 + 75))
        banner = page.locator("#banner")
        await expect(banner).to_be_visible(timeout=10_000)
        await expect(banner).to_contain_text("Minjun has left the route")
        await expect(page.locator("body")).to_have_attribute("data-beeps", "1")
        await expect(page.locator("#children [data-status]")).to_have_attribute("data-status", "off_route")
        alert_id = await svc.pool.fetchval(
            "SELECT id FROM alerts WHERE child_id = $1 AND kind = 'left_route'", kid.child_id
        )
        card = page.locator(f'[data-alert="{alert_id}"]')
        await expect(card.locator("button[data-ack]")).to_be_visible()
        await tab.shoot("parent-alert")
        assert await tab.accessibility_problems() == []

        # one tap acknowledges it, and the acknowledgement is in the database
        await page.set_viewport_size({"width": 390, "height": 844})
        await banner.get_by_role("button", name="Acknowledge").click()
        await expect(banner).to_be_hidden()

        async def acknowledged() -> Any:
            return await svc.pool.fetchrow(
                "SELECT acknowledged_at, acknowledged_by FROM alerts"
                " WHERE id = $1 AND acknowledged_at IS NOT NULL",
                alert_id,
            )

        row = await wait_until(acknowledged, 10)
        assert row["acknowledged_by"] == kid.guardian_id
        await expect(card).to_contain_text("Acknowledged")
        await expect(card.locator("button[data-ack]")).to_have_count(0)
        # the history shows each step of the alert, deliveries included
        await card.locator("summary").click()
        await expect(card.locator("ol.steps")).to_contain_text("acknowledged")

        # the connection drops (network gone): the page says so; an SOS raised meanwhile arrives after
        await tab.context.set_offline(True)
        await page.evaluate("state.socket && state.socket.close()")
        await expect(page.locator("#conn")).not_to_have_attribute("data-state", "conn.live")
        pub.publish(topic, fix(-390, -160, t0 + 90, sos=True))

        async def sos_open() -> bool:
            n = await svc.pool.fetchval("SELECT count(*) FROM alerts WHERE kind = 'sos' AND state = 'open'")
            return bool(n)

        await wait_until(sos_open, 10)
        await tab.shoot("parent-offline")
        await tab.context.set_offline(False)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "conn.live", timeout=15_000)
        await expect(page.locator(".toast")).to_contain_text("Back online")
        await expect(page.locator("#alerts")).to_contain_text("SOS")
        await expect(banner).to_contain_text("SOS from Minjun")
        sos_id = await svc.pool.fetchval("SELECT id FROM alerts WHERE kind = 'sos'")

        # from the keyboard alone: Tab to the SOS's acknowledge button, press Enter
        await tab.tab_to(f'[data-alert="{sos_id}"] button[data-ack]')
        await page.keyboard.press("Enter")

        async def sos_acknowledged() -> bool:
            n = await svc.pool.fetchval(
                "SELECT count(*) FROM alerts WHERE id = $1 AND acknowledged_at IS NOT NULL", sos_id
            )
            return bool(n)

        await wait_until(sos_acknowledged, 10)

        # Korean by the switch
        await page.get_by_role("button", name="Switch language to Korean").click()
        await expect(page.locator("html")).to_have_attribute("lang", "ko")
        await expect(page.locator("#children-h")).to_have_text("자녀")
        # (live again if the socket dropped meanwhile: on a busy CI machine a reconnection, with its
        # back-off and handshake, has taken longer than the 5 s an expectation waits by default)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "conn.live", timeout=20_000)
        await expect(page.locator("#conn")).to_have_text("실시간 연결됨")
        await tab.shoot("parent-ko")
        assert await tab.accessibility_problems() == []
        assert tab.errors == []
        assert tab.foreign == []
    finally:
        pub.close()


async def test_sign_in_by_the_form_refuses_a_wrong_token(service, open_tab) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Seoyeon"])
    kid = world.kids["Seoyeon"]
    tab = await open_tab()
    page = tab.page
    await page.goto(f"http://127.0.0.1:{svc.settings.http_port}/")
    token = page.get_by_label("Access token")
    await expect(token).to_be_visible()
    await tab.shoot("parent-sign-in")
    await token.fill("not-a-token")
    await token.press("Enter")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "conn.signedout")
    await expect(token).to_be_visible()
    await token.fill(kid.token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#children")).to_contain_text("Seoyeon")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "conn.live")
    assert await page.evaluate("localStorage.getItem('tracker-token')") == kid.token
    # signing out forgets the token
    await page.get_by_role("button", name="Sign out").click()
    await expect(token).to_be_visible()
    assert await page.evaluate("localStorage.getItem('tracker-token')") is None
    assert tab.errors == []
    assert await tab.accessibility_problems() == []


async def test_the_pages_alert_sentence_says_when_and_where_in_the_schools_time(
    service, mqtt_url: str, open_tab
) -> None:  # type: ignore[no-untyped-def]
    """The page writes an alert's sentence in its own language (the server's text is in the guardian's),
    with what the server's text says besides: the time of the fix, in the school's time zone (a parent
    travelling abroad reads the school's clock, as the SMS says it), and where."""
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun"])  # a school in Asia/Seoul
    await svc.reload_registry()
    kid = world.kids["Minjun"]
    topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position"
    pub = Publisher(mqtt_url)
    try:
        t0 = time.time() - 60
        pub.publish(topic, fix(-500, 0, t0))
        pub.publish(topic, fix(-460, 0, t0 + 15, sos=True))

        async def sos() -> Any:
            return await svc.pool.fetchrow(
                "SELECT id, last_lat, last_lon, last_fix_ts FROM alerts"
                " WHERE kind = 'sos' AND last_lat IS NOT NULL"
            )

        alert = await wait_until(sos, 10)
        when = alert["last_fix_ts"].astimezone(ZoneInfo("Asia/Seoul"))
        where = f"{alert['last_lat']:.5f},{alert['last_lon']:.5f}"
        assert when.hour != datetime.now(ZoneInfo("Europe/London")).hour  # two clocks that differ

        tab = await open_tab(timezone="Europe/London")
        page = tab.page
        await page.goto(f"http://127.0.0.1:{svc.settings.http_port}/#token={kid.token}")
        english = (
            f"SOS from Minjun ({when:%I:%M} {'AM' if when.hour < 12 else 'PM'}, {where}). Please call now."
        )
        await expect(page.locator("#banner-text")).to_have_text(english)
        await expect(page.locator(f'[data-alert="{alert["id"]}"]')).to_contain_text(english)

        await page.get_by_role("button", name="Switch language to Korean").click()
        noon = "오전" if when.hour < 12 else "오후"
        korean = f"Minjun 학생의 긴급 호출(SOS)입니다 ({noon} {when:%I:%M}, {where}). 바로 연락해 주세요."
        await expect(page.locator("#banner-text")).to_have_text(korean)
        assert tab.errors == []
    finally:
        pub.close()
