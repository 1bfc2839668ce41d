"""Would the broker drop or throttle the tracker? A probe that asks it, at start and every few minutes.

The tracker acknowledges a message only after its commit, so the broker decides how much the tracker
may hold unacknowledged (its in-flight window) and what happens to the rest while the tracker is busy
or away: Mosquitto queues up to ``max_queued_messages`` per client and then drops QoS 1 messages,
saying so only in its own log. A stock Mosquitto keeps 20 in flight (for an MQTT 3.1.1 client; an MQTT
5 client gets the Receive Maximum it asks for) and queues 1000: a burst of SOS messages, or a restart
of the tracker during a commute, would lose fixes and nobody would know.

The probe is a client of its own (client id ``TRACKER_MQTT_CLIENT_ID`` + ``-probe``, a clean session
that ends when it disconnects) speaking the protocol the ingestor speaks, on a topic of its own
(``{prefix}tracker/v1/probe/{client id}``, which no ingest subscription covers, so no probe message
ever reaches the pipeline). It subscribes, then publishes ``window + burst`` QoS 1 messages to itself
while acknowledging none of them:

- when the broker has acknowledged every publish, it has routed every one of them to the probe's
  subscription: sent it (in flight), queued it, or dropped it. What arrived unacknowledged by then is
  the broker's in-flight window (Mosquitto writes a subscriber's PUBLISH before the publisher's PUBACK
  on one connection; a broker that does not is given a short quiet time). Fewer than ``window``: the
  broker throttles the tracker (``max_inflight_messages``);
- then it acknowledges what it holds and publishes a marker. The broker sends the queue in order and
  the marker last (the acknowledgements made room for it in the queue), so when the marker arrives,
  every message that was queued has arrived: fewer than all: the broker drops (``max_queued_messages``).

It speaks MQTT on a plain socket itself (a few packet types, bulk writes): thousands of messages cost
a few milliseconds of the event loop, where paho's per-message callbacks on a thread would cost the
event loop a good part of a second every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from tracker.ingest.mqtt_wire import variable_int

log = logging.getLogger(__name__)


class Protocol(IntEnum):
    """The protocol level byte of CONNECT."""

    MQTT311 = 4
    MQTT5 = 5


CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, DISCONNECT = 1, 2, 3, 4, 8, 9, 14
RECEIVE_MAXIMUM, SESSION_EXPIRY = 0x21, 0x11  # MQTT 5 property identifiers
MAX_RECEIVE_MAXIMUM = 65535  # a two-byte integer in MQTT 5
# CONNACK codes of a broker that does not speak the protocol: 0x84 in MQTT 5, 1 in 3.1.1 (what a
# 3.1.1-only broker such as amqtt answers an MQTT 5 CONNECT with)
UNSUPPORTED = {(Protocol.MQTT311, 1), (Protocol.MQTT5, 1), (Protocol.MQTT5, 0x84)}


class ProbeError(Exception):
    """The probe could not conclude (the broker refused or went away, or did not answer in time)."""


class NotAllowed(ProbeError):
    """The broker does not let the tracker's user publish or read the probe topic (its ACL)."""


class UnsupportedProtocol(ProbeError):
    """The broker does not speak the protocol the CONNECT asked for."""


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


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _varint(len(body)) + body


def connect_packet(
    protocol: Protocol,
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    clean: bool = True,
    receive_maximum: int | None = None,
    session_expiry: int = 0,
    keepalive: int = 30,
) -> bytes:
    flags = (0x80 if username else 0) | (0x40 if password else 0) | (0x02 if clean else 0)
    body = _string("MQTT") + bytes([protocol, flags]) + struct.pack("!H", keepalive)
    if protocol == Protocol.MQTT5:
        props = b""
        if receive_maximum is not None:
            props += bytes([RECEIVE_MAXIMUM]) + struct.pack("!H", receive_maximum)
        if session_expiry:
            props += bytes([SESSION_EXPIRY]) + struct.pack("!I", session_expiry)
        body += _varint(len(props)) + props
    body += _string(client_id)
    if username:
        body += _string(username)
    if password:
        body += _string(password)
    return _packet(CONNECT, 0, body)


def publish_packet(protocol: Protocol, topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH."""
    body = _string(topic) + struct.pack("!H", packet_id)
    if protocol == Protocol.MQTT5:
        body += b"\x00"  # no properties
    return _packet(PUBLISH, 0x02, body + payload)


def puback_packet(packet_id: int) -> bytes:
    """The same four bytes in MQTT 3.1.1 and 5 (in 5: reason Success, no properties, both omitted)."""
    return struct.pack("!BBH", PUBACK << 4, 2, packet_id)


def subscribe_packet(protocol: Protocol, topic: str, packet_id: int) -> bytes:
    body = struct.pack("!H", packet_id) + (b"\x00" if protocol == Protocol.MQTT5 else b"")
    return _packet(SUBSCRIBE, 0x02, body + _string(topic) + b"\x01")


@dataclass
class Packet:
    kind: int
    flags: int
    body: bytes


class Decoder:
    """MQTT packets out of a byte stream, as they complete."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        buf, pos, out = self._buf, 0, []
        while len(buf) - pos >= 2:
            remaining = variable_int(buf, pos + 1)
            if remaining is None:
                break
            length, i = remaining
            if len(buf) - i < length:
                break
            out.append(Packet(buf[pos] >> 4, buf[pos] & 0x0F, bytes(buf[i : i + length])))
            pos = i + length
        del buf[:pos]
        return out


def _connack_receive_maximum(body: bytes) -> int | None:
    """The broker's Receive Maximum from an MQTT 5 CONNACK (how many QoS 1 publishes the probe may
    have unacknowledged towards it), None where it sent none (65,535 then)."""
    properties = variable_int(body, 2)
    if properties is None:
        return None
    length, at = properties
    end = min(len(body), at + length)
    sizes = {0x01: 1, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1, 0x13: 2, 0x21: 2, 0x22: 2}
    sizes |= {0x11: 4, 0x27: 4}
    while at < end:
        ident = body[at]
        at += 1
        if ident == RECEIVE_MAXIMUM:
            return int(struct.unpack_from("!H", body, at)[0])
        if ident in sizes:
            at += sizes[ident]
        elif ident == 0x26:  # user property: two strings
            for _ in range(2):
                at += 2 + struct.unpack_from("!H", body, at)[0]
        elif ident == 0x0B:  # subscription identifier (a varint)
            while body[at] & 0x80:
                at += 1
            at += 1
        else:  # a string or binary datum
            at += 2 + struct.unpack_from("!H", body, at)[0]
    return None


class Connection:
    """One probe connection: CONNECT, SUBSCRIBE, QoS 1 publishes and acknowledgements, all by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: Protocol):
        self.reader, self.writer, self.protocol = reader, writer, protocol
        self.decoder = Decoder()
        self.pending: deque[Packet] = deque()
        self.broker_receive_maximum: int | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        protocol: Protocol,
        client_id: str,
        *,
        username: str | None,
        password: str | None,
        receive_maximum: int | None = None,
        timeout: float = 10.0,
    ) -> Connection:
        """Connected, or ProbeError; ``UnsupportedProtocol`` when the broker does not speak it."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as e:
            raise ProbeError(f"cannot reach the broker at {host}:{port}: {e}") from e
        sock = writer.get_extra_info("socket")
        if sock is not None:  # small packets back and forth: Nagle's delay would cost each round
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = cls(reader, writer, protocol)
        try:
            writer.write(
                connect_packet(
                    protocol, client_id, username=username, password=password, receive_maximum=receive_maximum
                )
            )
            connack = await asyncio.wait_for(conn.next_packet(), timeout)
        except (OSError, TimeoutError) as e:
            conn.close()
            raise ProbeError(f"no answer to the probe's CONNECT: {e or type(e).__name__}") from e
        except BaseException:
            conn.close()
            raise
        if connack is None:  # closed without an answer: what some brokers do with a protocol they lack
            conn.close()
            raise UnsupportedProtocol(f"the broker closed the connection to an MQTT {protocol.name} CONNECT")
        if connack.kind != CONNACK or len(connack.body) < 2:
            conn.close()
            raise ProbeError(f"the broker answered CONNECT with packet type {connack.kind}")
        code = connack.body[1]
        if (protocol, code) in UNSUPPORTED:
            conn.close()
            raise UnsupportedProtocol(f"the broker does not speak MQTT {protocol.name}")
        if code != 0:
            conn.close()
            raise ProbeError(f"the broker refused the probe's connection (CONNACK code {code:#x})")
        if protocol == Protocol.MQTT5:
            conn.broker_receive_maximum = _connack_receive_maximum(connack.body)
        return conn

    async def next_packet(self) -> Packet | None:
        """The next packet (None: the broker closed the connection)."""
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.popleft()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


MAX_PROBE = MAX_RECEIVE_MAXIMUM - 2  # the probe's messages, the marker and the SUBSCRIBE: packet ids


def probe_topic(prefix: str, client_id: str) -> str:
    """The probe's own topic: under ``tracker/v1/probe/`` (the ACL lets the tracker's user read and
    write there), which none of the ingest subscriptions covers."""
    level = "".join("_" if c in "+#/" else c for c in client_id) or "tracker"
    return f"{prefix}tracker/v1/probe/{level}"


# --- one probe ---------------------------------------------------------------------------------------
MARKER = b"end"
QUIET_S = 0.25  # after the broker acknowledged every publish: how long nothing more must arrive


@dataclass(frozen=True)
class Observation:
    """What one probe saw: ``sent`` QoS 1 messages to its own subscription, ``in_flight`` of them
    arrived before it acknowledged any, ``delivered`` arrived in all."""

    sent: int
    in_flight: int
    delivered: int


@dataclass(frozen=True)
class Finding:
    """A broker setting that loses or throttles the tracker's messages, and what the probe saw."""

    setting: str  # "max_queued_messages", "max_inflight_messages", "acl_file"
    why: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.why}"


def judge(seen: Observation, window: int) -> list[Finding]:
    """The broker's settings the tracker cannot live with, from one probe (pure). ``window``: the
    in-flight window the probe asked for (a full batch)."""
    findings = []
    if seen.delivered < seen.sent:
        findings.append(
            Finding(
                "max_queued_messages",
                f"the broker dropped {seen.sent - seen.delivered} of {seen.sent} QoS 1 messages it had to"
                f" queue for a subscriber holding {seen.in_flight} unacknowledged (a burst, or the tracker"
                " busy or restarting, loses fixes): raise max_queued_messages (and max_queued_bytes);"
                " `tracker broker-config --settings-file` writes them",
            )
        )
    if seen.in_flight < min(window, seen.sent):
        findings.append(
            Finding(
                "max_inflight_messages",
                f"the broker let only {seen.in_flight} messages be unacknowledged (the tracker asked for"
                f" {window}; it acknowledges after its commit, so every batch is cut to that): raise"
                " max_inflight_messages; `tracker broker-config --settings-file` writes it",
            )
        )
    return findings


def _publish_of(packet: Packet, protocol: Protocol) -> tuple[int, bytes]:
    """(packet id, payload) of a QoS 1 PUBLISH (0 for a QoS 0 one)."""
    body = packet.body
    at = 2 + struct.unpack_from("!H", body, 0)[0]
    packet_id = 0
    if (packet.flags >> 1) & 3:
        packet_id = struct.unpack_from("!H", body, at)[0]
        at += 2
    if protocol == Protocol.MQTT5:
        properties = variable_int(body, at)
        if properties is None:
            raise ValueError("a PUBLISH whose properties' length is cut short")
        length, at = properties
        at += length
    return packet_id, body[at:]


async def observe(
    *,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    protocol: Protocol,
    client_id: str,
    topic: str,
    window: int,
    burst: int,
    timeout: float = 60.0,
) -> Observation:
    """Publish ``window + burst`` QoS 1 messages to the probe's own subscription without acknowledging
    them, then acknowledge and publish a marker (see the module's docstring). ProbeError when it
    cannot conclude; NotAllowed when nothing comes back (the ACL)."""
    sent = window + burst
    if sent > MAX_PROBE:
        raise ValueError(f"a probe of {sent} messages: at most {MAX_PROBE} (packet ids)")
    conn = await Connection.open(
        host, port, protocol, client_id, username=username, password=password, receive_maximum=window
    )
    try:
        return await asyncio.wait_for(_observe(conn, topic, sent), timeout)
    except TimeoutError as e:
        raise ProbeError(f"the probe did not finish within {timeout:.0f} s") from e
    except (OSError, struct.error, IndexError) as e:  # the connection lost, or a packet it cannot read
        raise ProbeError(f"the probe's connection failed: {e!r}") from e
    finally:
        with contextlib.suppress(Exception):
            conn.writer.write(bytes([DISCONNECT << 4, 0]))
        conn.close()


async def _observe(conn: Connection, topic: str, sent: int) -> Observation:
    protocol, write = conn.protocol, conn.writer.write
    write(subscribe_packet(protocol, topic, 1))
    suback = await conn.next_packet()
    if suback is None or suback.kind != SUBACK:
        raise ProbeError("the broker did not answer the probe's SUBSCRIBE")
    if suback.body[-1] >= 0x80:
        raise NotAllowed(f"the broker refused the subscription to {topic} (code {suback.body[-1]:#x})")

    # the broker may take at most its Receive Maximum of unacknowledged publishes from a client
    pace = min(conn.broker_receive_maximum or MAX_RECEIVE_MAXIMUM, 1000)
    held: list[int] = []  # packet ids of the probe messages that arrived, not acknowledged
    arrived: set[int] = set()
    published = acknowledged = 0

    def take(packets: list[Packet]) -> bytes | None:
        """Count what arrived; the marker's payload if it came."""
        nonlocal acknowledged
        marker = None
        for p in packets:
            if p.kind == PUBACK:
                if len(p.body) > 2 and p.body[2] >= 0x80:
                    raise NotAllowed(
                        f"the broker refused the probe's publish to {topic} (code {p.body[2]:#x})"
                    )
                acknowledged += 1
            elif p.kind == PUBLISH:
                packet_id, payload = _publish_of(p, protocol)
                if payload == MARKER:
                    marker = payload
                elif len(payload) == 4:
                    arrived.add(struct.unpack("!I", payload)[0])
                if packet_id:
                    held.append(packet_id)
        return marker

    async def read() -> list[Packet]:
        packet = await conn.next_packet()
        if packet is None:
            raise ProbeError("the broker closed the probe's connection")
        out = [packet, *conn.pending]
        conn.pending.clear()
        return out

    while acknowledged < sent:
        if published < sent and published - acknowledged < pace:
            n = min(sent - published, pace - (published - acknowledged))
            write(
                b"".join(
                    publish_packet(protocol, topic, struct.pack("!I", published + i), published + i + 1)
                    for i in range(n)
                )
            )
            published += n
        take(await read())
    # every publish routed (Mosquitto wrote what it sent us before its PUBACKs); a broker that routes
    # on its own time gets a moment of quiet
    while len(arrived) < sent:
        try:
            take(await asyncio.wait_for(read(), QUIET_S))
        except TimeoutError:
            break
    in_flight = len(arrived)
    if not in_flight:
        raise NotAllowed(
            f"none of the probe's {sent} messages to {topic} came back: the broker does not let the"
            " tracker's user publish or read there"
        )
    # acknowledge what is held, then the marker: the queue moves into flight and makes room for it
    marker_id = sent + 1
    write(b"".join(puback_packet(i) for i in held) + publish_packet(protocol, topic, MARKER, marker_id))
    held.clear()
    while True:
        done = take(await read())
        if held:
            write(b"".join(puback_packet(i) for i in held))
            held.clear()
        if done:
            return Observation(sent, in_flight, len(arrived))


async def negotiate(
    *, host: str, port: int, username: str | None, password: str | None, client_id: str
) -> Protocol:
    """MQTT 5 where the broker speaks it, else 3.1.1."""
    for protocol in (Protocol.MQTT5, Protocol.MQTT311):
        try:
            conn = await Connection.open(
                host, port, protocol, client_id, username=username, password=password
            )
        except UnsupportedProtocol:
            continue
        conn.writer.write(bytes([DISCONNECT << 4, 0]))
        conn.close()
        return protocol
    raise ProbeError("the broker speaks neither MQTT 5 nor MQTT 3.1.1")


# --- the probe, again and again ----------------------------------------------------------------------
@dataclass
class BrokerProbe:
    """Probes at start and every ``interval_s``; ``problem`` names the settings to change (None: the
    last probe found none). Until a probe concludes, the broker is not known to be fit: ``ready`` is
    False. A probe that cannot conclude (the broker away, a timeout) keeps the last verdict."""

    host: str
    port: int
    username: str | None
    password: str | None
    protocol: Protocol
    client_id: str
    topic: str
    window: int
    burst: int
    interval_s: float
    counted: Callable[[str, list[Finding]], None] = lambda outcome, findings: None
    findings: list[Finding] | None = None
    last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.findings == []

    def problem(self) -> str | None:
        """What /readyz says of the broker's settings when they are not fit (None: fit)."""
        if self.findings is None:
            return f"not probed yet{f' ({self.last_error})' if self.last_error else ''}"
        return "; ".join(str(f) for f in self.findings) or None

    async def probe_once(self) -> list[Finding] | None:
        t = time.perf_counter()
        try:
            seen = await observe(
                host=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                protocol=self.protocol,
                client_id=self.client_id,
                topic=self.topic,
                window=self.window,
                burst=self.burst,
            )
        except NotAllowed as e:
            findings = [
                Finding(
                    "acl_file",
                    f"{e}; the ACL `tracker broker-config` writes lets it (topic readwrite"
                    f" {self.topic.rsplit('/', 1)[0]}/#)",
                )
            ]
        except ProbeError as e:
            self.last_error = str(e)
            self.counted("inconclusive", [])
            log.warning("broker probe inconclusive (%s); the last verdict stands", e)
            return None
        else:
            findings = judge(seen, self.window)
            log.info(
                "broker probe: %d QoS 1 messages, %d in flight before any acknowledgement, %d delivered"
                " (%.2f s)",
                seen.sent,
                seen.in_flight,
                seen.delivered,
                time.perf_counter() - t,
            )
        self.findings, self.last_error = findings, None
        self.counted("failed" if findings else "ok", findings)
        for f in findings:
            log.error("the broker would lose or throttle the tracker's messages: %s", f)
        return findings

    async def run(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self.interval_s)
