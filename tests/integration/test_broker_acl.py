"""`tracker broker-config` on a Mosquitto of the test's own (allow_anonymous false, the written
password_file and acl_file): a tag publishes to its own topics only, only the tracker may subscribe,
an anonymous client gets nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.helpers import build_small_world
from tests.own_servers import OwnMosquitto
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
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:8]}")
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(self, _c, _u, _f, reason, _p) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            self.refused = reason
        self.connected.set()

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
