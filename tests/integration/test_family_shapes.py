"""Family shapes of the access rules (issue 19): a child moving school mid-year, and a guardian removed
from a child, against a real PostgreSQL (and, for the guardian, a running service and a real websocket).

The rules (tracker/store/scope.py, "time-bounded visibility"; docs/design.md):

- A child moved by the city's administrator from school A to school B is B's from the start of the
  day of the move in B's time zone (``school_since``). From then on A's staff see nothing more of the
  child: not the child, its position, status, tags, nor an alert opened from then on; of the child's
  history A keeps what happened while the child was A's (the track of the days before, the alerts
  opened before), every staff read of it audited as any. B's staff see the child, and of its
  positions, status and alerts only what is from the move on. The family and the city see all of it.
- A guardian unlinked from a child (or deleted) sees nothing of the child from that moment: their
  REST reads are 404 as for a child that does not exist, what was still to be sent to them about the
  child is cancelled (with a history step saying why; the dispatcher sends nothing of it, the
  escalation ladder passes them by), their open websocket gets nothing more of the child, a new one
  catches up on the child's alerts no more, and their acknowledgement of the child's alert is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.helpers import GuardianSocket, lonlat, table_digests, wait_until
from tests.integration.test_access_matrix import (
    ENDPOINTS,
    LISTS,
    REFERENCES,
    Endpoint,
    alike,
    changed_tables,
    city_with_everything,
    furnish_side,
    ghost_of,
    swaps_between,
    walk_roles,
)
from tests.integration.test_api_support import Api, City, Side, bearer, build_city, running_api
from tracker.alerts.escalation import Escalation
from tracker.store import seeding
from tracker.store.alert_lifecycle import escalate_due, write_outbox
from tracker.store.tokens import issue_token

SEOUL = ZoneInfo("Asia/Seoul")
BEFORE, DAY_OF, AFTER = "day before", "day of", "day after"
CALLERS = ("old school", "new school", "guardian", "city")


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


# --- a child moving school ---------------------------------------------------------------------------------
@dataclass
class Move:
    """A child of school A moved by the city's administrator to school B (where a sibling is: the moved
    child's guardian is B's child's), with a fix and an open alert on each of three days."""

    city: City
    child_id: int
    tag: str
    since: datetime  # when the child became B's: the start of the day of the move there
    fixes: dict[datetime, str]  # fix time -> BEFORE / DAY_OF / AFTER
    alerts: dict[str, int]  # BEFORE / DAY_OF / AFTER -> alert id
    device: str  # the moved tag's device token

    def day(self, label: str) -> date:
        return (
            {
                BEFORE: self.since - timedelta(hours=12),
                DAY_OF: self.since,
                AFTER: self.since + timedelta(days=1),
            }[label]
            .astimezone(SEOUL)
            .date()
        )

    @property
    def side(self) -> Side:
        """The moved child as a side of school B: B's school, route, reader and staff, the child's own
        tag, guardian and device, and the alert opened after the move."""
        return dataclasses.replace(
            self.city.b,
            child_id=self.child_id,
            tag=self.tag,
            device=self.device,
            alert_id=self.alerts.get(DAY_OF, self.alerts[AFTER]),
        )


async def move_a_child(api: Api, city: City, *, with_history: bool = True) -> Move:
    async with api.pool.acquire() as conn:
        child = await seeding.add_child(
            conn, school_id=city.a.school_id, route_id=city.a.route_id, name="Jiho"
        )
        tag = "tag-jiho"
        await seeding.add_tag(conn, tag_id=tag, child_id=child)
        await seeding.link_guardian(conn, child_id=child, guardian_id=city.b.guardian_id)
        device = await issue_token(conn, role="device", tag_id=tag)
    r = await api.http.patch(
        f"/api/v1/children/{child}",
        headers=bearer(city.admin),
        json={"school_id": city.b.school_id, "route_id": city.b.route_id},
    )
    assert r.status_code == 200, r.text
    since = datetime.fromisoformat(r.json()["school_since"])
    offsets = {BEFORE: timedelta(hours=-12), DAY_OF: timedelta(hours=1), AFTER: timedelta(hours=25)}
    if not with_history:
        offsets = {AFTER: offsets[AFTER]}
    fixes, alerts = {}, {}
    lon, lat = lonlat(city.b.dx - 100, 3)
    async with api.pool.acquire() as conn:
        for label, offset in offsets.items():
            ts = since + offset
            fixes[ts] = label
            await conn.execute(
                "INSERT INTO positions (tag_id, ts, child_id, lon, lat, acc, batt, received_at)"
                " VALUES ($1, $2, $3, $4, $5, 9, 80, $2)",
                tag,
                ts,
                child,
                lon,
                lat,
            )
            kind = {BEFORE: "left_route", DAY_OF: "sos", AFTER: "signal_lost"}[label]
            alerts[label] = await conn.fetchval(
                "INSERT INTO alerts (child_id, kind, severity, opened_at, updated_at, last_lon, last_lat,"
                " last_acc, last_fix_ts) VALUES ($1, $2, 'warning', $3, $3, $4, $5, 9, $3) RETURNING id",
                child,
                kind,
                ts,
                lon,
                lat,
            )
    return Move(city, child, tag, since, fixes, alerts, device)


async def test_a_move_is_the_administrators_and_takes_a_route_of_the_new_school_or_none(api: Api) -> None:
    city = await build_city(api.pool)
    child, admin = city.a.child_id, bearer(city.admin)
    url = f"/api/v1/children/{child}"
    # the school the child is at cannot hand it over by itself, nor can the receiving school take it
    handing = await api.http.patch(url, headers=bearer(city.a.staff), json={"school_id": city.b.school_id})
    assert handing.status_code == 422 and "only the city's administrators" in handing.text
    taking = await api.http.patch(url, headers=bearer(city.b.staff), json={"school_id": city.b.school_id})
    assert taking.status_code == 404
    old_route = await api.http.patch(
        url, headers=admin, json={"school_id": city.b.school_id, "route_id": city.a.route_id}
    )
    assert old_route.status_code == 422
    assert old_route.json()["detail"][0]["loc"] == ["body", "route_id"]
    assert "belongs to school" in old_route.json()["detail"][0]["msg"]
    moved = await api.http.patch(url, headers=admin, json={"school_id": city.b.school_id})
    assert moved.status_code == 200, moved.text
    body = moved.json()
    start_of_today = datetime.combine(datetime.now(SEOUL).date(), datetime.min.time(), SEOUL)
    assert body["school_id"] == city.b.school_id and body["route_id"] is None  # A's route stays A's
    assert datetime.fromisoformat(body["school_since"]) == start_of_today
    # and back again on the same day: B's period is empty, A's new one starts where it ended
    back = await api.http.patch(
        url, headers=admin, json={"school_id": city.a.school_id, "route_id": city.a.route_id}
    )
    assert back.status_code == 200 and back.json()["route_id"] == city.a.route_id
    periods = await api.pool.fetch(
        "SELECT school_id, since, until FROM child_school_history WHERE child_id = $1 ORDER BY id", child
    )
    assert [(p["school_id"], p["since"], p["until"]) for p in periods] == [
        (city.a.school_id, None, start_of_today),
        (city.b.school_id, start_of_today, start_of_today),
    ]


def _fixes(move: Move, features: list[dict[str, Any]]) -> list[str]:
    return [move.fixes[datetime.fromisoformat(f["properties"]["ts"])] for f in features]


def _alerts(move: Move, items: list[dict[str, Any]]) -> list[str]:
    names = {v: k for k, v in move.alerts.items()}
    return sorted(names[i["id"]] for i in items if i["id"] in names)


async def _observe(api: Api, move: Move, token: str, request: str) -> Any:
    """What a caller gets of the moved child through one request: a status code when it is not 200,
    else what the answer holds of the child (which fixes, which alerts, ...)."""
    who, child = bearer(token), move.child_id
    if request.startswith("track, "):
        day = move.day(request.removeprefix("track, "))
        r = await api.http.get(f"/api/v1/children/{child}/track", params={"date": str(day)}, headers=who)
        return r.status_code if r.status_code != 200 else _fixes(move, r.json()["features"])
    if request.startswith("alert, "):
        alert = move.alerts[request.removeprefix("alert, ")]
        return (await api.http.get(f"/api/v1/alerts/{alert}", headers=who)).status_code
    path = {
        "the child": f"/api/v1/children/{child}",
        "its position": f"/api/v1/children/{child}/position",
        "its status": f"/api/v1/children/{child}/status",
        "the live map": "/api/v1/live",
        "the children": "/api/v1/children",
        "its alerts": f"/api/v1/alerts?child_id={child}",
        "its tags": f"/api/v1/tags?child_id={child}",
    }[request]
    r = await api.http.get(path, headers=who)
    if r.status_code != 200:
        return r.status_code
    body = r.json()
    match request:
        case "the child":
            p = body["last_position"]
            return (None if p is None else move.fixes[datetime.fromisoformat(p["ts"])], body["open_alerts"])
        case "its position":
            ts = body["properties"]["ts"]
            return None if ts is None else move.fixes[datetime.fromisoformat(ts)]
        case "its status":
            p = body["position"]
            return (body["status"], None if p is None else move.fixes[datetime.fromisoformat(p["ts"])])
        case "the live map" | "the children":
            key = "child_id" if request == "the live map" else "id"
            return "listed" if any(i[key] == child for i in body["items"]) else "absent"
        case "its alerts":
            return _alerts(move, body["items"])
        case "its tags":
            return [t["id"] for t in body["items"]]


# What each caller gets of a child moved from school A (old) to school B (new) today: the day before
# is A's, the day of the move and the days after are B's (a day of the track that was not A's is 404
# to A, as for any child not theirs; B sees the child, and nothing of it from before the move); the
# guardian and the city see everything. The monitor's state was last changed the day before the move
# (so B's staff see no status yet). 404: as for a child that does not exist.
MOVE_SCENARIO: dict[str, tuple[Any, Any, Any, Any]] = {
    # request            old school (A)       new school (B)          guardian                    city
    "the child": (404, (AFTER, 2), (AFTER, 3), (AFTER, 3)),
    "its position": (404, AFTER, AFTER, AFTER),
    "track, day before": ([BEFORE], [], [BEFORE], [BEFORE]),
    "track, day of": (404, [DAY_OF], [DAY_OF], [DAY_OF]),
    "track, day after": (404, [AFTER], [AFTER], [AFTER]),
    "its status": (404, ("unknown", AFTER), ("at_school", AFTER), ("at_school", AFTER)),
    "the live map": ("absent", "listed", "listed", "listed"),
    "the children": ("absent", "listed", "listed", "listed"),
    "its alerts": ([BEFORE], [AFTER, DAY_OF], [AFTER, BEFORE, DAY_OF], [AFTER, BEFORE, DAY_OF]),
    "alert, day before": (200, 404, 200, 200),
    "alert, day of": (404, 200, 200, 200),
    "alert, day after": (404, 200, 200, 200),
    "its tags": ([], ["tag-jiho"], ["tag-jiho"], ["tag-jiho"]),
}


async def test_what_each_caller_sees_of_a_child_who_moved_school(api: Api) -> None:
    city = await build_city(api.pool)
    move = await move_a_child(api, city)
    await api.pool.execute(
        """INSERT INTO child_state (child_id, state, updated_at) VALUES ($1, '{"at": "school"}', $2)""",
        move.child_id,
        move.since - timedelta(hours=12),
    )
    callers = (city.a.staff, city.b.staff, city.b.guardian, city.admin)
    failures = []
    for request, expected in MOVE_SCENARIO.items():
        for caller, token, want in zip(CALLERS, callers, expected, strict=True):
            got = await _observe(api, move, token, request)
            if got != want:
                failures.append(f"{caller}, {request}: {got!r} (expected {want!r})")
    assert not failures, "\n".join(failures)
    # with no fix since the move, the new school knows no position of the child at all
    await api.pool.execute(
        "DELETE FROM positions WHERE child_id = $1 AND ts >= $2", move.child_id, move.since
    )
    before_only = {
        # request         old school  new school            guardian                  city
        "the child": (404, (None, 2), (BEFORE, 3), (BEFORE, 3)),
        "its position": (404, None, BEFORE, BEFORE),
        "its status": (404, ("unknown", None), ("at_school", BEFORE), ("at_school", BEFORE)),
    }
    for request, expected in before_only.items():
        for caller, token, want in zip(CALLERS, callers, expected, strict=True):
            got = await _observe(api, move, token, request)
            if got != want:
                failures.append(f"no fix since the move: {caller}, {request}: {got!r} (expected {want!r})")
    assert not failures, "\n".join(failures)
    # the old school's reads of its days are audited like any staff read, and are its own business:
    # the new school does not see them, the family and the city do
    reads = await api.pool.fetch(
        "SELECT school_id, endpoint, fixes FROM position_reads WHERE child_id = $1 AND school_id = $2",
        move.child_id,
        city.a.school_id,
    )
    assert sorted((r["endpoint"], r["fixes"]) for r in reads) == [
        ("GET /api/v1/alerts", 1),  # an alert carries the child's position then
        ("GET /api/v1/alerts/{alert_id}", 1),
        ("GET /api/v1/children/{child_id}/track", 1),
    ]
    for token, sees_old_schools_reads in (
        (city.a.staff, True),
        (city.b.staff, False),
        (city.b.guardian, True),
        (city.admin, True),
    ):
        log = await api.http.get(
            "/api/v1/audit/position-reads", params={"child_id": move.child_id}, headers=bearer(token)
        )
        schools = {e["school_id"] for e in log.json()["items"]}
        assert (city.a.school_id in schools) == sees_old_schools_reads, (token, schools)
        assert city.b.school_id not in schools or token != city.a.staff


async def test_an_alert_escalates_to_the_school_the_child_was_at_when_it_opened(api: Api) -> None:
    city = await build_city(api.pool)
    move = await move_a_child(api, city)
    await api.pool.execute(
        "UPDATE schools SET staff_phone = '+8220000000' || id::text WHERE id = ANY($1::bigint[])",
        [city.a.school_id, city.b.school_id],
    )
    # every guardian has been told (the one guardian's delivery of each alert), so the school is next
    for alert in move.alerts.values():
        async with api.pool.acquire() as conn:
            await write_outbox(conn, [(alert, "opened", city.b.guardian_id, None, "websocket")])
    await api.pool.execute(
        "UPDATE alerts SET next_escalation_at = now() WHERE id = ANY($1::bigint[])",
        list(move.alerts.values()),
    )
    await escalate_due(api.pool, Escalation())
    rows = await api.pool.fetch(
        "SELECT alert_id, school_id FROM deliveries WHERE transition = 'escalated' AND school_id IS NOT NULL"
    )
    reached = {r["alert_id"]: r["school_id"] for r in rows}
    assert reached == {
        move.alerts[BEFORE]: city.a.school_id,
        move.alerts[DAY_OF]: city.b.school_id,
        move.alerts[AFTER]: city.b.school_id,
    }


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
async def test_every_role_of_both_schools_on_a_child_who_moved(api: Api, endpoint: Endpoint) -> None:
    """The access matrix for the moved child: to every role of the old school the child and its
    objects are the other school's (404 and 422 word for word as for ids nobody has, nothing written
    when refused); to every role of the new school they are their own."""
    city = await city_with_everything(api)
    move = await move_a_child(api, city, with_history=False)
    async with api.pool.acquire() as conn:
        await furnish_side(conn, move.side)
    assert (
        await api.http.get(f"/api/v1/children/{move.child_id}/track", headers=bearer(city.admin))
    ).status_code == 200
    old_school = dataclasses.replace(city, b=move.side)
    new_school = dataclasses.replace(city, a=move.side, b=city.a)
    failures = [f"old school: {f}" for f in await walk_roles(api, old_school, endpoint)]
    failures += [f"new school: {f}" for f in await walk_roles(api, new_school, endpoint)]
    assert not failures, "\n".join(failures)


async def test_the_old_school_naming_the_moved_childs_objects_in_a_body_is_422(api: Api) -> None:
    city = await city_with_everything(api)
    move = await move_a_child(api, city, with_history=False)
    theirs_side, staff = move.side, bearer(city.a.staff)
    failures = []
    for case, ref in REFERENCES.items():
        theirs, ghost = ref.request(city, theirs_side), ref.request(city, ghost_of(theirs_side))
        before = await table_digests(api.pool)
        r = await api.http.request(ref.method, theirs[0], headers=staff, json=theirs[1])
        r2 = await api.http.request(ref.method, ghost[0], headers=staff, json=ghost[1])
        if changed := changed_tables(before, await table_digests(api.pool)):
            failures.append(f"{case}: {changed} changed")
        if r.status_code != 422 or not alike(r, r2, swaps_between(theirs, ghost)):
            failures.append(f"{case}: {r.status_code} {r.text} / {r2.text}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("school", ["old", "new"])
async def test_lists_after_a_move(api: Api, school: str) -> None:
    """Every list filtered by the moved child's objects: empty (total 0) for the old school's staff,
    holding them for the new school's."""
    city = await build_city(api.pool)
    move = await move_a_child(api, city, with_history=False)
    side, staff = move.side, city.a.staff if school == "old" else city.b.staff
    failures = []
    for listed in LISTS:
        if "school" not in listed.roles or listed.query is None:
            continue
        r = await api.http.get(listed.path, params=listed.fixed | listed.query(side), headers=bearer(staff))
        page = r.json()
        items = page["features"] if "features" in page else page["items"]
        held = listed.item(side) in [listed.key(i) for i in items]
        if school == "old" and (items or page.get("total", 0)):
            failures.append(f"{listed.path} {listed.query(side)}: {items}")
        if school == "new" and not held:
            failures.append(f"{listed.path} {listed.query(side)}: {listed.item(side)} not in {items}")
    assert not failures, "\n".join(failures)


# --- a guardian removed from a child ------------------------------------------------------------------------
async def _alert(conn: Any, child_id: int, kind: str) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO alerts (child_id, kind, severity, opened_at, updated_at, last_lon, last_lat,"
            " last_acc, last_fix_ts) VALUES ($1, $2, 'critical', now(), now(), 127.05, 37.5, 9, now())"
            " RETURNING id",
            child_id,
            kind,
        )
    )


async def _delivery(conn: Any, alert_id: int, guardian_id: int, state: str) -> None:
    """A websocket delivery already sent, or pending as a retry an hour from now (out of the
    dispatcher's reach until then)."""
    await conn.execute(
        "INSERT INTO deliveries (alert_id, transition, guardian_id, channel, state, next_attempt_at, sent_at)"
        " VALUES ($1, 'opened', $2, 'websocket', $3, now() + interval '1 hour',"
        " CASE WHEN $3 = 'sent' THEN now() END)",
        alert_id,
        guardian_id,
        state,
    )


async def _steps(pool: Any, alert_id: int, step: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT detail FROM alert_history WHERE alert_id = $1 AND step = $2 ORDER BY id", alert_id, step
    )
    return [r["detail"] for r in rows]


async def test_a_guardian_unlinked_from_a_child_stops_seeing_it_at_once(service) -> None:  # type: ignore[no-untyped-def]
    """Mother is a guardian of Dohyun and of Hana; staff unlink her from Hana. Her token and her open
    websocket keep working for Dohyun, and give nothing more of Hana."""
    svc = service
    async with svc.pool.acquire() as conn:
        school = await seeding.add_school(conn, name="School", lon=127.05, lat=37.5)
        dohyun = await seeding.add_child(conn, school_id=school, route_id=None, name="Dohyun")
        hana = await seeding.add_child(conn, school_id=school, route_id=None, name="Hana")
        mother = await seeding.add_guardian(conn, name="Mother", phone=None, channels=("websocket",))
        father = await seeding.add_guardian(conn, name="Father", phone=None, channels=("websocket",))
        aunt = await seeding.add_guardian(conn, name="Aunt", phone=None, channels=("websocket",))
        await seeding.link_guardian(conn, child_id=dohyun, guardian_id=mother)
        for priority, g in enumerate((mother, father, aunt), start=1):
            await seeding.link_guardian(conn, child_id=hana, guardian_id=g, priority=priority)
        token = await issue_token(conn, role="guardian", guardian_id=mother)
        staff = await issue_token(conn, role="school", school_id=school)
        hana_open = await _alert(conn, hana, "sos")  # open, unacknowledged: the catch-up's
        dohyun_open = await _alert(conn, dohyun, "sos")
        # told to Mother as it opened; nobody acknowledged it: it is due to escalate
        hana_escalating = await _alert(conn, hana, "danger_zone")
        await _delivery(conn, hana_escalating, mother, "sent")
        await _delivery(conn, hana_open, mother, "pending")  # a retry to Mother waiting in the outbox
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    ws_url = f"ws://127.0.0.1:{svc.settings.http_port}/ws?token={token}"
    as_mother = bearer(token)
    async with httpx.AsyncClient(base_url=base) as http, GuardianSocket(ws_url) as socket:
        await socket.wait_for(lambda m: m.get("alert_id") == hana_open, 5)  # she saw Hana's alert
        r = await http.put(
            f"/api/v1/children/{hana}/guardians",
            headers=bearer(staff),
            json=[{"guardian_id": father, "priority": 1}, {"guardian_id": aunt, "priority": 2}],
        )
        assert r.status_code == 200, r.text
        unlinked = len(socket.messages)

        # REST: Hana is a child that does not exist for her; Dohyun is still hers
        for path in (
            f"/api/v1/children/{hana}",
            f"/api/v1/children/{hana}/position",
            f"/api/v1/children/{hana}/track",
            f"/api/v1/children/{hana}/status",
            f"/api/v1/alerts/{hana_open}",
        ):
            r = await http.get(path, headers=as_mother)
            assert r.status_code == 404, (path, r.text)
        assert (await http.post(f"/api/v1/alerts/{hana_open}/ack", headers=as_mother)).status_code == 404
        for path, key in (("/api/v1/children", "id"), ("/api/v1/live", "child_id")):
            assert [i[key] for i in (await http.get(path, headers=as_mother)).json()["items"]] == [dohyun]
        hers = (await http.get("/api/v1/alerts", headers=as_mother)).json()["items"]
        assert [a["id"] for a in hers] == [dohyun_open]
        assert (await http.get(f"/api/v1/children/{dohyun}", headers=as_mother)).status_code == 200

        # the retry waiting for her is cancelled, and the alert's history says why
        state = await svc.pool.fetchval(
            "SELECT state FROM deliveries WHERE alert_id = $1 AND guardian_id = $2", hana_open, mother
        )
        assert state == "cancelled"
        assert await _steps(svc.pool, hana_open, "cancelled") == [
            {
                "guardian_id": mother,
                "channel": "websocket",
                "transition": "opened",
                "reason": "guardian unlinked from the child",
            }
        ]

        # over her open websocket: acknowledging Hana's alert is refused
        await socket.send({"type": "ack", "alert_id": hana_open})
        _, answer = await socket.wait_for(lambda m: m["type"] == "ack" and m["alert_id"] == hana_open, 5)
        assert answer["ok"] is False
        assert await svc.pool.fetchval("SELECT acknowledged_at FROM alerts WHERE id = $1", hana_open) is None

        # the escalation passes her by: the next rung is Father (not Aunt, whom a count of rungs
        # over the shortened list would reach), and nothing of it is written to her
        await svc.pool.execute("UPDATE alerts SET next_escalation_at = now() WHERE id = $1", hana_escalating)
        await escalate_due(svc.pool, Escalation())
        assert [s["guardian_id"] for s in await _steps(svc.pool, hana_escalating, "escalated")] == [father]
        escalated_to = await svc.pool.fetch(
            "SELECT guardian_id FROM deliveries WHERE alert_id = $1 AND transition = 'escalated'",
            hana_escalating,
        )
        assert [r["guardian_id"] for r in escalated_to] == [father]

        # a message written for her after the unlink (the pipeline's registry view had her still) is
        # cancelled by the dispatcher, not sent; one about Dohyun, written after it, reaches her
        hana_late = await _alert(svc.pool, hana, "left_route")
        dohyun_late = await _alert(svc.pool, dohyun, "left_route")
        async with svc.pool.acquire() as conn:
            await write_outbox(conn, [(hana_late, "opened", mother, None, "websocket")])
            await write_outbox(conn, [(dohyun_late, "opened", mother, None, "websocket")])
        await socket.wait_for(lambda m: m.get("alert_id") == dohyun_late, 10)

        async def hana_late_done() -> bool:
            state = await svc.pool.fetchval("SELECT state FROM deliveries WHERE alert_id = $1", hana_late)
            return state not in ("pending", "sending")

        await wait_until(hana_late_done, 10)
        assert await svc.pool.fetchval("SELECT state FROM deliveries WHERE alert_id = $1", hana_late) == (
            "cancelled"
        )
        assert [s["reason"] for s in await _steps(svc.pool, hana_late, "cancelled")] == [
            "guardian no longer linked to the child"
        ]
        # a round trip after everything: nothing of Hana came after the unlink
        await socket.send({"type": "ack", "alert_id": 9_000_000_000})
        await socket.wait_for(lambda m: m["type"] == "ack" and m["alert_id"] == 9_000_000_000, 5)
        since_unlink = [m for _, m in socket.messages[unlinked:] if m["type"] == "alert"]
        assert [m["alert_id"] for m in since_unlink] == [dohyun_late]

    # a new socket's catch-up holds Dohyun's open alerts and none of Hana's
    async with GuardianSocket(ws_url) as fresh:
        await fresh.send({"type": "ack", "alert_id": 9_000_000_000})
        await fresh.wait_for(lambda m: m["type"] == "ack", 5)
        caught_up = {m["alert_id"] for _, m in fresh.alerts()}
        assert caught_up == {dohyun_open, dohyun_late}


async def test_a_deleted_guardian_leaves_a_cancelled_step_and_their_socket_is_closed(service) -> None:  # type: ignore[no-untyped-def]
    svc = service
    async with svc.pool.acquire() as conn:
        school = await seeding.add_school(conn, name="School", lon=127.05, lat=37.5)
        child = await seeding.add_child(conn, school_id=school, route_id=None, name="Seojun")
        uncle = await seeding.add_guardian(conn, name="Uncle", phone=None, channels=("websocket",))
        await seeding.link_guardian(conn, child_id=child, guardian_id=uncle)
        token = await issue_token(conn, role="guardian", guardian_id=uncle)
        admin = await issue_token(conn, role="admin")
        alert = await _alert(conn, child, "sos")
        await _delivery(conn, alert, uncle, "pending")  # a retry waiting
    base = f"http://127.0.0.1:{svc.settings.http_port}"
    async with (
        httpx.AsyncClient(base_url=base) as http,
        GuardianSocket(f"ws://127.0.0.1:{svc.settings.http_port}/ws?token={token}") as socket,
    ):
        r = await http.delete(f"/api/v1/guardians/{uncle}", headers=bearer(admin))
        assert r.status_code == 204, r.text
        assert await _steps(svc.pool, alert, "cancelled") == [
            {
                "guardian_id": uncle,
                "channel": "websocket",
                "transition": "opened",
                "reason": "guardian deleted",
            }
        ]
        assert await svc.pool.fetchval("SELECT count(*) FROM deliveries WHERE alert_id = $1", alert) == 0
        assert (await http.get(f"/api/v1/children/{child}", headers=bearer(token))).status_code == 401
        # the socket is closed at once (not at its next token check): nothing more can reach it
        await wait_until(lambda: socket._task is not None and socket._task.done(), 5)
        assert socket._ws.close_code == 1008
