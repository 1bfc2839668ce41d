"""Phone apps as tags, through the running service (real PostgreSQL, real broker): OwnTracks over
MQTT and in HTTP mode, Traccar Client's OsmAnd protocol over HTTP. An HTTP answer comes only once the
fix is committed; unknown devices and bad credentials are refused; bad payloads are dead-lettered.
Phone apps as they really send (issue 19.3): the OsmAnd app's own URL, fixes without an accuracy,
the OwnTracks Recorder's ``?u=&d=``, and OwnTracks encrypted payloads."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import nacl.utils
import pytest
from nacl.secret import SecretBox

from tests.helpers import Publisher, build_small_world, lonlat, wait_until
from tracker.store.devices import link_device
from tracker.store.tokens import issue_token, mosquitto_hash

PASSWORD = "jane-phone-secret"


async def _setup(service):  # type: ignore[no-untyped-def]
    async with service.pool.acquire() as conn:
        world = await build_small_world(conn, ["Jane", "Bob"])
        jane, bob = world.kids["Jane"], world.kids["Bob"]
        await conn.execute(
            "UPDATE tags SET mqtt_password_hash = $2 WHERE id = $1", jane.tag, mosquitto_hash(PASSWORD)
        )
        await link_device(conn, tag_id=jane.tag, protocol="owntracks", device="jane/phone")
        await link_device(conn, tag_id=bob.tag, protocol="osmand", device="48241179")
        bob_token = await issue_token(conn, role="device", tag_id=bob.tag)
    await service.reload_registry()
    return jane, bob, bob_token


async def _positions(service, tag: str) -> int:  # type: ignore[no-untyped-def]
    return int(await service.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", tag))


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_owntracks_over_mqtt_becomes_a_fix_of_its_tag(
    service, mqtt_url: str, topic_prefix: str
) -> None:  # type: ignore[no-untyped-def]
    jane, _, _ = await _setup(service)
    lon, lat = lonlat(-300, 0)
    ts = int(time.time()) - 5
    pub = Publisher(mqtt_url)
    try:
        location = {"_type": "location", "lat": lat, "lon": lon, "acc": 9, "tst": ts, "batt": 55, "tid": "JP"}
        await asyncio.to_thread(pub.publish, f"{topic_prefix}owntracks/jane/phone", location)
        await asyncio.to_thread(
            pub.publish, f"{topic_prefix}owntracks/jane/phone", {"_type": "lwt", "tst": ts}
        )
        await asyncio.to_thread(pub.publish, f"{topic_prefix}owntracks/stranger/phone", location)
        await wait_until(lambda: _positions(service, jane.tag), 10)
        await wait_until(lambda: service.metrics.ignored["owntracks:lwt"] == 1, 10)
        reason = await wait_until(
            lambda: service.pool.fetchval("SELECT reason FROM dead_letters WHERE topic LIKE '%stranger%'"), 10
        )
    finally:
        pub.close()
    assert reason == "unknown_device"
    row = await service.pool.fetchrow("SELECT acc, batt FROM positions WHERE tag_id = $1", jane.tag)
    assert (row["acc"], row["batt"]) == (9, 55)
    assert not await service.pool.fetchval("SELECT count(*) FROM tags WHERE id LIKE '%stranger%'")


async def test_owntracks_http_mode_answers_after_the_commit(service) -> None:  # type: ignore[no-untyped-def]
    jane, _, _ = await _setup(service)
    lon, lat = lonlat(-300, 0)
    body = {"_type": "location", "lat": lat, "lon": lon, "acc": 12, "tst": int(time.time()) - 3, "batt": 80}
    url = f"http://127.0.0.1:{service.settings.http_port}/ingest/owntracks"
    headers = {"X-Limit-U": "jane", "X-Limit-D": "phone", **_basic("jane", PASSWORD)}
    async with httpx.AsyncClient() as http:
        r = await http.post(url, json=body, headers=headers)
        assert (r.status_code, r.json()) == (200, [])
        assert await _positions(service, jane.tag) == 1  # committed before the answer
        again = await http.post(url, json=body, headers=headers)  # the app retries: nothing doubles
        assert again.status_code == 200 and await _positions(service, jane.tag) == 1
        wrong = await http.post(url, json=body, headers={**headers, **_basic("jane", "guess")})
        assert wrong.status_code == 401
        anonymous = await http.post(url, json=body, headers={"X-Limit-U": "jane", "X-Limit-D": "phone"})
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
        unknown = await http.post(url, json=body, headers={**headers, "X-Limit-D": "tablet"})
        assert unknown.status_code == 403 and "not registered" in unknown.json()["detail"]
        bad = await http.post(url, json={**body, "lat": 123}, headers=headers)
        assert bad.status_code == 400 and bad.json()["detail"].startswith("schema_violation")
    reasons = [r["reason"] for r in await service.pool.fetch("SELECT reason FROM dead_letters")]
    assert reasons == ["schema_violation"]


async def test_traccar_client_osmand_query_and_json_with_sos(service) -> None:  # type: ignore[no-untyped-def]
    _, bob, token = await _setup(service)
    lon, lat = lonlat(-200, 0)
    now = int(time.time())
    url = f"http://127.0.0.1:{service.settings.http_port}/ingest/osmand"
    async with httpx.AsyncClient() as http:
        # query form (traccar.org/osmand), timestamp in milliseconds, the token as a parameter
        q = {
            "id": "48241179",
            "lat": lat,
            "lon": lon,
            "timestamp": (now - 20) * 1000,
            "accuracy": 8,
            "batt": 70,
            "token": token,
        }
        r = await http.post(url, params=q)
        assert (r.status_code, r.json()) == (200, {"fixes": 1})
        # JSON form (Traccar Client 9), ISO 8601 time, SOS in extras, bearer token
        body = {
            "location": {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 10)),
                "coords": {"latitude": lat, "longitude": lon, "accuracy": 6},
                "battery": {"level": 0.69, "is_charging": False},
                "extras": {"alarm": "sos"},
            },
            "device_id": "48241179",
        }
        r = await http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert (await http.post(url, params={**q, "token": "nope"})).status_code == 401
        assert (await http.post(url, params={**q, "id": "999"})).status_code == 403
        future = await http.post(url, params={**q, "timestamp": now + 3600})
        assert future.status_code == 400 and future.json()["detail"].startswith("future_timestamp")
    assert await _positions(service, bob.tag) == 2
    sos = await wait_until(
        lambda: service.pool.fetchval(
            "SELECT count(*) FROM alerts WHERE kind = 'sos' AND child_id = $1", bob.child_id
        ),
        5,
    )
    assert sos == 1
    stored = await service.pool.fetch("SELECT payload, reason FROM dead_letters")
    assert [r["reason"] for r in stored] == ["future_timestamp"]  # dead-lettered as well
    assert all(b"token=" not in r["payload"] for r in stored)


async def test_school_staff_register_a_phone_app_through_the_api(service) -> None:  # type: ignore[no-untyped-def]
    jane, bob, _ = await _setup(service)
    async with service.pool.acquire() as conn:
        admin = await issue_token(conn, role="admin")
    base = f"http://127.0.0.1:{service.settings.http_port}"
    auth = {"Authorization": f"Bearer {admin}"}
    watch = {"devices": [{"protocol": "owntracks", "device": "kim/watch"}]}
    async with httpx.AsyncClient(base_url=base, headers=auth) as http:
        r = await http.put(f"/api/v1/tags/{jane.tag}/devices", json=watch)
        assert (r.status_code, r.json()) == (
            200,
            {"devices": [{"protocol": "owntracks", "device": "kim/watch", "encrypted": False}]},
        )
        taken = await http.put(f"/api/v1/tags/{bob.tag}/devices", json=watch)
        assert taken.status_code == 409 and "kim/watch" in taken.json()["detail"]
        bad = await http.put(
            f"/api/v1/tags/{bob.tag}/devices", json={"devices": [{"protocol": "owntracks", "device": "kim"}]}
        )
        assert bad.status_code == 422
        assert (await http.get(f"/api/v1/tags/{bob.tag}/devices")).json() == {
            "devices": [{"protocol": "osmand", "device": "48241179", "encrypted": False}]
        }
    # the registry listener swaps in a view with the new identity (jane/phone was replaced by kim/watch)
    await wait_until(lambda: service.view().rows.devices.get("owntracks:kim/watch") == jane.tag, 10)
    assert "owntracks:jane/phone" not in service.view().rows.devices
    lon, lat = lonlat(-300, 0)
    body = {"_type": "location", "lat": lat, "lon": lon, "acc": 12, "tst": int(time.time()) - 3}
    headers = {"X-Limit-U": "kim", "X-Limit-D": "watch", **_basic("kim", PASSWORD)}
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{base}/ingest/owntracks", json=body, headers=headers)
    assert r.status_code == 200 and await _positions(service, jane.tag) == 1


# --- phone apps as they really send (issue 19.3) ---------------------------------------------------------
async def _alerts(service, child_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    rows = await service.pool.fetch("SELECT kind FROM alerts WHERE child_id = $1 ORDER BY id", child_id)
    return [r["kind"] for r in rows]


async def test_the_osmand_apps_own_url_and_fixes_without_accuracy_deep_in_a_zone(
    service,
) -> None:  # type: ignore[no-untyped-def]
    """The OsmAnd app's template (time in ms, accuracy as `hdop`) is stored; fixes that state no
    accuracy are stored too, with a null accuracy, and a run of them deep inside the danger zone (and
    150 m off the route, in its commute window) raises nothing; the same place with an accuracy does."""
    _, bob, token = await _setup(service)
    base = f"http://127.0.0.1:{service.settings.http_port}"
    now = time.time()
    inside = lonlat(-300, 150)  # the middle of the construction site, 150 m off the east walk

    def osmand_app(t: float, x: float, y: float, hdop: str | None) -> dict[str, object]:
        lon, lat = lonlat(x, y)
        q: dict[str, object] = {"id": "48241179", "lat": f"{lat:.6f}", "lon": f"{lon:.6f}"}
        q["timestamp"] = int(t * 1000)
        if hdop is not None:
            q["hdop"] = hdop
        return {**q, "altitude": "41.0", "speed": "1.25", "token": token}

    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.get("/ingest/osmand", params=osmand_app(now - 200, -500, 0, "7.0"))
        assert (r.status_code, r.json()) == (200, {"fixes": 1}), r.text
        for k in range(6):  # no hdop, then hdop 0 (OsmAnd's "no accuracy"): unknown, every one
            r = await http.get(
                "/ingest/osmand",
                params=osmand_app(now - 150 + 10 * k, *(-300, 150), None if k < 3 else "0.0"),
            )
            assert (r.status_code, r.json()) == (200, {"fixes": 1}), r.text
    rows = await service.pool.fetch("SELECT acc FROM positions WHERE tag_id = $1 ORDER BY ts", bob.tag)
    assert [r["acc"] for r in rows] == [7.0] + [None] * 6
    assert await _alerts(service, bob.child_id) == []
    assert service.metrics.not_deciding["unknown_accuracy"] == 6
    assert not await service.pool.fetchval("SELECT count(*) FROM dead_letters")
    async with service.pool.acquire() as conn:
        admin = await issue_token(conn, role="admin")
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {admin}"}) as http:
        position = (await http.get(f"/api/v1/children/{bob.child_id}/position")).json()
        assert position["properties"]["acc"] is None
        assert position["geometry"]["coordinates"] == pytest.approx(list(inside), abs=1e-5)
        status = (await http.get(f"/api/v1/children/{bob.child_id}/status")).json()
        assert status["position"]["acc"] is None and status["zones"] == []
        child = (await http.get(f"/api/v1/children/{bob.child_id}")).json()
        assert child["last_position"]["acc"] is None
    # the control: the same place, stated 5 m accurate, is a danger zone
    async with httpx.AsyncClient(base_url=base) as http:
        for k in range(2):
            r = await http.get("/ingest/osmand", params=osmand_app(now - 60 + 15 * k, -300, 150, "5.0"))
            assert r.status_code == 200
    assert await _alerts(service, bob.child_id) == ["danger_zone"]


async def test_the_owntracks_recorders_u_and_d_name_the_device(service) -> None:  # type: ignore[no-untyped-def]
    """The Recorder's `/pub?u=user&d=device`: the app's HTTP URL names the device, whatever the
    Basic user; a location the app sent without `acc` (it was 0) is stored of unknown accuracy."""
    jane, _, _ = await _setup(service)
    lon, lat = lonlat(-300, 0)
    body = {"_type": "location", "lat": lat, "lon": lon, "tst": int(time.time()) - 3, "batt": 80}
    url = f"http://127.0.0.1:{service.settings.http_port}/ingest/owntracks"
    async with httpx.AsyncClient() as http:
        r = await http.post(url, params={"u": "jane", "d": "phone"}, json=body, headers=_basic("x", PASSWORD))
        assert (r.status_code, r.json()) == (200, []), r.text
        unnamed = await http.post(url, params={"u": "jane"}, json=body, headers=_basic("x", PASSWORD))
        assert unnamed.status_code == 400 and "?u=user&d=device" in unnamed.json()["detail"]
        stranger = await http.post(
            url, params={"u": "jane", "d": "tablet"}, json=body, headers=_basic("x", PASSWORD)
        )
        assert stranger.status_code == 403
    row = await service.pool.fetchrow("SELECT acc, batt FROM positions WHERE tag_id = $1", jane.tag)
    assert (row["acc"], row["batt"]) == (None, 80)


def _encrypted(body: dict[str, object], secret: str) -> dict[str, str]:
    """As the OwnTracks app sends a payload with an encryption key set (see test_device_protocols)."""
    key = secret.encode()[:32].ljust(32, b"\0")
    sealed = SecretBox(key).encrypt(json.dumps(body).encode(), nacl.utils.random(SecretBox.NONCE_SIZE))
    return {"_type": "encrypted", "data": base64.b64encode(bytes(sealed)).decode()}


async def test_owntracks_encrypted_payloads_with_a_write_only_key(service) -> None:  # type: ignore[no-untyped-def]
    jane, _, _ = await _setup(service)
    async with service.pool.acquire() as conn:
        admin = await issue_token(conn, role="admin")
    base = f"http://127.0.0.1:{service.settings.http_port}"
    secret = "jane's payload secret"
    lon, lat = lonlat(-300, 0)
    now = int(time.time())

    def location(t: int) -> dict[str, object]:
        return {"_type": "location", "lat": lat, "lon": lon, "acc": 11, "tst": t}

    app = {"X-Limit-U": "jane", "X-Limit-D": "phone", **_basic("jane", PASSWORD)}
    async with httpx.AsyncClient(base_url=base) as http:
        # no key yet: refused with the reason, nothing stored
        r = await http.post("/ingest/owntracks", json=_encrypted(location(now - 50), secret), headers=app)
        assert r.status_code == 400 and r.json()["detail"].startswith("encrypted_no_key:"), r.text
        # the school registers the app's secret: write-only
        staff = {"Authorization": f"Bearer {admin}"}
        keyed = {"devices": [{"protocol": "owntracks", "device": "jane/phone", "key": secret}]}
        put = await http.put(f"/api/v1/tags/{jane.tag}/devices", json=keyed, headers=staff)
        expected = {"devices": [{"protocol": "owntracks", "device": "jane/phone", "encrypted": True}]}
        assert (put.status_code, put.json()) == (200, expected)
        got = await http.get(f"/api/v1/tags/{jane.tag}/devices", headers=staff)
        assert got.json() == expected and secret not in got.text and secret not in put.text
        await wait_until(lambda: "owntracks:jane/phone" in service.view().rows.device_keys, 10)
        r = await http.post("/ingest/owntracks", json=_encrypted(location(now - 40), secret), headers=app)
        assert (r.status_code, r.json()) == (200, []), r.text
        wrong = await http.post(
            "/ingest/owntracks", json=_encrypted(location(now - 30), "guess"), headers=app
        )
        assert wrong.status_code == 400 and wrong.json()["detail"].startswith("undecryptable:")
        # a PUT that names the device without `key` keeps it (a client PUTs back what it read) ...
        same = {"devices": [{"protocol": "owntracks", "device": "jane/phone"}]}
        assert (
            await http.put(f"/api/v1/tags/{jane.tag}/devices", json=same, headers=staff)
        ).json() == expected
        # ... null removes it; and an OsmAnd id has no key to set
        cleared = {"devices": [{"protocol": "owntracks", "device": "jane/phone", "key": None}]}
        r = await http.put(f"/api/v1/tags/{jane.tag}/devices", json=cleared, headers=staff)
        assert r.json()["devices"][0]["encrypted"] is False
        osmand_key = {"devices": [{"protocol": "osmand", "device": "777", "key": "x"}]}
        assert (
            await http.put(f"/api/v1/tags/{jane.tag}/devices", json=osmand_key, headers=staff)
        ).status_code == 422
    stored = await service.pool.fetch("SELECT acc FROM positions WHERE tag_id = $1", jane.tag)
    assert [r["acc"] for r in stored] == [11]
    reasons = [r["reason"] for r in await service.pool.fetch("SELECT reason FROM dead_letters ORDER BY id")]
    assert reasons == ["encrypted_no_key", "undecryptable"]
    kept = await service.pool.fetchval("SELECT secret_key FROM tag_devices WHERE device = 'jane/phone'")
    assert kept is None
