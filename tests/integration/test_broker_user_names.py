"""One school cannot break the broker for the city: the API refuses a GPS tag or a reader whose id
cannot be a broker user (a ':' in it, a reserved name, the tracker's own user) with a 422 that names
the field and why, and a reader and a tag of one id (both would be the same broker user) with a 409,
whichever is registered second; an RFID card, never a broker user, keeps any id the registry takes.
Nothing is written by a refused request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_support import Api, bearer, build_city, fingerprint, point, running_api


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path, mqtt_url="mqtt://svc-mqtt:pw@broker:1883") as a:
        yield a


def reader_body(reader_id: str, x: float = 0) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": reader_id,
        "geometry": point(x, 10),
        "properties": {"name": "Gate", "role": "gate"},
    }


COLON = "':' is not allowed (it ends the user name in Mosquitto's password file)"
RESERVED = "is reserved for the broker's own users (the tracker, publishers)"


@pytest.mark.parametrize(
    ("tag_id", "why"),
    [
        ("aa:bb:cc:dd:ee:ff", COLON),  # a MAC address
        ("tracker", RESERVED),
        ("Simulator", RESERVED),
        ("svc-mqtt", RESERVED),  # the tracker's own broker user, from TRACKER_MQTT_URL
    ],
)
async def test_a_gps_tag_whose_id_cannot_be_a_broker_user_is_refused(api: Api, tag_id: str, why: str) -> None:
    city = await build_city(api.pool)
    before = await fingerprint(api.pool)
    r = await api.http.post(
        "/api/v1/tags", headers=bearer(city.a.staff), json={"id": tag_id, "child_id": city.a.child_id}
    )
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "id"]
    assert (
        problem["msg"].startswith(f"tag id {tag_id!r} cannot be a broker user name: ")
        and why in problem["msg"]
    )
    assert await fingerprint(api.pool) == before


@pytest.mark.parametrize(
    ("reader_id", "why"), [("gate:1", COLON), ("admin", RESERVED), ("svc-mqtt", RESERVED)]
)
async def test_a_reader_whose_id_cannot_be_a_broker_user_is_refused(
    api: Api, reader_id: str, why: str
) -> None:
    city = await build_city(api.pool)
    before = await fingerprint(api.pool)
    r = await api.http.post("/api/v1/readers", headers=bearer(city.a.staff), json=reader_body(reader_id))
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "id"]
    assert problem["msg"].startswith(f"reader id {reader_id!r} cannot be a broker user name: ")
    assert why in problem["msg"]
    assert await fingerprint(api.pool) == before


async def test_an_rfid_card_keeps_its_id_but_cannot_become_a_gps_tag_with_it(api: Api) -> None:
    city = await build_city(api.pool)
    staff = bearer(city.a.staff)
    r = await api.http.post(
        "/api/v1/tags", headers=staff, json={"id": "04:a2:2b:c1", "child_id": city.a.child_id, "kind": "rfid"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["credentials"] is None
    before = await fingerprint(api.pool)
    r = await api.http.patch("/api/v1/tags/04:a2:2b:c1", headers=staff, json={"kind": "gps"})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "kind"] and COLON in problem["msg"]
    assert await fingerprint(api.pool) == before


async def test_a_gps_tag_from_before_the_rule_gets_no_new_credentials(api: Api) -> None:
    """An old registry's GPS tag with a ':' (put in with SQL): rotating its credentials would give a
    password the broker can never hold."""
    city = await build_city(api.pool)
    await api.pool.execute(
        "INSERT INTO tags (id, child_id, kind) VALUES ('aa:bb:cc', $1, 'gps')", city.a.child_id
    )
    before = await fingerprint(api.pool)
    r = await api.http.post("/api/v1/tags/aa:bb:cc/credentials", headers=bearer(city.a.staff))
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["path", "tag_id"] and COLON in problem["msg"]
    assert await fingerprint(api.pool) == before


async def test_a_reader_and_a_tag_cannot_share_an_id_whichever_comes_second(api: Api) -> None:
    """School B's reader named after school A's tag (or the other way round) would be the same broker
    user: the second registration is refused, by any school, and the first keeps its account."""
    city = await build_city(api.pool)
    before = await fingerprint(api.pool)
    r = await api.http.post(
        "/api/v1/readers", headers=bearer(city.b.staff), json=reader_body(city.a.tag, x=3000)
    )
    assert r.status_code == 409, r.text
    assert (
        r.json()["detail"]
        == f"{city.a.tag!r} is a tag's id: tags and readers share one namespace (broker users)"
    )
    for kind in ("gps", "rfid"):
        r = await api.http.post(
            "/api/v1/tags",
            headers=bearer(city.b.staff),
            json={"id": city.a.reader, "child_id": city.b.child_id, "kind": kind},
        )
        assert r.status_code == 409, r.text
        assert r.json()["detail"] == (
            f"{city.a.reader!r} is a reader's id: tags and readers share one namespace (broker users)"
        )
    assert await fingerprint(api.pool) == before
