"""Partition leases in PostgreSQL: which worker owns which partitions of the children, for how long,
under which fencing token.

Every third of the TTL a ``LeaseKeeper`` runs a round:

1. heartbeat: its row in ``cluster_workers`` is seen now (live = seen within the TTL, not stopping);
2. renew: the leases it owns are extended, each only if the token is still the one it took
   (``owner = me AND token = mine``); one that is not was taken over: it is lost;
3. balance: its fair share is ceil(partitions / live workers). Above it (a worker joined), it gives
   the extra partitions up gracefully: ``before_release`` first (the caller stops consuming them and
   lets the batch in flight commit), then ``owner = NULL, expires_at = now()``, so another worker may
   take them at once. Below it, it takes free or expired partitions (and its own that it let lapse),
   each with ``token = token + 1``; a lease row locked by a commit in flight (``FOR SHARE``, its
   fencing check) is skipped until that commit is over, never waited on.

Before taking, the keeper ends the sessions of workers no longer live (not seen within the TTL) that
are inside a transaction (``pg_terminate_backend``; a worker's sessions carry its name as their
``application_name``). A worker cut off from the network in the middle of its commit leaves a
transaction that holds its lease rows ``FOR SHARE``, and PostgreSQL hears nothing of the cut (with
the keepalive defaults, not for two hours): nobody could take those partitions until then
(tests/e2e/test_cluster_cut.py saw every partition of the cluster lapse: the other keeper, waiting on
the locked rows, did not renew its own in time). Ending such a transaction is always safe: it is
rolled back, and its worker, should it come back, finds its batch fenced.

Every time given to the server is its ``now()``, the start of the statement's transaction: after the
keeper sent it. So a lease the server extends lasts at least until ``sent + ttl`` on the keeper's own
monotonic clock, and the keeper considers a partition lost at ``sent + ttl - margin`` if it has not
renewed it since (a pause, PostgreSQL cut off): always before the server lets another worker take it.
The fencing token in the commit (``tracker.cluster.fencing``) is what makes that safe even when the
keeper cannot tell (a process stopped between preparing and committing a batch); the keeper's own
deadline makes the worker stop working on a partition it is about to lose.

``stop`` marks the worker stopping (the others stop counting it at once and grow their share) and
hands every partition over the same graceful way.

Callbacks are called from the event loop, synchronously, and must not block: ``on_gained(partitions)``
after a take committed (the new tokens are in ``owned``), ``on_lost(partitions)`` for every partition
leaving ``owned``, whatever the cause (taken over, not renewed in time, a commit fenced, given up).
``before_release`` is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping

import asyncpg

from tracker.cluster.partitions import Share
from tracker.store.db import DB_ERRORS

log = logging.getLogger(__name__)

Partitions = list[int]


async def release_nothing(partitions: Partitions) -> None:
    """The default ``before_release``: nothing to let go of first."""
    return None


def check_partitions(partitions: int) -> int:
    """The number of partitions, refused unless a smallint can hold every one."""
    if not 0 < partitions <= 32767:
        raise ValueError("partitions must be within 1..32767 (a smallint)")
    return partitions


class LeaseKeeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        worker_id: str,
        partitions: int,
        ttl_s: float,
        *,
        margin_s: float | None = None,
        on_gained: Callable[[Partitions], None] = lambda partitions: None,
        on_lost: Callable[[Partitions], None] = lambda partitions: None,
        before_release: Callable[[Partitions], Awaitable[None]] = release_nothing,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        stalled: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``margin_s``: how long before the server may let a lease lapse the keeper considers it lost
        (default a fifth of the TTL); ``sleep`` between rounds and ``monotonic``, the clock the margin
        is measured on, may be a test's. ``stalled``: why the worker cannot work on its partitions now
        (None: it can); while it says so, no round runs (nothing renewed, nothing taken), so what is
        owned lapses and the others take it over (tracker.cluster.keeper_thread: a wedged event loop)."""
        self.pool = pool
        self.worker_id = worker_id
        self.partitions = check_partitions(partitions)
        self.ttl_s = ttl_s
        self.margin_s = ttl_s / 5 if margin_s is None else margin_s
        if not 0 <= self.margin_s < ttl_s:
            raise ValueError("margin_s must be within [0, ttl_s)")
        self.on_gained = on_gained
        self.on_lost = on_lost
        self.before_release = before_release
        self._sleep = sleep
        self._monotonic = monotonic
        self._stalled = stalled
        self.owned: dict[int, int] = {}  # partition -> the fencing token this worker took it with
        self._valid_until: dict[int, float] = {}  # partition -> when it counts as lost, on _monotonic
        self.live_workers = 0  # as the last round counted them
        self._rows_ready = False
        self._stopping = False
        self._round = asyncio.Lock()  # a round and stop() never at once
        self._deadline_moved = asyncio.Event()

    # --- what the rest of the worker reads ----------------------------------------------------------
    def share(self) -> Share:
        """The partitions owned now and their tokens (a snapshot)."""
        return Share(self.partitions, dict(self.owned))

    def fair_share(self, live: int) -> int:
        return math.ceil(self.partitions / max(live, 1))

    def fenced(self, stale: Mapping[int, int]) -> None:
        """A commit found these partitions' tokens changed (``Fenced.stale``: partition -> the token
        the batch was prepared under): those still held under that token are lost. A batch prepared
        under an older token, or for a partition not owned then, says nothing about the lease now."""
        self._lose([p for p, t in stale.items() if self.owned.get(p) == t], "a commit was fenced")

    # --- the loop -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Rounds every third of the TTL until ``stop``; meanwhile a watchdog declares lost what was
        not renewed in time, even while a round waits on PostgreSQL."""
        watchdog = asyncio.ensure_future(self._watch())
        try:
            while not self._stopping:
                async with self._round:
                    if self._stopping:
                        break
                    if (why := self._stalled()) is not None:
                        if self.owned:
                            log.warning("worker %s renews no lease: %s", self.worker_id, why)
                    else:
                        try:
                            await self.round()
                        except DB_ERRORS as e:
                            log.warning("lease round failed (%s); %d partitions held", e, len(self.owned))
                await self._sleep(self.ttl_s / 3)
        finally:
            watchdog.cancel()

    async def round(self) -> None:
        """One round: heartbeat, renew, give up what is above the fair share, take up to it."""
        self._expire_overdue()
        async with self.pool.acquire() as conn:
            if not self._rows_ready:
                await conn.execute(
                    "INSERT INTO partition_leases (partition) SELECT generate_series(0, $1 - 1)"
                    " ON CONFLICT DO NOTHING",
                    self.partitions,
                    timeout=self.ttl_s,
                )
                # workers gone for a day (each process has a name of its own: hostname-pid)
                await conn.execute(
                    "DELETE FROM cluster_workers WHERE seen_at < now() - interval '1 day'", timeout=self.ttl_s
                )
                self._rows_ready = True
            await conn.execute(
                "INSERT INTO cluster_workers (worker, seen_at) VALUES ($1, now())"
                " ON CONFLICT (worker) DO UPDATE SET seen_at = now(), stopping = false",
                self.worker_id,
                timeout=self.ttl_s,
            )
            await self._renew(conn)
            self.live_workers = int(
                await conn.fetchval(
                    "SELECT count(*) FROM cluster_workers"
                    " WHERE seen_at > now() - make_interval(secs => $1) AND NOT stopping",
                    self.ttl_s,
                    timeout=self.ttl_s,
                )
            )
        share = self.fair_share(self.live_workers)
        if len(self.owned) > share:
            await self._release(sorted(self.owned)[share:])
        elif len(self.owned) < share:
            await self._end_transactions_of_the_gone()
            await self._take(share - len(self.owned))

    async def stop(self) -> None:
        """Hand every partition over gracefully and stop: marked stopping first (the others grow their
        share at their next round), then ``before_release`` and the leases freed."""
        self._stopping = True
        async with self._round:
            try:
                await self.pool.execute(
                    "UPDATE cluster_workers SET stopping = true WHERE worker = $1",
                    self.worker_id,
                    timeout=self.ttl_s,
                )
            except DB_ERRORS as e:
                log.warning("could not mark worker %s stopping (%s)", self.worker_id, e)
            await self._release(sorted(self.owned))

    # --- the statements -------------------------------------------------------------------------------
    async def _renew(self, conn: asyncpg.Connection) -> None:
        if not self.owned:
            return
        held = dict(self.owned)
        sent = self._monotonic()
        rows = await conn.fetch(
            "UPDATE partition_leases l SET expires_at = now() + make_interval(secs => $3)"
            " FROM unnest($1::smallint[], $2::bigint[]) AS m(partition, token)"
            " WHERE l.partition = m.partition AND l.token = m.token AND l.owner = $4"
            " RETURNING l.partition",
            list(held),
            list(held.values()),
            self.ttl_s,
            self.worker_id,
            timeout=self.ttl_s,
        )
        renewed = {r["partition"] for r in rows}
        for p in renewed:
            if self.owned.get(p) == held[p]:  # (not lost meanwhile, by the watchdog or a fenced commit)
                self._valid_until[p] = sent + self.ttl_s - self.margin_s
        self._lose([p for p in held if p not in renewed and self.owned.get(p) == held[p]], "taken over")

    async def _end_transactions_of_the_gone(self) -> None:
        """End the sessions of workers not seen within the TTL that are inside a transaction (one may
        hold lease rows FOR SHARE for as long as its worker is cut off); waits up to a second for each
        to be gone. Without the right to (another role, not a member), it says so and goes on."""
        try:
            ended = await self.pool.fetch(
                "SELECT a.application_name AS worker, a.pid, pg_terminate_backend(a.pid, 1000) AS gone"
                " FROM pg_stat_activity a JOIN cluster_workers w ON a.application_name = left(w.worker, 63)"
                " WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL"
                " AND a.pid <> pg_backend_pid() AND w.worker <> $1"
                " AND w.seen_at < now() - make_interval(secs => $2)",
                self.worker_id,
                self.ttl_s,
                timeout=self.ttl_s,
            )
        except DB_ERRORS as e:
            log.warning("could not end the transactions of workers gone (%s)", e)
            return
        for r in ended:
            log.warning(
                "worker %s ended session %d of worker %s, gone inside a transaction (%s)",
                self.worker_id,
                r["pid"],
                r["worker"],
                "ended" if r["gone"] else "still there after 1 s",
            )

    async def _take(self, wanted: int) -> None:
        sent = self._monotonic()
        rows = await self.pool.fetch(
            "WITH free AS ("
            "  SELECT partition FROM partition_leases"
            "  WHERE partition < $2 AND NOT (partition = ANY($4::smallint[]))"
            "  AND (owner IS NULL OR owner = $1 OR expires_at IS NULL OR expires_at < now())"
            "  ORDER BY partition LIMIT $3 FOR UPDATE SKIP LOCKED)"
            " UPDATE partition_leases l"
            " SET owner = $1, token = l.token + 1, expires_at = now() + make_interval(secs => $5)"
            " FROM free WHERE l.partition = free.partition"
            " RETURNING l.partition, l.token",
            self.worker_id,
            self.partitions,
            wanted,
            list(self.owned),
            self.ttl_s,
            timeout=self.ttl_s,
        )
        gained = sorted(r["partition"] for r in rows)
        for r in rows:
            self.owned[r["partition"]] = r["token"]
            self._valid_until[r["partition"]] = sent + self.ttl_s - self.margin_s
        if gained:
            self._deadline_moved.set()
            log.info("worker %s took partitions %s", self.worker_id, gained)
            self._tell(self.on_gained, gained)

    async def _release(self, partitions: Partitions) -> None:
        """Give partitions up gracefully: the caller lets go of them (``before_release``), then they
        leave ``owned`` and their leases are freed (only if still held under the same token)."""
        if not partitions:
            return
        try:
            await self.before_release(partitions)
        except Exception:
            log.exception("before_release(%s) failed; releasing anyway", partitions)
        held = {p: self.owned[p] for p in partitions if p in self.owned}
        for p in held:
            del self.owned[p]
            self._valid_until.pop(p, None)
        try:
            await self.pool.execute(
                "UPDATE partition_leases l SET owner = NULL, expires_at = now()"
                " FROM unnest($1::smallint[], $2::bigint[]) AS m(partition, token)"
                " WHERE l.partition = m.partition AND l.token = m.token AND l.owner = $3",
                list(held),
                list(held.values()),
                self.worker_id,
                timeout=self.ttl_s,
            )
            log.info("worker %s gave up partitions %s", self.worker_id, sorted(held))
        except DB_ERRORS as e:
            log.warning("could not free partitions %s (%s): they lapse after the TTL", sorted(held), e)
        finally:
            self._tell(self.on_lost, sorted(held))

    # --- losing ---------------------------------------------------------------------------------------
    async def _watch(self) -> None:
        """Declare lost, on time, every partition not renewed by its deadline."""
        while True:
            deadline = min(self._valid_until.values(), default=None)
            timeout = self.ttl_s if deadline is None else max(0.0, deadline - self._monotonic())
            self._deadline_moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deadline_moved.wait(), timeout)
            self._expire_overdue()

    def _expire_overdue(self) -> None:
        now = self._monotonic()
        self._lose([p for p, until in self._valid_until.items() if until <= now], "not renewed in time")

    def _lose(self, partitions: Partitions, why: str) -> None:
        lost = sorted(p for p in partitions if p in self.owned)
        if not lost:
            return
        for p in lost:
            del self.owned[p]
            self._valid_until.pop(p, None)
        log.warning("worker %s lost partitions %s (%s)", self.worker_id, lost, why)
        self._tell(self.on_lost, lost)

    def _tell(self, callback: Callable[[Partitions], None], partitions: Partitions) -> None:
        try:
            callback(partitions)
        except Exception:
            log.exception("lease callback %s(%s) failed", getattr(callback, "__name__", callback), partitions)
