"""Tokens over HTTP (issued once, hashed at rest, listed without their text, revocable, expiring), the
websocket checking the same tokens, and a GPS tag's credentials: a device token and an MQTT password
that a real Mosquitto accepts from a password file written from the registry."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import websockets

from tests.integration.test_api_support import Api, bearer, build_city, running_api
from tracker.embedded import free_port
from tracker.store.tokens import create_token, mosquitto_check


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path) as a:
        yield a


async def test_a_parent_gets_a_token_that_works_until_it_is_revoked(api: Api) -> None:
    """Issued by the city's administrator here; school staff send an enrolment link instead
    (test_guardian_ownership.py)."""
    city = await build_city(api.pool)
    staff = bearer(city.a.staff)
    r = await api.http.post(
        "/api/v1/tokens",
        headers=bearer(city.admin),
        json={"role": "guardian", "guardian_id": city.a.guardian_id, "label": "Mum's phone", "ttl_days": 7},
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    token = issued["token"]
    # only a hash is kept
    stored = await api.pool.fetchrow("SELECT token_hash, label FROM api_tokens WHERE id = $1", issued["id"])
    assert (
        bytes(stored["token_hash"]) == hashlib.sha256(token.encode()).digest()
        and stored["label"] == "Mum's phone"
    )
    assert token.encode() not in bytes(stored["token_hash"])

    me = (await api.http.get("/api/v1/me", headers=bearer(token))).json()
    assert me["role"] == "guardian" and me["guardian_id"] == city.a.guardian_id and me["name"] == "Parent A"
    listed = (await api.http.get("/api/v1/tokens", headers=bearer(token))).json()["items"]
    assert issued["id"] in {t["id"] for t in listed} and all("token" not in t for t in listed)

    # the parent revokes it (a lost phone); it stops working at once
    assert (
        await api.http.delete(f"/api/v1/tokens/{issued['id']}", headers=bearer(city.a.guardian))
    ).status_code == 204
    assert (await api.http.get("/api/v1/me", headers=bearer(token))).status_code == 401
    revoked = (await api.http.get("/api/v1/tokens?include_revoked=true", headers=staff)).json()["items"]
    assert next(t for t in revoked if t["id"] == issued["id"])["revoked_at"] is not None

    # expired tokens are refused like unknown ones
    async with api.pool.acquire() as conn:
        old = await create_token(
            conn, role="guardian", guardian_id=city.a.guardian_id, ttl=timedelta(seconds=-1)
        )
    assert (await api.http.get("/api/v1/me", headers=bearer(old.token))).status_code == 401


@pytest.mark.parametrize(
    ("body", "loc", "says"),
    [
        ({"role": "admin"}, ["body", "role"], "only administrators issue administrator tokens"),
        ({"role": "school", "school_id": 999}, ["body", "school_id"], "not your school"),
        ({"role": "guardian"}, ["body", "guardian_id"], "a guardian token needs guardian_id"),
        ({"role": "device", "tag_id": "tag-b"}, ["body", "tag_id"], "no tag tag-b"),
        ({"role": "guardian", "guardian_id": 1, "tag_id": "tag-a"}, ["body", "tag_id"], "not bound to a tag"),
        ({"role": "guardian", "guardian_id": 1, "ttl_days": 0}, ["body", "ttl_days"], "greater than 0"),
    ],
)
async def test_what_school_staff_may_not_issue(
    api: Api, body: dict[str, object], loc: list[str], says: str
) -> None:
    city = await build_city(api.pool)
    r = await api.http.post("/api/v1/tokens", headers=bearer(city.a.staff), json=body)
    assert r.status_code == 422, r.text
    assert any(p["loc"] == loc and says in p["msg"] for p in r.json()["detail"]), r.json()


async def test_a_gps_tag_gets_a_device_token_and_mqtt_credentials_and_rotation_replaces_both(
    api: Api,
) -> None:
    city = await build_city(api.pool)
    staff = bearer(city.a.staff)
    r = await api.http.post(
        "/api/v1/tags", headers=staff, json={"id": "watch-1", "child_id": city.a.child_id}
    )
    creds = r.json()["credentials"]
    assert creds["mqtt_topic"] == "tracker/v1/tags/watch-1/position" and creds["mqtt_username"] == "watch-1"
    stored = await api.pool.fetchval("SELECT mqtt_password_hash FROM tags WHERE id = 'watch-1'")
    assert stored.startswith("$7$") and mosquitto_check(creds["mqtt_password"], stored)
    device = bearer(creds["device_token"])
    me = (await api.http.get("/api/v1/me", headers=device)).json()
    assert me["role"] == "device" and me["tag_id"] == "watch-1"
    assert (await api.http.get("/api/v1/tags/watch-1", headers=device)).status_code == 200
    assert (await api.http.get(f"/api/v1/tags/{city.a.tag}", headers=device)).status_code == 404
    assert (await api.http.get("/api/v1/children", headers=device)).status_code == 403

    rotated = (await api.http.post("/api/v1/tags/watch-1/credentials", headers=staff)).json()
    assert (await api.http.get("/api/v1/me", headers=device)).status_code == 401  # the old token is revoked
    assert (await api.http.get("/api/v1/me", headers=bearer(rotated["device_token"]))).status_code == 200
    stored = await api.pool.fetchval("SELECT mqtt_password_hash FROM tags WHERE id = 'watch-1'")
    assert mosquitto_check(rotated["mqtt_password"], stored) and not mosquitto_check(
        creds["mqtt_password"], stored
    )

    # an RFID card has no credentials; turning the tag into one takes them away
    r = await api.http.patch("/api/v1/tags/watch-1", headers=staff, json={"kind": "rfid"})
    assert r.json()["has_mqtt_password"] is False and r.json()["mqtt_topic"] is None
    assert (await api.http.get("/api/v1/me", headers=bearer(rotated["device_token"]))).status_code == 401
    r = await api.http.post("/api/v1/tags/watch-1/credentials", headers=staff)
    assert r.status_code == 422 and "RFID card" in r.json()["detail"][0]["msg"]
    # deleting a tag deletes its device tokens
    await api.http.delete("/api/v1/tags/watch-1", headers=staff)
    assert await api.pool.fetchval("SELECT count(*) FROM api_tokens WHERE tag_id = 'watch-1'") == 0


def _connect(port: int, username: str, password: str) -> int:
    """Connect to the broker; returns the CONNACK reason code (0: accepted)."""
    result: list[int] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{username}")
    client.username_pw_set(username, password)

    def on_connect(_c, _u, _f, reason_code, _p):  # type: ignore[no-untyped-def]
        result.append(reason_code.value)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()
    return result[0] if result else -1


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs a local mosquitto binary")
async def test_mosquitto_accepts_the_tags_password_from_a_file_written_from_the_registry(api: Api) -> None:
    city = await build_city(api.pool)
    r = await api.http.post(
        "/api/v1/tags", headers=bearer(city.a.staff), json={"id": "watch-9", "child_id": city.a.child_id}
    )
    password = r.json()["credentials"]["mqtt_password"]
    rows = await api.pool.fetch(
        "SELECT id, mqtt_password_hash FROM tags WHERE mqtt_password_hash IS NOT NULL"
    )
    with tempfile.TemporaryDirectory(prefix="tracker-mosquitto-") as tmp:
        os.chmod(tmp, 0o755)  # mosquitto started as root reads its files as the mosquitto user
        folder = Path(tmp)
        (folder / "passwd").write_text("".join(f"{t['id']}:{t['mqtt_password_hash']}\n" for t in rows))
        port = free_port()
        (folder / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {folder / 'passwd'}\n"
        )
        for name in ("passwd", "mosquitto.conf"):
            os.chmod(folder / name, 0o644)
        broker = await asyncio.create_subprocess_exec(
            "mosquitto", "-c", str(folder / "mosquitto.conf"), stderr=asyncio.subprocess.PIPE
        )
        try:
            for _ in range(50):
                if broker.returncode is not None:
                    raise AssertionError("mosquitto exited")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            assert await asyncio.to_thread(_connect, port, "watch-9", password) == 0
            assert await asyncio.to_thread(_connect, port, "watch-9", password + "x") != 0
            assert await asyncio.to_thread(_connect, port, city.a.tag, password) != 0  # no password set
        finally:
            broker.terminate()
            await broker.wait()


async def test_the_websocket_closes_when_its_token_is_revoked_or_expires(service) -> None:  # type: ignore[no-untyped-def]
    city = await build_city(service.pool)
    base = f"127.0.0.1:{service.settings.http_port}"
    async with service.pool.acquire() as conn:
        issued = await create_token(conn, role="guardian", guardian_id=city.a.guardian_id)
        short = await create_token(
            conn, role="guardian", guardian_id=city.a.guardian_id, ttl=timedelta(seconds=1.5)
        )
    async with websockets.connect(f"ws://{base}/ws?token={issued.token}") as ws:
        assert '"hello"' in await asyncio.wait_for(ws.recv(), 5)
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            r = await http.delete(f"/api/v1/tokens/{issued.id}", headers=bearer(city.a.guardian))
            assert r.status_code == 204
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with websockets.connect(f"ws://{base}/ws?token={short.token}") as ws:
        await asyncio.wait_for(ws.recv(), 5)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
