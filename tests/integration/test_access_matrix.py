"""Every endpoint × every role × own / other's resource, against a real PostgreSQL.

The caller acts for school A: the city's administrator, school A's staff, the guardian of A's child,
A's tag (device). "Own" is school A's resource, "other" school B's. A role that may not use an
endpoint at all gets 403 whatever the resource; a resource the caller may not see is 404 exactly as
if it did not exist (the same answer as for an id nobody has); a reference in a body to something the
caller may not see is 422 "no ... N", again the same as for an id nobody has. Every refused request
leaves the database exactly as it was (every table of it, the outbox, the alerts' history and the
position-read audit log included), and every list holds what is the caller's and nothing else, also
when its filter names the other school's objects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from tests.helpers import table_digests
from tests.integration.test_api_support import (
    Api,
    City,
    Side,
    bearer,
    build_city,
    line,
    point,
    running_api,
    square,
)
from tests.push_service import subscription_at
from tracker.store import seeding
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


# --- "exists but is not yours" must answer as "does not exist" ------------------------------------------
MISSING_ID = 9_000_000_000  # a valid id (1 .. 2**63 - 1) that no row has
MISSING_KEY = "ghost-0"  # a valid tag or reader id that no row has


def ghost_of(s: Side) -> Side:
    """The other school's side with every id it names swapped for one that nobody has: a request built
    from it is the same request about things that do not exist at all."""
    return dataclasses.replace(
        s,
        school_id=MISSING_ID,
        route_id=MISSING_ID,
        child_id=MISSING_ID,
        tag=MISSING_KEY,
        reader=MISSING_KEY,
        guardian_id=MISSING_ID,
        alert_id=MISSING_ID,
    )


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for k in sorted(value) for leaf in [("key", k), *_leaves(value[k])]]
    if isinstance(value, list):
        return [leaf for v in value for leaf in ["[", *_leaves(v), "]"]]
    return [value]


def swaps_between(seen: tuple[str, Any], missing: tuple[str, Any]) -> dict[str, str]:
    """What the request that found something (path, body) names where the one about nothing names a
    missing id: the words that differ between the two requests, position by position."""
    (path, body), (ghost_path, ghost_body) = seen, missing
    a = re.split(r"[/?&=]", path) + _leaves(body)
    b = re.split(r"[/?&=]", ghost_path) + _leaves(ghost_body)
    assert len(a) == len(b), (seen, missing)
    return {str(x): str(y) for x, y in zip(a, b, strict=True) if x != y}


def alike(seen: httpx.Response, missing: httpx.Response, swaps: dict[str, str]) -> bool:
    """The same status and the same answer, word for word once the ids the requests named are swapped
    ("no child 2" against "no child 9000000000"): nothing in it tells "not yours" from "nobody's"."""
    if not swaps:
        return seen.status_code == missing.status_code and seen.text == missing.text
    names = re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in swaps) + r")(?![\w-])")

    def swap(v: Any) -> Any:
        if isinstance(v, str):
            return names.sub(lambda m: swaps[m.group(1)], v)
        if isinstance(v, list):
            return [swap(x) for x in v]
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        return v

    return seen.status_code == missing.status_code and swap(seen.json()) == missing.json()


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))


async def furnish_side(conn: asyncpg.Connection, s: Side) -> None:
    """A row of the side's in each table that the city leaves empty (see furnish)."""
    await conn.execute(
        "INSERT INTO tag_devices (protocol, device, tag_id) VALUES ('osmand', $1, $2)",
        f"phone-of-{s.tag}",
        s.tag,
    )
    await conn.execute(
        """INSERT INTO child_state (child_id, state) VALUES ($1, '{"at": "school"}')""", s.child_id
    )
    await conn.execute(
        "INSERT INTO alert_history (alert_id, step, detail) VALUES ($1, 'opened', '{}')", s.alert_id
    )
    delivery = await conn.fetchval(
        "INSERT INTO deliveries (alert_id, transition, guardian_id, channel, state, sent_at)"
        " VALUES ($1, 'opened', $2, 'sms', 'sent', now()) RETURNING id",
        s.alert_id,
        s.guardian_id,
    )
    await conn.execute(
        "INSERT INTO sms_messages (delivery_id, phone, body, provider)"
        " VALUES ($1, '+821000000001', 'SOS', 'stub')",
        delivery,
    )


async def furnish(pool: asyncpg.Pool, city: City) -> None:
    """Give each side a row in every table that a request could write but the city leaves empty (a
    phone app speaking for the tag, the monitor's state, the alert's history, its delivery and SMS, a
    dead letter): a refused request that changed or deleted one of them shows in the digests."""
    async with pool.acquire() as conn:
        for s in (city.a, city.b):
            await furnish_side(conn, s)
        await conn.execute(
            "INSERT INTO dead_letters (topic, payload, reason) VALUES ('x/y', '\\x00'::bytea, 'bad_json')"
        )


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
    return await seeding.add_school(conn, name="Spare", lon=127.06, lat=37.5)


async def fresh_route(conn: asyncpg.Connection, _: City, s: Side) -> int:
    return await seeding.add_route(
        conn, school_id=s.school_id, name="Spare", geometry=line((0, 10), (50, 10)), corridor_m=20, windows=[]
    )


async def fresh_zone(conn: asyncpg.Connection, _: City, __: Side) -> int:
    return await seeding.add_zone(conn, name="Spare", kind="river", geometry=square(100, 100, 10))


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
    child_id = await seeding.add_child(conn, school_id=s.school_id, route_id=s.route_id, name="Spare")
    await seeding.link_guardian(conn, child_id=child_id, guardian_id=s.guardian_id)
    return child_id


async def fresh_tag(conn: asyncpg.Connection, _: City, s: Side) -> str:
    tid = _uid("tag")
    await seeding.add_tag(conn, tag_id=tid, child_id=s.child_id)
    return tid


async def fresh_guardian(conn: asyncpg.Connection, _: City, s: Side) -> int:
    gid = await seeding.add_guardian(
        conn, name="Spare", phone=None, channels=("websocket",), school_id=s.school_id
    )
    await seeding.link_guardian(conn, child_id=s.child_id, guardian_id=gid, priority=5)
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
    # a list's filter naming the side's objects: "own" and "other" ask for different things
    query: Callable[[Side], dict[str, Any]] | None = None

    def request(self, city: City, side: Side, target: Any) -> tuple[str, Any]:
        """The path (with its query) and the body of this endpoint's request about one side."""
        path = self.path.format(target) if target is not None else self.path
        if self.query is not None:
            path += "?" + "&".join(f"{k}={v}" for k, v in self.query(side).items())
        return path, None if self.body is None else self.body(city, side)

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
    # Web Push: the service's public key is anyone's; a guardian's subscriptions are their own (there
    # is no other side to reach: each side's request is about the caller's own browsers)
    Endpoint("GET", "/api/v1/push/key", PUBLIC),
    Endpoint("GET", "/api/v1/me/push-subscriptions", roles(guardian=200)),
    Endpoint(
        "POST",
        "/api/v1/me/push-subscriptions",
        roles(guardian=201),
        body=lambda c, s: subscription_at(f"https://fcm.googleapis.com/fcm/send/{_uid('browser')}"),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/me/push-subscriptions",
        roles(guardian=404),
        query=lambda s: {"endpoint": f"https://fcm.googleapis.com/fcm/send/none-{s.school_id}"},
    ),
    # tokens
    Endpoint("GET", "/api/v1/tokens", roles(admin=200, school=200, guardian=200)),
    # a guardian's token is never a school's to issue (it would read the guardian's children at every
    # school): staff send an enrolment link, which only the guardian redeems (test_guardian_ownership.py)
    Endpoint(
        "POST",
        "/api/v1/tokens",
        roles(admin=201, school=(403, 422)),
        body=lambda c, s: {"role": "guardian", "guardian_id": s.guardian_id},
    ),
    Endpoint(
        "POST",
        "/api/v1/guardians/{}/enrolment",
        roles(admin=201, school=(201, 404)),
        target=fresh_guardian,
    ),
    # redeeming takes no bearer token (the code is the credential): an unknown code is 404 for anyone
    Endpoint(
        "POST",
        "/api/v1/enrolment",
        _all(404),
        body=lambda c, s: {"code": "not-a-code"},
    ),
    Endpoint(
        "GET",
        "/api/v1/audit/tokens",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"guardian_id": s.guardian_id},
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
    Endpoint(
        "GET",
        "/api/v1/routes",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"school_id": s.school_id},
    ),
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
    Endpoint(
        "GET", "/api/v1/readers", roles(admin=200, school=200), query=lambda s: {"school_id": s.school_id}
    ),
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
    Endpoint(
        "GET",
        "/api/v1/children",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"school_id": s.school_id, "route_id": s.route_id},
    ),
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
    Endpoint(
        "GET",
        "/api/v1/live",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"school_id": s.school_id},
    ),
    Endpoint(
        "GET",
        "/api/v1/audit/position-reads",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"child_id": s.child_id},
    ),
    # tags
    Endpoint(
        "GET",
        "/api/v1/tags",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"child_id": s.child_id},
    ),
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
    Endpoint(
        "GET",
        "/api/v1/guardians",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"child_id": s.child_id},
    ),
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
    # the side's guardian has signed in (the city gives them a token): their record is theirs now, no
    # school's (while a guardian is a school's alone, its staff keep it up: test_guardian_ownership.py)
    Endpoint(
        "PATCH",
        "/api/v1/guardians/{}",
        roles(admin=200, school=(403, 404), guardian=(200, 404)),
        target=guardian,
        body=lambda c, s: {"language": "ko"},
    ),
    Endpoint("DELETE", "/api/v1/guardians/{}", roles(admin=204, school=(204, 404)), target=fresh_guardian),
    # alerts
    Endpoint(
        "GET",
        "/api/v1/alerts",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"child_id": s.child_id},
    ),
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
    Endpoint(
        "GET",
        "/api/v1/export",
        roles(admin=200, school=200, guardian=200),
        query=lambda s: {"kind": "route", "school_id": s.school_id},
    ),
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


async def city_with_everything(api: Api) -> City:
    """The city, a row of each side's in every table (furnish), and the positions of both children read
    once by the city's administrator: the audit log has entries of both."""
    city = await build_city(api.pool)
    await furnish(api.pool, city)
    for s in (city.a, city.b):
        assert (
            await api.http.get(f"/api/v1/children/{s.child_id}/track", headers=bearer(city.admin))
        ).status_code == 200
    return city


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
async def test_every_role_on_own_and_other(api: Api, endpoint: Endpoint) -> None:
    city = await city_with_everything(api)
    failures = await walk_roles(api, city, endpoint)
    assert not failures, "\n".join(failures)


async def walk_roles(api: Api, city: City, endpoint: Endpoint) -> list[str]:
    """Every role of side A on A's and on B's resource through one endpoint: what went otherwise than
    the endpoint's expectations say (also tests/integration/test_family_shapes.py walks it, for a
    child who moved school: the old school's callers with the child as B's, the new school's with it
    as their own)."""
    failures = []
    for role in ROLES:
        who = bearer(token_of(city, role))
        for which, side in (("own", city.a), ("other", city.b)):
            expected = endpoint.expect[role][0 if which == "own" else 1]
            async with api.pool.acquire() as conn:
                target = await endpoint.target(conn, city, side) if endpoint.target else None
            path, body = endpoint.request(city, side, target)
            # taken around the refused requests only: an allowed staff read of a position writes the
            # audit log, and an allowed write writes what it is for
            before = await table_digests(api.pool)
            r = await api.http.request(endpoint.method, path, headers=who, json=body)
            if r.status_code != expected:
                failures.append(f"{role} on {which}: {r.status_code} (expected {expected}): {r.text[:200]}")
                continue
            if expected < 400:
                continue
            if changed := changed_tables(before, await table_digests(api.pool)):
                failures.append(f"{role} on {which}: refused with {expected} but {changed} changed")
            if expected not in (404, 422):
                continue
            # the same answer as for the same request about things that do not exist at all: the path's
            # target and every id in the body (or the query) swapped for one that nobody has
            missing = None if target is None else MISSING_KEY if isinstance(target, str) else MISSING_ID
            ghost = endpoint.request(city, ghost_of(side), missing)
            before = await table_digests(api.pool)
            r2 = await api.http.request(endpoint.method, ghost[0], headers=who, json=ghost[1])
            if not alike(r, r2, swaps_between((path, body), ghost)):
                failures.append(
                    f"{role} on {which}: {expected} differs from a missing id's: {r.text} / {r2.text}"
                )
            if changed := changed_tables(before, await table_digests(api.pool)):
                failures.append(f"{role} on {which}: a missing id's {r2.status_code} but {changed} changed")
    return failures


@dataclass(frozen=True)
class Reference:
    """A request of school A's staff about A's own resource that names, in its body or its query, an
    object of the side it is built for: of A it is allowed (`allowed`), of B it is 422 word for word as
    for an object that does not exist (the matrix's bodies name the side of the resource they act on;
    these name the other school's object while acting on one's own)."""

    method: str
    path: Callable[[City, Side], str]
    body: Callable[[City, Side], Any] | None
    allowed: int

    def request(self, city: City, side: Side) -> tuple[str, Any]:
        return self.path(city, side), None if self.body is None else self.body(city, side)


def _route_feature_of_a(city: City, **props: Any) -> dict[str, Any]:
    dx = _near(city.a)
    return _feature(line((dx - 250, 40), (dx, 0)), name="Imported", corridor_m=20, **props)


REFERENCES = {
    "a device token for their tag": Reference(
        "POST", lambda c, s: "/api/v1/tokens", lambda c, s: {"role": "device", "tag_id": s.tag}, 201
    ),
    "a staff token for their school": Reference(
        "POST", lambda c, s: "/api/v1/tokens", lambda c, s: {"role": "school", "school_id": s.school_id}, 201
    ),
    "a new child on their route": Reference(
        "POST",
        lambda c, s: "/api/v1/children",
        lambda c, s: {"name": "New", "school_id": c.a.school_id, "route_id": s.route_id},
        201,
    ),
    "a new child with their guardian": Reference(
        "POST",
        lambda c, s: "/api/v1/children",
        lambda c, s: {
            "name": "New",
            "school_id": c.a.school_id,
            "guardians": [{"guardian_id": s.guardian_id}],
        },
        201,
    ),
    "one's child onto their route": Reference(
        "PATCH", lambda c, s: f"/api/v1/children/{c.a.child_id}", lambda c, s: {"route_id": s.route_id}, 200
    ),
    "one's child into their school": Reference(
        "PATCH", lambda c, s: f"/api/v1/children/{c.a.child_id}", lambda c, s: {"school_id": s.school_id}, 200
    ),
    "their guardian for one's child (PATCH)": Reference(
        "PATCH",
        lambda c, s: f"/api/v1/children/{c.a.child_id}",
        lambda c, s: {"guardians": [{"guardian_id": s.guardian_id, "priority": 1}]},
        200,
    ),
    "their guardian for one's child (PUT)": Reference(
        "PUT",
        lambda c, s: f"/api/v1/children/{c.a.child_id}/guardians",
        lambda c, s: [{"guardian_id": s.guardian_id, "priority": 1}],
        200,
    ),
    "one's tag to their child": Reference(
        "PATCH", lambda c, s: f"/api/v1/tags/{c.a.tag}", lambda c, s: {"child_id": s.child_id}, 200
    ),
    "a new guardian of their school": Reference(
        "POST",
        lambda c, s: "/api/v1/guardians",
        lambda c, s: {"name": "Aunt", "phone": "+821033334444", "school_id": s.school_id},
        201,
    ),
    "one's guardian into their school": Reference(
        "PATCH",
        lambda c, s: f"/api/v1/guardians/{c.a.guardian_id}",
        lambda c, s: {"school_id": s.school_id},
        200,
    ),
    "one's route to their school": Reference(
        "PATCH",
        lambda c, s: f"/api/v1/routes/{c.a.route_id}",
        lambda c, s: {"properties": {"school_id": s.school_id}},
        200,
    ),
    "one's reader to their school": Reference(
        "PATCH",
        lambda c, s: f"/api/v1/readers/{c.a.reader}",
        lambda c, s: {"properties": {"school_id": s.school_id}},
        200,
    ),
    "an import updating their route": Reference(
        "POST",
        lambda c, s: "/api/v1/import",
        lambda c, s: {"type": "FeatureCollection", "features": [_route_feature_of_a(c) | {"id": s.route_id}]},
        200,
    ),
    "an import for their school (query)": Reference(
        "POST",
        lambda c, s: f"/api/v1/import?school_id={s.school_id}",
        lambda c, s: {"type": "FeatureCollection", "features": [_route_feature_of_a(c)]},
        200,
    ),
}


@pytest.mark.parametrize("case", REFERENCES)
async def test_naming_the_other_schools_object_is_422_as_if_it_did_not_exist(api: Api, case: str) -> None:
    ref = REFERENCES[case]
    city = await city_with_everything(api)
    staff = bearer(city.a.staff)
    theirs, ghost = ref.request(city, city.b), ref.request(city, ghost_of(city.b))
    before = await table_digests(api.pool)
    r = await api.http.request(ref.method, theirs[0], headers=staff, json=theirs[1])
    r2 = await api.http.request(ref.method, ghost[0], headers=staff, json=ghost[1])
    assert changed_tables(before, await table_digests(api.pool)) == []
    assert r.status_code == 422, r.text
    assert alike(r, r2, swaps_between(theirs, ghost)), (r.text, r2.text)
    # the same request naming one's own object is allowed: it is the reference that is refused
    mine = ref.request(city, city.a)
    r3 = await api.http.request(ref.method, mine[0], headers=staff, json=mine[1])
    assert r3.status_code == ref.allowed, r3.text


@dataclass(frozen=True)
class Listed:
    """A list, and a filter of it that names one side's objects."""

    path: str
    item: Callable[[Side], Any]  # the side's object the list holds
    key: Callable[[dict[str, Any]], Any]  # how an item of the list names it
    query: Callable[[Side], dict[str, Any]] | None = None  # None: the list has no such filter
    fixed: dict[str, Any] = field(default_factory=dict)  # the rest of the query
    roles: tuple[str, ...] = ("admin", "school", "guardian")


def _by_id(i: dict[str, Any]) -> Any:
    return i["id"]


def _by_child(i: dict[str, Any]) -> Any:
    return i["child_id"]


LISTS = [
    Listed("/api/v1/schools", lambda s: s.school_id, _by_id),
    Listed("/api/v1/routes", lambda s: s.route_id, _by_id, lambda s: {"school_id": s.school_id}),
    Listed(
        "/api/v1/readers",
        lambda s: s.reader,
        _by_id,
        lambda s: {"school_id": s.school_id},
        roles=("admin", "school"),
    ),
    Listed("/api/v1/children", lambda s: s.child_id, _by_id, lambda s: {"school_id": s.school_id}),
    Listed("/api/v1/children", lambda s: s.child_id, _by_id, lambda s: {"route_id": s.route_id}),
    Listed("/api/v1/tags", lambda s: s.tag, _by_id, lambda s: {"child_id": s.child_id}),
    Listed("/api/v1/guardians", lambda s: s.guardian_id, _by_id, lambda s: {"child_id": s.child_id}),
    Listed("/api/v1/alerts", lambda s: s.alert_id, _by_id, lambda s: {"child_id": s.child_id}),
    # an entry of the audit log names the child whose positions were read (its own id is the entry's)
    Listed(
        "/api/v1/audit/position-reads", lambda s: s.child_id, _by_child, lambda s: {"child_id": s.child_id}
    ),
    Listed("/api/v1/live", lambda s: s.child_id, _by_child, lambda s: {"school_id": s.school_id}),
    # the token-issue log: a school's staff tokens are the school's; a guardian's tokens are theirs
    Listed(
        "/api/v1/audit/tokens", lambda s: s.school_id, lambda i: i["school_id"], roles=("admin", "school")
    ),
    Listed(
        "/api/v1/audit/tokens",
        lambda s: s.guardian_id,
        lambda i: i["guardian_id"],
        lambda s: {"guardian_id": s.guardian_id},
        roles=("admin", "guardian"),
    ),
    Listed(
        "/api/v1/export",
        lambda s: s.route_id,
        _by_id,
        lambda s: {"school_id": s.school_id},
        fixed={"kind": "route"},
    ),
]


@pytest.mark.parametrize("role", ["admin", "school", "guardian"])
async def test_lists_hold_what_is_the_callers_and_nothing_else(api: Api, role: str) -> None:
    """Unfiltered, and filtered for the caller's own school's objects and for the other's: the first two
    hold the caller's and nothing else; the third holds nothing (not even a count) but for the city's
    administrator, for whom it holds the other's and not the caller's (so the filter does filter)."""
    city = await build_city(api.pool)
    for s in (city.a, city.b):
        await api.http.get(f"/api/v1/children/{s.child_id}/position", headers=bearer(city.admin))
    who = bearer(token_of(city, role))
    a, b = city.a, city.b
    failures = []
    for listed in (x for x in LISTS if role in x.roles):
        mine, theirs = listed.item(a), listed.item(b)
        asks: list[tuple[str, dict[str, Any], bool]] = [("all", {}, role == "admin")]
        if listed.query is not None:
            asks += [("own", listed.query(a), False), ("other", listed.query(b), True)]
        for which, query, holds_theirs in asks:
            r = await api.http.get(listed.path, params=listed.fixed | query, headers=who)
            if r.status_code != 200:
                failures.append(f"{listed.path} {query}: {r.status_code} {r.text[:200]}")
                continue
            page = r.json()
            items = page["features"] if "features" in page else page["items"]
            keys = [listed.key(i) for i in items]
            want = {mine: which != "other", theirs: holds_theirs}
            if which == "other" and role != "admin":
                ok = items == [] and page.get("total", 0) == 0
            else:
                ok = all((k in keys) == held for k, held in want.items())
            if ok and "total" in page and page["total"] != len(items):
                ok = False
            if not ok:
                failures.append(f"{role}: {listed.path} {which} {query}: {keys}, total {page.get('total')}")
    tokens = (await api.http.get("/api/v1/tokens", headers=who)).json()["items"]
    if role == "school":
        assert {t["role"] for t in tokens} == {"school", "guardian", "device"}
        assert all(
            t["school_id"] in (None, a.school_id) and t["guardian_id"] in (None, a.guardian_id)
            for t in tokens
        )
    elif role == "guardian":
        assert {(t["role"], t["guardian_id"]) for t in tokens} == {("guardian", a.guardian_id)}
    assert not failures, "\n".join(failures)


async def test_no_token_or_a_bad_one_is_401_everywhere(api: Api) -> None:
    city = await build_city(api.pool)
    async with api.pool.acquire() as conn:
        expired = (await create_token(conn, role="admin", ttl=timedelta(seconds=-1))).token
    for e in ENDPOINTS:
        if e.expect is PUBLIC or e.path.startswith("/ingest/") or e.path == "/api/v1/enrolment":
            continue  # device ingest: Basic or Bearer with the tag's own secret (test_device_ingest.py);
            # an enrolment code is its own credential
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
