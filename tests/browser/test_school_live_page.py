"""The school page's live map in a real Chromium: pushed over /ws/school, not polled (issue 17.4).

While the socket is up the page asks GET /api/v1/live nothing: a child's new fix moves its marker, and
an alert that opens shows in the day's table and the child's status. When the socket drops, the page
polls (and says so), reconnects by itself, and stops polling once it is back.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import Publisher, build_small_world, fix, lonlat, wait_until
from tracker.store.tokens import issue_token

expect = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]'").expect
PUSHED = "Live: changes shown as they happen"
POLLING = "Live link down: checking every 5 s"


async def test_the_school_map_follows_the_socket_and_polls_only_while_it_is_down(
    service, mqtt_url: str, open_tab
) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun", "Seoyeon"])
        token = await issue_token(conn, role="school", school_id=world.school_id, label="browser test")
    await svc.reload_registry()
    minjun, seoyeon = world.kids["Minjun"], world.kids["Seoyeon"]
    prefix = svc.settings.topic_prefix
    pub = Publisher(mqtt_url)
    t0 = time.time() - 120
    try:
        pub.publish(f"{prefix}tracker/v1/tags/{minjun.tag}/position", fix(-500, 2, t0))
        await wait_until(lambda: svc.metrics.fixes_stored >= 1, 10)

        tab = await open_tab(size={"width": 1366, "height": 768})
        page = tab.page
        polled: list[str] = []
        page.on("request", lambda r: polled.append(r.url) if "/api/v1/live" in r.url else None)
        await page.goto(f"http://127.0.0.1:{svc.settings.http_port}/school#token={token}")
        await expect(page.locator("#conn")).to_have_text(PUSHED)
        await expect(page.locator("#live-count")).to_contain_text("1 on the map")  # from the snapshot

        async def marker_of(child_id: int) -> Any:
            return await page.evaluate(
                f"(() => {{ const m = LIVE.markers.get({child_id}); if (!m) return null;"
                " const p = m.getLatLng(); return [p.lng, p.lat]; })()"
            )

        # Minjun walks on: the marker follows the pushed position
        lon, lat = lonlat(-420, 2)
        pub.publish(f"{prefix}tracker/v1/tags/{minjun.tag}/position", fix(-420, 2, t0 + 30))

        async def moved() -> bool:
            at = await marker_of(minjun.child_id)
            return at is not None and abs(at[0] - lon) < 1e-7 and abs(at[1] - lat) < 1e-7

        await wait_until(moved, 10)

        # Seoyeon walks off the route: her alert opens, in the table and on her status
        topic = f"{prefix}tracker/v1/tags/{seoyeon.tag}/position"
        for i in range(3):
            pub.publish(topic, fix(-500 + i * 40, 0, t0 + i * 15))
        for i in range(3):
            pub.publish(topic, fix(-380 + i * 10, -150, t0 + 45 + i * 15))
        await expect(page.locator("#alerts")).to_contain_text("Left the route", timeout=10_000)
        await expect(page.locator("#children")).to_contain_text("Off the route", timeout=10_000)
        await expect(page.locator("#live-count")).to_contain_text("2 on the map")
        assert polled == [], f"the page polled while its socket was up: {polled}"
        assert tab.errors == []

        # the socket drops: the page polls at once and says so, then reconnects and stops polling
        await page.evaluate("LIVE.socket.close()")
        await wait_until(lambda: len(polled) >= 1, 5)
        await expect(page.locator("#conn")).to_contain_text(POLLING)
        await expect(page.locator("#conn")).to_have_text(PUSHED, timeout=10_000)
        while_down = len(polled)
        await page.wait_for_timeout(6_000)  # longer than the polling interval
        assert len(polled) == while_down, "the page went on polling with its socket back"
        assert tab.errors == []
        await tab.shoot("school-live")
    finally:
        pub.close()


async def test_todays_alerts_are_the_schools_day_and_say_when_there_are_more(service, open_tab) -> None:  # type: ignore[no-untyped-def]
    """ "Today" is the school's day (Seoul's), not the browser's (Honolulu's, 19 hours behind): an alert
    a minute after the school's midnight is listed, one a minute before is not. A day with more alerts
    than the list shows says how many there are."""
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun"])  # a school in Asia/Seoul
        token = await issue_token(conn, role="school", school_id=world.school_id, label="browser test")
    await svc.reload_registry()
    kid = world.kids["Minjun"]
    now = datetime.now(UTC)
    midnight = datetime.combine(now.astimezone(ZoneInfo("Asia/Seoul")).date(), datetime.min.time())
    midnight = midnight.replace(tzinfo=ZoneInfo("Asia/Seoul"))
    after = min(midnight + timedelta(minutes=1), now - timedelta(seconds=1))
    before = midnight - timedelta(minutes=1)
    insert = (
        "INSERT INTO alerts (child_id, kind, severity, state, opened_at, updated_at, resolved_at)"
        " SELECT $1, $2, 'warning', 'resolved', $3::timestamptz + i * interval '1 ms', $3, $3"
        " FROM generate_series(0, $4 - 1) AS i RETURNING id"
    )
    await svc.pool.fetch(insert, kid.child_id, "left_route", after, 1)
    await svc.pool.fetch(insert, kid.child_id, "danger_zone", before, 1)

    tab = await open_tab(size={"width": 1366, "height": 768}, timezone="Pacific/Honolulu")
    page = tab.page
    await page.goto(f"http://127.0.0.1:{svc.settings.http_port}/school#token={token}")
    rows = page.locator("#alerts tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("Left the route")
    await expect(page.locator("#alerts")).not_to_contain_text("Danger zone")  # the school's yesterday
    await expect(page.locator("#alerts-more")).to_be_hidden()

    # a busy day: more than the list shows, and it says so
    more = await svc.pool.fetch(insert, kid.child_id, "left_route", after, 202)
    await page.locator("#with-info").check()  # the list is read again
    await expect(rows).to_have_count(200)
    await expect(page.locator("#alerts-more")).to_have_text("Showing 200 of 203.")
    await page.get_by_role("button", name="Switch language to Korean").click()
    await expect(page.locator("#alerts-more")).to_have_text("203건 중 200건을 보여 줍니다.")

    # within the list's size again, nothing more is said
    await svc.pool.execute("DELETE FROM alerts WHERE id = ANY($1::bigint[])", [r["id"] for r in more[:3]])
    await page.locator("#with-info").uncheck()
    await expect(rows).to_have_count(200)
    await expect(page.locator("#alerts-more")).to_be_hidden()
    assert tab.errors == []
