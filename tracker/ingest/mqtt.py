"""The MQTT side of ingest: a paho-mqtt client on its own thread, handing messages to asyncio.

QoS 1 with a persistent session and a fixed client id, and manual acknowledgement: a message is
acknowledged only after the fixes and alerts it caused are committed (`ack`), so a crash between
receipt and commit makes the broker deliver it again.

MQTT 5 where the broker speaks it (tracker.ingest.broker_probe.negotiate; else 3.1.1): the session is
kept with clean_start=False and a Session Expiry Interval that never ends (what clean_session=False
is in 3.1.1), and CONNECT asks for a Receive Maximum, the number of unacknowledged messages the broker
may send: what the tracker can usefully hold (:func:`receive_maximum`). In 3.1.1 the broker's own
``max_inflight_messages`` decides that (Mosquitto's default, 20, cuts every batch to 20 messages).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tracker.ingest.buffered_socket import BufferedSocket
from tracker.ingest.decode import RawMessage
from tracker.ingest.handoff import Handoff
from tracker.ingest.mqtt_wire import variable_int

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """mqtt://[user[:password]@]host[:port]"""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"not an MQTT URL (mqtt://[user:pass@]host:port): {url!r}")
        return cls(
            parts.hostname,
            parts.port or 1883,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )


def ingest_topics(prefix: str) -> list[str]:
    """The subscriptions of the tracker: native tag fixes, gateway batches, RFID readers' sightings,
    and the OwnTracks app (locations and last wills; transitions on .../event)."""
    return [
        f"{prefix}tracker/v1/tags/+/position",
        f"{prefix}tracker/v1/gateways/+/positions",
        f"{prefix}tracker/v1/readers/+/sightings",
        f"{prefix}owntracks/+/+",
        f"{prefix}owntracks/+/+/event",
    ]


def receive_maximum(ingest_queue_max: int, batch_max_messages: int) -> int:
    """The in-flight window the tracker can use: the ingest queue full, one batch committing and the
    next being prepared (more would only wait in socket buffers); MQTT 5 allows at most 65,535."""
    return min(65535, ingest_queue_max + 2 * batch_max_messages)


SESSION_NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5 Session Expiry Interval: the session outlives any outage

READ_BURST = 2000  # packets paho reads from the buffer before it looks at its writes and timers again


class _Client(mqtt.Client):
    """paho's client reading a plain TCP connection through a buffer (tracker.ingest.buffered_socket);
    TLS and websocket connections are left as paho makes them.

    It leans on paho's private ``_create_socket`` and ``_sock`` (and MqttIngestor.ack on
    ``_packet_queue``): pyproject.toml keeps paho-mqtt below its next minor release, and
    tests/unit/test_private_apis.py says which of them changed before that bound is raised."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket):
            return BufferedSocket(sock)
        return sock

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """A PUBLISH of QoS 0 or 1 with a topic (and in MQTT 5 without properties: what tags and phone
        apps send) read here; any other is paho's. paho builds a ``Properties`` object for every MQTT 5
        PUBLISH, empty or not, and reads it byte by byte, and splits every packet with struct formats
        made for it: a message cost the tracker's MQTT thread about 70 µs of CPU in MQTT 5 and 35 µs
        in 3.1.1, against about 30 µs read here (docs/performance.md). A message with properties (a
        topic alias, user properties, ...), of QoS 2 or without a topic goes to paho's own reader.
        This leans on paho's private ``_in_packet``, ``_protocol`` and ``_manual_ack``
        (tests/unit/test_private_apis.py)."""
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        topic_end = 2 + int.from_bytes(packet[0:2], "big")
        payload_at = topic_end + 2 if qos else topic_end
        if self._protocol == mqtt.MQTTv5:
            if len(packet) <= payload_at or packet[payload_at] != 0:  # properties: paho reads them
                return super()._handle_publish()
            payload_at += 1  # the properties' length: none
        if qos == 2 or topic_end == 2 or len(packet) < payload_at:
            return super()._handle_publish()
        message = mqtt.MQTTMessage(
            int.from_bytes(packet[topic_end : topic_end + 2], "big") if qos else 0,
            bytes(packet[2:topic_end]),
        )
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.payload = bytes(packet[payload_at:])
        message.timestamp = mqtt.time_func()
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    on_publishes: Callable[[list[Publish]], None] | None = None
    """Told of the PUBLISH packets ``_packet_read`` read straight from the buffer (in order, before
    any packet after them); None: every packet goes through paho's reader and ``on_message``."""

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        """The PUBLISH packets already whole in the read buffer, read from it at once and handed on
        together (``on_publishes``); anything else (another packet, one not whole yet, QoS 2,
        properties, no manual acknowledgement, a topic that is not UTF-8) is left to paho's reader,
        from where this stopped. paho reads a packet with three or four ``recv`` calls, makes a dict,
        a bytearray, an ``MQTTMessage`` with a ``threading.Condition``, and takes two locks, per
        message: about 12 µs of the tracker's CPU per single fix (bench/mqtt_receive.py). This
        leans on paho's private ``_in_packet``, ``_protocol``, ``_manual_ack``, ``_msgtime_mutex``
        and ``_last_bytes_received`` (tests/unit/test_private_apis.py)."""
        sock = self._sock
        deliver = self.on_publishes
        if (
            deliver is None
            or not isinstance(sock, BufferedSocket)
            or self._in_packet["command"] != 0
            or not self._manual_ack
        ):
            return super()._packet_read()
        publishes = read_publishes(sock, self._protocol == mqtt.MQTTv5, READ_BURST)
        if not publishes:
            return super()._packet_read()
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        with self._in_callback_mutex:
            deliver(publishes)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        """Straight to ``on_message``: this client has no per-topic callbacks, and paho matched every
        message's topic against them (a trie walk of generators: about a sixth of the MQTT thread's
        time in a burst)."""
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    def message_callback_add(self, sub: str, callback: Any) -> None:
        raise NotImplementedError("the ingestor's client delivers every message to on_message")

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Read the packets already buffered (at most READ_BURST), not one per turn of paho's loop
        (each turn costs a select(); paho writes our acknowledgements between bursts)."""
        rc = super().loop_read(max_packets)
        sock = self._sock
        burst = READ_BURST
        while rc == mqtt.MQTT_ERR_SUCCESS and isinstance(sock, BufferedSocket) and sock.pending() and burst:
            rc = super().loop_read(max_packets)
            burst -= 1
        return rc


Publish = tuple[str, bytes, int, int]
"""A PUBLISH read from the buffer: topic, payload, packet id (0 at QoS 0), QoS"""


def read_publishes(sock: BufferedSocket, mqtt5: bool, most: int) -> list[Publish]:
    """The PUBLISH packets of QoS 0 or 1 (in MQTT 5 without properties) whole at the head of the
    socket's buffer, at most ``most``, taken out of it; it stops before the first other packet, or
    one not whole yet (paho's reader goes on from there). The same bytes as ``_handle_publish``
    reads, from the buffer itself."""
    buf, pos = sock.buffered()
    end = len(buf)
    out: list[Publish] = []
    while pos < end and len(out) < most:
        header = buf[pos]
        if header & 0xF0 != mqtt.PUBLISH:
            break
        qos = (header & 0x06) >> 1
        if qos == 2:
            break
        remaining = variable_int(buf, pos + 1, end)
        if remaining is None:
            break  # not whole yet, or longer than 4 bytes (paho says which)
        length, i = remaining
        packet_end = i + length
        if packet_end > end or length < 2:
            break
        topic_end = i + 2 + int.from_bytes(buf[i : i + 2], "big")
        payload_at = topic_end + 2 if qos else topic_end
        if mqtt5:
            if packet_end <= payload_at or buf[payload_at] != 0:  # properties: paho reads them
                break
            payload_at += 1
        if topic_end == i + 2 or payload_at > packet_end:
            break
        try:
            topic = buf[i + 2 : topic_end].decode()
        except UnicodeDecodeError:
            break
        mid = int.from_bytes(buf[topic_end : topic_end + 2], "big") if qos else 0
        out.append((topic, buf[payload_at:packet_end], mid, qos))
        pos = packet_end
    sock.consume(pos)
    return out


_PUBACK = struct.Struct("!BBH")  # fixed header (PUBACK, remaining length 2), packet id


class MqttIngestor:
    """Receives broker messages into an asyncio queue; acknowledges them when told to."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        topics: list[str],
        queue: Handoff[RawMessage],
        mqtt5: bool = False,
        window: int = 1000,
    ) -> None:
        """``mqtt5``: speak MQTT 5, asking for ``window`` unacknowledged messages (Receive Maximum);
        else MQTT 3.1.1 (the broker's max_inflight_messages decides)."""
        self._address = BrokerAddress.parse(url)
        self._topics = topics
        self._queue = queue
        self._session = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.mqtt5 = mqtt5
        self._connect_properties: Properties | None = None
        if mqtt5:
            self._client = _Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
            )
            self._connect_properties = Properties(PacketTypes.CONNECT)
            self._connect_properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
            self._connect_properties.ReceiveMaximum = window
        else:
            self._client = _Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=client_id,
                clean_session=False,
                protocol=mqtt.MQTTv311,
                manual_ack=True,
            )
        if self._address.username:
            self._client.username_pw_set(self._address.username, self._address.password)
        self._client.max_inflight_messages_set(1000)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publishes = self._on_publishes

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        if self.mqtt5:  # paho sends the same CONNECT (and properties) again on every reconnect
            self._client.connect_async(
                self._address.host,
                self._address.port,
                keepalive=30,
                clean_start=False,
                properties=self._connect_properties,
            )
        else:
            self._client.connect_async(self._address.host, self._address.port, keepalive=30)
        self._client.loop_start()

    async def wait_connected(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._connected.is_set():
            if time.monotonic() > deadline:
                a = self._address
                raise TimeoutError(f"MQTT broker {a.host}:{a.port} not reachable within {timeout:.0f} s")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._queue.close()  # a paho thread waiting for room must not keep loop_stop from returning
        self._client.disconnect()
        self._client.loop_stop()

    def current(self, messages: list[RawMessage]) -> list[RawMessage]:
        """Every message (one tracker on MQTT reads every child, and never reads one again)."""
        return messages

    def not_committed(self, messages: Iterable[RawMessage]) -> None:
        """Nothing: one tracker on MQTT owns every child, so no commit of its is ever fenced (a message
        left unacknowledged is the broker's to deliver again, on the next connection)."""

    def ack(self, messages: Iterable[RawMessage]) -> None:
        """Acknowledge messages whose effects are committed; those from an older connection are left
        alone (the broker redelivers them, and reprocessing them changes nothing).

        A batch's PUBACKs go out as one write: paho's ``ack`` queues one packet per message, and each
        packet costs a wake-up of paho's thread and a send() of 4 bytes (most of the per-message cost
        of acknowledging after commit). The PUBACKs are the same bytes paho would send, in MQTT 3.1.1 and in
        5 (where a PUBACK of reason Success without properties may omit both)."""
        with self._lock:
            session = self._session
        mids = []
        for m in messages:
            if m.qos > 0 and m.session == session:
                if m.qos == 1:
                    mids.append(m.mid)
                else:
                    self._client.ack(m.mid, m.qos)
        if not mids:
            return
        queue = getattr(self._client, "_packet_queue", None)
        if queue is None:  # a paho without it: one packet per message
            for mid in mids:
                self._client.ack(mid, 1)
            return
        queue(mqtt.PUBACK, b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids]), 0, 0)

    # --- paho callbacks (paho's thread) --------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: object, _p: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT connect refused: %s", reason)
            return
        with self._lock:
            self._session += 1
        client.subscribe([(t, 1) for t in self._topics])
        self._connected.set()
        log.info(
            "MQTT %s connected to %s:%s, subscribed to %s",
            "5" if self.mqtt5 else "3.1.1",
            self._address.host,
            self._address.port,
            self._topics,
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        self._connected.clear()
        log.warning("MQTT disconnected (%s); paho reconnects with back-off", reason)

    def _on_publishes(self, publishes: list[Publish]) -> None:
        """A buffer's worth of PUBLISH packets (_Client._packet_read): one receipt time (they came in
        one recv) and one hand-off for them all. ``_session`` is only ever changed on this thread."""
        now, session = time.time(), self._session
        self._queue.put_many([RawMessage(t, p, now, mid, qos, session) for t, p, mid, qos in publishes])

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            session = self._session
        raw = RawMessage(
            message.topic, bytes(message.payload), time.time(), message.mid, message.qos, session
        )
        self._queue.put(raw)  # waits while the pipeline is behind: back-pressure on the broker
