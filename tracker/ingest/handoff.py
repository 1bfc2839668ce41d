"""Broker messages handed from paho's network thread to the event loop: bounded, with back-pressure.

paho calls ``put`` on its own thread for every message; the batch loop takes them with ``batch``.
When ``maxsize`` messages wait, ``put`` blocks paho's thread: it stops reading the socket, TCP's window
closes and the broker keeps the rest (QoS 1 messages stay queued there, unacknowledged, as they must).
The event loop is woken only when it waits for messages (one wake-up per batch, not one per message as
with ``call_soon_threadsafe(queue.put_nowait)``, whose self-pipe write cost a syscall per message).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(
        self, loop: asyncio.AbstractEventLoop, maxsize: int, size: Callable[[T], int] = lambda _: 1
    ) -> None:
        """``size``: an item's weight against a batch's ``max_size`` (a message's payload bytes)."""
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._size = size
        self._loop = loop
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.blocked = 0
        """how many times ``put`` had to wait for room (the pipeline was behind)"""

    def __len__(self) -> int:
        return len(self._items)

    # --- paho's thread ----------------------------------------------------------------------------
    def put(self, item: T) -> None:
        """Add a message; wait while the handoff is full (never after ``close``)."""
        with self._room:
            if len(self._items) >= self.maxsize and not self._closed:
                self.blocked += 1
                while len(self._items) >= self.maxsize and not self._closed:
                    self._room.wait(0.5)
            self._items.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    def put_many(self, items: list[T]) -> None:
        """``put`` of each item in turn, under one lock while there is room (paho's thread hands on a
        buffer's messages at once); the event loop is woken before waiting for room."""
        i, n = 0, len(items)
        waiter = None
        with self._room:
            while i < n:
                room = self.maxsize - len(self._items)
                if room <= 0 and not self._closed:
                    self.blocked += 1
                    waiter, self._waiter = self._waiter, None
                    if waiter is not None:
                        self._loop.call_soon_threadsafe(_wake, waiter)
                    while len(self._items) >= self.maxsize and not self._closed:
                        self._room.wait(0.5)
                    continue
                take = n - i if self._closed else min(room, n - i)
                self._items.extend(items[i : i + take])
                i += take
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    # --- the event loop's own producers (HTTP ingest) ----------------------------------------------
    def put_nowait(self, item: T) -> None:
        """Add a message from the event loop itself, never waiting (an HTTP request holds its client
        until its batch is committed, which bounds these)."""
        with self._lock:
            self._items.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _wake(waiter)

    def close(self) -> None:
        """Stop making ``put`` wait (the service is stopping and paho's thread must be let go)."""
        with self._room:
            self._closed = True
            self._room.notify_all()

    # --- the event loop ---------------------------------------------------------------------------
    def _take(self, n: int, budget: float, *, first: bool = False) -> tuple[list[T], float]:
        """Up to ``n`` items weighing at most ``budget`` together (``first``: at least one, whatever
        it weighs); returns them and the budget left."""
        out: list[T] = []
        with self._room:
            items = self._items
            while items and len(out) < n:
                weight = self._size(items[0])
                if weight > budget and (out or not first):
                    break
                out.append(items.popleft())
                budget -= weight
            if out:
                self._room.notify_all()
        return out, budget

    async def _arrival(self, timeout: float | None) -> None:
        """Wait until a message comes (or the timeout passes); return at once if one is waiting."""
        with self._lock:
            if self._items:
                return
            waiter = self._waiter = self._loop.create_future()
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None

    async def batch(self, max_items: int, wait_s: float, max_size: float = float("inf")) -> list[T]:
        """At least one message, then whatever else comes within ``wait_s``: at most ``max_items``,
        weighing at most ``max_size`` (so that a batch of big gateway messages stays short)."""
        while True:
            out, budget = self._take(max_items, max_size, first=True)
            if out:
                break
            await self._arrival(None)
        deadline = self._loop.time() + wait_s
        while len(out) < max_items and budget > 0:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            await self._arrival(remaining)
            more, budget = self._take(max_items - len(out), budget) if budget > 0 else ([], budget)
            if not more:
                if self._items or self._loop.time() >= deadline:
                    break  # what waits would overflow the budget, or the time is up
                continue
            out += more
        return out


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
