"""An alert decided by one tracker process reaches a parent's websocket on whichever process the parent
is connected to, once (issue 16, point 4; tracker.alerts.relay).

Two whole services (tracker.service.Service) in the test process, on one PostgreSQL and one MQTT
broker, each with its own HTTP server, hub, dispatcher and relay, and its own worker id. Process A
reads the devices' fixes (its topic prefix); process B reads another prefix, where nothing is
published: every alert is A's. Parents connect real websockets to A, to B, or to both (a phone and
a laptop). A critical alert (an SOS) is claimed in A's commit and sent at once; a warning (the route
left) waits for a dispatcher round, of either process. Every socket of the parent gets the alert
once; the SMS goes out once.

"Once" is read after a barrier: a second alert, of another child of the same parent, published after
the first, has reached every socket (each process hears the notifications in the order they were
committed, and the first alert's were committed before the second's was decided).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import forget_mqtt_session
from tests.helpers import GuardianSocket, Publisher, build_small_world, fix, wait_until
from tracker.alerts.hub import WebSocketHub
from tracker.alerts.relay import SocketRelay
from tracker.store import seeding
from tracker.store.db import create_pool


@dataclass
class TwoProcesses:
    a: Any  # tracker.service.Service, reading the devices' prefix
    b: Any  # another one, reading a prefix nobody publishes to
    prefix: str  # the devices' prefix (A's)


@pytest.fixture
async def two(
    database_url: str,
    mqtt_url: str,
    settings_for: Callable[..., Any],
    topic_prefix: str,
) -> AsyncIterator[TwoProcesses]:
    from tracker.service import Service

    quiet = f"quiet-{uuid.uuid4().hex[:8]}/"
    settings = [
        settings_for(database_url, mqtt_url, mqtt_client_id=f"tracker-a-{topic_prefix.strip('/')}"),
        settings_for(
            database_url, mqtt_url, topic_prefix=quiet, mqtt_client_id=f"tracker-b-{quiet.strip('/')}"
        ),
    ]
    services = [Service(s, database_url, mqtt_url) for s in settings]
    try:
        for svc in services:
            await svc.start()
        yield TwoProcesses(services[0], services[1], topic_prefix)
    finally:
        for svc in services:
            await svc.stop()
        for s in settings:
            await asyncio.to_thread(forget_mqtt_session, mqtt_url, s.mqtt_client_id)


def _socket_url(svc: Any, token: str) -> str:
    return f"ws://127.0.0.1:{svc.settings.http_port}/ws?token={token}"


def _incident(kind: str, now: float) -> list[dict[str, object]]:
    """An SOS (critical: sent at once) or the route left (a warning, on a few fixes: a round's), 400 m
    off the route's line."""
    if kind == "sos":
        return [fix(-300, 400, now, sos=True)]
    return [fix(-300, 400, now - 120 + 15 * i) for i in range(8)]


# (what, the incident, where the parent's sockets are)
ACROSS = [
    ("an SOS (sent at once) to a parent on the other process", "sos", ["b"]),
    ("the route left (a round) to a parent on the other process", "left_route", ["b"]),
    ("an SOS to a parent with a phone on each process", "sos", ["a", "b"]),
    ("the route left to a parent with a phone on each process", "left_route", ["a", "b"]),
    ("an SOS to a parent with two phones on the other process", "sos", ["b", "b"]),
]


@pytest.mark.parametrize("what, kind, where", ACROSS, ids=[r[0] for r in ACROSS])
async def test_an_alert_reaches_each_socket_of_the_parent_once_on_whichever_process(
    two: TwoProcesses, what: str, kind: str, where: list[str]
) -> None:
    a, b = two.a, two.b
    async with a.pool.acquire() as conn:
        world = await build_small_world(conn, ["Ara", "Bom"])
        ara, bom = world.kids["Ara"], world.kids["Bom"]
        # Bom is Ara's sibling: the barrier's alert goes to the same parent first
        await seeding.link_guardian(conn, child_id=bom.child_id, guardian_id=ara.guardian_id, priority=0)
    await wait_until(lambda: len(a.view().rows.children) == 2 and len(b.view().rows.children) == 2, 10)
    process = {"a": a, "b": b}
    sockets = [GuardianSocket(_socket_url(process[p], ara.token)) for p in where]
    for ws in sockets:
        await ws.__aenter__()
    publisher = Publisher(a.settings.mqtt_url)
    try:
        topic = f"{two.prefix}tracker/v1/tags/{{}}/position"
        for body in _incident(kind, time.time()):
            publisher.publish(topic.format(ara.tag), body)

        def of(child: str, m: dict[str, Any]) -> bool:
            return m["type"] == "alert" and m["kind"] == kind and m["child"]["name"] == child

        for ws in sockets:
            await ws.wait_for(lambda m: of("Ara", m), 20)
        publisher.publish(topic.format(bom.tag), fix(-300, 400, time.time(), sos=True))  # the barrier
        for ws in sockets:
            await ws.wait_for(lambda m: m["type"] == "alert" and m["child"]["name"] == "Bom", 20)
        for ws, p in zip(sockets, where, strict=True):
            got = [m["alert_id"] for _, m in ws.alerts() if of("Ara", m)]
            assert len(got) == 1, (what, p, got)

        # the SMS of Ara's alert: claimed once, by one of the two, and sent once
        async def sms_done() -> Any:
            return await a.pool.fetchrow(
                "SELECT d.state, d.attempts, d.claimed_by, count(s.id) AS messages FROM deliveries d"
                " JOIN alerts al ON al.id = d.alert_id LEFT JOIN sms_messages s ON s.delivery_id = d.id"
                " WHERE d.channel = 'sms' AND al.child_id = $1 AND d.state NOT IN ('pending', 'sending')"
                " GROUP BY d.id",
                ara.child_id,
            )

        row = await wait_until(sms_done, 20)
        assert (row["state"], row["attempts"], row["messages"]) == ("sent", 1, 1), what
        assert row["claimed_by"] in (a.worker_id, b.worker_id)
        socket_rows = await a.pool.fetch(
            "SELECT d.attempts FROM deliveries d JOIN alerts al ON al.id = d.alert_id"
            " WHERE d.channel = 'websocket' AND al.child_id = $1",
            ara.child_id,
        )
        assert [r["attempts"] for r in socket_rows] == [1], what  # one claim of the delivery
    finally:
        publisher.close()
        for ws in sockets:
            await ws.__aexit__(None, None, None)


class Page:
    """A parent's page as the hub sees it: records what it is sent."""

    def __init__(self) -> None:
        self.got: list[str] = []

    async def send_text(self, data: str) -> None:
        self.got.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        raise AssertionError("the relay's pages are never closed here")


async def test_a_relay_back_from_a_lost_connection_sends_what_it_missed(database_url: str) -> None:
    """While B's listening connection was down, A claimed and told a websocket delivery to a guardian
    whose page is on B: B's relay, back, finds it among what others claimed since the loss and sends
    it; what A claimed for guardians with no page on B, and what B claimed itself, it leaves."""
    from tests.helpers import alert_with_delivery
    from tracker.store.alerts import claim_due_deliveries

    a = await create_pool(database_url, worker_id="worker-a")
    b = await create_pool(database_url, worker_id="worker-b")
    try:
        async with a.acquire() as conn:
            world = await build_small_world(conn, ["Ara", "Bom", "Chae"])
        lost_at = time.time() - 1
        async with a.acquire() as conn:
            for name in ("Ara", "Bom"):
                await alert_with_delivery(conn, world.kids[name])
        await claim_due_deliveries(a)  # A's round: Ara's and Bom's, told while B was not listening
        async with b.acquire() as conn:
            await alert_with_delivery(conn, world.kids["Chae"])
        await claim_due_deliveries(b)  # B's own: sent by B itself
        hub = WebSocketHub()
        ara_page, chae_page = Page(), Page()
        hub.add(world.kids["Ara"].guardian_id, ara_page)
        hub.add(world.kids["Chae"].guardian_id, chae_page)
        relay = SocketRelay(hub, b, "worker-b")
        assert await relay.catch_up(lost_at) == 1
        assert [json.loads(m)["child"]["name"] for m in ara_page.got] == ["Ara"]
        assert chae_page.got == []
    finally:
        await a.close()
        await b.close()
