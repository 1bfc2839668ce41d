"""GET /api/v1/alerts's filters (severity, kind, state, acknowledged, child_id, since): each alone and
combined, with the caller's scope, paging through a filtered list, the 422 that names a bad value, and
the staff audit of the positions the filtered answer holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.integration.test_api_support import Api, City, bearer, build_city, running_api


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


# label: (kind, severity, state, acknowledged, hours after the reference midnight it opened, with a
# position). Child A's; build_city gives each child an open, unacknowledged SOS opened now.
ALERTS_OF_A = {
    "lost": ("signal_lost", "warning", "open", False, 21, True),
    "zone": ("danger_zone", "critical", "open", True, 20, True),
    "route": ("left_route", "warning", "resolved", True, 19, False),
    "arrived": ("arrived_school", "info", "resolved", False, 18, False),
    "battery": ("low_battery", "info", "resolved", False, -30, True),  # the day before
}


async def _alerts(api: Api, city: City, midnight: datetime) -> dict[str, int]:
    """The labelled alerts in the database; "sosA" / "sosB" the two children's SOS of build_city."""
    ids = {"sosA": city.a.alert_id, "sosB": city.b.alert_id}
    # build_city's SOS alerts open "now": put them at a fixed time after midnight so `since` is exact
    await api.pool.execute(
        "UPDATE alerts SET opened_at = $1, updated_at = $1 WHERE id = ANY($2::bigint[])",
        midnight + timedelta(hours=22),
        list(ids.values()),
    )
    for label, (kind, severity, state, acked, hours, with_position) in ALERTS_OF_A.items():
        opened = midnight + timedelta(hours=hours)
        ids[label] = await api.pool.fetchval(
            "INSERT INTO alerts (child_id, kind, severity, zone_id, state, opened_at, updated_at,"
            " resolved_at, acknowledged_at, acknowledged_by, last_lon, last_lat, last_acc, last_fix_ts)"
            " VALUES ($1, $2, $3, $4, $5::text, $6::timestamptz, $6, CASE WHEN $5 = 'resolved' THEN $6 END,"
            " CASE WHEN $7::boolean THEN $6 END, CASE WHEN $7 THEN $8::bigint END,"
            " CASE WHEN $9::boolean THEN 127.05 END, CASE WHEN $9 THEN 37.5 END, CASE WHEN $9 THEN 9 END,"
            " CASE WHEN $9 THEN $6 END) RETURNING id",
            city.a.child_id,
            kind,
            severity,
            city.zone_id if kind == "danger_zone" else None,
            state,
            opened,
            acked,
            city.a.guardian_id,
            with_position,
        )
    return ids


# (query, what an administrator gets, newest first). MIDNIGHT stands for the reference midnight.
SCENARIOS: list[tuple[str, list[str]]] = [
    ("", ["sosB", "sosA", "lost", "zone", "route", "arrived", "battery"]),
    ("severity=critical", ["sosB", "sosA", "zone"]),
    ("severity=critical&severity=warning", ["sosB", "sosA", "lost", "zone", "route"]),
    ("severity=info", ["arrived", "battery"]),
    ("kind=sos", ["sosB", "sosA"]),
    ("kind=left_route&kind=danger_zone", ["zone", "route"]),
    ("kind=not_arrived_home", []),
    ("state=open", ["sosB", "sosA", "lost", "zone"]),
    ("state=resolved", ["route", "arrived", "battery"]),
    ("acknowledged=true", ["zone", "route"]),
    ("acknowledged=false&state=open", ["sosB", "sosA", "lost"]),
    ("since=MIDNIGHT", ["sosB", "sosA", "lost", "zone", "route", "arrived"]),
    ("since=MIDNIGHT&severity=critical&severity=warning", ["sosB", "sosA", "lost", "zone", "route"]),
    ("since=MIDNIGHT&state=open&severity=warning", ["lost"]),
    ("since=MIDNIGHT_PLUS_20H", ["sosB", "sosA", "lost", "zone"]),  # at the very moment counts
    ("child_id=B", ["sosB"]),
    ("child_id=A&kind=sos", ["sosA"]),
    ("child_id=B&severity=info", []),
]


def _query(q: str, city: City, midnight: datetime) -> str:
    return (
        q.replace("MIDNIGHT_PLUS_20H", quote((midnight + timedelta(hours=20)).astimezone(UTC).isoformat()))
        .replace("MIDNIGHT", quote(midnight.isoformat()))
        .replace("child_id=A", f"child_id={city.a.child_id}")
        .replace("child_id=B", f"child_id={city.b.child_id}")
    )


async def test_each_filter_and_their_combinations_give_exactly_the_alerts_that_pass(api: Api) -> None:
    city = await build_city(api.pool)
    midnight = datetime.fromisoformat("2031-05-14T00:00:00+09:00")
    ids = await _alerts(api, city, midnight)
    label = {v: k for k, v in ids.items()}
    admin = bearer(city.admin)
    failures = []
    for q, expected in SCENARIOS:
        r = await api.http.get(f"/api/v1/alerts?{_query(q, city, midnight)}", headers=admin)
        assert r.status_code == 200, (q, r.text)
        page = r.json()
        got = [label[a["id"]] for a in page["items"]]
        if got != expected or page["total"] != len(expected):
            failures.append((q, expected, got, page["total"]))
    assert failures == []

    # the same filters within a caller's scope: school A's staff never see school B's SOS, a parent
    # only their child's
    for who in (bearer(city.a.staff), bearer(city.a.guardian)):
        page = (await api.http.get("/api/v1/alerts?kind=sos", headers=who)).json()
        assert [label[a["id"]] for a in page["items"]] == ["sosA"] and page["total"] == 1
        page = (await api.http.get(f"/api/v1/alerts?child_id={city.b.child_id}", headers=who)).json()
        assert page == {"items": [], "total": 0, "limit": 100, "offset": 0}


async def test_pages_of_a_filtered_list_hold_every_alert_that_passes_once(api: Api) -> None:
    city = await build_city(api.pool)
    midnight = datetime.fromisoformat("2031-05-14T00:00:00+09:00")
    await _alerts(api, city, midnight)
    admin = bearer(city.admin)
    q = f"since={quote(midnight.isoformat())}&severity=critical&severity=warning"
    whole = (await api.http.get(f"/api/v1/alerts?{q}", headers=admin)).json()
    seen: list[int] = []
    for offset in range(0, 8, 2):
        page = (await api.http.get(f"/api/v1/alerts?{q}&limit=2&offset={offset}", headers=admin)).json()
        assert page["total"] == whole["total"] == 5 and page["limit"] == 2 and page["offset"] == offset
        seen += [a["id"] for a in page["items"]]
    assert seen == [a["id"] for a in whole["items"]]
    # past the end: no items, and still the filtered total
    past = (await api.http.get(f"/api/v1/alerts?{q}&limit=2&offset=40", headers=admin)).json()
    assert past["items"] == [] and past["total"] == 5


# (query, the parameter the 422 names, words its message holds)
BAD: list[tuple[str, str, str]] = [
    ("severity=notice", "severity", "'critical', 'warning' or 'info'"),
    ("severity=critical&severity=urgent", "severity", "'critical', 'warning' or 'info'"),
    ("kind=fire", "kind", "'left_route'"),
    ("state=acknowledged", "state", "'open' or 'resolved'"),
    ("acknowledged=perhaps", "acknowledged", "boolean"),
    ("since=2031-05-14T00:00:00", "since", "timezone"),
    ("since=yesterday", "since", "datetime"),
    ("child_id=0", "child_id", "greater than or equal to 1"),
]


async def test_a_bad_filter_value_is_a_422_that_names_the_parameter_and_the_allowed_values(api: Api) -> None:
    city = await build_city(api.pool)
    for q, param, words in BAD:
        r = await api.http.get(f"/api/v1/alerts?{q}", headers=bearer(city.admin))
        assert r.status_code == 422, q
        problems = r.json()["detail"]
        assert any(p["loc"][:2] == ["query", param] and words in p["msg"] for p in problems), (q, problems)


async def test_the_filters_are_documented_with_their_allowed_values(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    params = {p["name"]: p for p in spec["paths"]["/api/v1/alerts"]["get"]["parameters"]}
    wanted = {"severity", "kind", "state", "acknowledged", "child_id", "since", "limit", "offset"}
    assert wanted <= set(params)
    for name in ("severity", "kind", "state", "acknowledged", "since"):
        assert params[name].get("description"), name
    text = str(params["severity"]["schema"])
    assert all(v in text for v in ("critical", "warning", "info"))
    kinds = str(params["kind"]["schema"])
    assert "danger_zone" in kinds and "not_arrived_home" in kinds
    assert "resolved" in str(params["state"]["schema"])


async def test_a_staff_read_of_a_filtered_list_audits_the_positions_it_held(api: Api) -> None:
    city = await build_city(api.pool)
    midnight = datetime.fromisoformat("2031-05-14T00:00:00+09:00")
    await _alerts(api, city, midnight)
    staff = bearer(city.a.staff)
    await api.pool.execute("DELETE FROM position_reads")
    page = (await api.http.get("/api/v1/alerts?severity=critical", headers=staff)).json()
    assert page["total"] == 2  # the SOS and the danger zone, both with a position
    # a filtered-out alert with a position (the battery notice, "lost") is not counted as read
    log = await api.pool.fetch("SELECT child_id, endpoint, fixes FROM position_reads")
    assert [(r["child_id"], r["endpoint"], r["fixes"]) for r in log] == [
        (city.a.child_id, "GET /api/v1/alerts", 2)
    ]
    # a parent's read is not staff's: nothing logged
    await api.http.get("/api/v1/alerts?severity=critical", headers=bearer(city.a.guardian))
    assert await api.pool.fetchval("SELECT count(*) FROM position_reads") == 1
