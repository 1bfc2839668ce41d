"""The tokens of this process's open websockets: one check for all of them, and revocations pushed.

A socket once re-checked its own token every minute, with a task and a query of its own (about 83
queries a second at 5,000 sockets). Instead, this registry knows which token each open socket was
opened with, and one task per process does two things on one PostgreSQL connection:

* it LISTENs on ``tokens_revoked``, which a trigger on ``api_tokens`` notifies with the ids of the
  guardian tokens revoked or deleted, whatever made the change (the API of any tracker process, SQL
  by hand, a guardian deleted): the sockets on them are closed as soon as the notification arrives.
  Every listening process gets every notification, so each closes its own sockets;
* it checks the tokens of all open sockets in one statement (``tokens_ended``): every interval, when
  the earliest expiry among them comes, and at once after each (re)connection. That is the safety net
  for what no notification announces (a token expiring) and for what was missed while not listening.

The check runs on the listening connection, so a listener whose connection died silently is found
out by its next check failing, not left deaf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from tracker.store.db import DB_ERRORS
from tracker.store.tokens import tokens_ended

log = logging.getLogger(__name__)
CHANNEL = "tokens_revoked"
CLOSE_CODE = 1008  # policy violation: the page asks /api/v1/me, gets 401 and signs out
CLOSE_REASON = "token revoked or expired"
MIN_GAP_S = 1.0  # checks are at least this far apart (an expiry that PostgreSQL's clock has not reached)
CHECK_TIMEOUT_S = 10.0


class Closable(Protocol):
    async def close(self, code: int = ..., reason: str | None = ...) -> None: ...


class SocketTokens:
    """This process's open websockets by the token they were opened with, kept closed to tokens that
    no longer resolve."""

    def __init__(self) -> None:
        self._sockets: dict[int, set[Closable]] = {}
        self._expires: dict[int, datetime] = {}  # tokens with an expiry only
        self._next_check = datetime.max.replace(tzinfo=UTC)
        self._sooner = asyncio.Event()  # a socket's token expires before the next check
        self._closing: set[asyncio.Task[int]] = set()
        self.checks = 0  # statements run to check tokens (one per check, however many sockets)
        self.last_checked = 0  # how many tokens the last check covered
        self.listening = False
        self._lost = False  # the listening connection closed: reconnect

    def add(self, token_id: int, expires_at: datetime | None, ws: Closable) -> None:
        self._sockets.setdefault(token_id, set()).add(ws)
        if expires_at is not None:
            self._expires[token_id] = expires_at
            if expires_at < self._next_check:
                self._sooner.set()

    def discard(self, token_id: int, ws: Closable) -> None:
        sockets = self._sockets.get(token_id)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self._sockets[token_id]
                self._expires.pop(token_id, None)

    @property
    def total(self) -> int:
        return sum(len(s) for s in self._sockets.values())

    async def close(self, token_ids: list[int]) -> int:
        """Close the sockets opened with these tokens (they no longer resolve); returns how many.
        They leave the registry now, not when their handlers get round to it."""
        sockets: list[Closable] = []
        for token_id in token_ids:
            sockets.extend(self._sockets.pop(token_id, ()))
            self._expires.pop(token_id, None)
        results = await asyncio.gather(
            *(ws.close(code=CLOSE_CODE, reason=CLOSE_REASON) for ws in sockets), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # a cancellation, not a socket already gone
        return len(sockets)

    async def check(self, conn: asyncpg.Connection | asyncpg.Pool) -> int:
        """Close the sockets whose tokens no longer resolve: one statement for all; returns how many."""
        token_ids = list(self._sockets)
        if not token_ids:
            return 0
        async with asyncio.timeout(CHECK_TIMEOUT_S):  # a connection dead without a word
            ended = await tokens_ended(conn, token_ids)
        self.checks += 1
        self.last_checked = len(token_ids)
        return await self.close(ended) if ended else 0

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            token_ids = [int(x) for x in payload.split(",") if x]
        except ValueError:
            log.warning("ignoring a %s notification that is not token ids: %r", CHANNEL, payload[:100])
            return
        if not any(t in self._sockets for t in token_ids):
            return
        task = asyncio.get_running_loop().create_task(self.close(token_ids))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _wait(self, interval_s: float) -> None:
        """Until the next check is due: after ``interval_s``, or at the earliest expiry of an open
        socket's token (never sooner than MIN_GAP_S after this check); sooner when a socket whose
        token expires earlier opens, or when the connection is lost."""
        checked = datetime.now(UTC)
        while True:
            due = checked + timedelta(seconds=interval_s)
            if self._expires:
                due = min(due, max(min(self._expires.values()), checked + timedelta(seconds=MIN_GAP_S)))
            self._next_check = due
            self._sooner.clear()
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait <= 0:
                return
            try:
                await asyncio.wait_for(self._sooner.wait(), wait)
            except TimeoutError:
                return
            if self._lost:
                return

    async def run(self, database_url: str, interval_s: float) -> None:
        """Listen for revocations and check every ``interval_s``; reconnect when PostgreSQL is lost."""
        while True:
            try:
                conn = await asyncpg.connect(database_url)
            except DB_ERRORS as e:
                log.warning("socket token listener cannot connect (%s); retrying", e)
                await asyncio.sleep(2)
                continue
            self._lost = False
            try:
                conn.add_termination_listener(self._on_lost)
                await conn.add_listener(CHANNEL, self._notified)
                self.listening = True
                while not self._lost and not conn.is_closed():
                    await self.check(conn)  # first right after (re)connecting: what was missed
                    await self._wait(interval_s)
            except DB_ERRORS as e:
                log.warning("socket token listener lost PostgreSQL (%s); reconnecting", e)
            finally:
                self.listening = False
                with contextlib.suppress(*DB_ERRORS):
                    conn.terminate()
            await asyncio.sleep(1)

    def _on_lost(self, _conn: Any) -> None:
        self._lost = True
        self._sooner.set()
