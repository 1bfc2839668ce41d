"""Benchmark: what the tracker's MQTT thread costs per message received, in MQTT 5 and in 3.1.1, with
the tracker's own reader (tracker/ingest/mqtt.py) against paho's.

A Mosquitto of its own (bench/e2e.py's settings) keeps a persistent session's QoS 1 messages while the
subscriber is away; the subscriber (the tracker's ``MqttIngestor``) then connects and drains them,
acknowledging in batches of 2,000 as the batch loop does. The figure is this process's CPU seconds
(every thread: paho's, the event loop's) per message, so a busy machine inflates it less than a
wall-clock rate. Each variant runs ``--rounds`` times, interleaved; medians, and ratios against paho's
reader in MQTT 3.1.1 (the baseline, measured in the same run). Prints a JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from bench.e2e import OwnMosquitto, log  # noqa: E402
from bench.load.rawpub import RawPublisher  # noqa: E402
from tracker.ingest.decode import RawMessage  # noqa: E402
from tracker.ingest.handoff import Handoff  # noqa: E402
from tracker.ingest.mqtt import MqttIngestor, _Client  # noqa: E402

PAYLOAD = json.dumps({"ts": 1765000000.0, "lat": 37.5665, "lon": 126.978, "acc": 8.0, "batt": 80}).encode()
TOPICS = ["bench/tags/+/position"]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextmanager
def readers(ours: bool) -> Iterator[None]:
    """With ``ours`` False, the ingestor's client reads PUBLISH packets and dispatches them as paho
    does (the tracker's three overrides set aside)."""
    saved = {name: vars(_Client)[name] for name in ("_packet_read", "_handle_publish", "_handle_on_message")}
    if not ours:
        for name in saved:
            setattr(_Client, name, getattr(mqtt.Client, name))
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(_Client, name, method)


async def drain(url: str, n: int, mqtt5: bool) -> float:
    """CPU µs per message for a subscriber draining ``n`` QoS 1 messages queued while it was away."""
    loop = asyncio.get_running_loop()
    client_id = f"bench-receive-{uuid.uuid4().hex[:8]}"

    def ingestor() -> MqttIngestor:
        queue: Handoff[RawMessage] = Handoff(loop, 100_000, size=lambda m: len(m.payload))
        return MqttIngestor(
            url=url, client_id=client_id, topics=TOPICS, queue=queue, mqtt5=mqtt5, window=14_000
        )

    first = ingestor()  # the session and its subscription, then away
    first.start()
    await first.wait_connected()
    await asyncio.sleep(0.3)
    first.stop()
    publisher = RawPublisher(url)
    publisher.publish_many((f"bench/tags/tag{i % 5000}/position", PAYLOAD) for i in range(n))
    publisher.drain(120)
    publisher.close()
    await asyncio.sleep(0.5)
    back = ingestor()
    queue = back._queue
    before = cpu_s()
    back.start()
    got = 0
    while got < n:
        batch = await queue.batch(2000, 0.05)
        got += len(batch)
        back.ack(batch)
    spent = cpu_s() - before
    back.stop()
    return spent / n * 1e6


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    mosquitto = OwnMosquitto(workdir, 14_000)
    variants = {
        ("paho", "3.1.1"): (False, False),
        ("paho", "5"): (False, True),
        ("tracker", "3.1.1"): (True, False),
        ("tracker", "5"): (True, True),
    }
    results: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    try:
        for r in range(args.rounds):
            for (reader, version), (ours, mqtt5) in variants.items():
                with readers(ours):
                    us = await drain(mosquitto.url, args.messages, mqtt5)
                results[(reader, version)].append(us)
                log(f"  round {r + 1}: {reader}'s reader, MQTT {version}: {us:.1f} µs CPU per message")
    finally:
        mosquitto.stop()
    medians = {k: statistics.median(v) for k, v in results.items()}
    base = medians[("paho", "3.1.1")]
    for (reader, version), m in medians.items():
        log(
            f"{reader}'s reader, MQTT {version}: median {m:.1f} µs CPU per message "
            f"({m / base:.2f}× paho 3.1.1)"
        )
    return {
        "bench": "mqtt_receive",
        "messages": args.messages,
        "rounds": args.rounds,
        "cpu_us_per_message": {f"{r} {v}": round(m, 1) for (r, v), m in medians.items()},
        "ratio_to_paho_311": {f"{r} {v}": round(m / base, 2) for (r, v), m in medians.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--messages", type=int, default=30_000, help="messages queued and drained per run")
    p.add_argument("--rounds", type=int, default=3, help="runs of each variant (interleaved)")
    p.add_argument("--quick", action="store_true", help="10,000 messages, one round")
    args = p.parse_args(argv)
    if args.quick:
        args.messages, args.rounds = 10_000, 1
    if shutil.which("mosquitto") is None:
        p.error("mosquitto is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="tracker-mqtt-receive-"))
    try:
        report = asyncio.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
