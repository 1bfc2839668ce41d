"""A broker a test owns and may stop and restart (never the machine's shared one): mosquitto on a free
port with a written configuration. (A PostgreSQL a test may restart: tracker.embedded.EmbeddedPostgres
in a temporary directory.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tracker.embedded import free_port, port_open


class OwnMosquitto:
    """mosquitto -c <dir>/mosquitto.conf on 127.0.0.1:<free port>; `extra` lines are appended."""

    def __init__(self, directory: Path, *, extra: str = "", persistence: bool = False) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [f"listener {self.port} 127.0.0.1", "max_inflight_messages 0", "max_queued_messages 100000"]
        if os.geteuid() == 0:
            lines.append("user root")  # stay the test's user: it reads the test's 0600 files
        if persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        else:
            lines += ["persistence false"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n" + extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"mqtt://{auth}127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.dir / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("mosquitto did not listen")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistent sessions and queued messages, then exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
