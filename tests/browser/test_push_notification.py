"""The parent page as an installed app in a real Chromium, with Web Push from the real service.

A parent turns notifications on with the button (no prompt on load); the page subscribes with the
service's VAPID key and posts the subscription. An SOS published over MQTT goes through the service's
push channel to the local push service (tests/push_service.py), which checks the VAPID signature and
decrypts it with the browser's key; that plaintext is handed to the page's service worker through the
DevTools protocol (ServiceWorker.deliverPushMessage), which shows the notification
(registration.getNotifications()); its "Acknowledge" action acknowledges the alert through the API with
the guardian's token from IndexedDB. Offline, the installed page starts from the worker's copy and
shows the last known statuses.

Two limits of a test machine, said where they bite: Chromium registers a push subscription with
Google's push service (FCM), which a test cannot reach, so an init script stands in for the browser's
PushManager.subscribe and hands the page a subscription at the local push service (the page's own code
asks for it, with the key it fetched, and posts it); and DevTools has no command that taps a
notification (headless Chromium draws none), so the tap is the worker's own notificationclick listener
run with the notification getNotifications() returned and action "ack" (a script-made event, which the
browser does not let extend its lifetime: the listener starts its work before asking it to).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import SHOTS
from tests.helpers import Publisher, build_small_world, fix, wait_until
from tests.push_service import PushService, b64url, running_push_service
from tracker.service import Service

expect = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]'").expect
NOTES = Path(os.environ.get("TRACKER_NOTES_DIR", "/work/notes"))

# The browser's registration with its push service, replaced: the subscription is the local push
# service's (keys made by the test); what the page asked for is kept for the test to check.
FAKE_PUSH_REGISTRATION = """
(() => {
  const sub = window.__TEST_SUBSCRIPTION__;
  let current = null;
  const make = (key) => ({
    endpoint: sub.endpoint, expirationTime: null,
    options: { applicationServerKey: key, userVisibleOnly: true },
    toJSON: () => ({ endpoint: sub.endpoint, expirationTime: null, keys: sub.keys }),
    unsubscribe: async () => { current = null; return true; },
  });
  PushManager.prototype.subscribe = async function (options) {
    window.__askedWithKey__ = Array.from(new Uint8Array(options.applicationServerKey));
    current = make(new Uint8Array(options.applicationServerKey).buffer);
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
})();
"""


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    async with running_push_service() as service:
        yield service


@pytest.fixture
async def push_tracker(database_url: str, mqtt_url: str, settings_for) -> AsyncIterator[Service]:  # type: ignore[no-untyped-def]
    settings = settings_for(database_url, mqtt_url, push_services="http://127.0.0.1:*", tick_s=0.2)
    svc = Service(settings, database_url, mqtt_url)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def _notifications(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate(
        """async () => (await (await navigator.serviceWorker.ready).getNotifications()).map((n) => ({
             title: n.title, body: n.body, tag: n.tag, lang: n.lang, requireInteraction: n.requireInteraction,
             actions: n.actions.map((a) => ({ action: a.action, title: a.title })),
             data: n.data, icon: n.icon }))"""
    )
    return result


async def test_a_push_notification_shows_on_the_installed_page_and_acknowledges_from_its_button(
    push_tracker: Service, push_service: PushService, mqtt_url: str, open_tab, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    svc = push_tracker
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun"])
    await svc.reload_registry()
    kid = world.kids["Minjun"]
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position"
    pub = Publisher(mqtt_url)
    t0 = time.time() - 60
    pub.publish(topic, fix(-500, 0, t0))
    pub.publish(topic, fix(-460, 0, t0 + 15))

    phone = push_service.browser(svc.vapid_keys.public_key)
    tab = await open_tab()
    page, context = tab.page, tab.context
    await context.add_init_script(f"window.__TEST_SUBSCRIPTION__ = {json.dumps(phone.subscription())};")
    await context.add_init_script(FAKE_PUSH_REGISTRATION)
    cdp = await context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    await cdp.send("ServiceWorker.enable")

    try:
        # first load: no prompt; the parent is offered the button
        await page.goto(f"{base}/#token={kid.token}")
        await expect(page.locator("#children")).to_contain_text("Minjun")
        await expect(page.get_by_role("button", name="Allow notifications")).to_be_visible()
        assert await page.evaluate("Notification.permission") == "default"
        assert await svc.pool.fetchval("SELECT count(*) FROM push_subscriptions") == 0

        # the parent presses it and allows: the page subscribes with the service's key and tells the service
        await context.grant_permissions(["notifications"], origin=base)
        await page.get_by_role("button", name="Allow notifications").click()
        await expect(page.locator(".toast")).to_contain_text("Notifications on")
        asked = bytes(await page.evaluate("window.__askedWithKey__"))
        assert b64url(asked) == svc.vapid_keys.public_key
        row = await svc.pool.fetchrow("SELECT guardian_id, endpoint FROM push_subscriptions")
        assert (row["guardian_id"], row["endpoint"]) == (kid.guardian_id, phone.endpoint)

        # the app is installable: manifest, icons, a worker that controls the page
        await page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=10_000)
        manifest = await cdp.send("Page.getAppManifest")
        assert manifest["errors"] == [] and manifest["url"].endswith("/manifest.webmanifest")
        installability = await cdp.send("Page.getInstallabilityErrors")
        # all that keeps it from being installed is the test's browser context (incognito, as every
        # Playwright context is); a manifest, icon or worker problem would be listed here
        assert [e["errorId"] for e in installability["installabilityErrors"]] == ["in-incognito"]
        await tab.shoot("parent-installed")

        # an SOS: through the service's push channel to the local push service, decrypted there ...
        pub.publish(topic, fix(-420, 0, t0 + 30, sos=True))
        await wait_until(lambda: phone.received, 10)
        plaintext = json.dumps(phone.received[0].message, ensure_ascii=False)
        alert_id = phone.received[0].message["alert_id"]
        # ... and handed to the page's worker as its push service would
        registration = next(r for r in registrations if not r["isDeleted"] and r["scopeURL"] == f"{base}/")
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": base, "registrationId": registration["registrationId"], "data": plaintext},
        )
        shown = await wait_until(lambda: _notifications(page), 10)
        [n] = shown
        assert n["title"] == "SOS — Minjun" and n["body"].startswith("SOS from Minjun")
        assert n["tag"] == f"alert-{alert_id}" and n["requireInteraction"] is True and n["lang"] == "en"
        assert n["actions"] == [{"action": "ack", "title": "Acknowledge"}]
        assert n["data"] == {"alert_id": alert_id, "url": f"/#alert={alert_id}"}
        await _shoot_notification(context, n)

        # "Acknowledge" on the notification: the worker acknowledges through the API with the token
        worker = next(w for w in context.service_workers if w.url == f"{base}/sw.js")
        await worker.evaluate(
            """async () => {
                 const [n] = await self.registration.getNotifications();
                 const tap = new NotificationEvent("notificationclick", { notification: n, action: "ack" });
                 self.dispatchEvent(tap);
               }"""
        )

        async def acknowledged() -> Any:
            return await svc.pool.fetchval(
                "SELECT acknowledged_by FROM alerts WHERE id = $1 AND acknowledged_at IS NOT NULL", alert_id
            )

        assert await wait_until(acknowledged, 10) == kid.guardian_id
        assert await _notifications(page) == []  # the notification is closed
        card = page.locator(f'[data-alert="{alert_id}"]')
        await expect(card).to_contain_text("Acknowledged")
        await expect(card).to_have_class(
            re.compile(r"\bresolved\b.*\bfocus\b")
        )  # closed; the page opened on it

        # offline: the installed page starts from the worker's copy with the last known statuses (what
        # it read while the worker was in control: the first load's were read before it took over, so
        # the app is opened once more first, as a parent opens it again and again)
        await page.reload()
        await expect(page.locator("#alerts")).to_contain_text("SOS")
        # ... and has read all it shows (the child's route and the zones come last): gone offline
        # before, the offline page had no copy of them and drew the map without the route
        await page.wait_for_function(
            "() => state.zones !== null && state.routes.size > 0 && zoneLayer !== null"
        )
        await context.set_offline(True)
        await page.reload()
        await expect(page.locator("#children")).to_contain_text("Minjun")
        await expect(page.locator("#stale")).to_contain_text("No network: the last known statuses")
        await expect(page.locator("#alerts")).to_contain_text("SOS")
        await page.wait_for_function("() => childLayer !== null && childLayer.corridor !== undefined")
        await page.wait_for_timeout(1000)  # the map's fit to the child's track, animated, has ended
        await tab.shoot("parent-offline-installed")
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.wait_for_timeout(1000)
        # the map stays in its box on the phone though the page was opened at desktop width (where the
        # box is sticky): its panes and controls were drawn over the page's top when the box lost its
        # positioning at the narrower width
        assert await _map_outside_its_box(page) == []
        await page.screenshot(
            path=str(SHOTS / "parent-offline-installed-viewport.png")
        )  # no full-page stitching
        await context.set_offline(False)
        assert tab.errors == []
    finally:
        pub.close()
    for name in (
        "parent-installed-phone.png",
        "push-notification.png",
        "parent-offline-installed-viewport.png",
    ):
        print("screenshot:", SHOTS / name)
    await asyncio.to_thread(
        _copy_to_notes,
        ("push-notification.png", "parent-offline-installed-viewport.png", "parent-installed-phone.png"),
    )


async def _map_outside_its_box(page: Any) -> list[str]:
    """What of the map is not drawn in the #map box (as a map drawn over the top of the page is): its
    panes placed against another box, its zoom buttons outside it."""
    outside: list[str] = await page.evaluate(
        """() => {
             const map = document.getElementById("map");
             const box = map.getBoundingClientRect();
             const problems = [];
             const pane = map.querySelector(".leaflet-map-pane");
             const holder = pane.offsetParent;
             if (holder !== map) problems.push(`panes placed against ${holder && holder.tagName}`);
             const zoom = map.querySelector(".leaflet-control-zoom").getBoundingClientRect();
             if (zoom.top < box.top || zoom.bottom > box.bottom
                 || zoom.left < box.left || zoom.right > box.right)
               problems.push(`zoom buttons at ${Math.round(zoom.top)}, the box at ${Math.round(box.top)}`);
             return problems;
           }"""
    )
    return outside


def _copy_to_notes(names: tuple[str, ...]) -> None:
    """The lead's notes, where this run's pictures are quoted (when that folder exists)."""
    if NOTES.is_dir():
        for name in names:
            shutil.copy(SHOTS / name, NOTES / name)


async def _shoot_notification(context: Any, n: dict[str, Any]) -> None:
    """Headless Chromium draws no system notifications: a picture of the one the worker showed, drawn
    from what getNotifications() returned (title, body, icon, action), for review."""
    page = await context.new_page()
    await page.set_viewport_size({"width": 390, "height": 220})
    icon = await page.request.get(n["icon"])
    assert icon.ok and icon.headers["content-type"] == "image/png"  # the icon the notification names
    icon_src = "data:image/png;base64," + base64.b64encode(await icon.body()).decode()
    await page.set_content(
        f"""<body style="margin:0;background:#1f2937;font:15px system-ui,'Noto Sans KR',sans-serif">
        <div style="margin:16px;background:#f9fafb;border-radius:16px;padding:12px 14px;
                    box-shadow:0 2px 8px #0006">
          <div style="display:flex;gap:10px;align-items:center;color:#4b5563;font-size:12px">
            <img src="{icon_src}" width="20" height="20" style="border-radius:5px">
            통학 안전 · 127.0.0.1 · now</div>
          <div style="font-weight:600;margin-top:6px">{n["title"]}</div>
          <div style="color:#111827">{n["body"]}</div>
          <div style="margin-top:10px;display:flex;gap:18px;color:#1d4ed8;font-weight:600">
            {"".join(f"<span>{a['title']}</span>" for a in n["actions"])}</div>
        </div><p style="color:#9ca3af;margin:0 16px;font-size:11px">Drawn by the test from
        registration.getNotifications() (requireInteraction: {str(n["requireInteraction"]).lower()},
        tag {n["tag"]})</p></body>""",
        wait_until="domcontentloaded",
    )
    await asyncio.sleep(0.2)
    os.makedirs(SHOTS, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "push-notification.png"))
    await page.close()


# A browser whose push service refuses, or never answers: subscribe() fails with the browser's own error
FAILING_PUSH_REGISTRATION = """
(() => {
  PushManager.prototype.getSubscription = async function () { return null; };
  PushManager.prototype.subscribe = function () {
    const name = window.__FAIL_WITH__;
    if (name === "never") return new Promise(() => {});
    return Promise.reject(new DOMException("Registration failed - push service error " + name, name));
  };
})();
"""
WHY = {  # the browser's error -> what the toast says of it, in English and in Korean
    "NotAllowedError": ("this browser's settings do not allow it", "브라우저 설정에서 허용되지 않습니다"),
    "AbortError": (
        "the browser's push service refused or could not be reached",
        "브라우저의 푸시 서비스가 거부했거나 연결할 수 없습니다",
    ),
    "never": ("the browser's push service did not answer", "브라우저의 푸시 서비스가 응답하지 않았습니다"),
    "QuotaExceededError": (
        "an unexpected error in the browser",
        "브라우저에서 예기치 않은 오류가 났습니다",
    ),
}


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_a_failed_subscription_is_said_in_the_pages_words(
    push_tracker: Service, open_tab, lang: str
) -> None:  # type: ignore[no-untyped-def]
    """The browser's error (English whatever the page's language) is never shown: its kind is, in the
    page's words; a kind the page does not know is an unexpected error."""
    svc = push_tracker
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun"])
    kid = world.kids["Minjun"]
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    tab = await open_tab()
    page, context = tab.page, tab.context
    await context.add_init_script(FAILING_PUSH_REGISTRATION)
    await context.add_init_script(f"localStorage.setItem('tracker-lang', {lang!r});")
    await context.grant_permissions(["notifications"], origin=base)
    await page.goto(f"{base}/#token={kid.token}")
    await expect(page.locator("#children")).to_contain_text("Minjun")
    for name, words in WHY.items():
        await page.evaluate(
            "([name]) => { window.__FAIL_WITH__ = name; Push.SUBSCRIBE_MS = 200;"
            " document.querySelectorAll('.toast').forEach((el) => el.remove()); }",
            [name],
        )
        await page.evaluate("turnOnNotifications()")
        toast = page.locator(".toast")
        await expect(toast).to_contain_text(words[0] if lang == "en" else words[1])
        said = await toast.inner_text()
        assert "Registration failed" not in said, said  # the browser's own words
        if lang == "ko":
            assert re.findall(r"[A-Za-z]{2,}", said) == [], said
    assert tab.errors == []
