"""A guardian belongs to the family, not to a school (issue 19, point 1), against a real PostgreSQL.

The family of the issue: two children at two schools, one guardian whom school A registered. School B's
staff see the guardian (a guardian of their child) but cannot get a sign-in for them, change where their
alerts go, or delete them, and see nothing of school A's child by any endpoint; the guardian, signed in
through an enrolment link that only they redeem, sees both children. A guardian who is one school's
alone (every child there, never signed in) is that school's to keep up to date and to invite. Every
token issued, by anyone, is in the token-issue log.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import table_digests
from tests.integration.test_api_support import Api, City, bearer, build_city, running_api
from tracker.store import seeding


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


async def _guardian(
    api: Api, city: City, *, registered_by: str | None, children_at: tuple[str, ...], signed_in: bool = False
) -> int:
    """A guardian registered by school "a", "b" or the city (None), linked to that side's child of each
    school in ``children_at``, with a guardian token when ``signed_in``."""
    sides = {"a": city.a, "b": city.b}
    async with api.pool.acquire() as conn:
        gid = await seeding.add_guardian(
            conn,
            name="Shared Parent",
            phone="+821012340000",
            language="en",
            school_id=None if registered_by is None else sides[registered_by].school_id,
        )
        for side in children_at:
            await seeding.link_guardian(conn, child_id=sides[side].child_id, guardian_id=gid, priority=2)
        if signed_in:
            await conn.execute(
                "INSERT INTO api_tokens (token_hash, role, guardian_id) VALUES ($1, 'guardian', $2)",
                hashlib.sha256(f"token of {gid}".encode()).digest(),
                gid,
            )
    return gid


async def _refused(api: Api, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
    """A request that must be refused and must leave every table as it was."""
    before = await table_digests(api.pool)
    r = await api.http.request(method, path, headers=bearer(token), json=body)
    assert r.status_code >= 400, (method, path, r.status_code, r.text)
    assert await table_digests(api.pool) == before, (method, path, "refused, yet something changed")
    return r


async def _enrol(api: Api, token: str, guardian_id: int) -> dict[str, Any]:
    r = await api.http.post(f"/api/v1/guardians/{guardian_id}/enrolment", headers=bearer(token))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _redeem(api: Api, code: str) -> httpx.Response:
    return await api.http.post("/api/v1/enrolment", json={"code": code})  # no bearer token: the code is it


# --- the family ----------------------------------------------------------------------------------
async def test_siblings_at_two_schools_school_b_cannot_reach_school_a_through_their_shared_guardian(
    api: Api,
) -> None:
    city = await build_city(api.pool)
    a, b = city.a, city.b
    shared = await _guardian(api, city, registered_by="a", children_at=("a", "b"))

    # B's staff see the guardian of their child, and of the guardian's children only their own
    seen = (await api.http.get(f"/api/v1/guardians/{shared}", headers=bearer(b.staff))).json()
    assert seen["children"] == [{"child_id": b.child_id, "priority": 2}]

    # ... but cannot issue them a token, send them an enrolment link, redirect their alerts, or delete them
    r = await _refused(
        api, "POST", "/api/v1/tokens", b.staff, {"role": "guardian", "guardian_id": shared, "label": "x"}
    )
    assert r.status_code == 403 and f"/api/v1/guardians/{shared}/enrolment" in r.json()["detail"]
    r = await _refused(api, "POST", f"/api/v1/guardians/{shared}/enrolment", b.staff)
    assert r.status_code == 403 and "also has children at another school" in r.json()["detail"]
    assert "city's administrator" in r.json()["detail"]
    for change in (
        {"phone": "+821099990000"},
        {"channels": ["websocket"]},
        {"name": "X"},
        {"language": "ko"},
    ):
        r = await _refused(api, "PATCH", f"/api/v1/guardians/{shared}", b.staff, change)
        assert r.status_code == 403, r.text
        assert r.json()["detail"] == (
            f"guardian {shared} also has children at another school: a school's staff cannot change their"
            " name, phone, language or channels; the guardian changes them, or the city's administrator"
        )
    r = await _refused(api, "DELETE", f"/api/v1/guardians/{shared}", b.staff)
    assert r.status_code == 403 and "unlink them from your children" in r.json()["detail"]
    # nor can A's staff, who registered them: the guardian is no longer A's alone
    r = await _refused(api, "PATCH", f"/api/v1/guardians/{shared}", a.staff, {"phone": "+821099990000"})
    assert r.status_code == 403
    r = await _refused(api, "POST", f"/api/v1/guardians/{shared}/enrolment", a.staff)
    assert r.status_code == 403
    r = await _refused(api, "DELETE", f"/api/v1/guardians/{shared}", a.staff)
    assert r.status_code == 403 and "also has children at another school" in r.json()["detail"]

    # B's staff see nothing of A's child, by any endpoint
    for path in ("", "/position", "/track", "/status"):
        r = await _refused(api, "GET", f"/api/v1/children/{a.child_id}{path}", b.staff)
        assert r.status_code == 404, (path, r.text)
    listed = (await api.http.get("/api/v1/children", headers=bearer(b.staff))).json()["items"]
    assert [c["id"] for c in listed] == [b.child_id]
    live = (await api.http.get("/api/v1/live", headers=bearer(b.staff))).json()
    assert [c["child_id"] for c in live["items"]] == [b.child_id]

    # the city's administrator sends the enrolment link; only the guardian, redeeming it, holds a token
    link = await _enrol(api, city.admin, shared)
    assert link["url"].endswith(f"/#enrol={link['code']}") and link["guardian_id"] == shared
    signed_in = await _redeem(api, link["code"])
    assert signed_in.status_code == 201, signed_in.text
    parent = bearer(signed_in.json()["token"])
    mine = (await api.http.get("/api/v1/children", headers=parent)).json()["items"]
    assert sorted(c["id"] for c in mine) == sorted([a.child_id, b.child_id])
    for child in (a.child_id, b.child_id):
        assert (await api.http.get(f"/api/v1/children/{child}/position", headers=parent)).status_code == 200

    # the guardian's sign-in is theirs: B's staff neither list nor revoke it, and no school re-enrols them
    token_id = signed_in.json()["token_id"]
    for staff in (a.staff, b.staff):
        listed_tokens = (await api.http.get("/api/v1/tokens", headers=bearer(staff))).json()["items"]
        assert token_id not in {t["id"] for t in listed_tokens}
        r = await _refused(api, "DELETE", f"/api/v1/tokens/{token_id}", staff)
        assert r.status_code == 404
    r = await _refused(api, "POST", f"/api/v1/guardians/{shared}/enrolment", city.admin)
    assert r.status_code == 409 and "signed in already" in r.json()["detail"]

    # the guardian keeps their own record up to date
    r = await api.http.patch(f"/api/v1/guardians/{shared}", headers=parent, json={"phone": "+821077770000"})
    assert r.status_code == 200 and r.json()["phone"] == "+821077770000"

    # no staff read of A's child by B's staff anywhere in the position-read audit
    assert (
        await api.pool.fetchval(
            "SELECT count(*) FROM position_reads WHERE child_id = $1 AND school_id = $2",
            a.child_id,
            b.school_id,
        )
        == 0
    )

    # B still owns its link rows: unlinking the guardian from B's child is B's to do, and takes B's
    # child (and only B's) from what the guardian sees
    r = await api.http.put(
        f"/api/v1/children/{b.child_id}/guardians",
        headers=bearer(b.staff),
        json=[{"guardian_id": b.guardian_id, "priority": 1}],
    )
    assert r.status_code == 200, r.text
    mine = (await api.http.get("/api/v1/children", headers=parent)).json()["items"]
    assert [c["id"] for c in mine] == [a.child_id]


# --- what a school's staff may do with a guardian, by the guardian's standing ------------------------------
@dataclass(frozen=True)
class Standing:
    registered_by: str | None  # "a", "b" or the city (None)
    children_at: tuple[str, ...]
    signed_in: bool
    # what A's staff get: changing contact details, sending an enrolment link, deleting
    patch: int
    enrol: int
    delete: int
    says: str = ""  # in the 403's detail


STANDINGS = {
    "registered by A, children only at A, never signed in: A's alone": Standing(
        "a", ("a",), False, 200, 201, 204
    ),
    "registered by the city, children only at A: A's alone, but not A's to delete": Standing(
        None, ("a",), False, 200, 201, 403, "registered by another school or the city"
    ),
    "registered by B, now with a child only at A: A's alone, but not A's to delete": Standing(
        "b", ("a",), False, 200, 201, 403, "registered by another school or the city"
    ),
    "registered by A, also a child at B": Standing(
        "a", ("a", "b"), False, 403, 403, 403, "also has children at another school"
    ),
    "registered by A, children only at A, has signed in": Standing(
        "a", ("a",), True, 403, 409, 403, "has signed in (their record and sign-in are theirs)"
    ),
}


@pytest.mark.parametrize("case", STANDINGS)
async def test_a_schools_staff_keep_up_a_guardian_only_while_the_guardian_is_theirs_alone(
    api: Api, case: str
) -> None:
    s = STANDINGS[case]
    city = await build_city(api.pool)
    gid = await _guardian(
        api, city, registered_by=s.registered_by, children_at=s.children_at, signed_in=s.signed_in
    )
    staff = city.a.staff
    answers = []
    for method, path, body in (
        ("PATCH", f"/api/v1/guardians/{gid}", {"phone": "+821055556666", "channels": ["sms"]}),
        ("POST", f"/api/v1/guardians/{gid}/enrolment", None),
        ("DELETE", f"/api/v1/guardians/{gid}", None),
    ):
        before = await table_digests(api.pool)
        r = await api.http.request(method, path, headers=bearer(staff), json=body)
        answers.append(r.status_code)
        if r.status_code >= 400:
            assert await table_digests(api.pool) == before, (method, r.text)
            if r.status_code == 403:
                assert s.says in r.json()["detail"], r.text
    assert answers == [s.patch, s.enrol, s.delete]
    if s.delete != 204:  # the city's administrator may always change the record
        r = await api.http.patch(
            f"/api/v1/guardians/{gid}", headers=bearer(city.admin), json={"language": "ko"}
        )
        assert r.status_code == 200, r.text


async def test_staff_invite_their_own_guardian_who_then_owns_their_sign_in(api: Api) -> None:
    city = await build_city(api.pool)
    staff = bearer(city.a.staff)
    gid = await _guardian(api, city, registered_by="a", children_at=("a",))
    # a guardian's token is never the staff's to issue, not even for their own guardian
    r = await _refused(api, "POST", "/api/v1/tokens", city.a.staff, {"role": "guardian", "guardian_id": gid})
    assert r.status_code == 403 and "enrolment link" in r.json()["detail"]

    link = await _enrol(api, city.a.staff, gid)
    expires = datetime.fromisoformat(link["expires_at"])
    assert timedelta(hours=71) < expires - datetime.now(UTC) <= timedelta(hours=72)
    stored = await api.pool.fetchrow("SELECT * FROM guardian_enrolments WHERE id = $1", link["id"])
    assert bytes(stored["code_hash"]) == hashlib.sha256(link["code"].encode()).digest()
    assert link["code"] not in str(dict(stored))  # only the hash is kept
    assert stored["created_by_role"] == "school" and stored["created_by_school_id"] == city.a.school_id

    r = await _redeem(api, link["code"])
    assert r.status_code == 201, r.text
    parent, token_id = bearer(r.json()["token"]), r.json()["token_id"]
    me = (await api.http.get("/api/v1/me", headers=parent)).json()
    assert me["role"] == "guardian" and me["guardian_id"] == gid
    redeemed = await api.pool.fetchrow(
        "SELECT redeemed_at, token_id FROM guardian_enrolments WHERE id = $1", link["id"]
    )
    assert redeemed["redeemed_at"] is not None and redeemed["token_id"] == token_id

    # signed in, the record is the guardian's: the school no longer changes it
    r = await _refused(api, "PATCH", f"/api/v1/guardians/{gid}", city.a.staff, {"phone": "+821099990000"})
    assert r.status_code == 403 and "has signed in" in r.json()["detail"]
    r = await api.http.patch(f"/api/v1/guardians/{gid}", headers=parent, json={"phone": "+821099990000"})
    assert r.status_code == 200
    # every child of theirs is at A: A's staff may still revoke the token (a lost phone reported to the
    # school), and the school's own log shows the sign-in its link gave
    listed = (await api.http.get("/api/v1/tokens", headers=staff)).json()["items"]
    assert token_id in {t["id"] for t in listed}
    log = (await api.http.get(f"/api/v1/audit/tokens?guardian_id={gid}", headers=staff)).json()
    assert [(e["token_id"], e["issued_via"], e["enrolment_id"]) for e in log["items"]] == [
        (token_id, "enrolment", link["id"])
    ]
    assert (await api.http.delete(f"/api/v1/tokens/{token_id}", headers=staff)).status_code == 204
    assert (await api.http.get("/api/v1/me", headers=parent)).status_code == 401


async def test_an_enrolment_code_signs_in_once_and_says_why_it_no_longer_does(api: Api) -> None:
    city = await build_city(api.pool)
    before = await table_digests(api.pool)
    r = await _redeem(api, "no-such-code")
    assert r.status_code == 404 and r.json()["detail"].startswith("no such enrolment code")
    assert await table_digests(api.pool) == before

    used = await _guardian(api, city, registered_by="a", children_at=("a",))
    link = await _enrol(api, city.a.staff, used)
    assert (await _redeem(api, link["code"])).status_code == 201
    again = await _redeem(api, link["code"])
    assert again.status_code == 410 and "used already" in again.json()["detail"]

    # a second link made before the first was redeemed: the guardian has signed in since
    twice = await _guardian(api, city, registered_by="a", children_at=("a",))
    first, second = await _enrol(api, city.a.staff, twice), await _enrol(api, city.a.staff, twice)
    assert (await _redeem(api, first["code"])).status_code == 201
    r = await _redeem(api, second["code"])
    assert r.status_code == 410 and "signed in already" in r.json()["detail"]

    late = await _guardian(api, city, registered_by="a", children_at=("a",))
    link = await _enrol(api, city.a.staff, late)
    await api.pool.execute(
        "UPDATE guardian_enrolments SET expires_at = now() - interval '1 second' WHERE id = $1", link["id"]
    )
    r = await _redeem(api, link["code"])
    assert r.status_code == 410 and "expired" in r.json()["detail"]

    # a link that A's staff made while the guardian was A's alone; then the guardian gained a child at B
    moved = await _guardian(api, city, registered_by="a", children_at=("a",))
    link = await _enrol(api, city.a.staff, moved)
    async with api.pool.acquire() as conn:
        await seeding.link_guardian(conn, child_id=city.b.child_id, guardian_id=moved)
    before = await table_digests(api.pool)
    r = await _redeem(api, link["code"])
    assert r.status_code == 410 and "another school" in r.json()["detail"]
    assert await table_digests(api.pool) == before
    # the administrator's link for the same guardian works
    assert (await _redeem(api, (await _enrol(api, city.admin, moved))["code"])).status_code == 201

    gone = await _guardian(api, city, registered_by="a", children_at=("a",))
    link = await _enrol(api, city.a.staff, gone)
    assert (
        await api.http.delete(f"/api/v1/guardians/{gone}", headers=bearer(city.a.staff))
    ).status_code == 204
    r = await _redeem(api, link["code"])
    assert r.status_code == 410 and "no longer registered" in r.json()["detail"]


async def test_every_token_issued_by_anyone_is_in_the_log(api: Api, database_url: str) -> None:
    from tracker.cli import _token

    city = await build_city(api.pool)
    admin, staff = bearer(city.admin), bearer(city.a.staff)
    by_admin = await api.http.post(
        "/api/v1/tokens", headers=admin, json={"role": "guardian", "guardian_id": city.b.guardian_id}
    )
    by_staff = await api.http.post(
        "/api/v1/tokens", headers=staff, json={"role": "school", "label": "teacher"}
    )
    tag = await api.http.post(
        "/api/v1/tags", headers=staff, json={"id": "watch-log", "child_id": city.a.child_id}
    )
    assert {by_admin.status_code, by_staff.status_code, tag.status_code} == {201}
    await _token(database_url, "admin", None, None, 1.0)
    link = await _enrol(api, city.admin, await _guardian(api, city, registered_by=None, children_at=("b",)))
    enrolled = (await _redeem(api, link["code"])).json()

    # no token without its entry
    assert (
        await api.pool.fetchval(
            "SELECT count(*) FROM api_tokens k"
            " WHERE NOT EXISTS (SELECT 1 FROM token_issues l WHERE l.token_id = k.id)"
        )
        == 0
    )
    log = {
        e["token_id"]: e
        for e in (await api.http.get("/api/v1/audit/tokens?limit=1000", headers=admin)).json()["items"]
    }
    admin_token_id = await api.pool.fetchval("SELECT id FROM api_tokens WHERE label = 'city'")
    assert log[by_admin.json()["id"]] | {"at": None} == log[by_admin.json()["id"]] | {
        "at": None,
        "role": "guardian",
        "guardian_id": city.b.guardian_id,
        "issued_via": "api",
        "issuer_token_id": admin_token_id,
        "issuer_role": "admin",
        "issuer_school_id": None,
    }
    assert log[by_staff.json()["id"]]["issuer_school_id"] == city.a.school_id
    device = log[tag.json()["credentials"]["device_token_id"]]
    assert (device["role"], device["tag_id"], device["issued_via"], device["issuer_school_id"]) == (
        "device",
        "watch-log",
        "api",
        city.a.school_id,
    )
    assert [e["issued_via"] for e in log.values() if e["label"] == "cli"] == ["cli"]
    assert (log[enrolled["token_id"]]["issued_via"], log[enrolled["token_id"]]["enrolment_id"]) == (
        "enrolment",
        link["id"],
    )

    # school staff read their school's entries, a guardian those in their name
    ours = (await api.http.get("/api/v1/audit/tokens?limit=1000", headers=staff)).json()["items"]
    assert {by_staff.json()["id"], device["token_id"]} <= {e["token_id"] for e in ours}
    assert by_admin.json()["id"] not in {e["token_id"] for e in ours} and enrolled["token_id"] not in {
        e["token_id"] for e in ours
    }
    assert all(
        e["issuer_school_id"] == city.a.school_id
        or e["school_id"] == city.a.school_id
        or e["tag_id"] in (city.a.tag, "watch-log")
        for e in ours
    )
    theirs = (await api.http.get("/api/v1/audit/tokens", headers=bearer(city.b.guardian))).json()["items"]
    assert {e["guardian_id"] for e in theirs} == {city.b.guardian_id} and by_admin.json()["id"] in {
        e["token_id"] for e in theirs
    }


async def test_a_guardians_list_filtered_by_another_schools_child_finds_nothing(api: Api) -> None:
    """School A registered the shared parent, who is also the guardian of B's child: A sees the parent,
    but asking "the guardians of B's child" must not tell A that link (a filter naming a child the
    caller may not see finds nothing, as for a child that does not exist)."""
    city = await build_city(api.pool)
    shared = await _guardian(api, city, registered_by="a", children_at=("a", "b"))
    # (whose list, filtered by which side's child, the guardian ids found)
    scenario = [
        (city.a.staff, city.a.child_id, True),
        (city.a.staff, city.b.child_id, False),
        (city.b.staff, city.b.child_id, True),
        (city.b.staff, city.a.child_id, False),
        (city.admin, city.a.child_id, True),
        (city.admin, city.b.child_id, True),
    ]
    for token, child_id, finds_shared in scenario:
        r = await api.http.get(f"/api/v1/guardians?child_id={child_id}", headers=bearer(token))
        assert r.status_code == 200, r.text
        ids = [g["id"] for g in r.json()["items"]]
        assert (shared in ids) == finds_shared, (child_id, ids)
        if not finds_shared:
            assert r.json()["total"] == 0 and ids == [], (child_id, ids)
    missing = await api.http.get("/api/v1/guardians?child_id=999999999", headers=bearer(city.a.staff))
    assert (missing.status_code, missing.json()["total"]) == (200, 0)


# --- two guardians of one child ----------------------------------------------------------------------------
async def test_two_guardians_of_one_child_each_see_the_child_and_only_their_own_sign_in(api: Api) -> None:
    """Mother (priority 1) and father (priority 2) of A's child: each sees the child, its position, track
    and alerts, and may acknowledge its alert; neither sees, changes or signs out the other, and neither
    sees school B's child. (Read-only probes first, then the one write each may make.)"""
    city = await build_city(api.pool)
    mother, child = city.a.guardian_id, city.a.child_id
    async with api.pool.acquire() as conn:
        father = await seeding.add_guardian(
            conn, name="Father", phone="+821055550000", language="ko", school_id=city.a.school_id
        )
        await seeding.link_guardian(conn, child_id=child, guardian_id=father, priority=2)
    father_token = (await api.http.post(
        "/api/v1/tokens", headers=bearer(city.admin), json={"role": "guardian", "guardian_id": father}
    )).json()["token"]  # fmt: skip
    tokens = {"mother": city.a.guardian, "father": father_token}
    ids = {"mother": mother, "father": father}
    for me, other in (("mother", "father"), ("father", "mother")):
        token = tokens[me]
        # (request, status): the child is theirs; the other guardian and school B's child are not
        scenario: list[tuple[str, str, int]] = [
            ("GET", f"/api/v1/children/{child}", 200),
            ("GET", f"/api/v1/children/{child}/position", 200),
            ("GET", f"/api/v1/children/{child}/track", 200),
            ("GET", f"/api/v1/alerts/{city.a.alert_id}", 200),
            ("GET", f"/api/v1/guardians/{ids[me]}", 200),
            ("GET", f"/api/v1/guardians/{ids[other]}", 404),
            ("GET", f"/api/v1/children/{city.b.child_id}", 404),
            ("GET", f"/api/v1/alerts/{city.b.alert_id}", 404),
        ]
        for method, path, status in scenario:
            r = await api.http.request(method, path, headers=bearer(token))
            assert r.status_code == status, (me, method, path, r.text)
        listed = await api.http.get("/api/v1/guardians", headers=bearer(token))
        assert [g["id"] for g in listed.json()["items"]] == [ids[me]], me
        mine = await api.http.get("/api/v1/tokens", headers=bearer(token))
        assert {t["guardian_id"] for t in mine.json()["items"]} == {ids[me]}, me
        # the other's record and tokens: as if absent, and nothing changes
        await _refused(api, "PATCH", f"/api/v1/guardians/{ids[other]}", token, {"phone": "+821099999999"})
        their_tokens = await api.pool.fetch(
            "SELECT id FROM api_tokens WHERE guardian_id = $1 AND revoked_at IS NULL", ids[other]
        )
        for row in their_tokens:
            refused = await _refused(api, "DELETE", f"/api/v1/tokens/{row['id']}", token)
            assert refused.status_code == 404, refused.text
    # either may acknowledge the child's alert; the second keeps the first acknowledgement
    first = await api.http.post(f"/api/v1/alerts/{city.a.alert_id}/ack", headers=bearer(tokens["father"]))
    assert (first.status_code, first.json()["acknowledged_by"]) == (200, father), first.text
    again = await api.http.post(f"/api/v1/alerts/{city.a.alert_id}/ack", headers=bearer(tokens["mother"]))
    assert (again.status_code, again.json()["acknowledged_by"]) == (200, father), again.text
