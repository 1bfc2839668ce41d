"""The pipeline: the one place where the order of the stages is written.

    broker and HTTP messages
      1. decode + validate        tracker.stages.front     (bad payload -> dead letter)
      2. admit                    tracker.stages.front     (unknown tag, future, rate -> dead letter)
      3. geofence, whole batch    tracker.stages.geofence  (route distance, zones certain / possible /
                                                            crossed: the monitor's observations)
      4. monitor, per child       tracker.stages.monitor   (state + observation -> events)
      5. commit, one transaction  tracker.stages.records + tracker.stages.commit
                                  (positions by COPY, dead letters, alerts + outbox, monitor state)
    then the caller (tracker.batch_loop) acknowledges the messages, answers the HTTP requests with
    their outcome, and wakes the dispatcher.

Stages 1-4 and the rows of 5 are ``prepare``, run in worker threads: the event loop goes on with the
commit of the batch before (its round trips to PostgreSQL), the websockets and the HTTP API meanwhile.
``commit`` is the transaction. Nothing changes the children's states (``tracker.child_states``) until
the commit succeeded, so a batch can be committed again after a failed attempt, and a redelivered
message changes nothing (positions are idempotent on tag + timestamp, and a state refuses a fix it has
already decided). The clock's rules (``tracker.clock``) move the same states, never at the same time.

With workers (issue 16, ``ownership``: tracker.cluster), a batch is prepared under the fencing tokens
its worker holds for its children's partitions, and its commit checks them first (``Fenced``: nothing
written); ``forget_partitions`` drops the states of a partition that changed hands. Without it (one
process, ``make run``) nothing of that runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection

import asyncpg
import numpy as np

from tracker.alerts.escalation import Escalation
from tracker.alerts.lifecycle import ChildEvent
from tracker.child_states import ChildStates
from tracker.clock import Clock
from tracker.cluster.fencing import Fenced
from tracker.cluster.partitions import Ownership
from tracker.config import Settings, rules_from
from tracker.ingest.decode import RawMessage
from tracker.ingest.ratelimit import TagRateLimiter
from tracker.metrics import Metrics, StageClock
from tracker.monitor import ChildState, Verdict
from tracker.registry_view import RegistryView
from tracker.stages.commit import write_batch
from tracker.stages.front import Front, front
from tracker.stages.geofence import error_scales, observe
from tracker.stages.monitor import judge_batch
from tracker.stages.records import BatchOutcome, PreparedBatch, answers, records

__all__ = ["BatchOutcome", "Pipeline", "PreparedBatch"]


class Pipeline:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        view: Callable[[], RegistryView],
        settings: Settings,
        metrics: Metrics,
        connected_here: Callable[[int], bool] = lambda guardian_id: False,
        ownership: Ownership | None = None,
    ) -> None:
        """``connected_here``: whether a guardian has a websocket open on this process (their critical
        alerts go out on it as soon as the batch is committed: ``BatchOutcome.at_once``).
        ``ownership``: a worker's lease keeper (tracker.cluster.leases.LeaseKeeper); None: one process,
        owning every child, no fencing."""
        self._pool = pool
        self.ownership = ownership
        self._connected_here = connected_here
        self._view = view
        self._settings = settings
        self._metrics = metrics
        self.rules = rules_from(settings)
        self.escalation = Escalation(settings.escalate_warning_s, settings.escalate_critical_s)
        self.states = ChildStates(pool)
        self.clock = Clock(
            pool=pool,
            view=view,
            states=self.states,
            rules=self.rules,
            escalation=self.escalation,
            metrics=metrics,
            ownership=ownership,
        )
        self._rate = TagRateLimiter(rate_per_s=settings.tag_rate_per_s, burst=settings.tag_burst)

    @property
    def writer(self) -> asyncio.Lock:
        """Who may move the children's states: a run of batches or the clock (see ChildStates)."""
        return self.states.writer

    @property
    def clock_waiting(self) -> int:
        return self.states.clock_waiting

    async def process(self, messages: list[RawMessage]) -> BatchOutcome:
        """One batch, start to end: prepared, then committed."""
        async with self.writer:
            return await self.commit(await self.prepare(messages))

    async def prepare(self, messages: list[RawMessage]) -> PreparedBatch:
        """Stages 1-4, and the rows of stage 5. The caller holds ``writer``. The states it starts from
        are those of the batches prepared before it, committed or not: the batch loop prepares a batch
        while the one before it commits, and commits them in order."""
        started = time.time()
        view = self._view()  # one registry view for the whole batch, even if a new one is swapped in
        share = None if self.ownership is None else self.ownership.share()  # before any state is read
        clock = StageClock()
        outcome = BatchOutcome(messages=len(messages))
        first = await asyncio.to_thread(self._front, view, messages, outcome, clock)
        states = await self.states.of_batch(first.admitted.child_ids.tolist())
        clock.lap("load_states")
        prepared = await asyncio.to_thread(self._decide, view, first, states, outcome, clock)
        if share is not None:
            prepared.tokens = share.tokens_for(first.admitted.child_ids)
        fixes = first.admitted.fixes
        prepared.started = started
        prepared.arrived = np.fromiter((m.received_at for m in messages), np.float64, len(messages))
        prepared.receipts = np.fromiter((f.received_at for f in fixes), np.float64, len(fixes))
        self.states.hold(states)
        first.rate.hold()
        for stage, seconds in clock.totals.items():
            self._metrics.stage_seconds[stage] += seconds
        return prepared

    def _front(
        self, view: RegistryView, messages: list[RawMessage], outcome: BatchOutcome, clock: StageClock
    ) -> Front:
        """Stages 1-2 (a worker thread); the rate limiter is charged only once the batch commits."""
        first = front(messages, view, self._settings, self._rate, time.time())
        outcome.ignored.update(first.ignored)
        outcome.answers = answers(messages, first.admitted, first.refused)
        clock.lap("decode")
        return first

    def _decide(
        self,
        view: RegistryView,
        first: Front,
        states: dict[int, ChildState],
        outcome: BatchOutcome,
        clock: StageClock,
    ) -> PreparedBatch:
        """Stages 3-4 and the rows of 5 (a worker thread)."""
        admitted = first.admitted
        children = admitted.child_ids.tolist()
        slots = view.route_slots(admitted.child_ids)
        scales = error_scales(admitted.child_ids, states, self.rules)
        outcome.judged_wide = int(np.count_nonzero(scales > 1.0))
        observations = observe(
            view.index, self.rules, admitted.fixes, admitted.child_ids, slots, states, scales
        )
        clock.lap("geofence")
        events, decided = judge_batch(
            view, self.rules, admitted.fixes, children, observations, states, outcome.verdicts
        )
        clock.lap("monitor")
        prepared = records(
            view,
            admitted,
            first.refused,
            observations,
            decided,
            states,
            self.states.changed(states),
            events,
            outcome,
            first.rate,
        )
        clock.lap("commit_prepare")
        return prepared

    async def commit(self, p: PreparedBatch) -> BatchOutcome:
        """Stage 5: one transaction. On success the batch's states become the committed ones. On a
        failure nothing is applied and ``p`` may be committed again (PostgreSQL trouble); a batch that
        cannot be committed at all must be followed by ``discard_ahead``."""
        clock = StageClock(self._metrics.stage_seconds)
        await write_batch(self._pool, p, self.escalation, clock, self._connected_here)
        # only now: the commit succeeded
        self.states.commit(p.states)
        p.rate.commit()

        outcome = p.outcome
        outcome.events = p.events
        m = self._metrics
        m.batches += 1
        m.messages_in += outcome.messages
        m.fixes_in += outcome.fixes
        m.fixes_stored += outcome.stored
        m.fixes_judged_wide += outcome.judged_wide
        m.rejected.update(outcome.rejected)
        m.ignored.update(outcome.ignored)
        m.not_deciding.update({k: v for k, v in outcome.verdicts.items() if k != Verdict.DECIDED})
        m.events.update(e.event.kind.value for e in p.events)
        m.fix_ages.observe("queued", p.started - p.arrived)
        m.fix_ages.observe("prepared", p.started - p.receipts)
        m.fix_ages.observe("committed", time.time() - p.receipts)
        return outcome

    def fenced(self, e: Fenced) -> None:
        """A commit was fenced: the lease keeper is told (it loses the partitions still held under the
        tokens the batch was prepared with)."""
        if self.ownership is not None:
            self.ownership.fenced(e.stale)

    def forget_partitions(self, partitions: Collection[int]) -> None:
        """Forget the states (committed and ahead) of the children of these partitions: gained ones are
        read from their PostgreSQL checkpoints, after the token bump, when next needed; lost ones are
        not ours to keep. (The lease keeper's on_gained and on_lost.)"""
        if self.ownership is None or not partitions:
            return
        count, which = self.ownership.share().partitions, frozenset(partitions)
        self.states.forget(lambda child: child % count in which)

    def discard_ahead(self) -> None:
        """Forget the states of batches prepared and not committed (a commit failed for good: the
        batches after it were prepared on states that never came to be)."""
        self.states.discard_ahead()
        self._rate.discard_ahead()

    async def tick(self, now: float | None = None) -> list[ChildEvent]:
        """The clock's rules (signal lost, not arrived) at ``now`` (default: the clock's), committed."""
        return await self.clock.tick(now)
