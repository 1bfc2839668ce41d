"""The school and city pages in a real Chromium: a school user draws a route on the map and puts a child
on it, and the geofence measures the child's next fix against that route; the city's administrator
draws a danger zone; screenshots of both pages at phone and desktop size."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from tests.helpers import Publisher, build_small_world, fix, line, lonlat, wait_until
from tracker.store.tokens import issue_token

expect = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]'").expect


async def click_on_map(page: Any, points: list[tuple[float, float]]) -> None:
    """Click the map at each (x, y) in metres of the test world, as a person drawing would."""
    box = await page.locator("#map").bounding_box()
    for x, y in points:
        # a click computed while the map still zooms or pans (the page fits it to the routes as they load)
        # lands elsewhere, on a vertex already drawn it ends the line
        for _ in range(100):  # (polled from here: the page's CSP refuses wait_for_function's eval)
            still = "(() => !map._animatingZoom && !(map._panAnim && map._panAnim._inProgress))()"
            if await page.evaluate(still):
                break
            await page.wait_for_timeout(50)
        lon, lat = lonlat(x, y)
        p = await page.evaluate(
            f"(() => {{ const p = map.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y]; }})()"
        )
        await page.mouse.click(box["x"] + p[0], box["y"] + p[1])
        await page.wait_for_timeout(120)


async def test_school_draws_a_route_and_the_geofence_uses_it(
    service, mqtt_url: str, open_tab, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun", "Seoyeon"])
        token = await issue_token(conn, role="school", school_id=world.school_id, label="browser test")
    await svc.reload_registry()
    kid = world.kids["Minjun"]
    topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position"
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    pub = Publisher(mqtt_url)
    t0 = time.time() - 60
    try:
        # on the registered route (y = 0), a fix 120 m south of it is 120 m off
        pub.publish(topic, fix(-300, -120, t0, acc=5))

        async def distance_at(ts: float) -> Any:
            return await svc.pool.fetchval(
                # within a millisecond: PostgreSQL's to_timestamp and Python's datetime.fromtimestamp (the
                # stored value) may round a float's fraction of a microsecond differently
                "SELECT route_distance_m FROM positions"
                " WHERE tag_id = $1 AND abs(extract(epoch FROM ts) - $2) < 0.001",
                kid.tag,
                ts,
            )

        before = await wait_until(lambda: distance_at(t0), 10)
        assert before > 100

        tab = await open_tab(size={"width": 1366, "height": 768})
        page = tab.page
        await page.goto(f"{base}/school#token={token}")
        await expect(page.locator("#title")).to_contain_text("Test School")
        await expect(page.locator("#children")).to_contain_text("Seoyeon")
        await expect(page.locator("#live-count")).to_contain_text("1 on the map")

        # draw a new route 120 m south of the old one, from (-600, -120) to the school
        await page.get_by_role("button", name="Draw a new route").click()
        await click_on_map(page, [(-600, -120), (-300, -120), (-50, -120), (0, -10)])
        await page.get_by_role("button", name="Finish drawing").click()
        await page.get_by_label("Name").fill("South walk")
        await page.get_by_label("Corridor width (m)").fill("25")
        # walked in the mornings, ridden home on the academy's shuttle: the morning window says walk
        await page.get_by_label("How it is travelled").select_option("shuttle")
        await page.get_by_label("Commute windows").fill("0-6 00:00-12:00 On foot\n0-6 12:00-24:00")
        await page.get_by_label("Expected arrivals").fill("0-4 08:40 school")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#route-msg")).to_have_text("Route saved.")
        row = await svc.pool.fetchrow("SELECT * FROM routes WHERE name = 'South walk'")
        assert row is not None
        new_route = row["id"]
        assert row["school_id"] == world.school_id and float(row["corridor_m"]) == 25
        every_day = [0, 1, 2, 3, 4, 5, 6]
        assert row["mode"] == "shuttle" and row["windows"] == [
            {"days": every_day, "start": "00:00", "end": "12:00", "mode": "walk"},
            {"days": every_day, "start": "12:00", "end": "24:00"},
        ]
        assert [(a["time"], a["to"]) for a in row["arrivals"]] == [("08:40", "school")]
        assert row["geometry"]["type"] == "LineString" and len(row["geometry"]["coordinates"]) == 4

        # put Minjun on it (the children table), and wait for the index that has it
        await page.get_by_label("Route: Minjun").select_option(label="South walk")

        def swapped() -> bool:
            view = svc.view()
            slot = view.route_slot_of_child.get(kid.child_id, -1)
            return slot >= 0 and int(view.index.route_ids[slot]) == new_route

        await wait_until(swapped, 10)

        # the next fix at the same place is on the drawn route
        pub.publish(topic, fix(-280, -120, t0 + 15, acc=5))
        after = await wait_until(lambda: distance_at(t0 + 15), 10)
        assert after < 15, f"{after} m from the drawn route"
        await expect(page.locator("#live-count")).to_contain_text("1 on the map")
        # a route uploaded as GeoJSON joins the list
        upload = tmp_path / "north.geojson"
        upload.write_text(
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": [
                        {
                            "type": "Feature",
                            "geometry": line((-400, 120), (0, 120), (0, 10)),
                            "properties": {"kind": "route", "name": "North walk", "corridor_m": 20},
                        }
                    ],
                }
            )
        )
        await page.get_by_label("Upload GeoJSON or GPX").set_input_files(str(upload))
        await page.get_by_role("button", name="Upload", exact=True).click()
        await expect(page.locator("#upload-msg")).to_have_text("Imported: 1 created, 0 updated.")
        await expect(page.locator("#route-select")).to_contain_text("North walk (20 m)")
        assert (
            await svc.pool.fetchval("SELECT school_id FROM routes WHERE name = 'North walk'")
            == world.school_id
        )
        await tab.shoot("school")
        assert await tab.accessibility_problems() == []
        assert tab.errors == []
        assert tab.foreign == []
    finally:
        pub.close()


async def test_a_click_on_a_route_while_drawing_is_a_vertex(service, open_tab) -> None:  # type: ignore[no-untyped-def]
    """While a new route is drawn, a click that lands on an existing route's corridor adds a vertex: it
    does not select that route (which would stop the drawing)."""
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun"])
        token = await issue_token(conn, role="school", school_id=world.school_id, label="browser test")
    await svc.reload_registry()
    tab = await open_tab(size={"width": 1366, "height": 768})
    page = tab.page
    await page.goto(f"http://127.0.0.1:{svc.settings.http_port}/school#token={token}")
    await expect(page.locator("#children")).to_contain_text("Minjun")  # (the routes are on the map by then)
    await page.get_by_role("button", name="Draw a new route").click()
    # the middle click is on the registered route's line (y = 0), in its corridor
    await click_on_map(page, [(-500, -200), (-450, 0), (-300, -200)])
    await page.get_by_role("button", name="Finish drawing").click()
    drawn = await page.evaluate("pendingGeometry().coordinates.length")
    assert drawn == 3
    assert await page.locator("#route-select").input_value() == ""  # still a new route, none selected
    assert tab.errors == []


async def test_city_draws_a_danger_zone(service, open_tab) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun"])
        token = await issue_token(conn, role="admin", label="browser test")
    await svc.reload_registry()
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    tab = await open_tab(size={"width": 1366, "height": 768}, locale="ko-KR")
    page = tab.page
    await page.goto(f"{base}/city#token={token}")
    await expect(page.locator("html")).to_have_attribute("lang", "ko")  # the browser's language
    await expect(page.locator("#zone-select")).to_contain_text("Construction site")
    await page.evaluate(f"map.setView([{lonlat(-300, 0)[1]}, {lonlat(-300, 0)[0]}], 16)")
    await page.get_by_role("button", name="새 위험 구역 그리기").click()
    square = [(-200, -200), (-100, -200), (-100, -100), (-200, -100), (-200, -200)]
    await click_on_map(page, square)
    await page.get_by_label("이름").fill("River bank")
    await expect(page.get_by_label("종류")).to_have_value("공사장")  # a new zone's kind, in words
    await page.get_by_label("종류").fill("하천변")  # a kind typed in the page's words is its code
    await page.get_by_label("시간 (비우면 항상)").fill("0-6 06:00-20:00")
    await page.get_by_role("button", name="저장").click()
    await expect(page.locator("#zone-msg")).to_have_text("위험 구역을 저장했습니다.")
    row = await svc.pool.fetchrow("SELECT * FROM danger_zones WHERE name = 'River bank'")
    assert row is not None and row["kind"] == "river" and row["id"] != world.zone_id
    assert row["hours"] == [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "06:00", "end": "20:00"}]
    ring = row["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    # the corners are where they were clicked (within a few metres: a pixel at zoom 16 is ~2 m)
    lon, lat = lonlat(-100, -100)
    assert min(math.dist((lon, lat), tuple(c)) for c in ring) < 5e-5
    # an existing zone edited: only at night, a warning (its kind in the page's words)
    await page.get_by_label("구역 선택").select_option(label="Construction site · 공사장")
    await expect(page.get_by_label("이름")).to_have_value("Construction site")
    await expect(page.get_by_label("종류")).to_have_value("공사장")  # not its code, construction
    await page.get_by_label("심각도").select_option("warning")
    await page.get_by_label("시간 (비우면 항상)").fill("0-6 20:00-24:00")
    await page.get_by_role("button", name="저장").click()
    await expect(page.locator("#zone-msg")).to_have_text("위험 구역을 저장했습니다.")
    edited = await svc.pool.fetchrow(
        "SELECT kind, severity, hours FROM danger_zones WHERE id = $1", world.zone_id
    )
    assert edited["kind"] == "construction" and edited["severity"] == "warning"
    assert edited["hours"] == [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "20:00", "end": "24:00"}]

    # a kind the city makes up is a code of its own (as the API takes it); words that are neither: said so
    async def kind() -> Any:
        return await svc.pool.fetchval("SELECT kind FROM danger_zones WHERE id = $1", world.zone_id)

    async def kind_is(code: str) -> bool:
        return bool(await kind() == code)

    await page.get_by_label("종류").fill("school_gate")
    await page.get_by_role("button", name="저장").click()
    # saved, and the form filled again from the server's answer (or the next fill would be overwritten)
    await expect(page.locator("#zone-msg")).to_have_text("위험 구역을 저장했습니다.")
    await wait_until(lambda: kind_is("school_gate"), 10)
    await expect(page.get_by_label("종류")).to_have_value("school_gate")
    await page.get_by_label("종류").fill("놀이터 앞")
    await page.get_by_role("button", name="저장").click()
    await expect(page.locator("#zone-msg.error")).to_contain_text("종류")
    assert await kind() == "school_gate"
    await page.get_by_label("종류").fill("공사장")
    await page.get_by_role("button", name="저장").click()
    await wait_until(lambda: kind_is("construction"), 10)
    await tab.shoot("city")
    assert await tab.accessibility_problems() == []
    assert tab.errors == []
    assert tab.foreign == []
