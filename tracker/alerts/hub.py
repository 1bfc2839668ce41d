"""The websocket hub: every open connection of every guardian, in this process."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Connection(Protocol):
    async def send_text(self, data: str) -> None: ...


class WebSocketHub:
    def __init__(self, send_timeout_s: float = 5.0) -> None:
        self._by_guardian: dict[int, set[Connection]] = {}
        self._send_timeout_s = send_timeout_s

    def add(self, guardian_id: int, conn: Connection) -> None:
        self._by_guardian.setdefault(guardian_id, set()).add(conn)

    def remove(self, guardian_id: int, conn: Connection) -> None:
        conns = self._by_guardian.get(guardian_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_guardian[guardian_id]

    def connections(self, guardian_id: int) -> int:
        return len(self._by_guardian.get(guardian_id, ()))

    def of(self, guardian_id: int) -> list[Connection]:
        """The guardian's open connections (to close them when the guardian is deleted)."""
        return list(self._by_guardian.get(guardian_id, ()))

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
            return 0
