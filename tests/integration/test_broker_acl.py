"""`tracker broker-config` on a Mosquitto of the test's own (allow_anonymous false, the written
password_file and acl_file): a tag publishes to its own topics only, only the tracker may subscribe,
an anonymous client gets nothing; a password rotated through the API is refused after broker-config
and the broker's reload, and a client still connected with it is dropped; and a registry holding
accounts that cannot be broker users (from before the API refused them) still gets everyone else's
written, with the ones left out named, counted in /metrics, and the exit status saying so."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.helpers import build_small_world
from tests.integration.test_api_support import bearer, build_city, running_api
from tests.own_servers import OwnMosquitto
from tracker.broker_config import EXIT_LEFT_OUT
from tracker.store.db import connect
from tracker.store.devices import link_device, set_reader_password
from tracker.store.tokens import mosquitto_hash

pytestmark = pytest.mark.skipif(not __import__("shutil").which("mosquitto"), reason="needs mosquitto")


class Client:
    """A paho client that records what it receives and how its connection went."""

    def __init__(self, port: int, user: str | None, password: str | None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused: object = None
        self.arrived = threading.Condition()
        self.dropped = threading.Event()  # the broker closed a connection that had been accepted
        self.accepted = 0  # connections the broker accepted
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:8]}")
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(self, _c, _u, _f, reason, _p) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            self.refused = reason
        else:
            self.accepted += 1
        self.connected.set()

    def _on_disconnect(self, _c, _u, _f, _reason, _p) -> None:  # type: ignore[no-untyped-def]
        if self.accepted:
            self.dropped.set()

    def _on_message(self, _c, _u, m) -> None:  # type: ignore[no-untyped-def]
        with self.arrived:
            self.got.append((m.topic, bytes(m.payload)))
            self.arrived.notify_all()

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *_: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, payload: bytes) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: any(p == payload for _, p in self.got), 10), self.got

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def broker_config(
    database_url: str, passwd: Path, acl: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`tracker broker-config` as the operator runs it, the tracker's user from TRACKER_MQTT_URL."""
    env = {**os.environ, "TRACKER_DATABASE_URL": database_url, "TRACKER_MQTT_URL": TRACKER_URL}
    command = [sys.executable, "-c", "from tracker.cli import main; main()", "broker-config"]
    command += ["--password-file", str(passwd), "--acl-file", str(acl), *extra]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )


TRACKER_URL = "mqtt://tracker:tracker-pw@x:1"


def enforcing_broker(directory: Path, passwd: Path, acl: Path) -> OwnMosquitto:
    return OwnMosquitto(directory, extra=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")


async def test_each_tag_publishes_only_as_itself_and_only_the_tracker_subscribes(
    database_url: str, tmp_path: Path
) -> None:
    conn = await connect(database_url)
    try:
        world = await build_small_world(conn, ["Jane", "Bob"])
        jane, bob = world.kids["Jane"].tag, world.kids["Bob"].tag
        for tag in (jane, bob):
            await conn.execute(
                "UPDATE tags SET mqtt_password_hash = $2 WHERE id = $1", tag, mosquitto_hash(f"pw-{tag}")
            )
        await link_device(conn, tag_id=jane, protocol="owntracks", device="jane/phone")
        await conn.execute(
            "INSERT INTO readers (id, school_id, name, role, lon, lat)"
            " VALUES ('gate-1', $1, 'Gate', 'gate', 127, 37.5)",
            world.school_id,
        )
        reader_pw = await set_reader_password(conn, "gate-1")
    finally:
        await conn.close()

    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    env = {
        **os.environ,
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_MQTT_URL": "mqtt://tracker:tracker-pw@x:1",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            "from tracker.cli import main; main()",
            "broker-config",
            "--password-file",
            str(passwd),
            "--acl-file",
            str(acl),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "3 device account(s)" in done.stdout
    assert {line.split(":")[0] for line in passwd.read_text().splitlines()} == {
        "tracker",
        jane,
        bob,
        "gate-1",
    }

    broker = OwnMosquitto(
        tmp_path / "mosquitto", extra=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
    )
    broker.start()
    clients: list[Client] = []
    try:
        tracker = Client(broker.port, "tracker", "tracker-pw")
        clients.append(tracker)
        assert tracker.connected.wait(10) and tracker.refused is None
        tracker.subscribe("tracker/v1/#")
        tracker.subscribe("owntracks/#")

        as_jane = Client(broker.port, jane, f"pw-{jane}")
        clients.append(as_jane)
        assert as_jane.connected.wait(10) and as_jane.refused is None
        as_jane.subscribe("#")  # granted by the protocol, but the ACL lets nothing through to her
        as_jane.publish(f"tracker/v1/tags/{bob}/position", b"jane pretending to be bob")
        as_jane.publish("owntracks/bob/phone", b"jane as another owntracks device")
        as_jane.publish("tracker/v1/readers/gate-1/sightings", b"jane as a reader")
        as_jane.publish(f"tracker/v1/tags/{jane}/position", b"jane as herself")
        as_jane.publish("owntracks/jane/phone", b"jane's owntracks")
        as_jane.publish("owntracks/jane/phone/event", b"jane's transition")
        reader = Client(broker.port, "gate-1", reader_pw)
        clients.append(reader)
        reader.publish("tracker/v1/readers/gate-1/sightings", b"the gate")
        tracker.wait_for(b"jane's transition")  # one client's messages arrive in order ...
        tracker.wait_for(b"the gate")
        # ... so whatever she was refused would have arrived before her last one
        assert [p for _, p in tracker.got] == [
            b"jane as herself",
            b"jane's owntracks",
            b"jane's transition",
            b"the gate",
        ]
        assert as_jane.got == []  # she saw nobody's messages, not even her own

        wrong = Client(broker.port, jane, "not her password")
        clients.append(wrong)
        anonymous = Client(broker.port, None, None)
        clients.append(anonymous)
        assert wrong.connected.wait(10) and wrong.refused is not None
        assert anonymous.connected.wait(10) and anonymous.refused is not None
        assert anonymous.got == [] and wrong.got == []
    finally:
        for c in clients:
            c.close()
        broker.stop()


async def test_a_rotated_password_is_refused_and_its_connected_client_dropped_after_the_reload(
    database_url: str, tmp_path: Path
) -> None:
    """Mosquitto 2 checks every connected client's password again when SIGHUP makes it read the files
    (mosquitto_security_apply_default) and disconnects those it no longer accepts; the others stay."""
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    async with running_api(database_url, tmp_path, mqtt_url=TRACKER_URL) as api:
        city = await build_city(api.pool)
        staff, tag = bearer(city.a.staff), city.a.tag
        r = await api.http.post(f"/api/v1/tags/{tag}/credentials", headers=staff)
        assert r.status_code == 200, r.text
        old = r.json()["mqtt_password"]
        done = await broker_config(database_url, passwd, acl)
        assert done.returncode == 0, done.stderr

        broker = enforcing_broker(tmp_path / "mosquitto", passwd, acl)
        broker.start()
        clients: list[Client] = []
        try:
            tracker = Client(broker.port, "tracker", "tracker-pw")
            clients.append(tracker)
            assert tracker.connected.wait(10) and tracker.refused is None
            tracker.subscribe("tracker/v1/#")
            stolen = Client(broker.port, tag, old)  # say, a lost tag still sending
            clients.append(stolen)
            assert stolen.connected.wait(10) and stolen.refused is None
            stolen.publish(f"tracker/v1/tags/{tag}/position", b"before the rotation")
            tracker.wait_for(b"before the rotation")

            r = await api.http.post(f"/api/v1/tags/{tag}/credentials", headers=staff)
            assert r.status_code == 200, r.text
            new = r.json()["mqtt_password"]
            assert new != old
            done = await broker_config(database_url, passwd, acl)
            assert done.returncode == 0, done.stderr
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGHUP)

            assert await asyncio.to_thread(stolen.dropped.wait, 10), "the old password's client stayed"
            again = Client(broker.port, tag, old)
            clients.append(again)
            assert again.connected.wait(10) and again.refused is not None
            rotated = Client(broker.port, tag, new)
            clients.append(rotated)
            assert rotated.connected.wait(10) and rotated.refused is None
            rotated.publish(f"tracker/v1/tags/{tag}/position", b"after the rotation")
            tracker.wait_for(b"after the rotation")  # the tracker kept its connection and subscription
            assert not tracker.dropped.is_set() and tracker.accepted == 1
            assert [p for _, p in tracker.got] == [b"before the rotation", b"after the rotation"]
        finally:
            for c in clients:
                c.close()
            broker.stop()


async def test_accounts_that_cannot_be_broker_users_are_left_out_and_everyone_else_written(
    database_url: str, tmp_path: Path
) -> None:
    """A registry from before the API refused them (rows put in with SQL): a GPS tag named like a MAC
    address, one named like the tracker's own user, a reader and a GPS tag of one id. broker-config
    writes every other account, names the ones it left out, and exits EXIT_LEFT_OUT; the broker
    starts with the files, the good tag publishes, none of the others can connect, the tracker's own
    account is the tracker's; /metrics counts them by why."""
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    async with running_api(database_url, tmp_path, mqtt_url=TRACKER_URL) as api:
        city = await build_city(api.pool)
        async with api.pool.acquire() as conn:
            for tag in ("aa:bb:cc:dd:ee:ff", "tracker", "both-1", city.a.tag):
                if tag != city.a.tag:
                    await conn.execute(
                        "INSERT INTO tags (id, child_id, kind) VALUES ($1, $2, 'gps')", tag, city.b.child_id
                    )
                await conn.execute(
                    "UPDATE tags SET mqtt_password_hash = $2 WHERE id = $1", tag, mosquitto_hash(f"pw-{tag}")
                )
            await conn.execute(
                "INSERT INTO readers (id, school_id, name, role, lon, lat)"
                " VALUES ('both-1', $1, 'Gate', 'gate', 127, 37.5)",
                city.a.school_id,
            )
            await conn.execute(
                "UPDATE readers SET mqtt_password_hash = $1 WHERE id = 'both-1'", mosquitto_hash("pw-reader")
            )
            reader_pw = await set_reader_password(conn, city.b.reader)

        done = await broker_config(database_url, passwd, acl, "--publisher", "simulator:sim-pw")
        assert done.returncode == EXIT_LEFT_OUT, done.stderr
        assert "2 device account(s) written" in done.stdout and "4 left out" in done.stdout
        left_out = [line for line in done.stderr.splitlines() if "left out" in line]
        assert left_out == [
            "broker-config: tag 'aa:bb:cc:dd:ee:ff' left out: not a broker user name: ':' is not allowed"
            " (it ends the user name in Mosquitto's password file)",
            "broker-config: tag 'both-1' left out: the reader of the same id is a broker user of that name"
            " too (both are left out: either could be the impostor)",
            "broker-config: tag 'tracker' left out: not a broker user name: 'tracker' is reserved for the"
            " broker's own users (the tracker, publishers)",
            "broker-config: reader 'both-1' left out: the tag of the same id is a broker user of that name"
            " too (both are left out: either could be the impostor)",
        ]
        users = [line.split(":", 1)[0] for line in passwd.read_text().splitlines()]
        assert users == ["tracker", "simulator", city.a.tag, city.b.reader]

        text = (await api.http.get("/metrics")).text
        counts = {
            line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("tracker_broker_accounts_left_out{")
        }
        assert counts == {
            "invalid_name": 1,
            "reserved": 1,
            "duplicate": 2,
            "invalid_topic": 0,
            "invalid_hash": 0,
        }

    broker = enforcing_broker(tmp_path / "mosquitto", passwd, acl)
    broker.start()
    clients: list[Client] = []
    try:
        tracker = Client(broker.port, "tracker", "tracker-pw")
        clients.append(tracker)
        assert tracker.connected.wait(10) and tracker.refused is None
        tracker.subscribe("tracker/v1/#")
        refused = [
            Client(broker.port, "tracker", "pw-tracker"),  # the device named 'tracker': not the tracker
            Client(broker.port, "both-1", "pw-both-1"),
            Client(broker.port, "both-1", "pw-reader"),
        ]
        clients += refused
        for c in refused:
            assert c.connected.wait(10) and c.refused is not None
        good = Client(broker.port, city.a.tag, f"pw-{city.a.tag}")
        gate = Client(broker.port, city.b.reader, reader_pw)
        clients += [good, gate]
        good.publish(f"tracker/v1/tags/{city.a.tag}/position", b"a good tag")
        gate.publish(f"tracker/v1/readers/{city.b.reader}/sightings", b"another school's gate")
        tracker.wait_for(b"a good tag")
        tracker.wait_for(b"another school's gate")
    finally:
        for c in clients:
            c.close()
        broker.stop()


async def test_without_the_trackers_own_account_nothing_is_written(database_url: str, tmp_path: Path) -> None:
    """The operator's mistake (a tracker user that cannot be a broker user) is the whole broker's:
    exit status 1, no file, so that docker-compose does not start a broker nobody can read from."""
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    conn = await connect(database_url)
    try:
        await build_small_world(conn, ["Jane"])
    finally:
        await conn.close()
    done = await broker_config(
        database_url, passwd, acl, "--tracker-user", "track:er", "--tracker-password", "x"
    )
    assert done.returncode == 1 and "nothing written" in done.stderr, done.stderr
    assert not passwd.exists() and not acl.exists()
