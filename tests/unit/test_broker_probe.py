"""The broker probe's pure parts: its verdict, its topic, and the MQTT packets it reads and writes.
(Against real brokers: tests/integration/test_broker_settings.py.)"""

from __future__ import annotations

import struct

import paho.mqtt.client as mqtt
import pytest

from tracker.ingest.broker_probe import (
    Decoder,
    Observation,
    Protocol,
    _connack_receive_maximum,
    _publish_of,
    judge,
    probe_topic,
    puback_packet,
    publish_packet,
)
from tracker.ingest.mqtt import ingest_topics


@pytest.mark.parametrize(
    ("seen", "settings"),
    [
        (Observation(sent=7000, in_flight=2000, delivered=7000), []),  # a configured broker
        (Observation(sent=7000, in_flight=7000, delivered=7000), []),  # a broker that sends it all
        # stock Mosquitto, MQTT 5: the window asked for, 1000 queued, the rest dropped
        (Observation(sent=7000, in_flight=2000, delivered=3000), ["max_queued_messages"]),
        # stock Mosquitto, MQTT 3.1.1: 20 in flight as well
        (
            Observation(sent=7000, in_flight=20, delivered=1020),
            ["max_queued_messages", "max_inflight_messages"],
        ),
        # a large queue but a small window: nothing lost, every batch cut short
        (Observation(sent=7000, in_flight=20, delivered=7000), ["max_inflight_messages"]),
        # fewer sent than the window: all of them in flight is enough
        (Observation(sent=500, in_flight=500, delivered=500), []),
    ],
)
def test_what_the_probe_saw_names_the_settings_to_change(seen: Observation, settings: list[str]) -> None:
    assert [f.setting for f in judge(seen, window=2000)] == settings


def test_a_finding_says_how_many_were_lost_and_what_writes_the_fix() -> None:
    (dropped,) = judge(Observation(sent=7000, in_flight=2000, delivered=3000), window=2000)
    assert str(dropped).startswith("max_queued_messages: the broker dropped 4000 of 7000 QoS 1 messages")
    assert "tracker broker-config --settings-file" in dropped.why


@pytest.mark.parametrize("client_id", ["tracker-ingest-1", "odd/id+#"])
def test_no_ingest_subscription_covers_the_probe_topic(client_id: str) -> None:
    topic = probe_topic("city/", client_id)
    assert topic.startswith("city/tracker/v1/probe/") and not any(c in topic for c in "+#")
    assert topic.count("/") == 4
    assert not any(mqtt.topic_matches_sub(sub, topic) for sub in ingest_topics("city/"))


@pytest.mark.parametrize("protocol", [Protocol.MQTT311, Protocol.MQTT5])
def test_packets_split_anywhere_decode_whole(protocol: Protocol) -> None:
    stream = b"".join(publish_packet(protocol, "t/x", struct.pack("!I", i), i + 1) for i in range(300))
    stream += puback_packet(7)
    decoder, packets = Decoder(), []
    for at in range(0, len(stream), 7):  # 7 bytes at a time: headers and bodies cut in two
        packets += decoder.feed(stream[at : at + 7])
    assert [p.kind for p in packets] == [3] * 300 + [4]
    assert [_publish_of(p, protocol) for p in packets[:3]] == [
        (i + 1, struct.pack("!I", i)) for i in range(3)
    ]
    assert packets[-1].body == struct.pack("!H", 7)


def test_the_brokers_receive_maximum_is_read_from_its_connack() -> None:
    # session present 0, reason 0; properties: Topic Alias Maximum 10, Receive Maximum 20 (Mosquitto's)
    props = bytes([0x22, 0, 10, 0x21, 0, 20])
    assert _connack_receive_maximum(bytes([0, 0, len(props)]) + props) == 20
    assert _connack_receive_maximum(bytes([0, 0, 0])) is None
