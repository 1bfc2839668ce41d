"""What a device's QoS 1 PUBACK covers when `TRACKER_IN`'s leader is lost (docs/scaling.md, "A NATS node's
loss"): three nats-server processes (tracker.embedded, the tests' cluster), the tracker's streams at R3,
the stream's leader moved off node 0 (a step-down), one paho client publishing QoS 1 to node 0's MQTT
listener at a pace; the leader's node is killed (SIGKILL) a quarter of the way in. Prints how many
messages were PUBACKed, the client's disconnects, and which of them are in `TRACKER_IN`.

    .venv/bin/python bench/mqtt_leader_loss.py [--trials 3] [--messages 600] [--pace 0.01]

nats-server's MQTT listener PUBACKs a QoS 1 message once it is stored in its own `$MQTT_msgs`; the
subject's delivery to `TRACKER_IN` is not waited for. While `TRACKER_IN` has no leader (an election:
5-7 s here) what is published is acknowledged and not stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from tracker.embedded import EmbeddedNats
from tracker.ingest import jetstream


async def trial(directory: Path, messages: int, pace: float) -> None:
    nodes = EmbeddedNats.cluster(3, directory, partitions=8)
    for node in nodes:
        node.start()
    client: mqtt.Client | None = None
    try:
        nc = await jetstream.connect(",".join(n.url for n in nodes), "bench")
        js = nc.jetstream()
        await jetstream.ensure_streams(js, topic_prefix="", replicas=3)
        for _ in range(30):  # the stream's leader off the devices' node
            leader = (await js.stream_info(jetstream.IN_STREAM)).cluster.leader  # type: ignore[union-attr]
            if leader and leader != "n0":
                break
            if leader:
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{jetstream.IN_STREAM}", b"", timeout=5)
            await asyncio.sleep(1)
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
        pubacked = sum(m.mid in acked for m in infos)
        await asyncio.sleep(3)
        sub = await jetstream._retry(  # (the cluster may still be electing its leaders)
            lambda: js.pull_subscribe(
                f"{jetstream.FRONT_PREFIX}.>", durable="bench", stream=jetstream.IN_STREAM
            ),
            "the count",
        )
        stored: set[int] = set()
        while True:
            try:
                got = await sub.fetch(500, timeout=2)
            except Exception:
                break
            stored |= {json.loads(m.data)["i"] for m in got}
        lost = sorted(set(range(messages)) - stored)
        print(
            f"leader {leader} killed at message {messages // 4}; PUBACKed {pubacked}/{messages}; "
            f"in TRACKER_IN {len(stored)}; PUBACKed and not stored {len(lost)}"
            + (f" (messages {lost[0]}-{lost[-1]})" if lost else "")
        )
        for at, what in events:
            print(f"    {at - killed:+6.1f} s  {what}")
        await nc.close()
    finally:
        if client is not None:
            client.loop_stop()
        for node in nodes:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--pace", type=float, default=0.01)
    args = parser.parse_args()
    for _ in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="mqtt-leader-loss-") as d:
            asyncio.run(trial(Path(d), args.messages, args.pace))


if __name__ == "__main__":
    main()
