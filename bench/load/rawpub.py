"""A lean MQTT 3.1.1 publisher for the benchmark's load: PUBLISH packets built by hand and written to
the socket in chunks, PUBACKs counted by a reader thread. On a 2-core machine paho's publish path
(about 50 µs of Python per message) took most of a core away from the tracker under test; this one
costs a few µs per message, so that the measurement is of the tracker, not of the load generator.
Only what the benchmark needs: anonymous or user/password, clean session, QoS 0 or 1, no keepalive.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterable

from simulator.publisher import MqttTarget, parse_mqtt_url


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def publish_packet(topic: str, payload: bytes, qos: int, mid: int) -> bytes:
    body = _string(topic) + (struct.pack("!H", mid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _varint(len(body)) + body


class RawPublisher:
    def __init__(self, url: str, *, qos: int = 1, window: int = 4000) -> None:
        target = parse_mqtt_url(url)
        self.qos = qos
        self.window = window
        self.published = 0
        self.acked = 0
        self._cv = threading.Condition()
        self._mid = 0
        deadline = time.monotonic() + 60.0
        while True:  # as a device does: nats-server closes a connection whose CONNECT it cannot serve in
            try:  # time (its session streams busy, e.g. while a cluster's consumers are being made)
                self._connect(target)
                break
            except ConnectionRefusedError:  # nothing listens there: not a busy broker
                raise
            except (ConnectionError, TimeoutError) as e:
                if time.monotonic() > deadline:
                    raise
                print(f"publisher: connecting to {url} again ({e})", file=sys.stderr, flush=True)
                time.sleep(0.5)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _connect(self, target: MqttTarget) -> None:
        self._sock = socket.create_connection((target.host, target.port), timeout=30)
        try:
            self._handshake(target)
        except BaseException:
            self._sock.close()
            raise

    def _handshake(self, target: MqttTarget) -> None:
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags = 0x02  # clean session
        payload = _string(f"bench-pub-{uuid.uuid4().hex[:10]}")
        if target.username is not None:
            flags |= 0x80
            payload += _string(target.username)
            if target.password is not None:
                flags |= 0x40
                payload += _string(target.password)
        variable = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 0)  # keepalive off
        self._sock.sendall(bytes([0x10]) + _varint(len(variable) + len(payload)) + variable + payload)
        connack = self._recv_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"the broker refused the connection: {connack!r}")  # (not retried)

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                acks = 0
                i = 0
                while len(buf) - i >= 2:
                    kind, length = buf[i] & 0xF0, buf[i + 1]  # PUBACK and PINGRESP are short
                    if len(buf) - i < 2 + length:
                        break
                    if kind == 0x40:
                        acks += 1
                    i += 2 + length
                buf = buf[i:]
                if acks:
                    with self._cv:
                        self.acked += acks
                        self._cv.notify_all()
        except OSError:
            return

    @property
    def outstanding(self) -> int:
        return self.published - self.acked if self.qos else 0

    def publish_many(self, messages: Iterable[tuple[str, bytes]], chunk: int = 64) -> list[float]:
        """Publish in chunks of ``chunk`` packets; the time each chunk was written, per message."""
        times: list[float] = []
        packets: list[bytes] = []
        for topic, payload in messages:
            if self.qos:
                self._mid = self._mid % 65535 + 1
            packets.append(publish_packet(topic, payload, self.qos, self._mid))
            if len(packets) >= chunk:
                times += self._send(packets)
                packets = []
        if packets:
            times += self._send(packets)
        return times

    def _send(self, packets: list[bytes]) -> list[float]:
        if self.qos:
            with self._cv:
                while self.published - self.acked + len(packets) > self.window:
                    self._cv.wait(1.0)
        now = time.time()
        self._sock.sendall(b"".join(packets))
        self.published += len(packets)
        return [now] * len(packets)

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.outstanding and time.monotonic() < deadline:
                self._cv.wait(0.1)

    def close(self) -> None:
        try:
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self._sock.close()
