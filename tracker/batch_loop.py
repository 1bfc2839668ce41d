"""The batch loop: messages from the ingest queue, through the pipeline, in order, each batch
acknowledged once committed.

Each batch is prepared (decoded, geofenced, judged) while the one before it commits: PostgreSQL works
on one batch while the tracker decides the next. The loop holds the pipeline's writer role while
batches follow each other, and lets it go when it waits for messages or when the clock asks for it
(between two batches).

A batch whose commit fails on PostgreSQL trouble is committed again, with back-off, until it goes
through (nothing of a failed attempt was applied). A batch that trips a bug is taken message by message:
the one that fails alone is dead-lettered as ``internal_error`` (kept, so nothing is lost) and the
others go through; the batch prepared on top of it is prepared again.

After the commit: the broker's messages are acknowledged, the HTTP requests among them answered with
their own outcome, and the dispatcher woken.

With workers (issue 16), a commit may be fenced (tracker.cluster.fencing: a partition of the batch
changed hands since it was prepared). Nothing of it was written, and nothing of it is acknowledged
or dead-lettered: the engine delivers its messages again, to the partition's new owner, and the
messages of partitions this worker still owns are read again at once (``not_committed``; the engine
would give them again only after its ack wait, two minutes, and after what came later). The states
prepared on top of it are discarded, the batch after it is prepared again, the lease keeper is told,
and the loop goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

import asyncpg

from tracker.cluster.fencing import Fenced
from tracker.config import Settings
from tracker.ingest.decode import RawMessage, Reason
from tracker.ingest.handoff import Handoff
from tracker.ingest.http import HttpIngress, MessageAnswer
from tracker.metrics import Metrics
from tracker.pipeline import BatchOutcome, Pipeline, PreparedBatch
from tracker.store.alerts import AlertFacts, DeliveryJob
from tracker.store.batches import store_dead_letters
from tracker.store.db import DB_ERRORS

log = logging.getLogger(__name__)
T = TypeVar("T")


class Acknowledger(Protocol):
    def ack(self, messages: list[RawMessage]) -> None: ...

    def not_committed(self, messages: list[RawMessage]) -> None:
        """A fenced batch's messages: never acknowledged by this batch; those this worker still owns
        are to be delivered again now, in order."""
        ...

    def current(self, messages: list[RawMessage]) -> list[RawMessage]:
        """The messages still to be processed: without those read before their partition was given up
        or read again (they come again, in order, or go to the partition's new owner)."""
        ...


class Dispatching(Protocol):
    """What the loop asks of the dispatcher (tracker.alerts.dispatcher.Dispatcher)."""

    def wake(self) -> None: ...
    def send_at_once(self, deliveries: list[tuple[DeliveryJob, AlertFacts]]) -> None: ...


class BatchLoop:
    def __init__(
        self,
        *,
        pipeline: Pipeline,
        queue: Handoff[RawMessage],
        settings: Settings,
        metrics: Metrics,
        pool: asyncpg.Pool,
        broker: Acknowledger,
        http: HttpIngress,
        dispatcher: Dispatching,
        live: Callable[[BatchOutcome], None] = lambda outcome: None,
    ) -> None:
        """``live``: told of every batch committed (the schools' live map, tracker.api.live_feed)."""
        self._pipeline = pipeline
        self._live = live
        self._queue = queue
        self._settings = settings
        self._metrics = metrics
        self._pool = pool
        self._broker = broker
        self._http = http
        self._dispatcher = dispatcher
        self.healthy = True  # false while PostgreSQL keeps a batch from being prepared or committed
        # the commit of the batch before (None: a bug; Fenced: its partitions changed hands)
        self._committing: asyncio.Future[BatchOutcome | Fenced | None] | None = None
        self._arriving: asyncio.Future[list[RawMessage]] | None = None  # the next batch

    async def run(self) -> None:
        try:
            await self._batches()
        finally:
            for pending in (self._arriving, self._committing):
                if pending is not None:
                    pending.cancel()

    async def _next_batch(self) -> list[RawMessage]:
        s = self._settings
        return await self._queue.batch(s.batch_max_messages, s.batch_wait_ms / 1000, s.batch_max_bytes)

    async def _batches(self) -> None:
        stages = self._metrics.stage_seconds
        pipeline = self._pipeline
        writer = pipeline.writer
        holding = False
        committing_batch: list[RawMessage] = []
        while True:
            t = time.perf_counter()
            arriving = self._arriving = asyncio.ensure_future(self._next_batch())
            if self._committing is not None:
                either: set[asyncio.Future[Any]] = {arriving, self._committing}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if self._committing.done():
                    await self._after_commit(committing_batch)
            if self._committing is None and holding:
                writer.release()  # idle: the clock may run
                holding = False
            batch = self._broker.current(await arriving)
            stages["wait_messages"] += time.perf_counter() - t
            if not batch:
                continue
            if self._committing is not None and pipeline.clock_waiting:
                await self._after_commit(committing_batch)
                writer.release()  # the clock runs between two batches (asyncio.Lock: first come first served)
                holding = False
            if not holding:
                await writer.acquire()
                holding = True
            prepared = await self._prepare(batch)
            if self._committing is not None and not await self._after_commit(committing_batch):
                # the batch before failed and was recovered message by message, or was fenced (its
                # partitions still owned are read again from there: this batch's later messages of them
                # come again after it, in order): prepare this one again, on the states that came to be
                batch = self._broker.current(batch)
                if not batch:
                    continue
                prepared = await self._prepare(batch) if prepared is not None else None
            if prepared is None:  # a bug one of its messages triggers
                await self._one_by_one(batch)
                continue
            self._committing = asyncio.ensure_future(self._commit_and_ack(batch, prepared))
            committing_batch = batch

    async def _after_commit(self, batch: list[RawMessage]) -> bool:
        """Wait for the batch being committed; if it could not be (a bug), forget the states prepared on
        top of it and process its messages one by one; if it was fenced, forget them and drop the batch
        (not acknowledged). Whether it was committed as a whole."""
        assert self._committing is not None
        outcome = await self._committing
        self._committing = None
        if isinstance(outcome, Fenced):
            self._pipeline.discard_ahead()
            return False
        if outcome is None:
            self._pipeline.discard_ahead()
            await self._one_by_one(batch)
        return outcome is not None

    async def _prepare(self, batch: list[RawMessage]) -> PreparedBatch | None:
        """Prepare a batch (reading states from PostgreSQL again after trouble); None: a bug."""
        try:
            prepare = partial(self._pipeline.prepare, batch)
            return await self._through_db_trouble("prepared", len(batch), prepare)
        except Exception:
            log.exception("batch of %d messages failed", len(batch))
            return None

    async def _commit_and_ack(
        self, batch: list[RawMessage], prepared: PreparedBatch
    ) -> BatchOutcome | Fenced | None:
        """Commit a prepared batch (again and again while PostgreSQL is in trouble), then acknowledge
        its messages and wake the dispatcher. None: a bug, Fenced: its partitions changed hands;
        either way nothing was committed or acknowledged."""
        try:
            commit = partial(self._pipeline.commit, prepared)
            outcome = await self._through_db_trouble("committed", len(batch), commit)
        except Fenced as e:
            log.warning("batch of %d messages not committed: %s", len(batch), e)
            self._pipeline.fenced(e)
            self._broker.not_committed(batch)
            return e
        except Exception:
            log.exception("batch of %d messages not committed", len(batch))
            return None
        self._dispatcher.send_at_once(outcome.at_once)
        self._acknowledge(batch, outcome.answers)
        self._live(outcome)
        return outcome

    def _acknowledge(self, batch: list[RawMessage], answers: dict[int, MessageAnswer]) -> None:
        t = time.perf_counter()
        self._broker.ack(batch)
        self._http.committed(batch, answers)
        self._dispatcher.wake()
        self._metrics.stage_seconds["ack"] += time.perf_counter() - t

    async def _through_db_trouble(self, what: str, n: int, work: Callable[[], Awaitable[T]]) -> T:
        """``work`` again, with back-off, while PostgreSQL is in trouble (nothing of a failed attempt
        was applied); any other error is the caller's."""
        delay = 0.2
        while True:
            try:
                result = await work()
            except DB_ERRORS as e:
                self.healthy = False
                self._metrics.commit_retries += 1
                log.warning("batch of %d messages not %s (%s); retrying in %.1f s", n, what, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.healthy = True
            return result

    async def _one_by_one(self, batch: list[RawMessage]) -> None:
        """After a bug: each message as a batch of its own, prepared and committed in turn (the caller
        holds the writer role and nothing else is committing); one that fails alone is dead-lettered as
        `internal_error`, and the others go through."""
        for message in batch:
            try:
                outcome = await self._through_db_trouble("committed", 1, partial(self._alone, message))
                answers = outcome.answers
                self._dispatcher.send_at_once(outcome.at_once)
            except Fenced as e:  # not this worker's any more: neither acknowledged nor dead-lettered
                self._pipeline.discard_ahead()
                log.warning("message on %s not committed: %s", message.topic, e)
                self._pipeline.fenced(e)
                self._broker.not_committed([message])
                continue
            except Exception as e:
                self._pipeline.discard_ahead()
                log.exception("message on %s failed; dead-lettered as internal_error", message.topic)
                detail = f"{type(e).__name__}: {e}"
                await self._dead_letter_internal(message, detail)
                answers = {message.mid: MessageAnswer.internal_error(message, detail)}
            self._acknowledge([message], answers)

    async def _alone(self, message: RawMessage) -> BatchOutcome:
        self._pipeline.discard_ahead()  # on the committed states: a failed attempt's are not
        return await self._pipeline.commit(await self._pipeline.prepare([message]))

    async def _dead_letter_internal(self, message: RawMessage, detail: str) -> None:
        record = (
            datetime.fromtimestamp(message.received_at, UTC),
            message.topic,
            message.payload,
            Reason.INTERNAL_ERROR.value,
            detail,
        )
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await store_dead_letters(conn, [record])
                self._metrics.rejected[Reason.INTERNAL_ERROR.value] += 1
                return
            except DB_ERRORS as e:
                log.warning("cannot dead-letter (%s); retrying", e)
                await asyncio.sleep(1)
