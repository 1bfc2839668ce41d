"""Every endpoint × every role × own / other's resource, against a real PostgreSQL.

The caller acts for school A: the city's administrator, school A's staff, the guardian of A's child,
A's tag (device). "Own" is school A's resource, "other" school B's. A role that may not use an
endpoint at all gets 403 whatever the resource; a resource the caller may not see is 404 exactly as
if it did not exist (the same answer as for an id nobody has); a reference in a body to something the
caller may not see is 422 "no ... N", again the same as for an id nobody has. Every refused request
leaves the registry exactly as it was, and every list holds what is the caller's and nothing else.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import websockets

from tests.integration.test_api_support import (
    Api,
    City,
    Side,
    bearer,
    build_city,
    fingerprint,
    line,
    point,
    running_api,
    square,
)
from tracker.store import seed as registry
from tracker.store.tokens import create_token

ROLES = ("admin", "school", "guardian", "device")
PUBLIC = {"admin": (200, 200), "school": (200, 200), "guardian": (200, 200), "device": (200, 200)}
Target = Callable[[asyncpg.Connection, City, Side], Awaitable[Any]]


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


def token_of(city: City, role: str) -> str:
    return {
        "admin": city.admin,
        "school": city.a.staff,
        "guardian": city.a.guardian,
        "device": city.a.device,
    }[role]


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- what a request acts on: existing rows of a side, or fresh ones (so that a delete that is allowed
# takes nothing the next case needs) ---------------------------------------------------------------------
async def school(_: asyncpg.Connection, __: City, s: Side) -> int:
    return s.school_id


async def route(_: asyncpg.Connection, __: City, s: Side) -> int:
    return s.route_id


async def zone(_: asyncpg.Connection, city: City, __: Side) -> int:
    return city.zone_id


async def reader(_: asyncpg.Connection, __: City, s: Side) -> str:
    return s.reader


async def child(_: asyncpg.Connection, __: City, s: Side) -> int:
    return s.child_id


async def tag(_: asyncpg.Connection, __: City, s: Side) -> str:
    return s.tag


async def guardian(_: asyncpg.Connection, __: City, s: Side) -> int:
    return s.guardian_id


async def alert(_: asyncpg.Connection, __: City, s: Side) -> int:
    return s.alert_id


async def fresh_school(conn: asyncpg.Connection, _: City, __: Side) -> int:
    return await registry.add_school(conn, name="Spare", lon=127.06, lat=37.5)


async def fresh_route(conn: asyncpg.Connection, _: City, s: Side) -> int:
    return await registry.add_route(
        conn, school_id=s.school_id, name="Spare", geometry=line((0, 10), (50, 10)), corridor_m=20, windows=[]
    )


async def fresh_zone(conn: asyncpg.Connection, _: City, __: Side) -> int:
    return await registry.add_zone(conn, name="Spare", kind="river", geometry=square(100, 100, 10))


async def fresh_reader(conn: asyncpg.Connection, _: City, s: Side) -> str:
    rid = _uid("gate")
    await conn.execute(
        "INSERT INTO readers (id, school_id, name, role, lon, lat)"
        " VALUES ($1, $2, 'x', 'gate', 127.05, 37.5)",
        rid,
        s.school_id,
    )
    return rid


async def fresh_child(conn: asyncpg.Connection, _: City, s: Side) -> int:
    child_id = await registry.add_child(conn, school_id=s.school_id, route_id=s.route_id, name="Spare")
    await registry.link_guardian(conn, child_id=child_id, guardian_id=s.guardian_id)
    return child_id


async def fresh_tag(conn: asyncpg.Connection, _: City, s: Side) -> str:
    tid = _uid("tag")
    await registry.add_tag(conn, tag_id=tid, child_id=s.child_id)
    return tid


async def fresh_guardian(conn: asyncpg.Connection, _: City, s: Side) -> int:
    gid = await registry.add_guardian(
        conn, name="Spare", phone=None, channels=("websocket",), school_id=s.school_id
    )
    await registry.link_guardian(conn, child_id=s.child_id, guardian_id=gid, priority=5)
    return gid


async def fresh_token(conn: asyncpg.Connection, _: City, s: Side) -> int:
    return (await create_token(conn, role="guardian", guardian_id=s.guardian_id)).id


# --- the matrix --------------------------------------------------------------------------------------------
def _all(own: int, other: int | None = None) -> dict[str, tuple[int, int]]:
    return dict.fromkeys(ROLES, (own, own if other is None else other))


def roles(**expect: tuple[int, int] | int) -> dict[str, tuple[int, int]]:
    """Expected status per role as (own, other); roles left out get 403 for both."""
    out = dict.fromkeys(ROLES, (403, 403))
    for role, e in expect.items():
        out[role] = e if isinstance(e, tuple) else (e, e)
    return out


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # "{}" is where the target goes
    expect: dict[str, tuple[int, int]]
    target: Target | None = None
    body: Callable[[City, Side], Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


def _feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _near(s: Side) -> float:
    return s.dx


ENDPOINTS = [
    Endpoint("GET", "/healthz", PUBLIC),
    Endpoint("GET", "/readyz", PUBLIC),
    Endpoint("GET", "/metrics", PUBLIC),
    Endpoint("GET", "/api/v1/me", _all(200)),
    # tokens
    Endpoint("GET", "/api/v1/tokens", roles(admin=200, school=200, guardian=200)),
    Endpoint(
        "POST",
        "/api/v1/tokens",
        roles(admin=201, school=(201, 422)),
        body=lambda c, s: {"role": "guardian", "guardian_id": s.guardian_id},
    ),
    Endpoint(
        "DELETE",
        "/api/v1/tokens/{}",
        roles(admin=204, school=(204, 404), guardian=(204, 404)),
        target=fresh_token,
    ),
    # schools
    Endpoint("GET", "/api/v1/schools", roles(admin=200, school=200, guardian=200)),
    Endpoint(
        "POST",
        "/api/v1/schools",
        roles(admin=201),
        body=lambda c, s: _feature(point(_near(s) + 500, 0), name="New school"),
    ),
    Endpoint(
        "GET", "/api/v1/schools/{}", roles(admin=200, school=(200, 404), guardian=(200, 404)), target=school
    ),
    Endpoint(
        "PATCH",
        "/api/v1/schools/{}",
        roles(admin=200, school=(200, 404)),
        target=school,
        body=lambda c, s: {"properties": {"closed_days": ["2026-12-25"]}},
    ),
    Endpoint("DELETE", "/api/v1/schools/{}", roles(admin=204), target=fresh_school),
    # routes
    Endpoint("GET", "/api/v1/routes", roles(admin=200, school=200, guardian=200)),
    Endpoint(
        "POST",
        "/api/v1/routes",
        roles(admin=201, school=(201, 422)),
        body=lambda c, s: _feature(
            line((_near(s) - 200, 20), (_near(s), 0)), name="New walk", corridor_m=25, school_id=s.school_id
        ),
    ),
    Endpoint(
        "GET", "/api/v1/routes/{}", roles(admin=200, school=(200, 404), guardian=(200, 404)), target=route
    ),
    Endpoint(
        "PATCH",
        "/api/v1/routes/{}",
        roles(admin=200, school=(200, 404)),
        target=route,
        body=lambda c, s: {"properties": {"name": "Renamed walk"}},
    ),
    Endpoint("DELETE", "/api/v1/routes/{}", roles(admin=204, school=(204, 404)), target=fresh_route),
    # danger zones: the city's; read by everyone but devices
    Endpoint("GET", "/api/v1/zones", roles(admin=200, school=200, guardian=200)),
    Endpoint(
        "POST",
        "/api/v1/zones",
        roles(admin=201),
        body=lambda c, s: _feature(square(_near(s), 300, 30), name="New site", kind="construction"),
    ),
    Endpoint("GET", "/api/v1/zones/{}", roles(admin=200, school=200, guardian=200), target=zone),
    Endpoint(
        "PATCH",
        "/api/v1/zones/{}",
        roles(admin=200),
        target=zone,
        body=lambda c, s: {"properties": {"active": True}},
    ),
    Endpoint("DELETE", "/api/v1/zones/{}", roles(admin=204), target=fresh_zone),
    # readers
    Endpoint("GET", "/api/v1/readers", roles(admin=200, school=200)),
    Endpoint(
        "POST",
        "/api/v1/readers",
        roles(admin=201, school=(201, 422)),
        body=lambda c, s: (
            _feature(point(_near(s), 5), name="Gate 2", role="gate", school_id=s.school_id)
            | {"id": _uid("gate")}
        ),
    ),
    Endpoint("GET", "/api/v1/readers/{}", roles(admin=200, school=(200, 404)), target=reader),
    Endpoint(
        "PATCH",
        "/api/v1/readers/{}",
        roles(admin=200, school=(200, 404)),
        target=reader,
        body=lambda c, s: {"properties": {"role": "checkpoint"}},
    ),
    Endpoint("DELETE", "/api/v1/readers/{}", roles(admin=204, school=(204, 404)), target=fresh_reader),
    # children and their positions
    Endpoint("GET", "/api/v1/children", roles(admin=200, school=200, guardian=200)),
    Endpoint(
        "POST",
        "/api/v1/children",
        roles(admin=201, school=(201, 422)),
        body=lambda c, s: {"name": "New child", "school_id": s.school_id},
    ),
    Endpoint(
        "GET", "/api/v1/children/{}", roles(admin=200, school=(200, 404), guardian=(200, 404)), target=child
    ),
    Endpoint(
        "PATCH",
        "/api/v1/children/{}",
        roles(admin=200, school=(200, 404)),
        target=child,
        body=lambda c, s: {"name": "Renamed"},
    ),
    Endpoint(
        "PUT",
        "/api/v1/children/{}/guardians",
        roles(admin=200, school=(200, 404)),
        target=child,
        body=lambda c, s: [{"guardian_id": s.guardian_id, "priority": 1}],
    ),
    Endpoint("DELETE", "/api/v1/children/{}", roles(admin=204, school=(204, 404)), target=fresh_child),
    Endpoint(
        "GET",
        "/api/v1/children/{}/position",
        roles(admin=200, school=(200, 404), guardian=(200, 404)),
        target=child,
    ),
    Endpoint(
        "GET",
        "/api/v1/children/{}/track",
        roles(admin=200, school=(200, 404), guardian=(200, 404)),
        target=child,
    ),
    Endpoint(
        "GET",
        "/api/v1/children/{}/status",
        roles(admin=200, school=(200, 404), guardian=(200, 404)),
        target=child,
    ),
    Endpoint("GET", "/api/v1/live", roles(admin=200, school=200, guardian=200)),
    Endpoint("GET", "/api/v1/audit/position-reads", roles(admin=200, school=200, guardian=200)),
    # tags
    Endpoint("GET", "/api/v1/tags", roles(admin=200, school=200, guardian=200)),
    Endpoint(
        "POST",
        "/api/v1/tags",
        roles(admin=201, school=(201, 422)),
        body=lambda c, s: {"id": _uid("tag"), "child_id": s.child_id},
    ),
    Endpoint(
        "GET",
        "/api/v1/tags/{}",
        roles(admin=200, school=(200, 404), guardian=(200, 404), device=(200, 404)),
        target=tag,
    ),
    Endpoint(
        "PATCH",
        "/api/v1/tags/{}",
        roles(admin=200, school=(200, 404)),
        target=tag,
        body=lambda c, s: {"kind": "gps"},
    ),
    Endpoint("POST", "/api/v1/tags/{}/credentials", roles(admin=200, school=(200, 404)), target=fresh_tag),
    Endpoint("DELETE", "/api/v1/tags/{}", roles(admin=204, school=(204, 404)), target=fresh_tag),
    # guardians
    Endpoint("GET", "/api/v1/guardians", roles(admin=200, school=200, guardian=200)),
    Endpoint(
        "POST",
        "/api/v1/guardians",
        roles(admin=201, school=(201, 422)),
        body=lambda c, s: {"name": "Uncle", "phone": "+821011112222", "children": [{"child_id": s.child_id}]},
    ),
    Endpoint(
        "GET",
        "/api/v1/guardians/{}",
        roles(admin=200, school=(200, 404), guardian=(200, 404)),
        target=guardian,
    ),
    Endpoint(
        "PATCH",
        "/api/v1/guardians/{}",
        roles(admin=200, school=(200, 404), guardian=(200, 404)),
        target=guardian,
        body=lambda c, s: {"language": "ko"},
    ),
    Endpoint("DELETE", "/api/v1/guardians/{}", roles(admin=204, school=(204, 404)), target=fresh_guardian),
    # alerts
    Endpoint("GET", "/api/v1/alerts", roles(admin=200, school=200, guardian=200)),
    Endpoint(
        "GET", "/api/v1/alerts/{}", roles(admin=200, school=(200, 404), guardian=(200, 404)), target=alert
    ),
    Endpoint("POST", "/api/v1/alerts/{}/ack", roles(guardian=(200, 404)), target=alert),
    # import / export
    Endpoint(
        "POST",
        "/api/v1/import",
        roles(admin=200, school=(200, 422)),
        body=lambda c, s: {
            "type": "FeatureCollection",
            "features": [
                _feature(
                    line((_near(s) - 300, 30), (_near(s), 0)),
                    name="Imported",
                    corridor_m=20,
                    school_id=s.school_id,
                )
            ],
        },
    ),
    Endpoint("GET", "/api/v1/export", roles(admin=200, school=200, guardian=200)),
    # operators
    Endpoint("GET", "/api/v1/sms", roles(admin=200)),
    Endpoint("GET", "/api/v1/dead-letters", roles(admin=200)),
    Endpoint("GET", "/api/v1/stats", roles(admin=200)),
    Endpoint("GET", "/api/v1/world", roles(admin=200)),
    Endpoint(
        "GET",
        "/api/v1/tags/{}/devices",
        roles(admin=200, school=(200, 404), guardian=(200, 404), device=(200, 404)),
        target=tag,
    ),
    Endpoint(
        "PUT",
        "/api/v1/tags/{}/devices",
        roles(admin=200, school=(200, 404)),
        target=tag,
        body=lambda _c, s: {"devices": [{"protocol": "osmand", "device": f"phone-of-{s.tag}"}]},
    ),
    # device ingest authenticates the device itself (its identity's tag, with that tag's MQTT password or
    # device token: tests/integration/test_device_ingest.py); a request naming no device is 400 for all
    Endpoint("POST", "/ingest/owntracks", roles(admin=400, school=400, guardian=400, device=400)),
    Endpoint("GET", "/ingest/osmand", roles(admin=400, school=400, guardian=400, device=400)),
    Endpoint("POST", "/ingest/osmand", roles(admin=400, school=400, guardian=400, device=400)),
]


def test_the_matrix_covers_every_endpoint_of_the_app(tmp_path: Path) -> None:
    from tests.integration.test_api_support import api_settings
    from tracker.alerts.hub import WebSocketHub
    from tracker.api import AppContext, create_app

    ctx = AppContext(settings=api_settings("postgresql://unused/x", tmp_path), pool=None, hub=WebSocketHub())  # type: ignore[arg-type]
    paths = create_app(ctx).openapi()["paths"]
    served = {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path)) for path, ops in paths.items() for method in ops
    }
    walked = {e.key for e in ENDPOINTS}
    assert served == walked, f"not walked: {served - walked}; not served: {walked - served}"
    assert len(walked) == len(ENDPOINTS)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
async def test_every_role_on_own_and_other(api: Api, endpoint: Endpoint) -> None:
    city = await build_city(api.pool)
    # the positions of both children have been read by the city once: the audit log has entries of both
    for s in (city.a, city.b):
        assert (
            await api.http.get(f"/api/v1/children/{s.child_id}/track", headers=bearer(city.admin))
        ).status_code == 200
    failures = []
    for role in ROLES:
        for which, side in (("own", city.a), ("other", city.b)):
            expected = endpoint.expect[role][0 if which == "own" else 1]
            async with api.pool.acquire() as conn:
                target = await endpoint.target(conn, city, side) if endpoint.target else None
            path = endpoint.path.format(target) if target is not None else endpoint.path
            before = await fingerprint(api.pool)
            kwargs: dict[str, Any] = {}
            if endpoint.body is not None:
                kwargs["json"] = endpoint.body(city, side)
            r = await api.http.request(endpoint.method, path, headers=bearer(token_of(city, role)), **kwargs)
            if r.status_code != expected:
                failures.append(f"{role} on {which}: {r.status_code} (expected {expected}): {r.text[:200]}")
                continue
            if expected >= 400:
                if await fingerprint(api.pool) != before:
                    failures.append(f"{role} on {which}: refused with {expected} but the registry changed")
                if expected == 404:
                    # the same answer as for something that does not exist at all
                    missing = "ghost-0" if isinstance(target, str) else 9_000_000_000
                    r2 = await api.http.request(
                        endpoint.method,
                        endpoint.path.format(missing),
                        headers=bearer(token_of(city, role)),
                        **kwargs,
                    )
                    same = r.json()["detail"].replace(str(target), "?") == r2.json()["detail"].replace(
                        str(missing), "?"
                    )
                    if r2.status_code != 404 or not same:
                        failures.append(
                            f"{role} on {which}: 404 differs from a missing id: {r.text} / {r2.text}"
                        )
    assert failures == []


def _ids(body: Any) -> set[Any]:
    items = body["features"] if "features" in body else body["items"]
    return {i["id"] if "id" in i else i["child_id"] for i in items}


@pytest.mark.parametrize("role", ["school", "guardian"])
async def test_lists_hold_what_is_the_callers_and_nothing_else(api: Api, role: str) -> None:
    city = await build_city(api.pool)
    for s in (city.a, city.b):
        await api.http.get(f"/api/v1/children/{s.child_id}/position", headers=bearer(city.admin))
    who = bearer(token_of(city, role))
    a, b = city.a, city.b
    cases: list[tuple[str, Any, Any]] = [
        ("/api/v1/schools", a.school_id, b.school_id),
        ("/api/v1/routes", a.route_id, b.route_id),
        ("/api/v1/children", a.child_id, b.child_id),
        ("/api/v1/tags", a.tag, b.tag),
        ("/api/v1/guardians", a.guardian_id, b.guardian_id),
        ("/api/v1/alerts", a.alert_id, b.alert_id),
        ("/api/v1/audit/position-reads", a.child_id, b.child_id),
        ("/api/v1/live", a.child_id, b.child_id),
        ("/api/v1/export?kind=route", a.route_id, b.route_id),
    ]
    if role == "school":
        cases.append(("/api/v1/readers", a.reader, b.reader))
    for path, mine, theirs in cases:
        r = await api.http.get(path, headers=who)
        assert r.status_code == 200, (path, r.text)
        ids = _ids(r.json())
        assert mine in ids and theirs not in ids, (path, ids)
    # asking for the other school by filter gives nothing, not an error that tells it exists
    r = await api.http.get(f"/api/v1/children?school_id={b.school_id}", headers=who)
    assert r.json()["items"] == [] and r.json()["total"] == 0
    tokens = (await api.http.get("/api/v1/tokens", headers=who)).json()["items"]
    if role == "school":
        assert {t["role"] for t in tokens} == {"school", "guardian", "device"}
        assert all(
            t["school_id"] in (None, a.school_id) and t["guardian_id"] in (None, a.guardian_id)
            for t in tokens
        )
    else:
        assert {(t["role"], t["guardian_id"]) for t in tokens} == {("guardian", a.guardian_id)}


async def test_no_token_or_a_bad_one_is_401_everywhere(api: Api) -> None:
    city = await build_city(api.pool)
    async with api.pool.acquire() as conn:
        expired = (await create_token(conn, role="admin", ttl=timedelta(seconds=-1))).token
    for e in ENDPOINTS:
        if e.expect is PUBLIC or e.path.startswith("/ingest/"):
            continue  # device ingest: Basic or Bearer with the tag's own secret (test_device_ingest.py)
        path = e.path.format("1")
        for headers in ({}, bearer("nonsense"), bearer(expired)):
            r = await api.http.request(e.method, path, headers=headers)
            assert r.status_code == 401, (e.key, r.status_code, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
    assert city.admin


async def test_the_websocket_takes_only_a_valid_guardian_token(service) -> None:  # type: ignore[no-untyped-def]
    city = await build_city(service.pool)
    url = f"ws://127.0.0.1:{service.settings.http_port}/ws?token="
    for role in ROLES:
        if role == "guardian":
            async with websockets.connect(url + token_of(city, role)) as ws:
                assert '"hello"' in await asyncio.wait_for(ws.recv(), 5)
            continue
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url + token_of(city, role)):
                pass
        assert refused.value.response.status_code == 403
