"""The dispatcher: delivers committed outbox rows over their channels, retrying with back-off.

Persist first, then fan out: the pipeline commits alerts and their outbox rows, then wakes the
dispatcher; the dispatcher also looks at the outbox every `poll_s` for retries that came due and
for rows another process wrote. A channel failure is logged and retried, never lost, never fatal.

A critical alert does not wait for a round on the parents' sockets: the commit that opens it claims
its websocket deliveries to guardians connected to this process (written 'sending' in the alert's
transaction), and :meth:`Dispatcher.send_at_once` sends them as soon as the transaction is committed
and marks them after, through the same per-delivery rules as a round (``_deliver``). Everything else
goes through the outbox, in two lanes, each a loop of rounds: the websocket (a parent's page: a
message on an open socket, cheap) and every other channel (SMS gateways, school webhooks: slow, and
throttled by their providers), so that no socket waits behind thousands of SMS; and while critical
alerts are going out at once, the slow lane waits for them (they share one event loop; an SMS may
take seconds anyway). A round is sized by time, not by count:
each lane claims as many rows as it delivered in ``ROUND_S`` the round before (between ``MIN_ROUND``
and ``MAX_ROUND``), so that a burst is taken in few rounds and a slow channel does not hold a big one.

A round's outcomes are written together after its calls (one statement for the round). A tracker
killed in between leaves the round's rows 'sending', and the next start gives them to their channels
again: no delivery is missed, and each channel makes the second time harmless as far as it can
(tracker/alerts/channels.py: exactly once for the stub's SMS, a record written right after each
gateway call for a real SMS gateway, an idempotency key for a webhook, the alert's id for a page).

Several tracker processes on one PostgreSQL (issue 16) each run a dispatcher over the one outbox: a
row is claimed by one of them (SKIP LOCKED), with the claimer's worker id and the time (migration
0016), and only its claimer writes its outcome. A starting process releases only its own earlier
claims and those older than the claim timeout; so that a live process's slow deliveries are not
taken for a dead one's, each dispatcher refreshes the claims it holds every third of the timeout
(the heartbeat), and now and then releases other processes' claims that nobody has refreshed for
the whole timeout (a process that died and has not come back). A websocket delivery reaches the
guardian's sockets on the other processes through tracker.alerts.relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

import asyncpg

from tracker.alerts.channels import Channel
from tracker.store.alerts import (
    CLAIM_TIMEOUT_S,
    AlertFacts,
    DeliveryJob,
    DeliveryMark,
    claim_due_deliveries,
    mark_deliveries,
    refresh_claims,
    release_abandoned_deliveries,
    sent_counts,
)
from tracker.store.db import DB_ERRORS

log = logging.getLogger(__name__)

ROUND_S = 0.25  # a round should take about this long
MIN_ROUND, MAX_ROUND = 50, 5000
FAST_CHANNELS = ("websocket",)  # the lane that never waits behind the others
SOCKETS_FIRST_S = 1.0  # longest the other lane's round waits for critical alerts going out on sockets


class _Lane:
    """One loop of rounds over some channels, with the size of its next round."""

    def __init__(self, name: str, channels: tuple[str, ...], other: bool) -> None:
        self.name = name
        self.channels = channels
        self.other = other  # every channel but these
        self.wake = asyncio.Event()
        self.limit = 200  # rows the next round claims

    def sized(self, delivered: int, seconds: float) -> None:
        """The next round: as many rows as this one's pace delivers in ROUND_S."""
        if delivered >= self.limit and seconds > 0:  # a full round: the backlog may be bigger
            self.limit = max(MIN_ROUND, min(MAX_ROUND, int(delivered * ROUND_S / seconds)))


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: list[Channel],
        *,
        max_attempts: int = 8,
        backoff_s: float = 2.0,
        poll_s: float = 1.0,
        rate_limit: tuple[int, float] = (6, 600.0),
        claim_timeout_s: float = CLAIM_TIMEOUT_S,
    ) -> None:
        """``claim_timeout_s``: how long an unrefreshed claim of another process stands before its rows
        are released (tracker.store.alerts.release_stuck_deliveries)."""
        self._pool = pool
        self._claim_timeout_s = claim_timeout_s
        self._holding: Counter[int] = Counter()  # delivery ids claimed and not marked yet (the heartbeat's)
        self._channels = {c.name: c for c in channels}
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._poll_s = poll_s
        self._rate_count, self._rate_window_s = rate_limit
        self._lanes = (_Lane("websocket", FAST_CHANNELS, False), _Lane("other", FAST_CHANNELS, True))
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (channel, state) -> count, for metrics
        self._sending: set[asyncio.Future[None]] = set()  # send_at_once's tasks

    def wake(self) -> None:
        for lane in self._lanes:
            lane.wake.set()

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._run(lane) for lane in self._lanes), self._claims())
        finally:  # stopping: what is being sent at once is marked before the pool closes
            if self._sending:
                await asyncio.wait(self._sending, timeout=5.0)

    def send_at_once(self, deliveries: list[tuple[DeliveryJob, AlertFacts]]) -> None:
        """Send deliveries that a commit claimed (critical alerts to sockets on this process) now, in
        a task of their own; their outcomes are written together, as a round's are."""
        if deliveries:
            task = asyncio.ensure_future(self._send_at_once(deliveries))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_at_once(self, deliveries: list[tuple[DeliveryJob, AlertFacts]]) -> None:
        await self._deliver_all(deliveries, {})  # critical alerts: no rate limit to count

    async def _deliver_all(
        self, claimed: list[tuple[DeliveryJob, AlertFacts]], sent: dict[tuple[int, str], int]
    ) -> None:
        """Deliver claimed rows concurrently, then write their outcomes in one statement; those of a
        delivery cut short too (the service stopping), so that what went out is not sent again after
        a restart."""
        done: list[DeliveryMark] = []

        async def deliver(job: DeliveryJob, facts: AlertFacts) -> None:
            done.append(await self._deliver(job, facts, sent))

        ids = [job.delivery_id for job, _ in claimed]
        self._holding.update(ids)
        try:
            await asyncio.gather(*(deliver(job, facts) for job, facts in claimed))
        finally:
            try:
                await self._mark(done)
            finally:
                self._holding.subtract(ids)
                self._holding += Counter()  # drops the ids no longer held

    async def _claims(self) -> None:
        """The heartbeat of this process's claims, and the release of other processes' abandoned
        ones, every third of the claim timeout."""
        while True:
            await asyncio.sleep(self._claim_timeout_s / 3)
            try:
                await refresh_claims(self._pool, list(self._holding))
                if released := await release_abandoned_deliveries(self._pool, self._claim_timeout_s):
                    log.warning("released %d deliveries claimed by a process gone for good", released)
                    self.wake()
            except DB_ERRORS as e:
                log.warning("dispatcher cannot refresh its claims (%s); trying again", e)

    async def _run(self, lane: _Lane) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), self._poll_s)
            lane.wake.clear()
            try:
                while True:
                    if lane.other:
                        await self._after_sockets()
                    if await self._round(lane) == 0:
                        break
            except DB_ERRORS as e:
                log.warning("dispatcher (%s) cannot reach PostgreSQL (%s); trying again", lane.name, e)
                await asyncio.sleep(self._poll_s)

    async def _after_sockets(self) -> None:
        """The slow channels' rounds wait while critical alerts are going out on sockets (they share
        this event loop, and an SMS may take seconds anyway), for at most SOCKETS_FIRST_S."""
        if self._sending:
            await asyncio.wait(list(self._sending), timeout=SOCKETS_FIRST_S)

    async def deliver_due(self) -> int:
        """One round of every lane (tests, and a caller that wants the due rows out now); returns how
        many rows were claimed."""
        return sum([await self._round(lane) for lane in self._lanes])

    async def _round(self, lane: _Lane) -> int:
        """Deliver one round of a lane's due outbox rows; returns how many were claimed."""
        started = time.perf_counter()
        claimed = await claim_due_deliveries(self._pool, lane.limit, channels=lane.channels, other=lane.other)
        if not claimed:
            return 0
        jobs = [job for job, _ in claimed]
        # the rate limit's counts for the whole round in one query, as the round starts (the round's
        # deliveries run concurrently, so each of them saw the counts from before the round anyway)
        sent = await sent_counts(
            self._pool, [(g, j.channel) for j in jobs if (g := _limited(j)) is not None], self._rate_window_s
        )
        await self._deliver_all(claimed, sent)
        lane.sized(len(jobs), time.perf_counter() - started)
        return len(jobs)

    async def _mark(self, marks: list[DeliveryMark]) -> None:
        """Write outcomes, trying again while PostgreSQL is away (the statement is all or nothing;
        until it is written, the round's rows stay 'sending', never claimed twice)."""
        delay = 0.5
        while True:
            try:
                await mark_deliveries(self._pool, marks)
                return
            except DB_ERRORS as e:
                log.warning("cannot record %d delivery outcomes (%s); again in %.1f s", len(marks), e, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 30.0)

    async def _deliver(
        self, job: DeliveryJob, facts: AlertFacts, sent: dict[tuple[int, str], int]
    ) -> DeliveryMark:
        """Deliver one outbox row; returns what became of it (written with the round's others)."""
        if not job.linked:
            # the guardian was unlinked from the child after this was written (the pipeline's registry
            # view had them still, or a retry was waiting): they are told nothing more of the child
            self.outcomes[(job.channel, "cancelled")] += 1
            reason = "guardian no longer linked to the child"
            history = (job.alert_id, "cancelled", _who(job) | {"reason": reason})
            return DeliveryMark(job.delivery_id, "cancelled", time.time(), error=reason, history=history)
        channel = self._channels.get(job.channel)
        if channel is None:
            why = f"no channel {job.channel!r} configured"
            self.outcomes[(job.channel, "failed")] += 1
            return DeliveryMark(job.delivery_id, "failed", time.time(), error=why)
        if self._over_limit(job, sent):
            self.outcomes[(job.channel, "suppressed")] += 1
            history = (job.alert_id, "suppressed", _who(job) | {"reason": "rate limit"})
            return DeliveryMark(
                job.delivery_id, "suppressed", time.time(), error="rate limit", history=history
            )
        try:
            outcome = await channel.deliver(job, facts)
        except Exception as e:  # a channel's failure of any kind is retried, never fatal
            error = f"{type(e).__name__}: {e}"
            if job.attempts >= self._max_attempts:
                log.error("delivery %s (%s) failed for good: %s", job.delivery_id, job.channel, error)
                self.outcomes[(job.channel, "failed")] += 1
                history = (job.alert_id, "failed", _who(job) | {"error": error})
                return DeliveryMark(job.delivery_id, "failed", time.time(), error=error, history=history)
            delay = self._backoff_s * 2 ** (job.attempts - 1)
            log.warning(
                "delivery %s (%s) failed, retry in %.0f s: %s", job.delivery_id, job.channel, delay, error
            )
            self.outcomes[(job.channel, "retry")] += 1
            return DeliveryMark(job.delivery_id, "pending", time.time(), error=error, retry_in_s=delay)
        step = "delivered" if outcome == "sent" else "unreachable"
        self.outcomes[(job.channel, outcome)] += 1
        history = (job.alert_id, step, _who(job) | {"transition": job.transition})
        return DeliveryMark(job.delivery_id, outcome, time.time(), history=history)

    def _over_limit(self, job: DeliveryJob, sent: dict[tuple[int, str], int]) -> bool:
        """A per-guardian, per-channel rate limit stops storms; critical alerts are never held back.
        The limit is decided at a delivery's first attempt only: a later one follows a channel's
        failure or a claim released from a process that died while sending, whose message may have gone
        out (the channels make the repeat harmless), and such a message is never marked 'suppressed'
        because the guardian has been sent others since."""
        guardian = _limited(job)
        return (
            job.attempts <= 1
            and guardian is not None
            and sent.get((guardian, job.channel), 0) >= self._rate_count
        )


def _limited(job: DeliveryJob) -> int | None:
    """The guardian whose rate limit applies to a delivery; None: none does (critical alerts, and
    deliveries to a school, are never held back)."""
    return job.guardian_id if job.severity != "critical" else None


def _who(job: DeliveryJob) -> dict[str, object]:
    to: dict[str, object] = {"channel": job.channel, "attempt": job.attempts}
    if job.guardian_id is not None:
        to["guardian_id"] = job.guardian_id
    if job.school_id is not None:
        to["school_id"] = job.school_id
    return to
