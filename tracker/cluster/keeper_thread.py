"""A worker's lease keeper on a thread of its own (issue 16): its own event loop and its own PostgreSQL
connections, so that a worker whose event loop is busy (a burst of fixes, a long batch, the clock's
scan of 400,000 children) still renews its leases on time. On the worker's event loop, a round that
waited behind a few seconds of work let every lease lapse: the worker lost all its partitions and
took them back, a takeover for nothing (fencing kept it safe, but it cost seconds of alerts). A busy
worker is alive; only one that is stopped, cut off or gone loses its partitions, and one whose event
loop has not turned at all for ``stall_limit_s`` (three leases by default: wedged, not busy), whose
keeper then renews nothing.

The keeper itself is tracker.cluster.leases.LeaseKeeper, unchanged; this wrapper carries what crosses
between the two loops:

- ``on_gained`` and ``on_lost`` are called on the worker's loop (``call_soon_threadsafe``, in the order
  the keeper decided them); ``before_release`` runs on the worker's loop and the keeper waits for it;
- ``share()`` and ``owned`` read the keeper's dict of owned partitions (a copy, made under the GIL);
  ``fenced`` is handed to the keeper's loop;
- ``run()`` starts the thread and returns when the keeper stops; cancelling it cancels the keeper;
  ``stop()`` hands every partition over, as LeaseKeeper.stop does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import asyncpg

from tracker.cluster.leases import LeaseKeeper, Partitions, check_partitions, release_nothing
from tracker.cluster.partitions import Share
from tracker.store.db import DB_ERRORS, create_pool

log = logging.getLogger(__name__)

POOL_RETRY_S = 1.0  # between attempts at the keeper's connections while PostgreSQL is away
HEARTBEAT_S = 0.5  # how often the worker's loop says it is turning


class ThreadedLeaseKeeper:
    def __init__(
        self,
        database_url: str,
        worker_id: str,
        partitions: int,
        ttl_s: float,
        *,
        margin_s: float | None = None,
        stall_limit_s: float | None = None,
        on_gained: Callable[[Partitions], None] = lambda partitions: None,
        on_lost: Callable[[Partitions], None] = lambda partitions: None,
        before_release: Callable[[Partitions], Coroutine[Any, Any, None]] = release_nothing,
    ) -> None:
        self.database_url = database_url
        self.worker_id = worker_id
        self.partitions = check_partitions(partitions)
        self.ttl_s = ttl_s
        self.margin_s = margin_s
        # a worker's event loop silent this long is wedged, not busy: its leases are let lapse
        self.stall_limit_s = 3 * ttl_s if stall_limit_s is None else stall_limit_s
        self._loop_seen = time.monotonic()  # the worker's loop's last heartbeat
        self.on_gained = on_gained
        self.on_lost = on_lost
        self.before_release = before_release
        self._keeper: LeaseKeeper | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the keeper's
        self._main: asyncio.AbstractEventLoop | None = None  # the worker's
        self._task: asyncio.Task[None] | None = None  # the keeper's, on its loop
        self._stopping = False
        self._ended = False  # the keeper's thread is over (stopped, or died): nothing is owned
        # what the worker has been told it owns (partition -> token), written on the worker's loop: a
        # partition the keeper took counts once its gain is told there (after the states of its earlier
        # ownership are forgotten: tracker.service), one it lost stops counting at once
        self._mine: dict[int, int] = {}

    # --- what the rest of the worker reads (tracker.cluster.partitions.Ownership) ------------------------
    @property
    def owned(self) -> dict[int, int]:
        """The partitions owned now -> their tokens (a copy): told to the worker, and still held by the
        keeper under the same token."""
        keeper = self._keeper
        if keeper is None or self._ended:
            return {}
        held = dict(keeper.owned)  # (one copy, made under the GIL while the keeper's thread runs)
        return {p: t for p, t in self._mine.items() if held.get(p) == t}

    def owns(self, partition: int) -> bool:
        return self.token_of(partition) is not None

    def token_of(self, partition: int) -> int | None:
        """The partition's lease token if it is owned now (told to the worker, still held by the keeper
        under it), else None."""
        keeper = self._keeper
        if keeper is None or self._ended:
            return None
        token = self._mine.get(partition)
        return token if token is not None and keeper.owned.get(partition) == token else None

    def share(self) -> Share:
        return Share(self.partitions, self.owned)

    def fenced(self, stale: Mapping[int, int]) -> None:
        """A commit was fenced: those partitions stop counting here at once; the keeper loses them too."""
        for p, t in stale.items():
            if self._mine.get(p) == t:
                del self._mine[p]
        keeper, loop = self._keeper, self._loop
        if keeper is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # (the keeper's loop has ended: nothing is owned)
                loop.call_soon_threadsafe(keeper.fenced, dict(stale))

    # --- the worker's side ----------------------------------------------------------------------------
    async def run(self) -> None:
        """The keeper's thread, until the keeper stops (or this is cancelled: then the keeper is too)."""
        self._main = asyncio.get_running_loop()
        self._loop_seen = time.monotonic()
        ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._thread, args=(ended,), name=f"lease keeper {self.worker_id}", daemon=True
        )
        thread.start()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            await asyncio.wrap_future(ended)
        except asyncio.CancelledError:
            self._stopping = True  # (a keeper not started yet must not start)
            task, loop = self._task, self._loop
            if task is not None and loop is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(task.cancel)
            raise
        finally:
            heartbeat.cancel()

    async def _heartbeat(self) -> None:
        """The worker's loop says it is turning (read by the keeper's thread: ``_stalled``)."""
        while True:
            self._loop_seen = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)

    def _stalled(self) -> str | None:
        silent = time.monotonic() - self._loop_seen
        if silent > self.stall_limit_s:
            return f"the worker's event loop has not turned for {silent:.0f} s (wedged, not busy)"
        return None

    async def stop(self) -> None:
        """Hand every partition over gracefully (LeaseKeeper.stop, on the keeper's loop)."""
        self._stopping = True
        keeper, loop = self._keeper, self._loop
        if keeper is None or loop is None or loop.is_closed():
            return  # never started, or ended: nothing is owned
        try:
            handed = asyncio.run_coroutine_threadsafe(keeper.stop(), loop)
        except RuntimeError:  # (its loop closed just now)
            return
        try:
            await asyncio.wrap_future(handed)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # the keeper's loop ended under its stop (its thread died): what it held lapses
            log.warning(
                "worker %s: the lease keeper ended before handing its partitions over", self.worker_id
            )

    # --- the keeper's thread ----------------------------------------------------------------------------
    def _thread(self, ended: concurrent.futures.Future[None]) -> None:
        outcome: BaseException | None = None
        try:
            asyncio.run(self._keep())
        except BaseException as e:  # handed to run(), which raises it on the worker's loop
            outcome = e if isinstance(e, Exception) else RuntimeError(repr(e))
        finally:
            # stopped or died: nothing is owned any more, and the worker is told of what it held
            self._ended = True
            self._on_worker_soon(self._all_lost, [])
        if not ended.cancelled():  # (run() was cancelled: nobody waits for the outcome)
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if outcome is None:
                    ended.set_result(None)
                else:
                    ended.set_exception(outcome)

    async def _keep(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        pool = await self._pool()
        if pool is None:
            return
        try:
            self._keeper = LeaseKeeper(
                pool,
                self.worker_id,
                self.partitions,
                self.ttl_s,
                margin_s=self.margin_s,
                on_gained=self._gained,
                on_lost=lambda ps: self._on_worker_soon(self._lost_here, ps),
                before_release=self._before_release,
                stalled=self._stalled,
            )
            if self._stopping:  # stopped before the keeper was made: it owns nothing to hand over
                return
            await self._keeper.run()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), self.ttl_s)

    async def _pool(self) -> asyncpg.Pool | None:
        """The keeper's two connections, tried again while PostgreSQL is away (a worker may start
        before it); None: stopped meanwhile."""
        while not self._stopping:
            try:
                return await create_pool(self.database_url, min_size=1, max_size=2, worker_id=self.worker_id)
            except (*DB_ERRORS, OSError) as e:
                log.warning("lease keeper cannot reach PostgreSQL (%s); trying again", e)
                await asyncio.sleep(POOL_RETRY_S)
        return None

    def _gained(self, partitions: Partitions) -> None:
        """(On the keeper's thread, just after a take) the tokens go with the gain to the worker's loop."""
        keeper = self._keeper
        assert keeper is not None
        tokens = {p: keeper.owned[p] for p in partitions if p in keeper.owned}
        main = self._main
        assert main is not None
        with contextlib.suppress(RuntimeError):
            main.call_soon_threadsafe(self._gained_here, tokens)

    def _gained_here(self, tokens: dict[int, int]) -> None:
        self._mine.update(tokens)
        self.on_gained(sorted(tokens))

    def _lost_here(self, partitions: Partitions) -> None:
        for p in partitions:
            self._mine.pop(p, None)
        self.on_lost(partitions)

    def _all_lost(self, _: Partitions) -> None:
        held = sorted(self._mine)
        self._mine.clear()
        if held:
            self.on_lost(held)

    async def _before_release(self, partitions: Partitions) -> None:
        """The worker lets go of the partitions, on its loop; waited for at most 0.4 of a lease, so that
        a busy worker's round still renews the partitions it keeps in time (the next round comes a
        third of a lease after this one, and a lease counts as lost a fifth of a lease early)."""
        main = self._main
        assert main is not None
        letting_go = asyncio.run_coroutine_threadsafe(self.before_release(partitions), main)
        try:
            await asyncio.wait_for(asyncio.wrap_future(letting_go), 0.4 * self.ttl_s)
        except TimeoutError:
            log.warning(
                "worker %s: letting go of partitions %s took over %.1f s; released anyway",
                self.worker_id,
                partitions,
                0.4 * self.ttl_s,
            )

    def _on_worker_soon(self, callback: Callable[[Partitions], None], partitions: Partitions) -> None:
        main = self._main
        assert main is not None
        with contextlib.suppress(RuntimeError):  # (the worker's loop has closed: it is gone)
            main.call_soon_threadsafe(callback, list(partitions))
