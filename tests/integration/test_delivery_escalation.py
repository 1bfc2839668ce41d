"""Delivery and escalation on the real database and broker: the next guardian, then the school's
duty phone and its signed webhook (a real HTTP server here), acknowledgement, the rate limit,
apprise SMS, the clock's rules, and an escalation that survives a restart."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from fastapi import FastAPI, Request

from tests.helpers import Publisher, alert_with_delivery, build_small_world, fix, wait_until
from tracker.embedded import free_port
from tracker.ingest.decode import RawMessage
from tracker.service import Service
from tracker.store import seeding
from tracker.store.alerts import acknowledge


@dataclass
class Receiver:
    """A real HTTP server standing in for a school's system and an SMS gateway: records requests."""

    port: int
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = FastAPI()
    rec = Receiver(free_port())

    @app.post("/{path:path}")
    async def record(path: str, request: Request) -> dict[str, bool]:
        rec.requests.append(("/" + path, dict(request.headers), await request.body()))
        return {"ok": True}

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=rec.port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, 5)
    yield rec
    server.should_exit = True
    await task


async def _start(settings_for, database_url: str, mqtt_url: str, **overrides: Any) -> Service:  # type: ignore[no-untyped-def]
    settings = settings_for(database_url, mqtt_url, tick_s=0.1, **overrides)
    svc = Service(settings, database_url, mqtt_url)
    await svc.start()
    return svc


async def _history(svc: Service, alert_id: int) -> list[str]:
    rows = await svc.pool.fetch("SELECT step FROM alert_history WHERE alert_id = $1 ORDER BY id", alert_id)
    return [r["step"] for r in rows]


async def test_an_unacknowledged_alert_goes_to_the_next_guardian_then_the_school(
    database_url: str, mqtt_url: str, settings_for, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url, escalate_warning_s=0.5)
    try:
        async with svc.pool.acquire() as conn:
            world = await build_small_world(conn, ["Jia"])
            kid = world.kids["Jia"]
            second = await seeding.add_guardian(
                conn, name="Grandmother", phone="+821099990000", language="ko"
            )
            await seeding.link_guardian(conn, child_id=kid.child_id, guardian_id=second, priority=2)
            await conn.execute(
                "UPDATE schools SET staff_phone = '+82200000000', webhook_url = $1, webhook_secret = 's3cret'"
                " WHERE id = $2",
                f"{receiver.url}/school-hook",
                world.school_id,
            )
        await svc.reload_registry()
        pub = Publisher(mqtt_url)
        t0 = time.time() - 120
        topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position"
        try:
            for i, y in enumerate([0, 150, 160, 170]):
                pub.publish(topic, fix(-500, y, t0 + 15 * i))
        finally:
            pub.close()

        async def sms_to(phone: str) -> list[str]:
            rows = await svc.pool.fetch("SELECT body FROM sms_messages WHERE phone = $1", phone)
            return [r["body"] for r in rows]

        first = await wait_until(lambda: sms_to(kid.phone), 5)
        assert "left the route" in first[0]
        grandmother = await wait_until(lambda: sms_to("+821099990000"), 5)
        assert grandmother[0].startswith(
            "[통학 안전] 아직 확인되지 않은 알림:"
        )  # Korean, marked as escalated
        school = await wait_until(lambda: sms_to("+82200000000"), 5)
        assert len(school) == 1

        hooks = await wait_until(lambda: len(receiver.requests) >= 2 and receiver.requests, 5)
        for path, headers, body in hooks:
            stamp = headers["x-tracker-timestamp"]
            expected = hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            assert path == "/school-hook" and headers["x-tracker-signature"] == f"sha256={expected}"
        assert [json.loads(b)["transition"] for _, _, b in hooks] == ["opened", "escalated"]

        alert = await svc.pool.fetchrow("SELECT id, escalation_level, next_escalation_at FROM alerts")
        assert alert["escalation_level"] == 2 and alert["next_escalation_at"] is None  # nobody left
        steps = await _history(svc, alert["id"])
        assert steps[0] == "opened" and steps.count("escalated") == 2 and "delivered" in steps
    finally:
        await svc.stop()


async def test_acknowledging_stops_escalation_and_an_open_alert_still_escalates_after_a_restart(
    database_url: str, mqtt_url: str, settings_for
) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(60):
        svc = await _start(settings_for, database_url, mqtt_url, escalate_critical_s=1.0)
        async with svc.pool.acquire() as conn:
            world = await build_small_world(conn, ["Seojun", "Hajun"])
            for name in ("Seojun", "Hajun"):
                other = await seeding.add_guardian(conn, name=f"Father of {name}", phone=None, language="en")
                await seeding.link_guardian(
                    conn, child_id=world.kids[name].child_id, guardian_id=other, priority=2
                )
        await svc.reload_registry()
        pub = Publisher(mqtt_url)
        t0 = time.time() - 60
        for name in ("Seojun", "Hajun"):
            topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{world.kids[name].tag}/position"
            pub.publish(topic, fix(-500, 0, t0, sos=True))
        pub.close()
        alerts = await wait_until(lambda: _two_sos(svc), 5)
        acked, waiting = alerts
        assert await acknowledge(svc.pool, acked["id"], world.kids["Seojun"].guardian_id)
        await svc.stop()  # the tracker goes down before the second alert's escalation is due

        await asyncio.sleep(1.2)
        again = await _start(settings_for, database_url, mqtt_url, escalate_critical_s=1.0)
        try:

            async def escalated() -> bool:
                level = await again.pool.fetchval(
                    "SELECT escalation_level FROM alerts WHERE id = $1", waiting["id"]
                )
                return bool(level >= 1)

            await wait_until(escalated, 5)
            row = await again.pool.fetchrow(
                "SELECT state, escalation_level FROM alerts WHERE id = $1", acked["id"]
            )
            assert (row["state"], row["escalation_level"]) == ("resolved", 0)  # an acknowledged SOS is closed
            assert "acknowledged" in await _history(again, acked["id"])
            assert "escalated" not in await _history(again, acked["id"])
        finally:
            await again.stop()


async def _two_sos(svc: Service) -> list[Any] | None:
    rows = await svc.pool.fetch("SELECT id, child_id FROM alerts WHERE kind = 'sos' ORDER BY child_id")
    return list(rows) if len(rows) == 2 else None


async def _delivered(svc: Service) -> None:
    """A round now, and every outbox row delivered (the service's own dispatcher loop may have claimed
    a row first: a round skips a row another claim holds locked, and reads it 'pending' meanwhile)."""
    await svc.dispatcher.deliver_due()

    async def none_waiting() -> bool:
        n = await svc.pool.fetchval("SELECT count(*) FROM deliveries WHERE state IN ('pending', 'sending')")
        return n == 0

    await wait_until(none_waiting, 10)


async def test_a_storm_of_warnings_is_rate_limited_but_critical_alerts_are_not(
    database_url: str, mqtt_url: str, settings_for
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(settings_for, database_url, mqtt_url, rate_limit_count=2, rate_limit_window_s=600)
    try:
        async with svc.pool.acquire() as conn:
            world = await build_small_world(conn, ["Yerin"])
            kid = world.kids["Yerin"]
            for kind, severity in [("left_route", "warning")] * 4 + [("sos", "critical")]:
                await alert_with_delivery(conn, kid, kind, severity, state="resolved", channel="sms")
                await _delivered(svc)
        states = await svc.pool.fetch(
            "SELECT a.severity, d.state FROM deliveries d JOIN alerts a ON a.id = d.alert_id ORDER BY d.id"
        )
        assert [(s["severity"], s["state"]) for s in states] == [
            ("warning", "sent"),
            ("warning", "sent"),
            ("warning", "suppressed"),
            ("warning", "suppressed"),
            ("critical", "sent"),
        ]
        assert await svc.pool.fetchval("SELECT count(*) FROM alert_history WHERE step = 'suppressed'") == 2

        # a warning given to its channel once before (a process claimed it, may have sent it, and died;
        # its claim released) is not held back now: the limit was decided at its first attempt, and a
        # message that may have gone out is never marked 'suppressed'
        # (one transaction: the service's own dispatcher loop must not see the row before its attempt)
        async with svc.pool.acquire() as conn, conn.transaction():
            _, again = await alert_with_delivery(
                conn, kid, "left_route", "warning", state="resolved", channel="sms"
            )
            await conn.execute("UPDATE deliveries SET attempts = 1 WHERE id = $1", again)
        await _delivered(svc)
        assert await svc.pool.fetchval("SELECT state FROM deliveries WHERE id = $1", again) == "sent"
    finally:
        await svc.stop()


async def test_sms_through_an_apprise_gateway(
    database_url: str, mqtt_url: str, settings_for, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    svc = await _start(
        settings_for,
        database_url,
        mqtt_url,
        sms_provider="apprise",
        sms_apprise_url=f"json://127.0.0.1:{receiver.port}/gateway/{{phone}}",
    )
    try:
        async with svc.pool.acquire() as conn:
            world = await build_small_world(conn, ["Dain"])
        await svc.reload_registry()
        kid = world.kids["Dain"]
        pub = Publisher(mqtt_url)
        pub.publish(
            f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position",
            fix(-500, 0, time.time(), sos=True),
        )
        pub.close()
        requests = await wait_until(lambda: receiver.requests, 5)
        path, _, body = requests[0]
        assert path == f"/gateway/{kid.phone}"
        assert "SOS from Dain" in json.loads(body)["message"]
        # (recorded once the gateway has answered: the gateway may see the request first)
        recorded = await wait_until(lambda: svc.pool.fetchval("SELECT provider FROM sms_messages"), 5)
        assert recorded == "apprise"
    finally:
        await svc.stop()


def _moment_within_one_seoul_day() -> float:
    """Now, or 15 minutes ago when the clock's moments of these tests (up to now + 405 s) would cross
    midnight in Seoul, the world's time zone: the clock's rules count a fix "earlier that day", and a run
    in the last minutes before midnight saw a new day at the tick (the test failed every night then)."""
    now = time.time()
    seoul = ZoneInfo("Asia/Seoul")
    if datetime.fromtimestamp(now - 1, seoul).date() != datetime.fromtimestamp(now + 405, seoul).date():
        return now - 900
    return now


async def _awaited_at_school_every_day(svc: Service) -> Any:
    """Haeun and Juwon on a route whose children are due at school a second after midnight, every day."""
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Haeun", "Juwon"])
        await conn.execute(
            "UPDATE routes SET arrivals = $1 WHERE id = $2",
            [{"days": [0, 1, 2, 3, 4, 5, 6], "time": "00:00:01"}],
            world.route_id,
        )
    await svc.reload_registry()
    return world


async def test_the_clock_raises_signal_lost_and_not_arrived(service) -> None:  # type: ignore[no-untyped-def]
    svc = service
    world = await _awaited_at_school_every_day(svc)
    quiet, absent = world.kids["Haeun"], world.kids["Juwon"]
    pub = Publisher(svc.mqtt_url)
    now = _moment_within_one_seoul_day()
    pub.publish(f"{svc.settings.topic_prefix}tracker/v1/tags/{quiet.tag}/position", fix(-500, 0, now - 1))
    pub.close()
    await wait_until(lambda: svc.pool.fetchval("SELECT count(*) FROM positions"), 5)
    events = await svc.pipeline.tick(now + 400)
    kinds = sorted((e.child_id, e.event.kind.value) for e in events)
    assert (quiet.child_id, "signal_lost") in kinds
    assert (absent.child_id, "not_arrived") in kinds  # never seen today, not at school by the deadline
    assert await svc.pipeline.tick(now + 405) == []  # raised once
    opened = await svc.pool.fetch("SELECT child_id, kind FROM alerts WHERE state = 'open' ORDER BY id")
    assert {(r["child_id"], r["kind"]) for r in opened} >= {
        (quiet.child_id, "signal_lost"),
        (absent.child_id, "not_arrived_school"),
    }


async def test_the_clock_looks_while_batches_run_and_decides_on_the_newest_state(
    database_url: str, mqtt_url: str, settings_for
) -> None:  # type: ignore[no-untyped-def]
    """The clock finds who is due without the batches' writer role (at city scale that pass is long);
    it waits for the role only to decide for them, on their states as the batches left them."""
    # the test ticks by hand (the service's own clock would not wait an hour), up to 400 s ahead
    svc = Service(settings_for(database_url, mqtt_url, tick_s=3600, max_future_s=900), database_url, mqtt_url)
    await svc.start()
    try:
        await _clock_between_batches(svc)
    finally:
        await svc.stop()


async def _clock_between_batches(svc: Service) -> None:
    world = await _awaited_at_school_every_day(svc)
    quiet = world.kids["Haeun"]
    topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{quiet.tag}/position"
    pub = Publisher(svc.mqtt_url)
    now = _moment_within_one_seoul_day()
    pub.publish(topic, fix(-500, 0, now - 1))
    pub.close()
    await wait_until(lambda: svc.pool.fetchval("SELECT count(*) FROM positions"), 5)
    pipeline = svc.pipeline
    async with pipeline.writer:  # as the batch loop holds it while batches follow each other
        ticking = asyncio.create_task(pipeline.tick(now + 400))
        await wait_until(lambda: pipeline.clock_waiting == 1, 5)  # looked, found Haeun due: waits
        # Haeun's next fix, committed meanwhile by the writer (the batch loop, here the test)
        # (received when it was sent, in the test's time: the tracker judges a tag's silence on its own
        # clock, from receipt times, so a fix stamped 399 s ahead and received now is a fast clock)
        late = RawMessage(topic, json.dumps(fix(-480, 0, now + 399)).encode(), now + 399)
        outcome = await pipeline.commit(await pipeline.prepare([late]))
        assert outcome.stored == 1
        # still waiting for the role, which the writer holds: nothing it decides can have happened
        assert pipeline.clock_waiting == 1 and not ticking.done()
    events = await asyncio.wait_for(ticking, 5)
    kinds = {(e.child_id, e.event.kind.value) for e in events}
    assert (quiet.child_id, "signal_lost") not in kinds  # judged on the state the fix left
    assert (world.kids["Juwon"].child_id, "not_arrived") in kinds  # never seen: its schedule's answer
    async with pipeline.writer:  # nothing due: the clock never asks for the role
        assert await asyncio.wait_for(pipeline.tick(now + 405), 5) == []
    assert not await svc.pool.fetchval("SELECT count(*) FROM alerts WHERE kind = 'signal_lost'")
