"""What an open guardian websocket costs the tracker: its RSS before and after N sockets are open.

Starts the tracker (``tracker run``, its own process, so that its RSS is its own) on a fresh database
of ``--database-url`` (dropped afterwards) and the broker at ``--mqtt-url``, issues N guardian tokens
(one guardian each), reads the tracker's RSS, opens N websockets from this process (each waits for
its hello, i.e. the tracker has registered it), lets the tracker settle, reads the RSS again, and
prints ``FIGURES {json}`` as its last line: KiB per socket, and the sockets' token checks (one
statement for all of them per ``TRACKER_WS_TOKEN_CHECK_S``, not one query per socket per minute).

    .venv/bin/python bench/socket_memory.py --sockets 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import websockets  # noqa: E402

from tracker.embedded import free_port  # noqa: E402
from tracker.store.db import apply_migrations  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def tokens(url: str, n: int) -> list[str]:
    """N guardian tokens, one guardian each, issued in bulk (the tokens' text is only needed here)."""
    import hashlib
    import secrets

    texts = [f"g_{secrets.token_urlsafe(24)}" for _ in range(n)]
    conn = await asyncpg.connect(url)
    try:
        ids = await conn.fetch(
            "INSERT INTO guardians (name, phone) SELECT 'Guardian ' || i, NULL FROM generate_series(1, $1) i"
            " RETURNING id",
            n,
        )
        await conn.executemany(
            "INSERT INTO api_tokens (token_hash, role, guardian_id) VALUES ($1, 'guardian', $2)",
            [(hashlib.sha256(t.encode()).digest(), r["id"]) for t, r in zip(texts, ids, strict=True)],
        )
    finally:
        await conn.close()
    return texts


async def open_socket(base: str, token: str) -> Any:
    ws = await websockets.connect(f"{base}/ws?token={token}", open_timeout=60, max_queue=None)
    await asyncio.wait_for(ws.recv(), 60)  # hello
    return ws


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admin = await asyncpg.connect(args.database_url)
    name = f"bench_sockets_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(args.database_url)._replace(path="/" + name))
    proc = None
    sockets: list[Any] = []
    try:
        conn = await asyncpg.connect(url)
        await apply_migrations(conn)
        await conn.close()
        texts = await tokens(url, args.sockets)
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="bench-sockets-"))
        env = dict(os.environ)
        prefix = f"bench-{uuid.uuid4().hex[:6]}/"
        env.update(
            TRACKER_DATABASE_URL=url,
            TRACKER_MQTT_URL=args.mqtt_url,
            TRACKER_HTTP_PORT=str(port),
            TRACKER_TOPIC_PREFIX=prefix,
            TRACKER_MQTT_CLIENT_ID=f"bench-{prefix.strip('/')}",
            TRACKER_DATA_DIR=str(workdir),
            TRACKER_WS_TOKEN_CHECK_S=str(args.check_s),
        )
        log = open(workdir / "tracker.log", "wb")  # noqa: SIM115, ASYNC230 - kept for a look
        cmd = [sys.executable, "-c", "from tracker.cli import main; main(['run'])"]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=workdir)  # noqa: ASYNC220
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    # /healthz, not /readyz: a broker at its stock settings fails readiness
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the tracker did not start; see {workdir / 'tracker.log'}")
                await asyncio.sleep(0.3)
        await asyncio.sleep(args.settle_s)
        before = rss_kib(proc.pid)
        base = f"ws://127.0.0.1:{port}"
        for i in range(0, len(texts), 200):
            sockets += await asyncio.gather(*(open_socket(base, t) for t in texts[i : i + 200]))
        await asyncio.sleep(args.settle_s)
        after = rss_kib(proc.pid)
        return {
            "sockets": len(sockets),
            "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "kib_per_socket": round((after - before) / len(sockets), 1),
            "token_check": f"one statement for all sockets every {args.check_s:g} s",
        }
    finally:
        for ws in sockets:
            await ws.close()
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    p.add_argument("--sockets", type=int, default=2000)
    p.add_argument("--check-s", type=float, default=60.0, help="TRACKER_WS_TOKEN_CHECK_S of the tracker")
    p.add_argument("--settle-s", type=float, default=3.0, help="wait before each RSS reading")
    figures = asyncio.run(run(p.parse_args()))
    print("FIGURES " + json.dumps(figures))


if __name__ == "__main__":
    main()
