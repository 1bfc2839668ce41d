"""bench/e2e.py's lean publisher against the real broker: every message arrives, and is acknowledged."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load.rawpub import RawPublisher  # noqa: E402
from tests.integration.test_simulator_mqtt import Subscriber  # noqa: E402


def test_every_message_arrives_in_order_and_is_acknowledged(mqtt_url: str) -> None:
    prefix = f"test-rawpub-{uuid.uuid4().hex[:10]}/"
    sub = Subscriber(mqtt_url, prefix)
    try:
        pub = RawPublisher(mqtt_url, qos=1, window=100)
        # fewer than a default Mosquitto queues for a slow subscriber (1000): beyond, it drops QoS 1
        messages = [(f"{prefix}tracker/v1/tags/t{i % 7}/position", b'{"n": %d}' % i) for i in range(800)]
        times = pub.publish_many(messages, chunk=50)
        pub.drain(15.0)
        assert pub.published == pub.acked == 800 and len(times) == 800
        assert times == sorted(times)
        pub.close()
        received = sub.wait_for(800)
    finally:
        sub.close()
    assert sorted(received) == sorted(messages)
    per_topic = [p for t, p in received if t.endswith("/t3/position")]
    assert per_topic == [p for t, p in messages if t.endswith("/t3/position")], "in order per topic"
