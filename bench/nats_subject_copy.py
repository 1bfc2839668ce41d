"""What a front pays for the QoS 1 copies it skips (docs/scaling.md, "Why `$MQTT_msgs`"): a core NATS
subscription's CPU per message in nats-py, for messages without headers and with the header
nats-server's MQTT listener puts on a QoS 1 copy (`Nmqtt-Pub`: nats-server 2.15.1 sends that one alone
on the subject here, mappings or not; other versions' sources add `Nmqtt-Subject` and `Nmqtt-Mapped`,
which would cost more), read as the front reads it. One nats-server of its own
(tracker.embedded), a publisher in another process, 100,000 messages of a single fix's size each.

    .venv/bin/python bench/nats_subject_copy.py [--messages 100000]

Prints the subscriber's CPU per message for each kind, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.msg import Msg

from tracker.embedded import EmbeddedNats
from tracker.ingest.jetstream import MQTT_HEADER

PAYLOAD = b'{"ts":1700000000.0,"lat":37.5665,"lon":126.978,"acc":8.0,"batt":80}'
SUBJECT = "tin.3.tracker.v1.tags.T1.position"


async def subscriber_cpu_per_message(url: str, messages: int, headers: bool) -> float:
    nc = await nats.connect(url)
    got = skipped = 0
    done = asyncio.Event()

    async def on(m: Msg) -> None:
        nonlocal got, skipped
        if m.headers and m.headers.get(MQTT_HEADER, "0") != "0":  # the front's test: a QoS 1 copy
            skipped += 1
        got += 1
        if got >= messages:
            done.set()

    await nc.subscribe("tin.>", cb=on, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()
    publisher = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            __file__,
            "--publish",
            url,
            "--messages",
            str(messages),
            *(["--headers"] if headers else []),
        ]
    )
    cpu = time.process_time()
    await asyncio.wait_for(done.wait(), 300)
    cpu = time.process_time() - cpu
    await publisher.wait()
    await nc.close()
    assert skipped == (messages if headers else 0)
    return cpu / messages


async def publish(url: str, messages: int, headers: bool) -> None:
    nc = await nats.connect(url)
    h = {MQTT_HEADER: "1"} if headers else None
    for i in range(messages):
        await nc.publish(SUBJECT, PAYLOAD, headers=h)
        if i % 1000 == 0:
            await nc.flush()
    await nc.flush()
    await nc.close()


async def main(messages: int) -> None:
    with tempfile.TemporaryDirectory(prefix="nats-subject-copy-") as d:
        node = EmbeddedNats(Path(d))
        node.start()
        try:
            plain = await subscriber_cpu_per_message(node.url, messages, headers=False)
            marked = await subscriber_cpu_per_message(node.url, messages, headers=True)
        finally:
            node.stop()
    print(f"core subscription, {messages:,} messages: without headers {plain * 1e6:.1f} µs CPU per message")
    print(f"with the MQTT listener's header: {marked * 1e6:.1f} µs CPU per message ({marked / plain:.2f} x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--publish", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--headers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        asyncio.run(publish(args.publish, args.messages, args.headers))
    else:
        asyncio.run(main(args.messages))
