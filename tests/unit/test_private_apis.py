"""The private APIs of paho-mqtt and numba the tracker leans on still behave as it expects.

pyproject.toml bounds both packages below their next minor release; these tests are what to run
before raising a bound. A failure names the private API, where the tracker uses it and what to check.
"""

import asyncio
import inspect
import socket
import struct
from collections.abc import Iterator
from importlib.metadata import version

import numba
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from tracker.geofence.kernels.jit import _NO_NRT
from tracker.ingest.buffered_socket import BufferedSocket
from tracker.ingest.decode import RawMessage
from tracker.ingest.handoff import Handoff
from tracker.ingest.mqtt import MqttIngestor

PAHO = f"paho-mqtt {version('paho-mqtt')}"
NUMBA = f"numba {version('numba')}"


def puback(mid: int) -> bytes:
    return struct.pack("!BBH", mqtt.PUBACK, 2, mid)


def read_exactly(peer: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = peer.recv(n - len(data))
        assert chunk, f"the client closed the connection after {data!r}"
        data += chunk
    return data


def read_to_the_end(peer: socket.socket) -> bytes:
    data = b""
    while chunk := peer.recv(4096):
        data += chunk
    return data


def skip_connect_packet(peer: socket.socket) -> None:
    """Read the CONNECT packet paho sends first (fixed header, variable-length remaining length)."""
    assert read_exactly(peer, 1)[0] >> 4 == 1, "the first packet is not a CONNECT"
    length, shift = 0, 0
    while True:
        byte = read_exactly(peer, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    read_exactly(peer, length)


@pytest.fixture(params=[False, True], ids=["mqtt311", "mqtt5"])
def connected(request: pytest.FixtureRequest) -> Iterator[tuple[MqttIngestor, socket.socket]]:
    """An ingestor whose paho client is connected (no network thread: paho writes as it is called)
    to a listening socket that reads what it sends, past its CONNECT; in MQTT 3.1.1 and in 5."""
    loop = asyncio.new_event_loop()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        ingestor = MqttIngestor(
            url=f"mqtt://127.0.0.1:{port}",
            client_id="private-api-probe",
            topics=[],
            queue=Handoff(loop, 1),
            mqtt5=request.param,
        )
        client = ingestor._client
        client.connect("127.0.0.1", port)
        peer, _ = server.accept()
        peer.settimeout(30)  # a guard against a hang if nothing is sent, not a measure of anything
        try:
            skip_connect_packet(peer)
            yield ingestor, peer
        finally:
            client.disconnect()
            peer.close()
            loop.close()


def test_paho_creates_its_socket_through_create_socket_and_keeps_it_in_sock(
    connected: tuple[MqttIngestor, socket.socket],
) -> None:
    ingestor, _ = connected
    assert "_create_socket" in vars(mqtt.Client), (
        f"{PAHO}: Client._create_socket is gone; tracker/ingest/mqtt.py's _Client overrides it to read "
        "plain TCP through a BufferedSocket. Find where paho now opens its socket, then move the bound "
        "in pyproject.toml"
    )
    assert isinstance(ingestor._client._sock, BufferedSocket), (
        f"{PAHO}: after connect, Client._sock is {type(ingestor._client._sock).__name__}, not the "
        "BufferedSocket _Client._create_socket returned: paho no longer opens its socket through "
        "_create_socket, or keeps it elsewhere than _sock (_Client.loop_read reads _sock's buffer)"
    )


def test_a_batch_of_pubacks_goes_through_packet_queue_as_the_bytes_paho_sends(
    connected: tuple[MqttIngestor, socket.socket],
) -> None:
    ingestor, peer = connected
    queue = getattr(mqtt.Client, "_packet_queue", None)
    assert callable(queue), (
        f"{PAHO}: Client._packet_queue is gone; MqttIngestor.ack (tracker/ingest/mqtt.py) hands it a "
        "batch of PUBACKs as one write, and silently falls back to one write per message without it"
    )
    assert list(inspect.signature(queue).parameters)[:5] == ["self", "command", "packet", "mid", "qos"], (
        f"{PAHO}: Client._packet_queue{inspect.signature(queue)} is not (command, packet, mid, qos, ...), "
        "the call MqttIngestor.ack makes"
    )
    ingestor.ack([RawMessage("t", b"", 0.0, mid, 1, 0) for mid in (1, 2, 300)])
    ingestor._client.ack(4, 1)  # paho's own acknowledgement: the bytes ack builds by hand
    ingestor._client.disconnect()  # a DISCONNECT, then paho closes the connection
    sent = read_to_the_end(peer)
    assert sent[:12] == puback(1) + puback(2) + puback(300), (
        f"{PAHO}: the PUBACKs MqttIngestor.ack queued through Client._packet_queue were not written as "
        f"given: {sent.hex(' ')}"
    )
    assert sent[12:] == puback(4) + bytes([mqtt.DISCONNECT, 0]), (
        f"{PAHO}: Client.ack no longer sends the PUBACK MqttIngestor.ack builds by hand"
        f" ({'MQTT 5' if ingestor.mqtt5 else 'MQTT 3.1.1'}): "
        f"{sent[12:].hex(' ')}"
    )


def total(values: np.ndarray) -> float:
    s = 0.0
    for v in values:
        s += v
    return s


def test_numba_compiles_without_nrt_when_told_to() -> None:
    values = np.arange(5.0)
    without = numba.njit(**_NO_NRT)(total)
    assert without(values) == 10.0
    with_nrt = numba.njit(total)
    assert with_nrt(values) == 10.0
    ir_without = without.inspect_llvm(without.signatures[0])
    ir_with = with_nrt.inspect_llvm(with_nrt.signatures[0])
    assert "NRT_decref" in ir_with, (
        f"{NUMBA}: a function taking an array no longer calls NRT_decref even with NRT on, so this test "
        "cannot tell whether _nrt=False works; check whether the geofence kernels still need it"
    )
    assert "NRT_" not in ir_without, (
        f"{NUMBA}: the private jit option {_NO_NRT} (tracker/geofence/kernels/jit.py: the hot and inline "
        "kernels) no longer compiles without numba's reference-counting runtime; the kernels pay an "
        "atomic increment and decrement per array per call. Check numba's release notes for _nrt, "
        "then move the bound in pyproject.toml"
    )


def _publish(topic: bytes, payload: bytes, qos: int, mid: int, properties: bytes | None) -> tuple[int, bytes]:
    """A PUBLISH's fixed header's first byte and the rest after the remaining length (paho's
    ``_in_packet`` command and packet); ``properties``: MQTT 5's, with their length byte(s)."""
    header = mqtt.PUBLISH | (qos << 1) | 0x08 * (qos > 0) | 0x01 * (payload == b"retained")
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    return header, body + (properties or b"") + payload


# (what, protocol 5?, topic, payload, qos, properties): each read by _Client and by paho itself
PUBLISHES = [
    ("3.1.1, QoS 1", False, b"tracker/v1/tags/a/position", b'{"ts": 1}', 1, None),
    ("3.1.1, QoS 0, retained", False, b"t/x", b"retained", 0, None),
    ("3.1.1, empty payload", False, b"t/x", b"", 1, None),
    ("5, QoS 1, no properties", True, b"tracker/v1/tags/a/position", b'{"ts": 1}', 1, b"\x00"),
    ("5, QoS 0, no properties", True, b"t/x", b"retained", 0, b"\x00"),
    ("5, empty payload", True, b"t/x", b"", 1, b"\x00"),
    ("5, a user property (paho reads it)", True, b"t/x", b"p", 1, b"\x07\x26\x00\x01k\x00\x01v"),
    ("5, QoS 2 (paho reads it)", True, b"t/x", b"p", 2, b"\x00"),
]


@pytest.mark.parametrize("what, v5, topic, payload, qos, props", PUBLISHES, ids=[p[0] for p in PUBLISHES])
def test_the_ingestor_reads_a_publish_as_paho_does(
    what: str, v5: bool, topic: bytes, payload: bytes, qos: int, props: bytes | None
) -> None:
    """tracker/ingest/mqtt.py's _Client._handle_publish reads the PUBLISH packets devices send
    (QoS 0 or 1, in MQTT 5 without properties) itself, the rest through paho's: the same message
    either way, from paho's private ``_in_packet`` and ``_handle_on_message``."""
    loop = asyncio.new_event_loop()
    try:
        ingestor = MqttIngestor(
            url="mqtt://127.0.0.1:1", client_id="p", topics=[], queue=Handoff(loop, 1), mqtt5=v5
        )
        client = ingestor._client
        got: list[mqtt.MQTTMessage] = []
        client.on_message = lambda _c, _u, m: got.append(m)
        command, packet = _publish(topic, payload, qos, 513, props)
        client._in_packet = {"command": command, "packet": packet}
        for read in (type(client)._handle_publish, mqtt.Client._handle_publish):
            read(client)
    finally:
        loop.close()
    if qos == 2:  # paho holds a QoS 2 message until PUBREL: neither path hands it on yet
        assert got == [], what
        return
    ours, paho = got
    fields = ("mid", "topic", "payload", "qos", "retain", "dup")
    assert [getattr(ours, f) for f in fields] == [getattr(paho, f) for f in fields], (
        f"{PAHO}: {what}: _Client._handle_publish read {[getattr(ours, f) for f in fields]}, paho "
        f"{[getattr(paho, f) for f in fields]}; check paho's PUBLISH reading (_packet.decode_publish)"
    )
    assert (ours.mid, ours.topic, ours.payload) == (513 if qos else 0, topic.decode(), payload), what


def _packet(topic: bytes, payload: bytes, qos: int, mid: int, properties: bytes | None) -> bytes:
    """A whole PUBLISH packet as the broker sends it (fixed header, remaining length, the rest)."""
    command, rest = _publish(topic, payload, qos, mid, properties)
    length, n = b"", len(rest)
    while True:
        byte, n = n & 0x7F, n >> 7
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([command]) + length + rest


def test_publishes_read_from_the_buffer_are_those_paho_reads(
    connected: tuple[MqttIngestor, socket.socket],
) -> None:
    """_Client._packet_read takes the PUBLISH packets whole in the buffer itself (``on_publishes``)
    and leaves the others, and a packet cut by the end of what was received, to paho's reader
    (``on_message``): the messages come out the same and in the order they were sent."""
    ingestor, peer = connected
    client = ingestor._client
    v5 = ingestor.mqtt5
    none = b"\x00" if v5 else None
    got: list[tuple[str, str, bytes, int, int]] = []
    client.on_publishes = lambda ps: got.extend(("buffer", t, p, mid, qos) for t, p, mid, qos in ps)
    client.on_message = lambda _c, _u, m: got.append(("paho", m.topic, m.payload, m.mid, m.qos))
    big = b"x" * 300  # a remaining length of two bytes
    sent = [
        (b"tracker/v1/tags/a/position", b'{"ts": 1}', 1, 7, none),
        (b"t/b", b"", 0, 0, none),
        (b"t/c", big, 1, 65535, none),
        (b"t/d", b"p", 1, 8, b"\x07\x26\x00\x01k\x00\x01v" if v5 else None),  # v5: properties
        (b"t/e", b"q", 1, 9, none),
    ]
    stream = b"".join(_packet(*p) for p in sent)
    stream += bytes([mqtt.PINGRESP, 0]) + _packet(b"t/f", b"r", 1, 10, none)
    cut = len(stream) - 3  # the last packet arrives in two parts
    peer.sendall(stream[:cut])
    for _ in range(20):
        client.loop_read()
    peer.sendall(stream[cut:])
    for _ in range(20):
        client.loop_read()
    expected = [(t.decode(), p, mid, qos) for t, p, qos, mid, _ in sent] + [("t/f", b"r", 10, 1)]
    assert [g[1:] for g in got] == expected, f"{PAHO}: {got}"
    # (the first packet of a receive is paho's: it fills the buffer)
    assert got[1][0] == "buffer", f"{PAHO}: _Client._packet_read no longer reads the buffer itself"
    if v5:
        assert got[3][0] == "paho", "a PUBLISH with properties is paho's to read"
