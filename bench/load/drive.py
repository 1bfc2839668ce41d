"""The processes that load the broker: publishers of the simulator's messages and the bare subscriber
that measures the ceiling. Each runs in its own process (``spawn``), so none shares a GIL with the
tracker or with the benchmark's own event loop.

A publisher reads its share of the messages from a file (msgpack: ``[[topic, payload], ...]``), waits
for a common start moment, publishes them as fast as the broker takes them (``rate`` None) or at
``rate`` messages per second, and writes what it did to a result file: counts, and the wall-clock
time each message was handed to paho (what publish → websocket latencies are measured from).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import paho.mqtt.client as mqtt

from bench.load.rawpub import RawPublisher
from simulator.publisher import parse_mqtt_url

SPAWN = multiprocessing.get_context("spawn")
LEFT: list[object] = []
"""processes started here, for bench/e2e.py to stop when it is interrupted"""


class PublishResult(msgspec.Struct):
    published: int
    acked: int
    dropped: int
    t_first: float
    t_last: float
    t_acked: float
    """when the broker had acknowledged every message (QoS 1), or t_last (QoS 0)"""


def write_messages(path: Path, messages: list[tuple[str, bytes]]) -> None:
    path.write_bytes(msgspec.msgpack.encode(messages))


def publisher_main(
    url: str, qos: int, path: str, rate: float | None, start_at: float, result: str, window: int
) -> None:
    messages = msgspec.msgpack.decode(Path(path).read_bytes(), type=list[tuple[str, bytes]])
    pub = RawPublisher(url, qos=qos, window=window)
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.time()
    if rate:  # paced: a chunk every 10 ms
        step = max(1, int(rate / 100))
        times: list[float] = []
        for i in range(0, len(messages), step):
            ahead = t0 + i / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
            times += pub.publish_many(messages[i : i + step], chunk=step)
    else:
        times = pub.publish_many(messages)
    t_last = time.time()
    pub.drain(120.0)
    t_acked = time.time()
    published, acked = pub.published, pub.acked if qos else pub.published
    pub.close()
    np.save(result + ".times.npy", np.asarray(times))
    Path(result).write_bytes(msgspec.json.encode(PublishResult(published, acked, 0, t0, t_last, t_acked)))


@dataclass
class Publishers:
    """P publisher processes, each with every P-th message (so a paced run stays in time order).
    ``url``: the broker, or several (a cluster's nodes): publisher k connects to the k-th, round robin."""

    url: str | Sequence[str]
    qos: int
    workdir: Path
    count: int = 2
    window: int = 4000
    """QoS 1 messages each publisher keeps unacknowledged at most. nats-server closes an MQTT connection
    whose QoS 1 publish waits more than 5 s for its stream: a cluster's publishers keep fewer."""

    def run(
        self, messages: list[tuple[str, bytes]], *, rate: float | None = None, start_in: float = 1.5
    ) -> tuple[list[PublishResult], np.ndarray]:
        """Publish; return each publisher's result and every message's publish time (message order)."""
        procs = []
        start_at = time.time() + start_in
        for k in range(self.count):
            path = self.workdir / f"messages-{k}.msgpack"
            write_messages(path, messages[k :: self.count])
            result = str(self.workdir / f"result-{k}.json")
            Path(result).unlink(missing_ok=True)
            p = SPAWN.Process(
                target=publisher_main,
                args=(
                    self._url(k),
                    self.qos,
                    str(path),
                    rate / self.count if rate else None,
                    start_at,
                    result,
                    self.window,
                ),
                daemon=True,
            )
            p.start()
            LEFT.append(p)
            procs.append((p, result, path))
        results = []
        times = np.zeros(len(messages))
        for k, (p, result, path) in enumerate(procs):
            p.join()
            if p.exitcode != 0 or not Path(result).exists():
                raise RuntimeError(f"publisher {k} failed (exit code {p.exitcode})")
            results.append(msgspec.json.decode(Path(result).read_bytes(), type=PublishResult))
            times[k :: self.count] = np.load(result + ".times.npy")
            path.unlink(missing_ok=True)
        return results, times

    def _url(self, k: int) -> str:
        return self.url if isinstance(self.url, str) else self.url[k % len(self.url)]


class SubscriberResult(msgspec.Struct):
    received: int
    t_first: float
    t_last: float


def subscriber_main(
    url: str, topic: str, qos: int, expected: int, ready: object, result: str, idle_s: float
) -> None:
    """A bare paho subscriber: counts messages until ``expected`` arrived (or none for ``idle_s``)."""
    target = parse_mqtt_url(url)
    state = {"n": 0, "t0": 0.0, "t1": 0.0}

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        now = time.time()
        if not state["n"]:
            state["t0"] = now
        state["n"] += 1
        state["t1"] = now

    def on_connect(c: mqtt.Client, _u: object, _f: object, _r: object, _p: object) -> None:
        c.subscribe(topic, qos)

    def on_subscribe(*_: object) -> None:
        ready.set()  # type: ignore[attr-defined]

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-ceiling-{qos}", clean_session=True
    )
    if target.username:
        client.username_pw_set(target.username, target.password)
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.connect(target.host, target.port, keepalive=60)
    client.loop_start()
    last_n, last_change = 0, time.time()
    while state["n"] < expected:
        time.sleep(0.01)
        if state["n"] != last_n:
            last_n, last_change = int(state["n"]), time.time()
        elif state["n"] and time.time() - last_change > idle_s:
            break
    client.disconnect()
    client.loop_stop()
    Path(result).write_bytes(msgspec.json.encode(SubscriberResult(int(state["n"]), state["t0"], state["t1"])))


def ceiling(
    url: str, prefix: str, qos: int, messages: list[tuple[str, bytes]], publishers: Publishers
) -> dict[str, float]:
    """Messages per second a bare paho subscriber receives from the same publishers and broker."""
    ready = SPAWN.Event()
    result = publishers.workdir / f"ceiling-{qos}.json"
    result.unlink(missing_ok=True)
    sub = SPAWN.Process(
        target=subscriber_main,
        args=(url, f"{prefix}#", qos, len(messages), ready, str(result), 10.0),
        daemon=True,
    )
    sub.start()
    LEFT.append(sub)
    if not ready.wait(20):
        sub.kill()
        raise RuntimeError("the ceiling subscriber did not subscribe")
    pub = Publishers(url, qos, publishers.workdir, publishers.count)
    results, _ = pub.run(messages)
    sub.join(180)
    r = msgspec.json.decode(result.read_bytes(), type=SubscriberResult)
    t_start = min(p.t_first for p in results)
    published = sum(p.published for p in results)
    return {
        "qos": qos,
        "messages": published,
        "received": r.received,
        "msg_per_s": r.received / (r.t_last - t_start) if r.t_last > t_start else 0.0,
        "offered_msg_per_s": published / (max(p.t_last for p in results) - t_start),
    }
