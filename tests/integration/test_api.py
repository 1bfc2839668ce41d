"""The HTTP API and the websocket against a running service: what a guardian may see and do."""

from __future__ import annotations

import httpx

from tests.helpers import GuardianSocket, build_small_world
from tracker.store.tokens import issue_token, revoke_token


async def _open_alert(svc, child_id: int) -> int:  # type: ignore[no-untyped-def]
    return int(
        await svc.pool.fetchval(
            "INSERT INTO alerts (child_id, kind, severity, opened_at, updated_at,"
            " last_lon, last_lat, last_acc, last_fix_ts)"
            " VALUES ($1, 'sos', 'critical', now(), now(), 127.05, 37.5, 9, now()) RETURNING id",
            child_id,
        )
    )


async def test_guardians_see_and_acknowledge_only_their_own_children(service) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Yujun", "Chaewon"])
        admin = await issue_token(conn, role="admin")
    mine, theirs = world.kids["Yujun"], world.kids["Chaewon"]
    my_alert, their_alert = await _open_alert(svc, mine.child_id), await _open_alert(svc, theirs.child_id)
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    as_me = {"Authorization": f"Bearer {mine.token}"}
    async with httpx.AsyncClient(base_url=base) as http:
        children = (await http.get("/api/v1/children", headers=as_me)).json()
        assert [c["id"] for c in children["items"]] == [mine.child_id] and children["total"] == 1
        alerts = (await http.get("/api/v1/alerts", headers=as_me)).json()
        assert [a["id"] for a in alerts["items"]] == [my_alert]

        refused = await http.post(f"/api/v1/alerts/{their_alert}/ack", headers=as_me)
        assert refused.status_code == 404 and "no alert" in refused.json()["detail"]
        ok = await http.post(f"/api/v1/alerts/{my_alert}/ack", headers=as_me)
        assert ok.status_code == 200
        acked = await svc.pool.fetchrow(
            "SELECT acknowledged_at, acknowledged_by FROM alerts WHERE id = $1", my_alert
        )
        assert acked["acknowledged_at"] is not None and acked["acknowledged_by"] == mine.guardian_id

        assert (await http.get("/api/v1/sms")).status_code == 401
        assert (await http.get("/api/v1/sms", headers=as_me)).status_code == 403
        assert (
            await http.get("/api/v1/sms", headers={"Authorization": f"Bearer {admin}"})
        ).status_code == 200
        everything = (await http.get("/api/v1/alerts", headers={"Authorization": f"Bearer {admin}"})).json()
        assert sorted(a["id"] for a in everything["items"]) == sorted([my_alert, their_alert])

        async with svc.pool.acquire() as conn:
            assert await revoke_token(conn, mine.token)
        assert (await http.get("/api/v1/children", headers=as_me)).status_code == 401

        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["components"] == {
            "database": True,
            "mqtt": True,
            "pipeline": True,
            "registry": True,
            "tasks": True,
        }


async def test_a_guardian_connecting_receives_open_alerts_not_yet_acknowledged(service) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Eunwoo"])
    kid = world.kids["Eunwoo"]
    alert = await _open_alert(svc, kid.child_id)
    url = f"ws://127.0.0.1:{svc.settings.http_port}/ws?token={kid.token}"
    async with GuardianSocket(url) as ws:
        _, caught_up = await ws.wait_for(lambda m: m["type"] == "alert", 3)
        assert caught_up["alert_id"] == alert and caught_up["kind"] == "sos" and caught_up["state"] == "open"
        assert "SOS from Eunwoo" in caught_up["text"]
        await ws.send({"type": "ack", "alert_id": alert})
        _, answer = await ws.wait_for(lambda m: m["type"] == "ack", 3)
        assert answer == {"type": "ack", "alert_id": alert, "ok": True}
        await ws.send({"type": "nonsense"})
        await ws.wait_for(lambda m: m["type"] == "error", 3)
    async with GuardianSocket(url) as ws:
        await ws.wait_for(lambda m: m["type"] == "hello", 3)
        assert ws.alerts() == []
