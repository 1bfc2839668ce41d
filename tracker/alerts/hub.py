"""The websocket hub: every open connection of every guardian, in this process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Connection(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


# the close code a dropped connection gets (1011: the server met a condition it cannot go on with)
DROPPED = 1011


class WebSocketHub:
    def __init__(self, send_timeout_s: float = 5.0) -> None:
        self._by_guardian: dict[int, set[Connection]] = {}
        self._send_timeout_s = send_timeout_s
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, guardian_id: int, conn: Connection) -> None:
        self._by_guardian.setdefault(guardian_id, set()).add(conn)

    def remove(self, guardian_id: int, conn: Connection) -> None:
        conns = self._by_guardian.get(guardian_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_guardian[guardian_id]

    async def _close(self, conn: Connection) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._send_timeout_s):
                await conn.close(code=DROPPED, reason="too slow to take its alerts; reconnect and catch up")

    def connections(self, guardian_id: int) -> int:
        return len(self._by_guardian.get(guardian_id, ()))

    def of(self, guardian_id: int) -> list[Connection]:
        """The guardian's open connections (to close them when the guardian is deleted)."""
        return list(self._by_guardian.get(guardian_id, ()))

    def guardians(self) -> list[int]:
        """The guardians with an open connection here."""
        return list(self._by_guardian)

    @property
    def total(self) -> int:
        return sum(len(c) for c in self._by_guardian.values())

    async def send(self, guardian_id: int, text: str) -> int:
        """Send to all of the guardian's open connections; returns how many took it. A connection that
        fails, or takes longer than the send timeout (a stalled peer), is dropped."""
        conns = list(self._by_guardian.get(guardian_id, ()))
        if len(conns) == 1:  # the usual case: no task of its own (a burst sends thousands at once)
            return await self._send_one(guardian_id, conns[0], text)
        taken = await asyncio.gather(*(self._send_one(guardian_id, c, text) for c in conns))
        return sum(taken)

    async def _send_one(self, guardian_id: int, conn: Connection, text: str) -> int:
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await conn.send_text(text)
            return 1
        except Exception as e:  # a closed or stalled socket: its page reconnects and catches up
            log.info("websocket send to guardian %s failed (%r); dropping that connection", guardian_id, e)
            self.remove(guardian_id, conn)
            # and closed, so that a page whose socket only stalled knows it and reconnects: left open,
            # it would go on saying "live" while nothing reaches it (in its own task, never awaited here:
            # a stalled peer's close may take as long as its send did)
            task = asyncio.ensure_future(self._close(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            return 0
