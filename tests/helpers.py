"""Building blocks for the integration and end-to-end tests: a small world in metres around a
point in Seoul, a paho publisher, and a guardian's websocket that records what it receives."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
import websockets

from tracker.ingest.mqtt import BrokerAddress
from tracker.store import seeding
from tracker.store.tokens import issue_token

LON0, LAT0 = 127.0560, 37.4990  # Daechi-dong, Seoul
MX = 111_320.0 * math.cos(math.radians(LAT0))
MY = 110_574.0
ALL_WEEK = [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00"}]


def lonlat(x: float, y: float) -> tuple[float, float]:
    """Metres east/north of (LON0, LAT0) -> lon, lat."""
    return LON0 + x / MX, LAT0 + y / MY


def line(*xy: tuple[float, float]) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": [list(lonlat(x, y)) for x, y in xy]}


def square(cx: float, cy: float, half: float) -> dict[str, Any]:
    ring = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [[list(lonlat(x, y)) for x, y in ring]]}


@dataclass
class Kid:
    child_id: int
    tag: str
    guardian_id: int
    token: str
    phone: str


@dataclass
class SmallWorld:
    """A school at (0, 0); a route east along y = 0 from x = -600 to 0, corridor 30 m; a danger zone
    (a 80 m square) centred 150 m north of the route's middle."""

    school_id: int
    route_id: int
    zone_id: int
    kids: dict[str, Kid] = field(default_factory=dict)


async def build_small_world(conn: asyncpg.Connection, kid_names: list[str]) -> SmallWorld:
    school = await seeding.add_school(conn, name="Test School", lon=LON0, lat=LAT0)
    route = await seeding.add_route(
        conn,
        school_id=school,
        name="East walk",
        geometry=line((-600, 0), (0, 0)),
        corridor_m=30,
        windows=ALL_WEEK,
    )
    zone = await seeding.add_zone(
        conn, name="Construction site", kind="construction", geometry=square(-300, 150, 40)
    )
    world = SmallWorld(school, route, zone)
    for i, name in enumerate(kid_names):
        child = await seeding.add_child(conn, school_id=school, route_id=route, name=name)
        tag = f"tag-{name.lower()}"
        await seeding.add_tag(conn, tag_id=tag, child_id=child)
        phone = f"+82100000{i:04d}"
        guardian = await seeding.add_guardian(conn, name=f"Parent of {name}", phone=phone, language="en")
        await seeding.link_guardian(conn, child_id=child, guardian_id=guardian)
        token = await issue_token(conn, role="guardian", guardian_id=guardian)
        world.kids[name] = Kid(child, tag, guardian, token, phone)
    return world


# the cluster tests' partitions (64 in production: the same code; a worker's start makes each
# partition's consumers), with five to eight children: every worker of three owns some of them
CLUSTER_PARTITIONS = 8


async def alert_with_delivery(
    conn: asyncpg.Connection,
    kid: Kid,
    kind: str = "sos",
    severity: str = "critical",
    *,
    state: str = "open",
    channel: str = "websocket",
) -> tuple[int, int]:
    """An alert of the kid's and its outbox row to the kid's guardian, the row written the way the
    pipeline writes them (write_outbox): (alert id, delivery id)."""
    from tracker.store.alert_lifecycle import write_outbox

    alert = await conn.fetchval(
        "INSERT INTO alerts (child_id, kind, severity, state, opened_at, updated_at)"
        " VALUES ($1, $2, $3, $4, now(), now()) RETURNING id",
        kid.child_id,
        kind,
        severity,
        state,
    )
    await write_outbox(conn, [(alert, "opened", kid.guardian_id, None, channel)])
    delivery = await conn.fetchval("SELECT id FROM deliveries WHERE alert_id = $1", alert)
    return int(alert), int(delivery)


class Publisher:
    """A device-side MQTT client that publishes QoS 1 and waits for the broker's acknowledgement."""

    def __init__(self, url: str) -> None:
        a = BrokerAddress.parse(url)
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if a.username:
            self._client.username_pw_set(a.username, a.password)
        connected = threading.Event()
        self._client.on_connect = lambda *_: connected.set()
        self._client.connect(a.host, a.port)
        self._client.loop_start()
        connected.wait(10)  # a broker may take a moment to set a session up (nats-server's MQTT)

    def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> float:
        """Publish and return the time it was sent."""
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        sent = time.time()
        self._client.publish(topic, payload, qos=1).wait_for_publish(5)
        return sent

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def fix(x: float, y: float, ts: float, acc: float = 8.0, **extra: Any) -> dict[str, Any]:
    lon, lat = lonlat(x, y)
    return {"ts": ts, "lat": lat, "lon": lon, "acc": acc, "batt": 80, **extra}


class GuardianSocket:
    """A guardian's websocket: records every message with the time it arrived."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None

    async def __aenter__(self) -> GuardianSocket:
        self._ws = await websockets.connect(self.url)
        self._task = asyncio.create_task(self._read())
        await self.wait_for(lambda m: m["type"] == "hello", 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()
        if self._task is not None:
            self._task.cancel()

    async def _read(self) -> None:
        async for raw in self._ws:
            self.messages.append((time.time(), json.loads(raw)))

    def alerts(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m["type"] == "alert"]

    async def wait_for(self, predicate: Any, timeout: float) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.messages:
                if predicate(m):
                    return t, m
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no matching message within {timeout} s; got {[m for _, m in self.messages]}")

    async def send(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message))


async def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> Any:
    """Poll an async or plain predicate until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def table_digests(pool: asyncpg.Pool) -> dict[str, str]:
    """A digest of the rows of every table in the database's schema, by table name.

    Equal before and after a request means that the request wrote nothing anywhere. The tables are
    read from the catalog, not listed here, so that a table a later migration adds is covered without
    anyone remembering to add it. One round trip for all of them (md5 of the rows' JSON in order)."""
    async with pool.acquire() as conn:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
            )
        ]
        digests = ", ".join(
            f"(SELECT md5(coalesce(string_agg(to_jsonb(t)::text, E'\\n' ORDER BY to_jsonb(t)::text), ''))"
            f' FROM "{table}" t) AS "{table}"'
            for table in tables
        )
        row = await conn.fetchrow(f"SELECT {digests}")
    assert row is not None
    return dict(row.items())
