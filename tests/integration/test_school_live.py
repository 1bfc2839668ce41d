"""The school's live map pushed (issue 17.4): /ws/school on a real service (real PostgreSQL, real broker,
the real pipeline), fixes published over MQTT.

A staff socket gets its school's children's positions coalesced (at most one update per child per
TRACKER_SCHOOL_LIVE_MIN_INTERVAL_S, the latest fix winning) and never another school's; its school's
alerts as they open and resolve, and the open ones on connect; it is closed within seconds when its
token is revoked; and its reads are audited as one row per staff session, child and day however many
updates (or polls) there were.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import websockets

from tests.conftest import forget_mqtt_session
from tests.helpers import Publisher, fix, wait_until
from tests.integration.test_api_support import Side, bearer, build_city
from tracker.service import Service
from tracker.store.tokens import issue_token

SCHEMA = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).resolve().parents[2] / "schemas" / "school-live.v1.json").read_text("utf-8")),
    format_checker=jsonschema.FormatChecker(),
)
INTERVAL_S = 1.0  # TRACKER_SCHOOL_LIVE_MIN_INTERVAL_S for these tests
SLACK_S = 0.15  # timer and scheduling slack when measuring gaps between two updates


@contextlib.asynccontextmanager
async def running(
    settings_for: Any, database_url: str, mqtt_url: str, **overrides: Any
) -> AsyncIterator[Service]:
    settings = settings_for(
        database_url,
        mqtt_url,
        **{"school_live_min_interval_s": INTERVAL_S, "ws_token_check_s": 3600.0} | overrides,
    )
    svc = Service(settings, database_url, mqtt_url)
    await svc.start()
    try:
        await wait_until(lambda: svc.context.sockets.listening, 5)
        yield svc
    finally:
        await svc.stop()
        await asyncio.to_thread(forget_mqtt_session, mqtt_url, settings.mqtt_client_id)


class SchoolSocket:
    """A /ws/school socket that records every message with the time it arrived."""

    def __init__(self, svc: Service, token: str, query: str = "") -> None:
        self.url = f"ws://127.0.0.1:{svc.settings.http_port}/ws/school?token={token}{query}"
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.invalid: list[str] = []  # messages that are not what the schema says
        self.ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SchoolSocket:
        self.ws = await websockets.connect(self.url)
        self._task = asyncio.create_task(self._read())
        await self.wait_for(lambda m: m["type"] == "alerts")  # hello, snapshot, alerts: caught up
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        if self._task is not None:
            self._task.cancel()
        assert self.invalid == []

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                message = json.loads(raw)
                # every message is schemas/school-live.v1.json
                self.invalid.extend(f"{e.message} in {message}" for e in SCHEMA.iter_errors(message))
                self.messages.append((time.monotonic(), message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m["type"] == kind]

    def updates_of(self, child_id: int) -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, c)
            for t, m in self.messages
            if m["type"] == "children"
            for c in m["children"]
            if c["child_id"] == child_id
        ]

    async def wait_for(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, m in self.messages:
                if predicate(m):
                    return m
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no matching message in {timeout} s; got {[m for _, m in self.messages]}")


def positions_sent(live: SchoolSocket, child_id: int) -> int:
    """How many of the child's positions the socket received, whatever the message."""
    n = 0
    for _, m in live.messages:
        children = m.get("children", [])
        alerts = m.get("alerts", []) + ([m["alert"]] if "alert" in m else [])
        n += sum(1 for c in children if c["child_id"] == child_id and c.get("position") is not None)
        n += sum(1 for x in alerts if x["child"]["id"] == child_id and x["position"] is not None)
    return n


def topic(svc: Service, side: Side) -> str:
    return f"{svc.settings.topic_prefix}tracker/v1/tags/{side.tag}/position"


def position_ts(item: dict[str, Any]) -> float:
    return datetime.fromisoformat(item["position"]["ts"]).timestamp()


async def test_staff_get_their_schools_positions_coalesced_and_no_other_schools(
    database_url: str, mqtt_url: str, settings_for: Any
) -> None:
    async with running(settings_for, database_url, mqtt_url) as svc:
        city = await build_city(svc.pool)
        await svc.reload_registry()
        a, b = city.a, city.b
        pub = Publisher(mqtt_url)
        try:
            async with SchoolSocket(svc, a.staff) as live:
                (hello,) = live.of_type("hello")
                assert hello == {
                    "type": "hello",
                    "version": 1,
                    "school_id": a.school_id,
                    "min_interval_s": 1.0,
                }
                (snapshot,) = live.of_type("snapshot")
                assert [c["child_id"] for c in snapshot["children"]] == [a.child_id]
                assert snapshot["children"][0]["position"] is not None  # the fix build_city stored
                (caught_up,) = live.of_type("alerts")
                assert [al["id"] for al in caught_up["alerts"]] == [a.alert_id]  # A's open SOS, not B's

                # both children walk their routes, 150 m from home (gone from it once certainly away for
                # 20 s: a place is left per second) at 1.5 m/s (at 10 m/s a child is too fast for a
                # walking route: "left route"): a fix every 0.1 s for 3 s each
                t0 = time.time() - 30
                for i in range(30):
                    pub.publish(topic(svc, a), fix(a.dx - 450 + i * 1.5, 3, t0 + i, acc=8))
                    pub.publish(topic(svc, b), fix(b.dx - 450 + i * 1.5, 3, t0 + i, acc=8))
                    await asyncio.sleep(0.1)
                last = t0 + 29
                await wait_until(
                    lambda: any(abs(position_ts(c) - last) < 1e-3 for _, c in live.updates_of(a.child_id)), 5
                )
                await asyncio.sleep(INTERVAL_S * 1.5)  # anything else on its way has arrived

                updates = live.updates_of(a.child_id)
                # coalesced: ~30 fixes over 3 s are a handful of updates, at least the interval apart
                assert 2 <= len(updates) <= 5, [position_ts(c) for _, c in updates]
                gaps = [t2 - t1 for (t1, _), (t2, _) in itertools.pairwise(updates)]
                assert all(g >= INTERVAL_S - SLACK_S for g in gaps), gaps
                # the latest wins, and the updates never go back in time
                stamps = [position_ts(c) for _, c in updates]
                assert stamps == sorted(stamps) and abs(stamps[-1] - last) < 1e-3
                assert updates[-1][1]["status"] == "on_route" and updates[-1][1]["zones"] == []
                # never a child of another school
                sent = {c["child_id"] for m in live.of_type("children") for c in m["children"]}
                assert sent == {a.child_id}
                # B's fixes were committed all the same
                assert (
                    await svc.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", b.tag) >= 30
                )
        finally:
            pub.close()


async def test_alerts_arrive_as_they_open_and_resolve(
    database_url: str, mqtt_url: str, settings_for: Any
) -> None:
    async with running(settings_for, database_url, mqtt_url) as svc:
        city = await build_city(svc.pool)
        await svc.reload_registry()
        a = city.a
        pub = Publisher(mqtt_url)
        try:
            async with SchoolSocket(svc, a.staff) as live:
                t0 = time.time() - 180
                for i in range(3):  # on the route
                    pub.publish(topic(svc, a), fix(-500 + i * 40, 0, t0 + i * 15))
                for i in range(3):  # 150 m off it: decided
                    pub.publish(topic(svc, a), fix(-380 + i * 10, -150, t0 + 45 + i * 15))
                opened = await live.wait_for(
                    lambda m: m["type"] == "alert" and m["alert"]["kind"] == "left_route", 10
                )
                alert = opened["alert"]
                assert alert["state"] == "open" and alert["child"]["id"] == a.child_id
                assert alert["severity"] == "warning" and alert["position"] is not None

                # another staff socket opened now catches up on it, with the SOS
                async with SchoolSocket(svc, a.staff) as late:
                    (caught_up,) = late.of_type("alerts")
                    assert {x["id"] for x in caught_up["alerts"]} == {a.alert_id, alert["id"]}

                for i in range(4):  # back inside the corridor, walking on: resolved
                    pub.publish(topic(svc, a), fix(-340 + i * 18, 2, t0 + 90 + i * 15))
                resolved = await live.wait_for(
                    lambda m: (
                        m["type"] == "alert"
                        and m["alert"]["id"] == alert["id"]
                        and m["alert"]["state"] == "resolved"
                    ),
                    10,
                )
                assert resolved["alert"]["resolved_at"] is not None
                # the status followed: off the route, then back on it
                await live.wait_for(
                    lambda m: (
                        m["type"] == "children" and any(c["status"] == "on_route" for c in m["children"])
                    ),
                    5,
                )
                assert any(c["status"] == "off_route" for _, c in live.updates_of(a.child_id))
        finally:
            pub.close()


async def test_escalations_and_acknowledgements_arrive_without_a_fix(
    database_url: str, mqtt_url: str, settings_for: Any
) -> None:
    """An alert changes without a fix too: the clock escalates it, a guardian acknowledges it (on the
    API or on the parents' socket). The school's socket hears of each at once, not at its next reload."""
    async with running(settings_for, database_url, mqtt_url, tick_s=0.2, escalate_warning_s=1.0) as svc:
        city = await build_city(svc.pool)
        await svc.reload_registry()
        a = city.a
        pub = Publisher(mqtt_url)
        base = f"http://127.0.0.1:{svc.settings.http_port}"
        try:
            async with SchoolSocket(svc, a.staff) as live:
                t0 = time.time() - 180
                for i in range(3):  # on the route, then 150 m off it: a warning opens
                    pub.publish(topic(svc, a), fix(-500 + i * 40, 0, t0 + i * 15))
                for i in range(3):
                    pub.publish(topic(svc, a), fix(-380 + i * 10, -150, t0 + 45 + i * 15))
                opened = await live.wait_for(
                    lambda m: m["type"] == "alert" and m["alert"]["kind"] == "left_route", 10
                )
                warning = opened["alert"]["id"]
                assert opened["alert"]["escalation_level"] == 0

                # nobody acknowledges it for a second: the clock escalates it, and says so on the socket
                escalated = await live.wait_for(
                    lambda m: (
                        m["type"] == "alert"
                        and m["alert"]["id"] == warning
                        and m["alert"]["escalation_level"] >= 1
                    ),
                    10,
                )
                assert escalated["alert"]["acknowledged_at"] is None
                assert escalated["alert"]["state"] == "open"

                # the guardian acknowledges it on the API: the school sees who and when, at once
                async with httpx.AsyncClient(base_url=base) as http:
                    r = await http.post(f"/api/v1/alerts/{warning}/ack", headers=bearer(a.guardian))
                    assert r.status_code == 200, r.text
                    assert set(r.json()) == {"alert_id", "acknowledged", "acknowledged_at", "acknowledged_by"}
                acked = await live.wait_for(
                    lambda m: (
                        m["type"] == "alert"
                        and m["alert"]["id"] == warning
                        and m["alert"]["acknowledged_at"] is not None
                    ),
                    5,
                )
                assert acked["alert"]["acknowledged_by"] == a.guardian_id

                # ... and the SOS on the parents' socket: acknowledged, it is closed
                url = f"ws://127.0.0.1:{svc.settings.http_port}/ws?token={a.guardian}"
                async with websockets.connect(url) as parent:
                    await parent.send(json.dumps({"type": "ack", "alert_id": a.alert_id}))
                    while (answer := json.loads(await parent.recv()))["type"] != "ack":
                        pass
                    assert answer["ok"] is True
                closed = await live.wait_for(
                    lambda m: m["type"] == "alert" and m["alert"]["id"] == a.alert_id, 5
                )
                assert closed["alert"]["state"] == "resolved"
                assert closed["alert"]["acknowledged_by"] == a.guardian_id
        finally:
            pub.close()


async def test_a_revoked_staff_token_closes_the_socket_and_others_are_refused(
    database_url: str, mqtt_url: str, settings_for: Any
) -> None:
    async with running(settings_for, database_url, mqtt_url) as svc:
        city = await build_city(svc.pool)
        base = f"ws://127.0.0.1:{svc.settings.http_port}/ws/school"
        refused = {
            "a guardian": f"?token={city.a.guardian}",
            "a device": f"?token={city.a.device}",
            "no token": "",
            "another school's": f"?token={city.a.staff}&school_id={city.b.school_id}",
            "an administrator naming no school": f"?token={city.admin}",
        }
        for who, query in refused.items():
            with pytest.raises(websockets.InvalidStatus) as e:
                await websockets.connect(base + query)
            assert e.value.response.status_code == 403, who

        async with SchoolSocket(svc, city.admin, f"&school_id={city.b.school_id}") as admin:
            (snapshot,) = admin.of_type("snapshot")
            assert [c["child_id"] for c in snapshot["children"]] == [city.b.child_id]

        async with SchoolSocket(svc, city.a.staff) as live:
            # revoked by hand, as another tracker process or an operator would: the NOTIFY closes it
            await svc.pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE role = 'school'")
            await asyncio.wait_for(live.ws.wait_closed(), 5)
            assert (live.ws.close_code, live.ws.close_reason) == (1008, "token revoked or expired")
        assert svc.context.sockets.total == 0 and svc.school_live.watched == 0


async def test_reads_are_audited_once_per_staff_session_child_and_day(
    database_url: str, mqtt_url: str, settings_for: Any
) -> None:
    async with running(settings_for, database_url, mqtt_url) as svc:
        city = await build_city(svc.pool)
        await svc.reload_registry()
        a = city.a
        async with svc.pool.acquire() as conn:
            other_session = await issue_token(
                conn, role="school", school_id=a.school_id, label="staff A, desk 2"
            )
        await svc.pool.execute("DELETE FROM position_reads")
        pub = Publisher(mqtt_url)
        try:
            async with SchoolSocket(svc, a.staff) as live, SchoolSocket(svc, other_session):
                t0 = time.time() - 30
                for i in range(8):
                    pub.publish(topic(svc, a), fix(-590 + i * 10, 3, t0 + i))
                    await asyncio.sleep(INTERVAL_S * 0.6)
                last = t0 + 7

                def arrived() -> bool:
                    return any(abs(position_ts(c) - last) < 1e-3 for _, c in live.updates_of(a.child_id))

                await wait_until(arrived, 5)
                await asyncio.sleep(INTERVAL_S * 1.5)  # nothing else on its way (a read is logged before
                # it is sent: one the test closed the socket on would be counted and never received)
                assert len(live.updates_of(a.child_id)) >= 3
            # and the page's fallback, polling, three times
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.settings.http_port}") as http:
                for _ in range(3):
                    r = await http.get(f"/api/v1/live?school_id={a.school_id}", headers=bearer(a.staff))
                    assert r.status_code == 200
        finally:
            pub.close()
        # the positions of the child the socket sent (one a message): the snapshot's, its open SOS
        # alert's, each update's, and the notices' (it arrived home: the route's start)
        sent = positions_sent(live, a.child_id)
        assert sent >= 2 + 3

        async def closed_and_flushed() -> bool:
            return svc.school_live.watched == 0

        await wait_until(closed_and_flushed, 5)
        await asyncio.sleep(0.3)  # the closed sockets' last counts
        rows = await svc.pool.fetch(
            "SELECT l.id, k.label, l.child_id, l.endpoint, l.day, l.reads, l.fixes, l.at, l.last_at"
            " FROM position_reads l JOIN api_tokens k ON k.id = l.token_id ORDER BY k.label, l.endpoint"
        )
        assert [(r["label"], r["child_id"], r["endpoint"]) for r in rows] == [
            ("staff A", a.child_id, "GET /api/v1/live"),
            ("staff A", a.child_id, "WS /ws/school"),
            ("staff A, desk 2", a.child_id, "WS /ws/school"),
        ]
        polled, pushed, other = rows
        assert polled["reads"] == 3 and polled["fixes"] == 3
        assert pushed["reads"] == sent and pushed["fixes"] == sent and pushed["last_at"] > pushed["at"]
        assert other["reads"] == other["fixes"] >= 2
        assert len({r["day"] for r in rows}) == 1 and rows[0]["day"] is not None

        # the audit API shows the day's rows with their counts (a parent sees who looked at their child)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.settings.http_port}") as http:
            page = (await http.get("/api/v1/audit/position-reads", headers=bearer(a.guardian))).json()
        assert page["total"] == 3
        entry = next(i for i in page["items"] if i["id"] == pushed["id"])
        assert (
            entry["reads"] == sent and entry["fixes"] == sent and entry["day"] == rows[0]["day"].isoformat()
        )
