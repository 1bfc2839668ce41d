"""Parents' sockets on every tracker process: a websocket delivery claimed by one process reaches the
guardian's sockets on all of them, each socket once.

With several tracker processes (issue 16), a parent's page is connected to whichever process the load
balancer chose (a phone to one, a laptop to another), and an alert is decided, and its outbox rows
claimed, by any of them. A websocket delivery row is still claimed once, by one dispatcher (a round's
SKIP LOCKED claim, or a critical alert's commit: tracker.store.alerts, tracker.store.alert_lifecycle);
its channel (tracker.alerts.channels.WebSocketChannel) sends the message to the guardian's sockets on
its own process and *tells* the others through PostgreSQL: ``NOTIFY alert_sockets`` with the claimer's
worker id and the (delivery id, guardian id) pairs it delivered, never the messages (a payload holds
at most 8,000 bytes: a notification carries up to ``PAYLOAD_BYTES`` of pairs, and the tells of one
moment go out in one statement). Every process LISTENs; each one that holds sockets of a guardian
named reads those deliveries' messages (one query per notification) and sends them to its own
sockets. A socket lives on exactly one process and every listening process gets every notification
once, so each socket gets the message once: a parent with a phone on one process and a laptop on
another gets it on both, once each. The claimer ignores its own notifications (it sent on its
sockets already). Rate limits and unlinked guardians are decided by the claimer before it tells
(a delivery it suppresses or cancels is told to nobody); a holder reads whether the guardian is still
linked again when it sends.

The tell is awaited before the channel answers, so the row is marked only once the others have been
told; a claimer killed in between leaves the row 'sending', and whoever releases it sends it again,
to every socket (a repeat the parent page shows once: it keeps one card per alert). The row's outcome
is the claimer's: 'sent' when a socket on the claiming process took it, else 'offline' (what the
other processes' sockets took is not written back: a socket's message is not worth a write).

A notification is lost for a process whose listening connection is down at that moment; when it is
back, the relay sends its sockets the websocket deliveries other processes claimed for their
guardians since the connection was lost (``socket_deliveries_since``: a repeat or two is harmless,
as above). A page connecting afterwards catches up on its own (tracker.api.ws).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from tracker.alerts.channels import socket_text
from tracker.alerts.hub import WebSocketHub
from tracker.store.alerts import AlertFacts, DeliveryJob, socket_deliveries, socket_deliveries_since
from tracker.store.db import DB_ERRORS

log = logging.getLogger(__name__)
CHANNEL = "alert_sockets"
PAYLOAD_BYTES = 7_000  # a notification's payload at most (PostgreSQL's limit: under 8,000 bytes)
MISSED_MARGIN_S = 5.0  # catch-up reaches back this far before the moment the connection was lost


def payloads(worker_id: str, pairs: Sequence[tuple[int, int]]) -> list[str]:
    """The notifications that tell ``pairs`` (delivery id, guardian id): "<worker>\\n<d>:<g>,<d>:<g>",
    each at most PAYLOAD_BYTES (ids and worker ids are ASCII)."""
    head = worker_id + "\n"
    told: list[str] = []
    chunk: list[str] = []
    size = len(head.encode())
    for d, g in pairs:
        pair = f"{d}:{g}"
        if chunk and size + len(pair) + 1 > PAYLOAD_BYTES:
            told.append(head + ",".join(chunk))
            chunk, size = [], len(head.encode())
        chunk.append(pair)
        size += len(pair) + 1
    if chunk:
        told.append(head + ",".join(chunk))
    return told


def parse(payload: str) -> tuple[str, list[tuple[int, int]]]:
    """(worker id, pairs) of a notification; ValueError for anything else."""
    worker_id, _, body = payload.partition("\n")
    pairs = []
    for pair in body.split(","):
        if pair:
            d, g = pair.split(":")
            pairs.append((int(d), int(g)))
    return worker_id, pairs


class SocketRelay:
    """Tells the other tracker processes what this one delivered on its sockets, and sends what they
    tell it to the sockets it holds."""

    def __init__(self, hub: WebSocketHub, pool: asyncpg.Pool, worker_id: str) -> None:
        self._hub = hub
        self._pool = pool
        self.worker_id = worker_id
        self._told: list[tuple[int, int, asyncio.Future[None]]] = []
        self._teller: asyncio.Future[None] | None = None
        self._wanted: set[int] = set()  # delivery ids told by others, to be sent here
        self._sender: asyncio.Future[None] | None = None
        self.listening = False
        self._lost = asyncio.Event()
        self.relayed = 0  # messages sent here on sockets for deliveries other processes claimed

    # --- telling the others ------------------------------------------------------------------------
    async def tell(self, delivery_id: int, guardian_id: int) -> None:
        """Tell the other processes that a delivery is going out (returns once the notification is
        committed). Tells asked for together (a round's deliveries run concurrently) go out in one
        statement."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._told.append((delivery_id, guardian_id, done))
        if self._teller is None:
            self._teller = asyncio.ensure_future(self._tell())
        await done

    async def _tell(self) -> None:
        try:
            while self._told:
                await asyncio.sleep(0)  # the round's other deliveries tell theirs meanwhile
                told, self._told = self._told, []
                try:
                    await self._pool.execute(
                        "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                        CHANNEL,
                        payloads(self.worker_id, [(d, g) for d, g, _ in told]),
                    )
                except Exception as e:  # each delivery fails, and is retried, as any channel failure
                    for *_, done in told:
                        if not done.done():
                            done.set_exception(e)
                    continue
                for *_, done in told:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._teller = None

    # --- hearing them --------------------------------------------------------------------------------
    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            worker_id, pairs = parse(payload)
        except ValueError:
            log.warning("ignoring an %s notification that is not deliveries: %r", CHANNEL, payload[:100])
            return
        if worker_id == self.worker_id:
            return  # this process's own: its channel sent on its sockets already
        wanted = [d for d, g in pairs if self._hub.connections(g)]
        if not wanted:
            return
        self._wanted.update(wanted)
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send_wanted())

    async def _send_wanted(self) -> None:
        """Read and send what was told, a query for all that arrived meanwhile."""
        try:
            while self._wanted:
                await asyncio.sleep(0)  # notifications that came together: one query
                wanted, self._wanted = sorted(self._wanted), set()
                try:
                    deliveries = await socket_deliveries(self._pool, wanted)
                except DB_ERRORS as e:
                    # the catch-up after the listener reconnects covers them if PostgreSQL is gone
                    log.warning("cannot read %d deliveries told by another process (%s)", len(wanted), e)
                    continue
                await self._send(deliveries)
        finally:
            self._sender = None

    async def _send(self, deliveries: list[tuple[DeliveryJob, AlertFacts]]) -> None:
        async def one(job: DeliveryJob, facts: AlertFacts) -> None:
            if job.guardian_id is None or not job.linked:
                return  # unlinked since: told nothing more of the child
            if await self._hub.send(job.guardian_id, socket_text(facts, job.language, job.transition)):
                self.relayed += 1

        await asyncio.gather(*(one(job, facts) for job, facts in deliveries))

    async def run(self, database_url: str) -> None:
        """LISTEN on its own connection; after a lost connection, reconnect and send what other
        processes claimed meanwhile for the guardians whose sockets are here."""
        lost_at: float | None = None
        while True:
            try:
                conn = await asyncpg.connect(database_url)
            except DB_ERRORS as e:
                log.warning("socket relay cannot connect (%s); retrying", e)
                await asyncio.sleep(2)
                continue
            self._lost.clear()
            try:
                conn.add_termination_listener(lambda _conn: self._lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                self.listening = True
                if lost_at is not None:
                    await self.catch_up(lost_at - MISSED_MARGIN_S)
                    lost_at = None
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), 5)
                    if self._lost.is_set():
                        break
                    await conn.execute("SELECT 1")  # a connection dead without a word is found out
            except DB_ERRORS as e:
                log.warning("socket relay lost PostgreSQL (%s); reconnecting", e)
            finally:
                if self.listening and lost_at is None:
                    lost_at = time.time()
                self.listening = False
                with contextlib.suppress(*DB_ERRORS):
                    conn.terminate()
            await asyncio.sleep(1)

    async def catch_up(self, since_s: float) -> int:
        """Send this process's sockets the websocket deliveries other processes claimed for their
        guardians since ``since_s`` (unix seconds); returns how many were read."""
        guardians = self._hub.guardians()
        if not guardians:
            return 0
        deliveries = await socket_deliveries_since(self._pool, since_s, guardians)
        await self._send(deliveries)
        return len(deliveries)
