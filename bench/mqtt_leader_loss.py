"""What a device's QoS 1 PUBACK covers when a stream's leader is lost (docs/scaling.md, "A NATS node's
loss"): three nats-server processes (tracker.embedded, the tests' cluster), the streams and the fronts'
consumers as a worker makes them (`ensure_streams`, R3), the leader of the stream under test moved off
node 0 (a step-down), one paho client publishing QoS 1 to node 0's MQTT listener at a pace; the
leader's node is killed (SIGKILL) a quarter of the way in. Prints how many messages were PUBACKed, the
client's disconnects, and how many of the PUBACKed ones the fronts can read afterwards.

    .venv/bin/python bench/mqtt_leader_loss.py [--trials 3] [--messages 600] [--pace 0.01]
        [--stream '$MQTT_msgs' | --stream TRACKER_IN]

`$MQTT_msgs` (the default) is what the fronts read: nats-server's MQTT listener PUBACKs a QoS 1
message once it is stored there, and the fronts' consumers keep it. `TRACKER_IN` is what they read
before 2026-12-07, a stream capturing the subject (made here for the comparison): the PUBACK did not
wait for it, and while it had no leader (an election: 5-7 s here) what was published was acknowledged
and not stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import nats
import paho.mqtt.client as mqtt
from nats.js import JetStreamContext

from tracker.embedded import EmbeddedNats
from tracker.ingest import jetstream


async def trial(directory: Path, messages: int, pace: float, stream: str) -> None:
    partitions = 8
    nodes = EmbeddedNats.cluster(3, directory, partitions=partitions)
    for node in nodes:
        node.start()
    client: mqtt.Client | None = None
    try:
        nc = await jetstream.connect(",".join(n.url for n in nodes), "bench")
        js = nc.jetstream()
        await jetstream.ensure_streams(js, topic_prefix="", replicas=3, partitions=partitions)
        if stream == jetstream.IN_STREAM:  # the old design: TRACKER_IN capturing the mapped subjects
            await js.update_stream(jetstream.earlier_in_stream(replicas=3))
        for _ in range(30):  # the stream's leader off the devices' node
            leader = (await js.stream_info(stream)).cluster.leader  # type: ignore[union-attr]
            if leader and leader != "n0":
                break
            if leader:
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
            await asyncio.sleep(1)
        else:
            raise RuntimeError(f"{stream}'s leader stayed on the devices' node (or had none): {leader}")
        acked: set[int] = set()
        events: list[tuple[float, str]] = []
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:6]}", clean_session=False
        )
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(0.2, 2)
        client.on_publish = lambda _c, _u, mid, _rc, _p: acked.add(mid)
        client.on_connect = lambda _c, _u, _f, rc, _p: events.append((time.time(), f"connect {rc}"))
        client.on_disconnect = lambda _c, _u, _f, rc, _p: events.append((time.time(), f"disconnect {rc}"))
        client.connect("127.0.0.1", nodes[0].mqtt_port)
        client.loop_start()
        await asyncio.sleep(1)
        infos = []
        killed = 0.0
        for i in range(messages):
            payload = json.dumps({"i": i}).encode()
            infos.append(client.publish(f"tracker/v1/tags/T{i % 5}/position", payload, qos=1))
            if i == messages // 4:
                next(n for n in nodes if n.name == leader).kill()
                killed = time.time()
            await asyncio.sleep(pace)
        deadline = time.time() + 60
        while time.time() < deadline and not all(m.mid in acked for m in infos):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        pubacked = {i for i, m in enumerate(infos) if m.mid in acked}
        await asyncio.sleep(3)
        stored = await _readable(js, stream, partitions)
        lost = sorted(pubacked - stored)
        print(
            f"{stream}: leader {leader} killed at message {messages // 4}; "
            f"PUBACKed {len(pubacked)}/{messages}; readable by the fronts {len(stored & pubacked)}; "
            f"PUBACKed and lost {len(lost)}" + (f" (messages {lost[0]}-{lost[-1]})" if lost else "")
        )
        for at, what in events:
            print(f"    {at - killed:+6.1f} s  {what}")
        await nc.close()
    finally:
        if client is not None:
            client.loop_stop()
        for node in nodes:
            node.stop()


async def _readable(js: JetStreamContext, stream: str, partitions: int) -> set[int]:
    """The messages a front can read: from each partition's consumer of `$MQTT_msgs`, or from
    `TRACKER_IN` by a consumer of its own."""
    if stream == jetstream.MQTT_STREAM:
        subs = [
            await jetstream._retry(  # (the cluster may still be electing its leaders)
                lambda p=p: js.pull_subscribe_bind(durable=jetstream.front_seed(p), stream=stream),  # type: ignore[misc]
                "the count",
            )
            for p in range(partitions)
        ]
    else:
        subs = [
            await jetstream._retry(
                lambda: js.pull_subscribe(f"{jetstream.FRONT_PREFIX}.>", durable="bench", stream=stream),
                "the count",
            )
        ]
    stored: set[int] = set()
    for sub in subs:
        while True:
            try:
                got = await sub.fetch(500, timeout=2)
            except (nats.errors.TimeoutError, TimeoutError):  # nothing more
                break
            stored |= {json.loads(m.data)["i"] for m in got}
            for m in got:  # (a consumer's unacknowledged messages stop it at max_ack_pending)
                await m.ack()
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--pace", type=float, default=0.01)
    parser.add_argument(
        "--stream", choices=[jetstream.MQTT_STREAM, jetstream.IN_STREAM], default=jetstream.MQTT_STREAM
    )
    args = parser.parse_args()
    for _ in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="mqtt-leader-loss-") as d:
            asyncio.run(trial(Path(d), args.messages, args.pace, args.stream))


if __name__ == "__main__":
    main()
