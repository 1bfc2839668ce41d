"""Web Push as a delivery channel, against the real service, PostgreSQL, the broker and a local push
service (tests/push_service.py) that checks each request's VAPID signature and decrypts its payload
with the subscribing browser's private key: what arrives names the child and what happened in the
guardian's language; a subscription the push service says is gone (404, 410) is removed; a push
service that cannot take a message now (500) gets it again with back-off, and only the browsers that
did not take it; the rate limit holds notices back but never a critical alert; an unacknowledged
alert escalates to the next guardian's phone. And the API: the key, subscribing (which endpoints, which
keys), unsubscribing, a revoked sign-in that silences its browser, the key kept in a file."""

from __future__ import annotations

import json
import logging
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.helpers import Kid, Publisher, alert_with_delivery, build_small_world, fix, wait_until
from tests.push_service import PushService, running_push_service
from tracker.service import Service
from tracker.store import seeding
from tracker.store.tokens import issue_token

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "push-message.v1.json").read_text(encoding="utf-8")
)
LOCAL = "http://127.0.0.1:*"  # TRACKER_PUSH_SERVICES for the local push service


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    async with running_push_service() as service:
        yield service


async def _start(settings_for, database_url: str, mqtt_url: str, **overrides: Any) -> Service:  # type: ignore[no-untyped-def]
    values: dict[str, Any] = {
        "push_services": LOCAL,
        "tick_s": 0.1,
        "vapid_subject": "mailto:ops@school.example",
    }
    settings = settings_for(database_url, mqtt_url, **(values | overrides))
    svc = Service(settings, database_url, mqtt_url)
    await svc.start()
    return svc


def _api(svc: Service, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{svc.settings.http_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


async def _subscribe(svc: Service, token: str, subscription: dict[str, Any]) -> httpx.Response:
    async with _api(svc, token) as api:
        return await api.post("/api/v1/me/push-subscriptions", json=subscription)


async def _deliveries(svc: Service) -> list[dict[str, Any]]:
    rows = await svc.pool.fetch(
        "SELECT d.id, d.channel, d.state, d.attempts, d.last_error, d.next_attempt_at, d.guardian_id,"
        " d.transition, a.severity FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
        " WHERE d.channel = 'push' ORDER BY d.id"
    )
    return [dict(r.items()) for r in rows]


async def _settled(svc: Service) -> None:
    """Deliver what is due and wait until no push delivery is waiting or being sent (the running
    service's own dispatcher lanes may be the ones that deliver it)."""
    await svc.dispatcher.deliver_due()

    async def settled() -> bool:
        return all(d["state"] not in ("pending", "sending") for d in await _deliveries(svc))

    await wait_until(settled, 5)


async def _after_attempt(svc: Service, attempts: int) -> dict[str, Any]:
    """Deliver what is due and wait for the (only) push delivery's outcome of that attempt: the running
    service's own dispatcher lanes may be the ones that take it."""
    await svc.dispatcher.deliver_due()

    async def done() -> dict[str, Any] | None:
        [d] = await _deliveries(svc)
        return d if d["attempts"] >= attempts and d["state"] != "sending" else None

    result: dict[str, Any] = await wait_until(done, 5)
    return result


async def test_an_sos_reaches_a_subscribed_phone_encrypted_signed_and_in_the_guardians_language(
    database_url: str, mqtt_url: str, settings_for, push_service: PushService
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url)
    try:
        async with svc.pool.acquire() as conn:
            world = await build_small_world(conn, ["Minjun"])
            kid = world.kids["Minjun"]
            await conn.execute("UPDATE guardians SET language = 'ko' WHERE id = $1", kid.guardian_id)
        phone = push_service.browser(svc.vapid_keys.public_key)
        r = await _subscribe(svc, kid.token, phone.subscription())
        assert r.status_code == 201, r.text
        assert r.json()["channels"] == ["websocket", "sms", "push"]
        await svc.reload_registry()

        pub = Publisher(mqtt_url)
        try:
            pub.publish(
                f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position",
                fix(-300, 0, time.time() - 5, sos=True),
            )
        finally:
            pub.close()
        await wait_until(lambda: phone.received, 10)
        got = phone.received[0]
        assert phone.refused == []
        message = got.message
        jsonschema.validate(message, SCHEMA)
        n = message["notification"]
        assert (message["kind"], message["severity"], message["transition"]) == ("sos", "critical", "opened")
        assert n["title"] == "긴급 호출(SOS) — Minjun"
        assert n["body"].startswith("Minjun 학생의 긴급 호출(SOS)입니다") and n["lang"] == "ko"
        assert n["actions"] == [{"action": "ack", "title": "확인"}]
        assert n["requireInteraction"] is True and n["silent"] is False
        assert n["url"] == f"/#alert={message['alert_id']}" and n["tag"] == f"alert-{message['alert_id']}"
        # RFC 8292 / 8030: signed for this push service's origin by the service's key, with a contact
        assert got.claims["aud"] == push_service.origin and got.claims["sub"] == "mailto:ops@school.example"
        assert got.headers["urgency"] == "high" and int(got.headers["ttl"]) == 12 * 3600

        async def sent() -> list[dict[str, Any]]:
            return [d for d in await _deliveries(svc) if d["state"] == "sent"]

        [delivery] = await wait_until(sent, 5)
        assert delivery["guardian_id"] == kid.guardian_id and delivery["attempts"] == 1
        steps = await svc.pool.fetch(
            "SELECT detail FROM alert_history WHERE alert_id = $1 AND step = 'delivered'", message["alert_id"]
        )
        assert any(s["detail"]["channel"] == "push" for s in steps)
        assert await svc.pool.fetchval("SELECT last_success_at IS NOT NULL FROM push_subscriptions")
    finally:
        await svc.stop()


@pytest.mark.parametrize("answer", [404, 410])
async def test_a_subscription_the_push_service_says_is_gone_is_removed(
    answer: int, database_url: str, mqtt_url: str, settings_for, push_service: PushService
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url)
    try:
        async with svc.pool.acquire() as conn:
            kid = (await build_small_world(conn, ["Jia"])).kids["Jia"]
        gone = push_service.browser(svc.vapid_keys.public_key, answers=[answer])
        assert (await _subscribe(svc, kid.token, gone.subscription())).status_code == 201
        async with svc.pool.acquire() as conn:
            alert, _ = await alert_with_delivery(conn, kid, "sos", "critical", channel="push")
        await _settled(svc)
        assert gone.requests == 1 and gone.refused == []
        assert await svc.pool.fetchval("SELECT count(*) FROM push_subscriptions") == 0
        [d] = await _deliveries(svc)
        assert d["state"] == "offline"  # nobody left to reach on this channel: not retried
        steps = [
            r["step"]
            for r in await svc.pool.fetch("SELECT step FROM alert_history WHERE alert_id = $1", alert)
        ]
        assert "unreachable" in steps
        # the guardian keeps 'push' among their channels: the page subscribes again when next opened
        assert "push" in await svc.pool.fetchval(
            "SELECT channels FROM guardians WHERE id = $1", kid.guardian_id
        )
    finally:
        await svc.stop()


async def test_a_push_service_that_fails_now_gets_the_message_again_with_back_off_only_where_missing(
    database_url: str, mqtt_url: str, settings_for, push_service: PushService
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url, delivery_backoff_s=0.3)
    try:
        async with svc.pool.acquire() as conn:
            kid = (await build_small_world(conn, ["Seo"])).kids["Seo"]
        laptop = push_service.browser(svc.vapid_keys.public_key)
        phone = push_service.browser(svc.vapid_keys.public_key, answers=[500, 503])
        for b in (laptop, phone):
            assert (await _subscribe(svc, kid.token, b.subscription())).status_code == 201
        async with svc.pool.acquire() as conn:
            await alert_with_delivery(conn, kid, "left_route", "warning", channel="push")

        d = await _after_attempt(svc, 1)
        assert (d["state"], d["attempts"]) == ("pending", 1) and "500" in d["last_error"]
        assert d["next_attempt_at"].timestamp() - time.time() <= 0.3  # the first back-off
        row = await svc.pool.fetchrow(
            "SELECT last_failure_at, last_error FROM push_subscriptions WHERE endpoint = $1", phone.endpoint
        )
        assert row["last_failure_at"] is not None and "500" in row["last_error"]

        await wait_until(lambda: time.time() >= d["next_attempt_at"].timestamp(), 5)
        d2 = await _after_attempt(svc, 2)
        assert (d2["state"], d2["attempts"]) == ("pending", 2) and "503" in d2["last_error"]
        # back-off doubles: the second wait is twice the first
        gap = (d2["next_attempt_at"] - d["next_attempt_at"]).total_seconds()
        assert gap >= 0.6

        await wait_until(lambda: time.time() >= d2["next_attempt_at"].timestamp(), 5)
        d3 = await _after_attempt(svc, 3)
        assert (d3["state"], d3["attempts"]) == ("sent", 3)
        # the laptop took it the first time and was not sent it again; the phone got it on the third
        assert (laptop.requests, len(laptop.received)) == (1, 1)
        assert (phone.requests, len(phone.received)) == (3, 1)
        assert (
            phone.received[0].message["notification"]["body"]
            == laptop.received[0].message["notification"]["body"]
        )
    finally:
        await svc.stop()


async def test_the_rate_limit_holds_back_warnings_on_push_but_never_a_critical_alert(
    database_url: str, mqtt_url: str, settings_for, push_service: PushService
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url, rate_limit_count=2, rate_limit_window_s=600)
    try:
        async with svc.pool.acquire() as conn:
            kid = (await build_small_world(conn, ["Yerin"])).kids["Yerin"]
        phone = push_service.browser(svc.vapid_keys.public_key)
        assert (await _subscribe(svc, kid.token, phone.subscription())).status_code == 201
        for kind, severity in [("left_route", "warning")] * 4 + [("sos", "critical")]:
            async with svc.pool.acquire() as conn:
                await alert_with_delivery(conn, kid, kind, severity, state="resolved", channel="push")
            await _settled(svc)
        assert [(d["severity"], d["state"]) for d in await _deliveries(svc)] == [
            ("warning", "sent"),
            ("warning", "sent"),
            ("warning", "suppressed"),
            ("warning", "suppressed"),
            ("critical", "sent"),
        ]
        assert [r.message["severity"] for r in phone.received] == ["warning", "warning", "critical"]
    finally:
        await svc.stop()


async def test_an_unacknowledged_alert_escalates_to_the_next_guardians_phone(
    database_url: str, mqtt_url: str, settings_for, push_service: PushService
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url, escalate_warning_s=0.5)
    try:
        async with svc.pool.acquire() as conn:
            world = await build_small_world(conn, ["Hajun"])
            kid = world.kids["Hajun"]
            # the second guardian: no phone number, no page open; only their phone's browser subscribed
            father = await seeding.add_guardian(
                conn, name="Father of Hajun", phone=None, language="en", channels=("websocket",)
            )
            await seeding.link_guardian(conn, child_id=kid.child_id, guardian_id=father, priority=2)
            father_token = await issue_token(conn, role="guardian", guardian_id=father)
        phone = push_service.browser(svc.vapid_keys.public_key)
        r = await _subscribe(svc, father_token, phone.subscription())
        assert r.status_code == 201 and r.json()["channels"] == ["websocket", "push"]
        await svc.reload_registry()

        pub = Publisher(mqtt_url)
        t0 = time.time() - 120
        try:
            for i, y in enumerate([0, 150, 160, 170]):  # leaves the route: a warning to the mother first
                pub.publish(
                    f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position",
                    fix(-500, y, t0 + 15 * i),
                )
        finally:
            pub.close()
        await wait_until(lambda: phone.received, 10)
        message = phone.received[0].message
        jsonschema.validate(message, SCHEMA)
        assert (message["kind"], message["transition"]) == ("left_route", "escalated")
        n = message["notification"]
        assert n["title"] == "Left the route — Hajun" and n["lang"] == "en"
        assert n["body"].startswith("Not acknowledged yet: Hajun has left the route to school")
        assert n["renotify"] is True and n["requireInteraction"] is False  # a warning: not held on screen
        assert n["actions"] == [{"action": "ack", "title": "Acknowledge"}]

        # the father acknowledges from the notification: the worker's call, with his token
        async with _api(svc, father_token) as api:
            ack = await api.post(f"/api/v1/alerts/{message['alert_id']}/ack")
        assert ack.status_code == 200 and ack.json()["acknowledged_by"] == father
    finally:
        await svc.stop()


async def test_subscribing_refuses_what_is_not_a_push_subscription_and_unsubscribing_drops_the_channel(
    database_url: str, mqtt_url: str, settings_for, push_service: PushService
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url)
    try:
        async with svc.pool.acquire() as conn:
            world = await build_small_world(conn, ["Ara", "Bom"])
            admin = await issue_token(conn, role="admin")
        ara, bom = world.kids["Ara"], world.kids["Bom"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.settings.http_port}") as anyone:
            key = (await anyone.get("/api/v1/push/key")).json()["public_key"]
        assert key == svc.vapid_keys.public_key
        assert await svc.pool.fetchval("SELECT public_key FROM vapid_keys") == key  # made once, kept
        good = push_service.browser(key).subscription()

        bad: list[tuple[str, dict[str, Any], list[str]]] = [
            (
                "an address no push service has",
                {**good, "endpoint": "http://10.0.0.5/admin"},
                ["body", "endpoint"],
            ),
            (
                "credentials in the URL",
                {**good, "endpoint": good["endpoint"].replace("//", "//a:b@")},
                ["body", "endpoint"],
            ),
            (
                "not a P-256 key",
                {**good, "keys": {**good["keys"], "p256dh": "AAAA"}},
                ["body", "keys", "p256dh"],
            ),
            (
                "a short auth secret",
                {**good, "keys": {**good["keys"], "auth": "AAAA"}},
                ["body", "keys", "auth"],
            ),
            ("no keys", {"endpoint": good["endpoint"]}, ["body", "keys"]),
        ]
        for why, body, loc in bad:
            r = await _subscribe(svc, ara.token, body)
            assert r.status_code == 422, (why, r.text)
            assert r.json()["detail"][0]["loc"] == loc, why
        assert (await _subscribe(svc, admin, good)).status_code == 403  # a guardian's own browsers only
        assert await svc.pool.fetchval("SELECT count(*) FROM push_subscriptions") == 0

        assert (await _subscribe(svc, ara.token, good)).status_code == 201
        assert (await _subscribe(svc, ara.token, good)).status_code == 200  # the same browser again
        # the shared tablet, signed in by Bom's parent: it is told about Bom now, not about Ara
        moved = await _subscribe(svc, bom.token, good)
        assert moved.status_code == 200
        owner = await svc.pool.fetchval("SELECT guardian_id FROM push_subscriptions")
        assert owner == bom.guardian_id

        async with _api(svc, ara.token) as api:
            assert (
                await api.delete("/api/v1/me/push-subscriptions", params={"endpoint": good["endpoint"]})
            ).status_code == 404
        async with _api(svc, bom.token) as api:
            listed = (await api.get("/api/v1/me/push-subscriptions")).json()
            assert [s["endpoint"] for s in listed] == [good["endpoint"]]
            assert "p256dh" not in listed[0] and "auth" not in listed[0]
            r = await api.delete("/api/v1/me/push-subscriptions", params={"endpoint": good["endpoint"]})
            assert r.status_code == 204
        assert "push" not in await svc.pool.fetchval(
            "SELECT channels FROM guardians WHERE id = $1", bom.guardian_id
        )
        paths = (
            await httpx.AsyncClient().get(f"http://127.0.0.1:{svc.settings.http_port}/openapi.json")
        ).json()["paths"]
        assert {"/api/v1/push/key", "/api/v1/me/push-subscriptions"} <= paths.keys()
    finally:
        await svc.stop()


async def test_a_revoked_sign_in_silences_its_browser(
    database_url: str, mqtt_url: str, settings_for, push_service: PushService
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url)
    try:
        async with svc.pool.acquire() as conn:
            kid: Kid = (await build_small_world(conn, ["Dan"])).kids["Dan"]
            lost_phone_token = await issue_token(conn, role="guardian", guardian_id=kid.guardian_id)
        lost = push_service.browser(svc.vapid_keys.public_key)
        kept = push_service.browser(svc.vapid_keys.public_key)
        assert (await _subscribe(svc, lost_phone_token, lost.subscription())).status_code == 201
        assert (await _subscribe(svc, kid.token, kept.subscription())).status_code == 201
        await svc.pool.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = (SELECT token_id FROM push_subscriptions"
            " WHERE endpoint = $1)",
            lost.endpoint,
        )
        async with svc.pool.acquire() as conn:
            await alert_with_delivery(conn, kid, "sos", "critical", channel="push")
        await _settled(svc)
        assert (lost.requests, len(kept.received)) == (0, 1)
    finally:
        await svc.stop()


async def test_the_key_file_is_made_once_readable_by_its_owner_only_and_never_logged(
    database_url: str, mqtt_url: str, settings_for, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "vapid.pem"
    caplog.set_level(logging.DEBUG)
    svc = await _start(settings_for, database_url, mqtt_url, vapid_key_file=key_file)
    first = svc.vapid_keys.public_key
    await svc.stop()
    pem = key_file.read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = await _start(settings_for, database_url, mqtt_url, vapid_key_file=key_file)
    try:
        assert again.vapid_keys.public_key == first  # the same key: subscriptions stay valid
        assert await again.pool.fetchval("SELECT count(*) FROM vapid_keys") == 0  # not in PostgreSQL
        secret = "".join(pem.splitlines()[1:-1])
        assert secret[:40] not in caplog.text and secret[:40] not in repr(again.vapid_keys)
    finally:
        await again.stop()
