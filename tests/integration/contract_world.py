"""The world the contract test (test_contract.py) acts in, and what makes its requests land.

Generated at random, a path parameter names a row that does not exist and a body refers to schools and
children that do not exist, so most requests stop at a 404 or a 422 and the success answers (and their
bodies) go unchecked. Here are, for the city of test_api_support.build_city plus a few rows of its own:

- ``valid_requests``: for every operation of the API, one request that must succeed (2xx), built from
  the world's ids; an operation missing here is named by the test as never answered 2xx;
- ``aim``: turns a generated request into one about the world, keeping what was generated where the
  schema says all there is to say (names, windows, flags, paging) and replacing what it cannot say
  (which ids exist, which shapes lie near a school, which guardian may be told by SMS);
- ``caller``: whose token a request is sent with (the administrator, except where only a guardian or a
  device may call).

Deleting and revoking operations get rows made to be deleted (``spares``), two per kind: one for the
valid request, one for the generated ones, so they never remove what the other operations use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from hypothesis import strategies as st
from schemathesis.core import NOT_SET

from tests.helpers import ALL_WEEK, lonlat
from tests.integration.test_api_support import City, build_city, line, point, square
from tests.push_service import subscription_at
from tracker.store import seeding
from tracker.store.devices import link_device
from tracker.store.enrolments import create_enrolment
from tracker.store.tokens import Principal, create_token, issue_token

Draw = Callable[[st.SearchStrategy[Any]], Any]

# The tokens the test acts with get ids far above any a generated path parameter will name, so
# revoking "some token" never revokes the caller's own.
FAR_TOKEN_IDS = 8_000_000_000


@dataclass
class Ingest:
    """A phone app registered to a tag of its own (child A's): OwnTracks and OsmAnd identities."""

    tag: str
    owntracks_user: str
    owntracks_device: str
    osmand_id: str


@dataclass
class ContractWorld:
    city: City
    admin: str  # the city's administrator
    guardian: str  # child A's guardian
    device: str  # a device token of the ingest tag
    ingest: Ingest
    ids: dict[str, list[Any]]  # by parameter name: rows every operation may use
    spares: dict[str, list[Any]] = field(default_factory=dict)  # by parameter name: rows to delete
    # guardians who have never signed in: one to send an enrolment link, one with a link to redeem
    to_invite: int = 0
    enrolment_code: str = ""

    def near_a(self, dx: float = 0.0, dy: float = 0.0) -> tuple[float, float]:
        """A place dx, dy metres from school A."""
        return lonlat(self.city.a.dx + dx, dy)


async def build_contract_world(pool: asyncpg.Pool) -> ContractWorld:
    city = await build_city(pool)
    a = city.a
    spares: dict[str, list[Any]] = {}
    async with pool.acquire() as conn:
        ingest = Ingest(
            tag="contract-phone", owntracks_user="kid", owntracks_device="phone", osmand_id="4242"
        )
        await seeding.add_tag(conn, tag_id=ingest.tag, child_id=a.child_id)
        await link_device(
            conn,
            tag_id=ingest.tag,
            protocol="owntracks",
            device=f"{ingest.owntracks_user}/{ingest.owntracks_device}",
        )
        await link_device(conn, tag_id=ingest.tag, protocol="osmand", device=ingest.osmand_id)

        lon, lat = lonlat(a.dx + 200, -200)
        spares["school_id"] = [
            await seeding.add_school(conn, name=f"Spare school {i}", lon=lon, lat=lat) for i in range(2)
        ]
        spares["route_id"] = [
            await seeding.add_route(
                conn,
                school_id=a.school_id,
                name=f"Spare walk {i}",
                geometry=line((a.dx - 400, 40), (a.dx, 0)),
                corridor_m=25,
                windows=ALL_WEEK,
            )
            for i in range(2)
        ]
        spares["zone_id"] = [
            await seeding.add_zone(
                conn, name=f"Spare site {i}", kind="river", geometry=square(-100, -300, 30)
            )
            for i in range(2)
        ]
        spares["reader_id"] = [f"spare-gate-{i}" for i in range(2)]
        for reader in spares["reader_id"]:
            await conn.execute(
                "INSERT INTO readers (id, school_id, name, role, lon, lat)"
                " VALUES ($1, $2, 'Spare gate', 'checkpoint', $3, $4)",
                reader,
                a.school_id,
                lon,
                lat,
            )
        spares["child_id"] = [
            await seeding.add_child(conn, school_id=a.school_id, route_id=None, name=f"Spare child {i}")
            for i in range(2)
        ]
        spares["tag_id"] = [f"spare-tag-{i}" for i in range(2)]
        for tag in spares["tag_id"]:
            await seeding.add_tag(conn, tag_id=tag, child_id=a.child_id)
        spares["guardian_id"] = [
            await seeding.add_guardian(conn, name=f"Spare parent {i}", phone=None, channels=("websocket",))
            for i in range(2)
        ]
        spares["token_id"] = [
            (await create_token(conn, role="guardian", guardian_id=a.guardian_id, label=f"spare {i}")).id
            for i in range(2)
        ]

        to_invite, invited = [
            await seeding.add_guardian(conn, name=f"{who} parent", phone=None, channels=("websocket",))
            for who in ("To invite", "Invited")
        ]
        link = await create_enrolment(conn, Principal(0, "admin"), invited, timedelta(hours=1))

        await conn.execute("SELECT setval('api_tokens_id_seq', $1)", FAR_TOKEN_IDS)
        admin = await issue_token(conn, role="admin", label="contract")
        guardian = await issue_token(conn, role="guardian", guardian_id=a.guardian_id, label="contract")
        device = await issue_token(conn, role="device", tag_id=ingest.tag, label="contract")
    ids: dict[str, list[Any]] = {
        "school_id": [a.school_id, city.b.school_id],
        "route_id": [a.route_id, city.b.route_id],
        "zone_id": [city.zone_id],
        "reader_id": [a.reader, city.b.reader],
        "child_id": [a.child_id, city.b.child_id],
        "tag_id": [a.tag, city.b.tag],
        "guardian_id": [a.guardian_id, city.b.guardian_id],
        "alert_id": [a.alert_id, city.b.alert_id],
        "token_id": [],  # only DELETE names a token: spares
    }
    return ContractWorld(city, admin, guardian, device, ingest, ids, spares, to_invite, link.code)


# --- whose token ---------------------------------------------------------------------------------------
def caller(key: str, world: ContractWorld, role: str) -> str:
    """The token a request of operation ``key`` ("METHOD /path") is sent with. As the administrator:
    the guardian where only a guardian may call (acknowledging), the device for the phone apps' ingest."""
    if role == "guardian":
        return world.guardian
    if key == "POST /api/v1/alerts/{alert_id}/ack" or key.endswith(" /api/v1/me/push-subscriptions"):
        return world.guardian
    if key.split(" ")[1].startswith("/ingest/"):
        return world.device
    return world.admin


# --- one request per operation that must succeed -------------------------------------------------------
@dataclass
class Request:
    path_parameters: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    media_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _feature(geometry: dict[str, Any], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "Feature", **extra, "geometry": geometry, "properties": properties}


def valid_requests(world: ContractWorld) -> dict[str, list[Request]]:
    """For every operation (as the administrator, see ``caller``), requests that must answer 2xx, in the
    order the test sends them: reads, then creations, then changes, then deletions."""
    a, b = world.city.a, world.city.b
    spare = {name: rows[0] for name, rows in world.spares.items() if rows}
    now = int(time.time())
    lon, lat = world.near_a(-300, 5)
    windows = [{"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00"}]
    browser = subscription_at(f"https://fcm.googleapis.com/fcm/send/contract-{time.time_ns()}")
    return {
        "GET /healthz": [Request()],
        "GET /api/v1/push/key": [Request()],
        "GET /api/v1/me/push-subscriptions": [Request()],
        "POST /api/v1/me/push-subscriptions": [Request(body=browser)],
        "DELETE /api/v1/me/push-subscriptions": [Request(query={"endpoint": browser["endpoint"]})],
        "GET /readyz": [Request()],
        "GET /metrics": [Request()],
        "GET /api/v1/me": [Request()],
        "GET /api/v1/alerts": [Request(query={"child_id": a.child_id, "state": "open"})],
        "GET /api/v1/alerts/{alert_id}": [Request({"alert_id": a.alert_id})],
        "POST /api/v1/alerts/{alert_id}/ack": [Request({"alert_id": a.alert_id})],
        "GET /api/v1/sms": [Request()],
        "GET /api/v1/dead-letters": [Request()],
        "GET /api/v1/stats": [Request()],
        "GET /api/v1/world": [Request()],
        "GET /api/v1/schools": [Request()],
        "POST /api/v1/schools": [
            Request(
                body=_feature(
                    point(a.dx + 900, 300),
                    {
                        "name": "New school",
                        "timezone": "Asia/Seoul",
                        "windows": windows,
                        "closed_days": ["2031-01-01"],
                    },
                )
            )
        ],
        "GET /api/v1/schools/{school_id}": [Request({"school_id": a.school_id})],
        "PATCH /api/v1/schools/{school_id}": [
            Request({"school_id": b.school_id}, body={"properties": {"name": "School B, renamed"}})
        ],
        "DELETE /api/v1/schools/{school_id}": [Request({"school_id": spare["school_id"]})],
        "GET /api/v1/routes": [Request(query={"school_id": a.school_id})],
        "POST /api/v1/routes": [
            Request(
                body=_feature(
                    line((a.dx - 500, -60), (a.dx, 0)),
                    {
                        "name": "South walk",
                        "school_id": a.school_id,
                        "corridor_m": 25,
                        "windows": windows,
                        "arrivals": [{"time": "08:50"}],
                    },
                )
            )
        ],
        "GET /api/v1/routes/{route_id}": [Request({"route_id": a.route_id})],
        "PATCH /api/v1/routes/{route_id}": [
            Request({"route_id": a.route_id}, body={"properties": {"corridor_m": 35}})
        ],
        "DELETE /api/v1/routes/{route_id}": [Request({"route_id": spare["route_id"]})],
        "GET /api/v1/zones": [Request(query={"kind": "construction"})],
        "POST /api/v1/zones": [
            Request(body=_feature(square(a.dx - 200, 300, 30), {"name": "Crane", "kind": "construction"}))
        ],
        "GET /api/v1/zones/{zone_id}": [Request({"zone_id": world.city.zone_id})],
        "PATCH /api/v1/zones/{zone_id}": [
            Request({"zone_id": world.city.zone_id}, body={"properties": {"severity": "warning"}})
        ],
        "DELETE /api/v1/zones/{zone_id}": [Request({"zone_id": spare["zone_id"]})],
        "GET /api/v1/readers": [Request(query={"school_id": a.school_id})],
        "POST /api/v1/readers": [
            Request(
                body=_feature(
                    point(a.dx - 150, 2),
                    {"name": "Crossing", "school_id": a.school_id, "role": "checkpoint"},
                    id="crossing-a",
                )
            )
        ],
        "GET /api/v1/readers/{reader_id}": [Request({"reader_id": a.reader})],
        "PATCH /api/v1/readers/{reader_id}": [
            Request({"reader_id": a.reader}, body={"properties": {"name": "Main gate"}})
        ],
        "DELETE /api/v1/readers/{reader_id}": [Request({"reader_id": spare["reader_id"]})],
        "GET /api/v1/children": [Request(query={"school_id": a.school_id})],
        "POST /api/v1/children": [
            Request(
                body={
                    "name": "New child",
                    "school_id": a.school_id,
                    "route_id": a.route_id,
                    "guardians": [{"guardian_id": a.guardian_id, "priority": 2}],
                }
            )
        ],
        "GET /api/v1/children/{child_id}": [Request({"child_id": a.child_id})],
        "PATCH /api/v1/children/{child_id}": [Request({"child_id": b.child_id}, body={"name": "Child B"})],
        "DELETE /api/v1/children/{child_id}": [Request({"child_id": spare["child_id"]})],
        "PUT /api/v1/children/{child_id}/guardians": [
            Request({"child_id": a.child_id}, body=[{"guardian_id": a.guardian_id, "priority": 1}])
        ],
        "GET /api/v1/children/{child_id}/position": [Request({"child_id": a.child_id})],
        "GET /api/v1/children/{child_id}/track": [Request({"child_id": a.child_id})],
        "GET /api/v1/audit/position-reads": [Request()],
        "GET /api/v1/tags": [Request(query={"child_id": a.child_id})],
        "POST /api/v1/tags": [Request(body={"id": "tag-new", "child_id": a.child_id, "kind": "gps"})],
        "GET /api/v1/tags/{tag_id}": [Request({"tag_id": a.tag})],
        "PATCH /api/v1/tags/{tag_id}": [Request({"tag_id": b.tag}, body={"kind": "gps"})],
        "DELETE /api/v1/tags/{tag_id}": [Request({"tag_id": spare["tag_id"]})],
        "POST /api/v1/tags/{tag_id}/credentials": [Request({"tag_id": b.tag})],
        "GET /api/v1/guardians": [Request(query={"child_id": a.child_id})],
        "POST /api/v1/guardians": [
            Request(
                body={
                    "name": "New parent",
                    "phone": "+821055501234",
                    "language": "en",
                    "channels": ["websocket", "sms"],
                    "school_id": a.school_id,
                    "children": [{"child_id": a.child_id, "priority": 3}],
                }
            )
        ],
        "GET /api/v1/guardians/{guardian_id}": [Request({"guardian_id": a.guardian_id})],
        "PATCH /api/v1/guardians/{guardian_id}": [
            Request({"guardian_id": b.guardian_id}, body={"language": "ko"})
        ],
        "DELETE /api/v1/guardians/{guardian_id}": [Request({"guardian_id": spare["guardian_id"]})],
        "GET /api/v1/tags/{tag_id}/devices": [Request({"tag_id": world.ingest.tag})],
        "PUT /api/v1/tags/{tag_id}/devices": [
            Request({"tag_id": b.tag}, body={"devices": [{"protocol": "osmand", "device": "b-phone"}]})
        ],
        "GET /api/v1/live": [Request(query={"school_id": a.school_id})],
        "GET /api/v1/children/{child_id}/status": [Request({"child_id": a.child_id})],
        "GET /api/v1/tokens": [Request(query={"role": "guardian"})],
        "POST /api/v1/tokens": [
            Request(body={"role": "guardian", "guardian_id": a.guardian_id, "label": "phone", "ttl_days": 7})
        ],
        "DELETE /api/v1/tokens/{token_id}": [Request({"token_id": spare["token_id"]})],
        "POST /api/v1/guardians/{guardian_id}/enrolment": [Request({"guardian_id": world.to_invite})],
        "POST /api/v1/enrolment": [Request(body={"code": world.enrolment_code})],
        "GET /api/v1/audit/tokens": [Request(query={"guardian_id": a.guardian_id})],
        "POST /api/v1/import": [
            Request(
                query={"mode": "create"},
                body={"type": "FeatureCollection", "features": [_import_route(world, "Imported walk")]},
                media_type="application/geo+json",
            )
        ],
        "GET /api/v1/export": [Request(query={"format": "geojson"}), Request(query={"format": "gpx"})],
        "POST /ingest/owntracks": [
            Request(
                body={"_type": "location", "lat": lat, "lon": lon, "acc": 9, "tst": now - 30, "batt": 80},
                media_type="application/json",
                headers={
                    "X-Limit-U": world.ingest.owntracks_user,
                    "X-Limit-D": world.ingest.owntracks_device,
                },
            )
        ],
        "GET /ingest/osmand": [
            Request(
                query={
                    "id": world.ingest.osmand_id,
                    "lat": lat,
                    "lon": lon,
                    "timestamp": now - 20,
                    "accuracy": 8,
                }
            )
        ],
        "POST /ingest/osmand": [
            Request(
                body={
                    "device_id": world.ingest.osmand_id,
                    "location": {
                        "timestamp": now - 10,
                        "coords": {"latitude": lat, "longitude": lon, "accuracy": 7},
                    },
                },
                media_type="application/json",
            )
        ],
    }


def _import_route(world: ContractWorld, name: str) -> dict[str, Any]:
    a = world.city.a
    return _feature(
        line((a.dx - 450, 80), (a.dx, 0)),
        {"kind": "route", "name": name, "school_id": a.school_id, "corridor_m": 30},
    )


# --- generated requests about the world ----------------------------------------------------------------
ID_QUERIES = ("school_id", "route_id", "child_id")


def aim(key: str, case: Any, world: ContractWorld, draw: Draw) -> None:
    """Make a generated (positive) request name the world's rows: path parameters and id filters from
    the world (a deleting operation: its spares), and the body's references and shapes valid. What the
    schema does describe (names, windows, flags, paging) stays as generated."""
    method = key.split(" ")[0]
    for name in list(case.path_parameters or {}):
        rows = world.spares.get(name, []) if method == "DELETE" else world.ids.get(name, [])
        if rows:
            case.path_parameters[name] = draw(st.sampled_from(rows))
    for name in ID_QUERIES:
        if case.query and name in case.query and world.ids[name]:
            case.query[name] = draw(st.sampled_from(world.ids[name]))
    fix_body = _BODIES.get(key)
    if fix_body is not None and case.body is not NOT_SET:
        case.body = fix_body(case.body, world, draw)
    if (
        key == "PATCH /api/v1/schools/{school_id}"
        and isinstance(case.body, dict)
        and case.body.get("geometry")
    ):
        # a school moves a little: far away, its routes and readers would be refused from then on
        dx = (
            world.city.a.dx
            if case.path_parameters["school_id"] == world.city.a.school_id
            else world.city.b.dx
        )
        case.body["geometry"] = point(dx + draw(st.integers(-100, 100)), draw(st.integers(-100, 100)))


def _props(body: Any) -> dict[str, Any] | None:
    props = body.get("properties") if isinstance(body, dict) else None
    return props if isinstance(props, dict) else None


def _route(body: Any, world: ContractWorld, draw: Draw) -> Any:
    if isinstance(body, dict) and body.get("geometry") is not None:
        a = world.city.a
        body["geometry"] = line((a.dx - draw(st.integers(100, 900)), draw(st.integers(-80, 80))), (a.dx, 0))
    props = _props(body)
    if props is not None:
        props["school_id"] = world.city.a.school_id
    return body


def _zone(body: Any, world: ContractWorld, draw: Draw) -> Any:
    if isinstance(body, dict) and body.get("geometry") is not None:
        body["geometry"] = square(
            world.city.a.dx + draw(st.integers(-800, 800)), draw(st.integers(-800, 800)), 40
        )
    return body


def _reader(body: Any, world: ContractWorld, draw: Draw) -> Any:
    if isinstance(body, dict) and body.get("geometry") is not None:
        body["geometry"] = point(world.city.a.dx - draw(st.integers(0, 500)), 0)
    props = _props(body)
    if props is not None:
        props["school_id"] = world.city.a.school_id
    return body


def _distinct(rows: list[Any], n: int, draw: Draw) -> list[Any]:
    return list(draw(st.permutations(rows)))[: min(n, len(rows))]


def _guardian_links(links: Any, world: ContractWorld, draw: Draw) -> Any:
    if not isinstance(links, list):
        return links
    ids = _distinct(world.ids["guardian_id"], len(links), draw)
    kept = [link for link in links if isinstance(link, dict)][: len(ids)]
    return [link | {"guardian_id": g} for link, g in zip(kept, ids, strict=False)]


def _child(body: Any, world: ContractWorld, draw: Draw) -> Any:
    if not isinstance(body, dict):
        return body
    a = world.city.a
    if "school_id" in body or "route_id" in body or "name" in body:
        body["school_id"] = a.school_id
        if "route_id" in body:
            body["route_id"] = a.route_id
    if "guardians" in body:
        body["guardians"] = _guardian_links(body["guardians"], world, draw)
    return body


def _tag(body: Any, world: ContractWorld, draw: Draw) -> Any:
    if isinstance(body, dict) and "child_id" in body:
        body["child_id"] = draw(st.sampled_from(world.ids["child_id"]))
    return body


def _guardian(body: Any, world: ContractWorld, draw: Draw) -> Any:
    if not isinstance(body, dict):
        return body
    if body.get("school_id") is not None:
        body["school_id"] = world.city.a.school_id
    children = body.get("children")
    if isinstance(children, list):
        ids = _distinct(world.ids["child_id"], len(children), draw)
        kept = [c for c in children if isinstance(c, dict)][: len(ids)]
        body["children"] = [c | {"child_id": i} for c, i in zip(kept, ids, strict=False)]
    if body.get("phone") is None:  # SMS (a default channel) needs a phone number
        body["phone"] = "+821055500000"
    return body


def _devices(body: Any, world: ContractWorld, draw: Draw) -> Any:
    devices = body.get("devices") if isinstance(body, dict) else None
    if isinstance(devices, list):
        for d in devices:
            if isinstance(d, dict) and d.get("protocol") == "owntracks" and isinstance(d.get("device"), str):
                d["device"] = d["device"].replace("/", "_") + "/phone"  # OwnTracks names 'user/device'
    return body


def _token(body: Any, world: ContractWorld, draw: Draw) -> Any:
    if not isinstance(body, dict):
        return body
    binding = {"school": "school_id", "guardian": "guardian_id", "device": "tag_id"}.get(body.get("role", ""))
    for key in ("school_id", "guardian_id", "tag_id"):
        body.pop(key, None)
    if binding is not None:
        body[binding] = draw(st.sampled_from(world.ids[binding]))
    return body


def _import(body: Any, world: ContractWorld, draw: Draw) -> Any:
    name = f"Walk {draw(st.integers(1, 10**6))}"
    return {"type": "FeatureCollection", "features": [_import_route(world, name)]}


_BODIES: dict[str, Callable[[Any, ContractWorld, Draw], Any]] = {
    "POST /api/v1/routes": _route,
    "PATCH /api/v1/routes/{route_id}": _route,
    "POST /api/v1/zones": _zone,
    "PATCH /api/v1/zones/{zone_id}": _zone,
    "POST /api/v1/readers": _reader,
    "PATCH /api/v1/readers/{reader_id}": _reader,
    "POST /api/v1/children": _child,
    "PATCH /api/v1/children/{child_id}": _child,
    "PUT /api/v1/children/{child_id}/guardians": _guardian_links,
    "POST /api/v1/tags": _tag,
    "PATCH /api/v1/tags/{tag_id}": _tag,
    "POST /api/v1/guardians": _guardian,
    "PATCH /api/v1/guardians/{guardian_id}": _guardian,
    "PUT /api/v1/tags/{tag_id}/devices": _devices,
    "POST /api/v1/tokens": _token,
    "POST /api/v1/import": _import,
}
