"""The whole chain on the real broker and database: a fix in over MQTT, an alert out on the parent's
websocket and to the SMS stub (issue 2, point 5)."""

from __future__ import annotations

import time

import pytest
import websockets

from tests.helpers import GuardianSocket, Publisher, build_small_world, fix, wait_until

DEADLINE_S = 2.0  # from the deciding fix's publish to the parent's websocket


async def test_walking_off_route_and_into_a_zone_alert_once_each(service, mqtt_url: str) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Minjun", "Seoyeon", "Doyun"])
    await svc.reload_registry()
    prefix = svc.settings.topic_prefix
    ws_base = f"ws://127.0.0.1:{svc.settings.http_port}/ws?token="
    walker, stray, risk = world.kids["Minjun"], world.kids["Seoyeon"], world.kids["Doyun"]
    pub = Publisher(mqtt_url)
    t0 = time.time() - 600  # fixes from the last ten minutes, 15 s apart
    published = svc.metrics.messages_in  # the messages the service has to take, the earlier ones too

    def publish(tag: str, payload: bytes | dict[str, object]) -> float:
        nonlocal published
        published += 1
        return pub.publish(f"{prefix}tracker/v1/tags/{tag}/position", payload)

    async def settled() -> bool:
        """Every published message committed (the pipeline counts a message in ``messages_in`` once
        the batch holding it is), and every outbox row those commits wrote delivered: none is still
        pending or being sent."""
        if svc.metrics.messages_in < published:
            return False
        busy = "SELECT count(*) FROM deliveries WHERE state IN ('pending', 'sending')"
        return bool(await svc.pool.fetchval(busy) == 0)

    try:
        async with (
            GuardianSocket(ws_base + walker.token) as walker_ws,
            GuardianSocket(ws_base + stray.token) as stray_ws,
            GuardianSocket(ws_base + risk.token) as risk_ws,
        ):
            # A child walking its route, with GPS jitter inside the corridor: no alert.
            for i in range(12):
                publish(walker.tag, fix(-600 + i * 50, (-1) ** i * 12, t0 + i * 15, acc=15))

            # A child who walks off: three fixes 150 m off the corridor, 15 s apart, decide;
            # a fourth adds nothing.
            for i in range(4):
                publish(stray.tag, fix(-600 + i * 50, 0, t0 + i * 15))
            publish(stray.tag, fix(-400, -150, t0 + 60))
            publish(stray.tag, fix(-390, -160, t0 + 75))
            deciding = publish(stray.tag, fix(-380, -170, t0 + 90))
            _, off = await stray_ws.wait_for(lambda m: m["type"] == "alert", DEADLINE_S + 3)
            off_latency = stray_ws.alerts()[0][0] - deciding
            publish(stray.tag, fix(-370, -180, t0 + 105))

            # A child who walks into the construction site beside the route: two fixes inside it decide.
            # (Being there is also being off the route: that alert comes too, once.) It walks there:
            # a child 150 m further 15 s later would be riding something, and a ride is no evidence.
            publish(risk.tag, fix(-300, 100, t0 + 60))
            publish(risk.tag, fix(-300, 150, t0 + 75, acc=5))
            deciding_zone = publish(risk.tag, fix(-305, 145, t0 + 90, acc=5))
            zone_at, zone = await risk_ws.wait_for(lambda m: m.get("kind") == "danger_zone", DEADLINE_S + 3)
            zone_latency = zone_at - deciding_zone
            publish(risk.tag, fix(-310, 140, t0 + 105, acc=5))  # a third fix off the route
            # A malformed payload is dead-lettered with its reason, and the service goes on.
            publish(walker.tag, b'{"ts": 17000, "lat": oops')
            publish(walker.tag, fix(0, 0, t0 + 200))

            # Nothing more is on its way: every message is committed, every alert it raised sent, and
            # each socket has received all that was sent to it.
            await wait_until(settled, 10)
            for ws in (walker_ws, stray_ws, risk_ws):
                await _everything_sent_has_arrived(ws)
            n = await svc.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", walker.tag)
            assert n == 13

            ms = (round(off_latency * 1000), round(zone_latency * 1000))
            print(f"publish -> websocket: left route {ms[0]} ms, zone {ms[1]} ms")
            assert off["kind"] == "left_route" and off["severity"] == "warning" and off["state"] == "open"
            assert off["child"]["id"] == stray.child_id
            assert off_latency < DEADLINE_S, f"left-route alert took {off_latency:.3f} s"
            assert zone["kind"] == "danger_zone" and zone["severity"] == "critical"
            assert zone["zone"]["id"] == world.zone_id
            assert zone_latency < DEADLINE_S, f"danger-zone alert took {zone_latency:.3f} s"
            # walking its route raises nothing but the notice that the child reached school
            assert [(m["kind"], m["severity"]) for _, m in walker_ws.alerts()] == [("arrived_school", "info")]
            assert len(stray_ws.alerts()) == 1
            assert sorted(m["kind"] for _, m in risk_ws.alerts()) == ["danger_zone", "left_route"]
    finally:
        pub.close()

    alerts = await svc.pool.fetch(
        "SELECT child_id, kind, state FROM alerts WHERE severity <> 'info' ORDER BY id"
    )
    assert sorted((a["child_id"], a["kind"], a["state"]) for a in alerts) == sorted(
        [
            (stray.child_id, "left_route", "open"),
            (risk.child_id, "left_route", "open"),
            (risk.child_id, "danger_zone", "open"),
        ]
    )

    # every SMS was sent by the time the chain settled (above)
    sms = await svc.pool.fetch("SELECT phone, body FROM sms_messages ORDER BY id")
    assert sorted(s["phone"] for s in sms) == sorted([stray.phone, risk.phone, risk.phone])
    assert any("left the route" in s["body"] for s in sms)
    assert any("danger zone" in s["body"] for s in sms)

    dead = await svc.pool.fetch("SELECT topic, reason, payload FROM dead_letters")
    assert [(d["topic"], d["reason"]) for d in dead] == [
        (f"{svc.settings.topic_prefix}tracker/v1/tags/{walker.tag}/position", "malformed_json")
    ]
    assert bytes(dead[0]["payload"]) == b'{"ts": 17000, "lat": oops'


async def _everything_sent_has_arrived(ws: GuardianSocket) -> None:
    """A round trip on the socket: the server answers an acknowledgement (here of an alert that does
    not exist: it changes nothing) after whatever it sent before on the same socket, and the socket
    records messages in the order they come; so once the answer is recorded, so is all that came
    before it."""
    marker = 2**62
    await ws.send({"type": "ack", "alert_id": marker})
    await ws.wait_for(lambda m: m["type"] == "ack" and m["alert_id"] == marker, 5)


async def test_websocket_refuses_without_a_valid_guardian_token(service) -> None:  # type: ignore[no-untyped-def]
    base = f"ws://127.0.0.1:{service.settings.http_port}/ws"
    for url in (base, base + "?token=nonsense"):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url):
                pass
        assert refused.value.response.status_code == 403
