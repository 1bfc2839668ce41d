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
