"""Benchmark: the distributed-engine candidates of issue 16 beside today's Mosquitto, on this machine.

Devices keep speaking MQTT 3.1.1 at QoS 1 (bench/load/rawpub.py's publishers, several connections, each
owning its tags, on ``tracker/v1/tags/<tag>/position``); what changes is what the tracker's workers read
on the other side. Each candidate runs as its OWN server process on free ports in a temporary directory
(never the machine's services on 1883, 4222 or 5672), niced to 19 like this bench:

* ``mosquitto`` (the baseline): Mosquitto with persistence on and one bare paho subscriber with a
  persistent session (clean_session off, QoS 1). One subscriber owns every tag; a shared subscription
  (``$share/g/...``) would spread messages over several subscribers message by message, NOT by tag,
  so it cannot give one writer per child: it is not a partitioning.
* ``nats``: nats-server (2.9 here) with JetStream and its MQTT listener. An account subject mapping
  ``tracker.v1.tags.*.position -> tp.{{partition(64,1)}}.{{wildcard(1)}}`` puts each tag in one of 64
  partitions (a hash of the tag token, the same on every server); one file-stored stream captures
  ``tp.*.*``; a durable pull consumer per partition (filter ``tp.<p>.*``, explicit acknowledgement) is
  what a worker owning that partition would read.
* ``rabbitmq``: a second RabbitMQ node of its own (RABBITMQ_NODENAME, ports, mnesia dir, plugins file:
  rabbitmq_mqtt and rabbitmq_consistent_hash_exchange). The MQTT plugin publishes into ``amq.topic``
  (routing key ``tracker.v1.tags.<tag>.position``); an exchange-to-exchange binding feeds an
  ``x-consistent-hash`` exchange that hashes the routing key (hence the tag) over 64 quorum queues, each
  with single-active-consumer (the failover: a second worker's consumer waits and takes over).

For each engine, two phases:

1. throughput: the worker side subscribed first (in this process), then ``--messages`` QoS 1 messages
   from ``--publishers`` processes; messages/s from the first publish to the last message received,
   this process's CPU per message (the consumer: client library, parsing the tag and sequence,
   acknowledging each message), the engine's CPU per message (its process tree), and the checks: every
   message received, each tag's messages in order, each tag in exactly one partition.
2. kill -9: no consumer reading; ``--kill-messages`` QoS 1 messages published and every one
   acknowledged (PUBACK) to the publisher; then SIGKILL of the engine's process group at once, a
   restart on the same data directory, and a count of how many of those acknowledged messages the
   engine still has for the worker side. Single node here: that is what a node's crash loses when
   nothing replicates it (a cluster's replicas are in docs/scaling.md, from the engines' documents).

Ratios against the baseline measured in the same run. Prints figures as it goes and a JSON object as its
last line. ``--quick``: 10,000 messages, 2,000 for the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from bench.load.rawpub import RawPublisher  # noqa: E402
from tracker.embedded import free_port, port_open  # noqa: E402

PARTITIONS = 64
KILL_SEQ = 10**6  # the kill phase's sequences start here, apart from the throughput phase's
TOPIC = "tracker/v1/tags/{tag}/position"
NICE = ["nice", "-n", "19"]
RABBIT_SBIN = Path("/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/sbin")


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and its descendants (an engine's server is a process tree: RabbitMQ's
    launcher script, beam.smp, erl_child_setup)."""
    children: dict[int, list[int]] = defaultdict(list)
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        children[int(fields[1])].append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def group_alive(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


def tags_of(n_tags: int) -> list[str]:
    return [f"t{i:05d}" for i in range(n_tags)]


def payload(seq: int) -> bytes:
    """The sequence first (what the consumer checks), then a fix's usual size."""
    return f'{seq} {{"ts":1765000000.0,"lat":37.5665,"lon":126.978,"acc":8.0,"batt":80}}'.encode()


# --- publishers (device-like: one MQTT connection each, owning its tags) ----------------------------


def _publisher(url: str, tags: list[str], count: int, start_seq: int, out: Any, ready: Any) -> None:
    pub = RawPublisher(url, qos=1, window=2000)
    ready.put(1)
    t0 = time.time()

    def messages() -> Any:
        for i in range(count):
            tag = tags[i % len(tags)]
            yield TOPIC.format(tag=tag), payload(start_seq + i // len(tags))

    dropped = False
    try:
        pub.publish_many(messages())
        pub.drain(120)
    except OSError:  # the broker closed the connection: count what was acknowledged until then
        dropped = True
    out.put((t0, time.time(), pub.published, pub.acked, dropped))
    with contextlib.suppress(OSError):
        pub.close()


def publish(
    url: str, n: int, publishers: int, n_tags: int, start_seq: int, connected: threading.Event | None = None
) -> dict[str, float]:
    """``n`` QoS 1 messages over ``n_tags`` tags from ``publishers`` processes; waits until each
    publisher has every PUBACK (or gave up after 120 s). ``connected`` is set once every publisher has
    its CONNACK."""
    tags = tags_of(n_tags)
    out: Any = mp.get_context("fork").Queue()
    ready: Any = mp.get_context("fork").Queue()
    procs = []
    for k in range(publishers):
        own = tags[k::publishers]
        count = n // publishers + (1 if k < n % publishers else 0)
        p = mp.get_context("fork").Process(target=_publisher, args=(url, own, count, start_seq, out, ready))
        p.start()
        procs.append(p)
    for _ in procs:
        ready.get(timeout=60)
    if connected is not None:
        connected.set()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
    return {
        "t_start": min(r[0] for r in results),
        "t_acked": max(r[1] for r in results),
        "published": sum(r[2] for r in results),
        "acked": sum(r[3] for r in results),
        "connections_dropped": sum(r[4] for r in results),
    }


# --- what the worker side saw --------------------------------------------------------------------------


@dataclass
class Seen:
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    last_at: float = 0.0
    last_seq: dict[str, int] = field(default_factory=dict)
    partition_of: dict[str, str] = field(default_factory=dict)
    tags_in_two_partitions: int = 0
    per_partition: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    keys: set[tuple[str, int]] = field(default_factory=set)

    def note(self, tag: str, seq: int, partition: str) -> None:
        self.received += 1
        self.last_at = time.time()
        last = self.last_seq.get(tag, -1)
        if seq == last:
            self.duplicates += 1
        elif seq < last:
            self.out_of_order += 1
        else:
            self.last_seq[tag] = seq
        owner = self.partition_of.setdefault(tag, partition)
        if owner != partition:
            self.tags_in_two_partitions += 1
        self.per_partition[partition] += 1
        self.keys.add((tag, seq))


def seq_of(body: bytes) -> int:
    return int(body[: body.index(b" ")])


# --- engines ---------------------------------------------------------------------------------------------


class Engine:
    name = ""
    proc: subprocess.Popen[bytes]

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / self.name
        self.dir.mkdir()
        self.mqtt_port = free_port()

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self, timeout: float = 90) -> float:
        if self.ready():  # a previous process of this engine still answers: the figures would be its
            raise RuntimeError(f"{self.name}'s ports are still open before its start")
        cmd, env = self.command()
        t0 = time.monotonic()
        self._log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            NICE + cmd, stdout=self._log, stderr=self._log, env={**os.environ, **env}, start_new_session=True
        )
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{self.name} did not start (see {self.dir / 'server.log'})")
            time.sleep(0.1)
        return time.monotonic() - t0

    def ready(self) -> bool:
        return port_open("127.0.0.1", self.mqtt_port)

    def proc_alive(self) -> bool:
        return hasattr(self, "proc") and self.proc.poll() is None

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL to the engine's whole process group (it was started in its own session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 60
        while group_alive(self.proc.pid) or self.ready():  # beam.smp outlives its script, may sit in fsync
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} still holds its ports a minute after SIGKILL")
            time.sleep(0.05)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._log.close()

    # the worker side
    async def setup(self) -> None:
        """Declare what the worker side reads (streams, consumers, queues)."""

    async def consume(self, seen: Seen, until: int, timeout: float) -> None:
        raise NotImplementedError

    async def stored(self, mark: int) -> int:
        """Messages with a sequence at or above ``mark`` the worker side receives now (after a restart),
        read as a worker reads them: until nothing new comes for 5 s."""
        seen = Seen()
        await self.consume(seen, until=10**9, timeout=5)
        return sum(1 for _, seq in seen.keys if seq >= mark)


MOSQUITTO_CONF = """\
# written by bench/engines.py
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
# Mosquitto writes its store only every autosave_interval seconds and at a clean shutdown
# (the default, 1800 s, kept: what a default deployment loses on kill -9)
max_inflight_messages 2000
max_queued_messages 10000000
max_queued_bytes 0
"""


class Mosquitto(Engine):
    name = "mosquitto"
    client_id = "bench-worker"

    def command(self) -> tuple[list[str], dict[str, str]]:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=self.mqtt_port, dir=self.dir))
        return ["mosquitto", "-c", str(conf)], {}

    def _client(self, seen: Seen | None) -> Any:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(2000)

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            if seen is not None:
                seen.note(msg.topic.split("/")[3], seq_of(msg.payload), "all")

        client.on_message = on_message
        client.connect("127.0.0.1", self.mqtt_port, keepalive=60)
        client.subscribe("tracker/v1/tags/+/position", qos=1)
        return client

    async def setup(self) -> None:
        # the persistent session exists before any publish, as a running tracker's does
        client = self._client(None)
        client.loop_start()
        await asyncio.sleep(0.5)
        client.disconnect()
        client.loop_stop()

    async def consume(self, seen: Seen, until: int, timeout: float) -> None:
        client = self._client(seen)
        client.loop_start()
        try:
            await wait_for(seen, until, timeout)
        finally:
            client.disconnect()
            client.loop_stop()


NATS_CONF = """\
# written by bench/engines.py
server_name: bench_{port}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{http}
jetstream {{
  store_dir: "{dir}/js"
}}
mqtt {{
  listen: 127.0.0.1:{mqtt}
}}
# the tag (first wildcard) decides the partition: a deterministic hash, the same on every server
mappings = {{
  "tracker.v1.tags.*.position": "tp.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"
}}
"""


class Nats(Engine):
    name = "nats"
    stream = "POSITIONS"
    replicas = 1

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()
        self.http = free_port()

    def command(self) -> tuple[list[str], dict[str, str]]:
        conf = self.dir / "nats.conf"
        conf.write_text(
            NATS_CONF.format(
                port=self.port, http=self.http, mqtt=self.mqtt_port, dir=self.dir, partitions=PARTITIONS
            )
        )
        return [shutil.which("nats-server") or "nats-server", "-c", str(conf)], {}

    def ready(self) -> bool:
        return port_open("127.0.0.1", self.port) and port_open("127.0.0.1", self.mqtt_port)

    async def _connect(self) -> Any:
        import nats

        return await nats.connect(f"nats://127.0.0.1:{self.port}", max_reconnect_attempts=0)

    async def setup(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

        nc = await self._connect()
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name=self.stream, subjects=["tp.*.*"], storage=StorageType.FILE, num_replicas=self.replicas
            )
        )
        for p in range(PARTITIONS):
            await js.add_consumer(
                self.stream,
                ConsumerConfig(
                    durable_name=f"p{p}",
                    filter_subject=f"tp.{p}.*",
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=30,
                    max_ack_pending=4000,
                ),
            )
        await nc.close()

    async def consume(self, seen: Seen, until: int, timeout: float) -> None:
        nc = await self._connect()
        js = nc.jetstream()
        done = asyncio.Event()

        async def partition(p: int) -> None:
            sub = await js.pull_subscribe(f"tp.{p}.*", durable=f"p{p}", stream=self.stream)
            while not done.is_set():
                try:
                    msgs = await sub.fetch(batch=500, timeout=0.5)
                except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 - nats-py raises either
                    continue
                for msg in msgs:
                    _, part, tag = msg.subject.split(".", 2)
                    seen.note(tag, seq_of(msg.data), part)
                    await msg.ack()

        tasks = [asyncio.create_task(partition(p)) for p in range(PARTITIONS)]
        try:
            await wait_for(seen, until, timeout)
        finally:
            done.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await nc.flush()
            await nc.close()


CLUSTER_BLOCK = """
cluster {{
  name: bench
  listen: 127.0.0.1:{cport}
  routes: [{routes}]
}}
"""


class NatsNode(Nats):
    """One server of a three-node NATS cluster (``--nats-cluster``)."""

    def __init__(self, workdir: Path, index: int) -> None:
        self.name = f"nats-n{index}"
        super().__init__(workdir)
        self.cport = free_port()
        self.routes: list[int] = []

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        conf = self.dir / "nats.conf"
        text = conf.read_text().replace(f"server_name: bench_{self.port}", f"server_name: {self.name}")
        # the MQTT listener's own streams at R3: unsaid, nats-server counts the routes (the other two
        # here) and makes them R2, which a node's loss may leave without a quorum (tracker.embedded)
        text = text.replace("mqtt {\n", "mqtt {\n  stream_replicas: 3\n")
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
        conf.write_text(text + CLUSTER_BLOCK.format(cport=self.cport, routes=routes))
        return cmd, env


class NatsCluster(Nats):
    """Three nats-server processes with routes between them, an R3 stream and R3 consumers; devices
    publish to the first node's MQTT listener, the worker side may use any node."""

    name = "nats-cluster"
    replicas = 3

    def __init__(self, workdir: Path) -> None:
        self.nodes = [NatsNode(workdir, i) for i in range(3)]
        for node in self.nodes:
            node.routes = [other.cport for other in self.nodes if other is not node]
        self.mqtt_port = self.nodes[0].mqtt_port
        self.port = self.nodes[0].port

    def start(self, timeout: float = 90) -> float:
        t0 = time.monotonic()
        for node in self.nodes:
            if node.proc_alive():
                continue
            node.start(timeout)
        self.proc = self.nodes[0].proc
        return time.monotonic() - t0

    def cpu(self) -> float:
        return sum(node.cpu() for node in self.nodes if node.proc_alive())

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc_alive():
                node.stop()

    async def _connect(self) -> Any:
        import nats

        servers = [f"nats://127.0.0.1:{node.port}" for node in self.nodes if node.proc_alive()]
        return await nats.connect(servers=servers, max_reconnect_attempts=5, reconnect_time_wait=0.2)

    async def setup(self) -> None:
        deadline = time.monotonic() + 60
        while True:  # the meta group elects its leader a few seconds after the routes connect
            try:
                await super().setup()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)

    async def stream_leader(self) -> str:
        nc = await self._connect()
        try:
            info = await nc.jetstream().stream_info(self.stream)
            return str(info.cluster.leader) if info.cluster else ""
        finally:
            await nc.close()

    async def stream_messages(self, timeout: float = 60) -> int:
        """The stream's message count, asked until its (new) leader answers: after a node's loss the
        stream's RAFT group elects a leader, and the API answers nothing until it has one."""
        deadline = time.monotonic() + timeout
        while True:
            nc = await self._connect()
            try:
                return int((await nc.jetstream().stream_info(self.stream)).state.messages)
            except Exception:
                if time.monotonic() > deadline:
                    raise
            finally:
                await nc.close()
            await asyncio.sleep(1)

    async def leader_not_on_first(self) -> NatsNode:
        """The stream's leader, moved off the devices' node (a step-down) if it is there: the kill must
        not cut the publishers' own connections."""
        for _ in range(20):
            leader = await self.stream_leader()
            if leader and leader != self.nodes[0].name:
                return next(node for node in self.nodes if node.name == leader)
            nc = await self._connect()
            with contextlib.suppress(Exception):
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{self.stream}", b"", timeout=5)
            await nc.close()
            await asyncio.sleep(1)
        raise RuntimeError("the stream's leader stayed on the devices' node")


RABBIT_CONF = """\
# written by bench/engines.py
listeners.tcp.local = 127.0.0.1:{amqp}
mqtt.listeners.tcp.default = 127.0.0.1:{mqtt}
mqtt.allow_anonymous = true
mqtt.default_user = guest
mqtt.default_pass = guest
mqtt.exchange = amq.topic
"""


class Rabbit(Engine):
    name = "rabbitmq"
    hash_exchange = "positions.by_tag"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.amqp = free_port()
        self.dist = free_port()
        self.node = f"bench{uuid.uuid4().hex[:8]}@localhost"

    def command(self) -> tuple[list[str], dict[str, str]]:
        (self.dir / "rabbitmq.conf").write_text(RABBIT_CONF.format(amqp=self.amqp, mqtt=self.mqtt_port))
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt,rabbitmq_consistent_hash_exchange].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's (the machine's own node)
        env = {
            "HOME": str(self.dir),  # its own Erlang cookie
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.amqp),
            "RABBITMQ_DIST_PORT": str(self.dist),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        return [str(RABBIT_SBIN / "rabbitmq-server")], env

    def ready(self) -> bool:
        return port_open("127.0.0.1", self.amqp) and port_open("127.0.0.1", self.mqtt_port)

    async def _connect(self) -> Any:
        import aio_pika
        from aiormq.exceptions import AMQPConnectionError

        deadline = time.monotonic() + 60
        while True:  # after a kill -9 the node opens its listeners, then may still refuse for a while
            try:
                return await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{self.amqp}/")
            except AMQPConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    @staticmethod
    def queue_name(p: int) -> str:
        return f"positions.p{p:02d}"

    async def setup(self) -> None:
        conn = await self._connect()
        ch = await conn.channel()
        hashed = await ch.declare_exchange(self.hash_exchange, "x-consistent-hash", durable=True)
        await hashed.bind("amq.topic", routing_key="tracker.v1.tags.*.position")
        for p in range(PARTITIONS):
            q = await ch.declare_queue(
                self.queue_name(p),
                durable=True,
                arguments={"x-queue-type": "quorum", "x-single-active-consumer": True},
            )
            await q.bind(hashed, routing_key="1")  # the binding key is the weight on the hash ring
        await conn.close()

    async def consume(self, seen: Seen, until: int, timeout: float) -> None:
        conn = await self._connect()
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=2000)
        for p in range(PARTITIONS):
            q = await ch.get_queue(self.queue_name(p), ensure=False)

            async def on_message(message: Any, part: str = str(p)) -> None:
                seen.note(message.routing_key.split(".")[3], seq_of(message.body), part)
                await message.ack()

            await q.consume(on_message)
        try:
            await wait_for(seen, until, timeout)
        finally:
            await conn.close()


ENGINES: dict[str, type[Engine]] = {"mosquitto": Mosquitto, "nats": Nats, "rabbitmq": Rabbit}


async def wait_for(seen: Seen, until: int, timeout: float) -> None:
    """Until ``until`` messages were received, or nothing new came for ``timeout`` seconds."""
    last, quiet_since = -1, time.monotonic()
    while seen.received < until:
        if seen.received != last:
            last, quiet_since = seen.received, time.monotonic()
        elif time.monotonic() - quiet_since > timeout:
            return
        await asyncio.sleep(0.05)


# --- the run -----------------------------------------------------------------------------------------------


async def run_engine(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    started_s = engine.start()
    log(f"{engine.name}: started in {started_s:.1f} s (MQTT on {engine.mqtt_port})")
    await engine.setup()

    # 1. throughput
    seen = Seen()
    consumer = asyncio.create_task(engine.consume(seen, args.messages, timeout=30))
    await asyncio.sleep(1.0)  # subscribed before the first publish
    cpu0, srv0 = cpu_self(), engine.cpu()
    pub = await asyncio.to_thread(publish, engine.mqtt_url, args.messages, args.publishers, args.tags, 0)
    await consumer
    cpu1, srv1 = cpu_self(), engine.cpu()
    elapsed = max(seen.last_at, pub["t_acked"]) - pub["t_start"]
    counts = sorted(seen.per_partition.values())
    result: dict[str, Any] = {
        "started_s": round(started_s, 1),
        "published": pub["published"],
        "acked": pub["acked"],
        "received": seen.received,
        "duplicates": seen.duplicates,
        "out_of_order": seen.out_of_order,
        "tags_in_two_partitions": seen.tags_in_two_partitions,
        "partitions_used": len(counts),
        "partition_min_max": [counts[0], counts[-1]] if counts else [0, 0],
        "msgs_per_s": round(seen.received / elapsed) if elapsed > 0 else 0,
        "publish_acked_per_s": round(pub["acked"] / (pub["t_acked"] - pub["t_start"])),
        "consumer_cpu_us_per_msg": round((cpu1 - cpu0) / max(seen.received, 1) * 1e6, 1),
        "engine_cpu_us_per_msg": round((srv1 - srv0) / max(seen.received, 1) * 1e6, 1),
    }
    log(
        f"{engine.name}: {seen.received}/{args.messages} received, {result['msgs_per_s']} msg/s end to end, "
        f"consumer {result['consumer_cpu_us_per_msg']} µs CPU/msg, engine "
        f"{result['engine_cpu_us_per_msg']} µs CPU/msg, out of order {seen.out_of_order}, duplicates "
        f"{seen.duplicates}, tags in two partitions {seen.tags_in_two_partitions}, "
        f"partitions {len(counts)} (min/max {result['partition_min_max']})"
    )

    # 2. kill -9 with acknowledged messages waiting for the worker side
    pub = await asyncio.to_thread(
        publish, engine.mqtt_url, args.kill_messages, args.publishers, args.tags, KILL_SEQ
    )
    engine.kill()
    restart_s = engine.start()
    survived = await engine.stored(KILL_SEQ)
    if engine.proc.poll() is not None:
        raise RuntimeError(f"{engine.name} restarted and then exited: what it held was not counted")
    result["kill"] = {
        "acked_before_kill": pub["acked"],
        "held_after_restart": survived,
        "lost": max(pub["acked"] - survived, 0),
        "restart_s": round(restart_s, 1),
    }
    log(
        f"{engine.name}: kill -9 after {pub['acked']} PUBACKs: {survived} held after the restart "
        f"({restart_s:.1f} s), lost {result['kill']['lost']}"
    )
    engine.stop()
    return result


async def run_nats_cluster(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Three NATS nodes, an R3 stream: the throughput phase as for one node, then the seam of the MQTT
    listener — ``--kill-messages`` published to the first node while the stream's leader (on another
    node) is killed with SIGKILL a moment after the first PUBACKs; how many PUBACKed messages the
    stream does not have once the cluster has a leader again (the killed node left down)."""
    cluster = NatsCluster(workdir)
    try:
        started_s = cluster.start()
        await cluster.setup()
        log(f"nats-cluster: 3 nodes started in {started_s:.1f} s, R3 stream and consumers ready")
        seen = Seen()
        consumer = asyncio.create_task(cluster.consume(seen, args.messages, timeout=30))
        await asyncio.sleep(1.0)
        cpu0, srv0 = cpu_self(), cluster.cpu()
        pub = await asyncio.to_thread(publish, cluster.mqtt_url, args.messages, args.publishers, args.tags, 0)
        await consumer
        cpu1, srv1 = cpu_self(), cluster.cpu()
        elapsed = max(seen.last_at, pub["t_acked"]) - pub["t_start"]
        result: dict[str, Any] = {
            "published": pub["published"],
            "acked": pub["acked"],
            "received": seen.received,
            "out_of_order": seen.out_of_order,
            "tags_in_two_partitions": seen.tags_in_two_partitions,
            "msgs_per_s": round(seen.received / elapsed) if elapsed > 0 else 0,
            "consumer_cpu_us_per_msg": round((cpu1 - cpu0) / max(seen.received, 1) * 1e6, 1),
            "engine_cpu_us_per_msg": round((srv1 - srv0) / max(seen.received, 1) * 1e6, 1),
        }
        log(
            f"nats-cluster: {seen.received}/{args.messages} received, {result['msgs_per_s']} msg/s, consumer "
            f"{result['consumer_cpu_us_per_msg']} µs CPU/msg, 3 servers {result['engine_cpu_us_per_msg']} "
            f"µs CPU/msg"
        )
        result["leader_kills"] = []
        for trial in range(args.cluster_trials):
            mark = KILL_SEQ * (trial + 1)
            victim = await cluster.leader_not_on_first()
            before = await cluster.stream_messages()
            connected = threading.Event()
            publishing = asyncio.create_task(
                asyncio.to_thread(
                    publish, cluster.mqtt_url, args.kill_messages, args.publishers, args.tags, mark, connected
                )
            )
            await asyncio.to_thread(connected.wait, 60)
            await asyncio.sleep(0.3)  # PUBACKs flowing
            victim.kill()
            pub = await publishing
            await asyncio.sleep(5)  # new leaders for the stream and its consumers
            in_stream = await cluster.stream_messages() - before
            held = await cluster.stored(mark)
            kill = {
                "killed": victim.name,
                "published": pub["published"],
                "acked": pub["acked"],
                "publisher_connections_dropped": pub["connections_dropped"],
                "in_stream": in_stream,
                "received_by_worker": held,
                "acked_lost": max(pub["acked"] - max(held, in_stream), 0),
            }
            result["leader_kills"].append(kill)
            log(f"nats-cluster: stream leader killed mid-stream (trial {trial + 1}): {kill}")
            victim.start()
            await asyncio.sleep(5)  # the node back and caught up before the next trial
        return result
    finally:
        cluster.stop()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    results: dict[str, Any] = {}
    started: list[Engine] = []
    try:
        for name in args.engines:
            engine = ENGINES[name](workdir)
            started.append(engine)
            results[name] = await run_engine(engine, args)
        if args.nats_cluster:
            results["nats-cluster"] = await run_nats_cluster(workdir, args)
    finally:
        for engine in started:
            with contextlib.suppress(Exception):
                if engine.proc.poll() is None:
                    engine.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    base = results.get("mosquitto")
    if base:
        for name, r in results.items():
            if "kill" not in r:
                continue
            r["vs_baseline"] = {
                "msgs_per_s": round(r["msgs_per_s"] / max(base["msgs_per_s"], 1), 2),
                "consumer_cpu_per_msg": round(
                    r["consumer_cpu_us_per_msg"] / max(base["consumer_cpu_us_per_msg"], 0.1), 2
                ),
                "engine_cpu_per_msg": round(
                    r["engine_cpu_us_per_msg"] / max(base["engine_cpu_us_per_msg"], 0.1), 2
                ),
            }
            log(f"{name}: vs mosquitto + paho {r['vs_baseline']}")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=50_000, help="QoS 1 messages in the throughput phase")
    ap.add_argument("--kill-messages", type=int, default=10_000, help="acknowledged messages before kill -9")
    ap.add_argument("--publishers", type=int, default=4, help="publisher processes (MQTT connections)")
    ap.add_argument("--tags", type=int, default=2_000, help="distinct tags")
    ap.add_argument(
        "--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES), help="baseline first"
    )
    ap.add_argument(
        "--nats-cluster",
        action="store_true",
        help="also three NATS nodes with an R3 stream: throughput, and the stream leader killed mid-stream",
    )
    ap.add_argument("--cluster-trials", type=int, default=3, help="stream-leader kills in --nats-cluster")
    ap.add_argument("--quick", action="store_true", help="10,000 messages, 2,000 for the kill")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.kill_messages = 10_000, 2_000
    for noisy in ("aio_pika", "aiormq"):  # their reconnect attempts while a node restarts
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    os.nice(19)  # the lead measures latency on this machine; servers are started under nice too
    t0, load = time.time(), os.getloadavg()
    results = asyncio.run(main_async(args))
    summary = {
        "bench": "engines",
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(t0)),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load],
        "messages": args.messages,
        "kill_messages": args.kill_messages,
        "publishers": args.publishers,
        "tags": args.tags,
        "partitions": PARTITIONS,
        "engines": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
