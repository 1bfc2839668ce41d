"""The pipeline: the one place where the order of the stages is written.

    broker messages
      1. decode + validate        tracker.ingest.decode    (bad payload -> dead letter)
      2. admit                    tracker.ingest.filters   (unknown tag, future -> dead letter)
      3. geofence, whole batch    tracker.geofence         (route distance, zones certain / possible)
      4. monitor, per child       tracker.monitor          (state + verdicts -> events)
      5. commit, one transaction  tracker.store + tracker.alerts.lifecycle
                                  (positions by COPY, dead letters, alerts + outbox, monitor state)
    then the caller acknowledges the messages and wakes the dispatcher.

Nothing here changes the in-memory state until the commit succeeded, so a batch can be run again
after a failed commit, and a redelivered message changes nothing (positions are idempotent on tag +
timestamp, and the monitor's checkpointed state refuses a fix it has already decided).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from itertools import pairwise

import asyncpg
import msgspec
import numpy as np

from tracker.alerts.lifecycle import ChildEvent, Escalation, Recipient, apply_events, touch_open_alerts
from tracker.config import Settings
from tracker.geofence import Verdicts
from tracker.ingest.decode import (
    Fix,
    RawMessage,
    Reason,
    Rejection,
    Sighting,
    decode_message,
    decode_sightings,
)
from tracker.ingest.filters import refusal
from tracker.ingest.protocols import decode_device, is_device_message
from tracker.ingest.ratelimit import RateBatch, TagRateLimiter
from tracker.metrics import Metrics
from tracker.monitor import (
    ChildContext,
    ChildState,
    Event,
    Observation,
    RouteSchedule,
    Rules,
    Verdict,
    gate,
    previous_fixes,
    step,
    tick,
)
from tracker.registry_view import RegistryView
from tracker.store.batches import (
    DeadLetterRecord,
    PositionRecord,
    StoredBefore,
    encode_state,
    load_child_states,
    save_child_states,
    store_dead_letters,
    store_positions,
)


def rules_from(settings: Settings) -> Rules:
    """The monitor's rules: every field of Rules that Settings carries, from Settings."""
    return Rules(
        **{f.name: getattr(settings, f.name) for f in fields(Rules) if f.name in Settings.model_fields}
    )


@dataclass
class BatchOutcome:
    messages: int = 0
    fixes: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    events: list[ChildEvent] = field(default_factory=list)
    outbox_rows: int = 0
    ignored: Counter[str] = field(default_factory=Counter)  # valid messages without a position


@dataclass(frozen=True)
class _Admitted:
    fixes: list[Fix]  # sorted by child, then time
    child_ids: np.ndarray  # int64, one per fix


@dataclass
class PreparedBatch:
    """A batch decided and ready to commit: what the transaction writes, and the states it leaves."""

    outcome: BatchOutcome
    states: dict[int, ChildState]  # the batch's children, as the batch leaves them
    rate: RateBatch
    positions: list[PositionRecord]  # fixes that may be stored already (they decided nothing)
    new_positions: list[PositionRecord]  # fixes that decided: later than any stored fix of their child
    dead: list[DeadLetterRecord]
    events: list[ChildEvent]
    recipients: dict[int, list[Recipient]]
    webhook_schools: dict[int, int | None]
    following: list[tuple[int, float, float | None, float | None, float | None]]
    changed: dict[int, str]  # child -> state JSON, for the children whose state changed


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Pipeline:
    def __init__(
        self, *, pool: asyncpg.Pool, view: Callable[[], RegistryView], settings: Settings, metrics: Metrics
    ) -> None:
        self._pool = pool
        self._view = view
        self._settings = settings
        self._metrics = metrics
        self.rules = rules_from(settings)
        self.escalation = Escalation(settings.escalate_warning_s, settings.escalate_critical_s)
        self._states: dict[int, ChildState] = {}
        self._ahead: dict[int, ChildState] = {}  # states of batches prepared and not committed yet
        self._all_loaded = False  # every child's checkpointed state read (the clock needs them all)
        self.writer = asyncio.Lock()
        """who may move the children's states: a run of batches (each prepared while the one before it
        commits) or the clock, never both at once"""
        self.clock_waiting = 0  # the clock waits for ``writer`` (the batch loop lets it in between batches)
        # (view version, children whose route expects an arrival, grouped by their schedule)
        self._awaited: tuple[int, list[tuple[RouteSchedule, list[int]]]] = (-1, [])
        self._rate = TagRateLimiter(rate_per_s=settings.tag_rate_per_s, burst=settings.tag_burst)

    async def process(self, messages: list[RawMessage]) -> BatchOutcome:
        """One batch, start to end: prepared, then committed."""
        async with self.writer:
            return await self.commit(await self.prepare(messages))

    async def prepare(self, messages: list[RawMessage]) -> PreparedBatch:
        """Stages 1-4, and the records of stage 5. The caller holds ``writer``. The states it starts
        from are those of the batches prepared before it, committed or not: the service prepares a
        batch while the one before it commits, and commits them in order."""
        view = self._view()  # one registry view for the whole batch, even if a new one is swapped in
        # the work itself in a thread: the event loop goes on with the commit of the batch before (its
        # round trips to PostgreSQL), the websockets and the HTTP API meanwhile
        clock = _StageClock()
        outcome = BatchOutcome(messages=len(messages))
        admitted, rejections, rate = await asyncio.to_thread(self._front, view, messages, outcome, clock)
        states = await self._states_of(admitted)
        clock.lap("load_states")
        prepared = await asyncio.to_thread(
            self._decide, view, admitted, rejections, states, outcome, rate, clock
        )
        self._ahead.update(states)
        rate.hold()
        for stage, seconds in clock.totals.items():
            self._metrics.stage_seconds[stage] += seconds
        return prepared

    def _front(
        self, view: RegistryView, messages: list[RawMessage], outcome: BatchOutcome, clock: _StageClock
    ) -> tuple[_Admitted, list[Rejection], RateBatch]:
        """Stages 1-2 (a worker thread)."""
        now = time.time()
        fixes, sightings, rejections = self._decode(messages, view, outcome)
        fixes += self._sightings_as_fixes(view, sightings, rejections)
        rate = self._rate.batch()  # charged only once the batch is committed
        admitted = self._admit(view, fixes, now, rejections, rate)
        clock.lap("decode")
        return admitted, rejections, rate

    def _decide(
        self,
        view: RegistryView,
        admitted: _Admitted,
        rejections: list[Rejection],
        states: dict[int, ChildState],
        outcome: BatchOutcome,
        rate: RateBatch,
        clock: _StageClock,
    ) -> PreparedBatch:
        """Stages 3-4 and the records of 5 (a worker thread)."""
        verdicts, prev_ts = self._geofence(view, admitted, states)
        clock.lap("geofence")
        events, decided = self._monitor(view, admitted, verdicts, prev_ts, states, outcome)
        clock.lap("monitor")
        prepared = self._records(view, admitted, decided, verdicts, rejections, states, events, outcome, rate)
        clock.lap("commit_prepare")
        return prepared

    async def commit(self, p: PreparedBatch) -> BatchOutcome:
        """Stage 5: one transaction. On success the batch's states become the committed ones. On a
        failure nothing is applied and ``p`` may be committed again (PostgreSQL trouble); a batch that
        cannot be committed at all must be followed by ``discard_ahead``."""
        clock = _StageClock(self._metrics.stage_seconds)
        outcome = p.outcome
        try:
            await self._write(p, clock)
        except StoredBefore:  # a decided fix was stored before: all of them the careful way
            p.positions, p.new_positions = [*p.new_positions, *p.positions], []
            await self._write(p, clock)
        # only now: the commit succeeded. Committed first, then out of `ahead`: a batch being prepared
        # in a worker thread meanwhile finds each child's state in one or the other
        self._states.update(p.states)
        ahead = self._ahead
        for child, state in p.states.items():
            if ahead.get(child) is state:  # not moved on by a batch prepared after this one
                del ahead[child]
        p.rate.commit()

        outcome.events = p.events
        m = self._metrics
        m.batches += 1
        m.messages_in += outcome.messages
        m.fixes_in += outcome.fixes
        m.fixes_stored += outcome.stored
        m.rejected.update(outcome.rejected)
        m.ignored.update(outcome.ignored)
        m.not_deciding.update({k: v for k, v in outcome.verdicts.items() if k != Verdict.DECIDED})
        m.events.update(e.event.kind.value for e in p.events)
        return outcome

    async def _write(self, p: PreparedBatch, clock: _StageClock) -> None:
        """The batch's one transaction."""
        outcome = p.outcome
        async with self._pool.acquire() as conn, conn.transaction():
            outcome.stored = await store_positions(conn, p.positions, new=p.new_positions)
            await store_dead_letters(conn, p.dead)
            clock.lap("commit_positions")
            outcome.outbox_rows = await apply_events(
                conn, p.events, p.recipients, p.webhook_schools, self.escalation
            )
            clock.lap("commit_alerts")
            await touch_open_alerts(conn, p.following)  # type: ignore[arg-type]
            clock.lap("commit_follow")
            await save_child_states(conn, p.changed)
            clock.lap("commit_states")
        clock.lap("commit_end")

    def discard_ahead(self) -> None:
        """Forget the states of batches prepared and not committed (a commit failed for good: the
        batches after it were prepared on states that never came to be)."""
        self._ahead.clear()
        self._rate.discard_ahead()

    # 1 ------------------------------------------------------------------------------------------------
    def _decode(
        self, messages: list[RawMessage], view: RegistryView, outcome: BatchOutcome
    ) -> tuple[list[Fix], list[Sighting], list[Rejection]]:
        fixes: list[Fix] = []
        sightings: list[Sighting] = []
        rejections: list[Rejection] = []
        s = self._settings
        for msg in messages:
            if msg.topic.endswith("/sightings"):
                seen, r = decode_sightings(msg, prefix=s.topic_prefix, max_bytes=s.max_payload_bytes)
                sightings.extend(seen)
            elif is_device_message(msg.topic, s.topic_prefix):  # OwnTracks, OsmAnd
                d = decode_device(
                    msg, prefix=s.topic_prefix, max_bytes=s.max_payload_bytes, devices=view.rows.devices
                )
                fixes.extend(d.fixes)
                outcome.ignored.update(d.ignored)
                r = d.rejections
            else:
                f, r = decode_message(msg, prefix=s.topic_prefix, max_bytes=s.max_payload_bytes)
                fixes.extend(f)
            rejections.extend(r)
        return fixes, sightings, rejections

    def _sightings_as_fixes(
        self, view: RegistryView, sightings: list[Sighting], rejections: list[Rejection]
    ) -> list[Fix]:
        """An RFID reader's sighting is a fix at the reader's registered place (stored and judged like
        any fix, so a redelivered sighting is a duplicate); one at a school gate is also arrival."""
        fixes = []
        for s in sightings:
            reader = view.readers.get(s.reader)
            if reader is None:
                detail = f"reader {s.reader!r} is not registered"
                rejections.append(
                    Rejection(s.topic, s.tag.encode(), Reason.UNKNOWN_READER, detail, s.received_at)
                )
                continue
            fixes.append(
                Fix(
                    s.tag,
                    s.ts,
                    reader.lat,
                    reader.lon,
                    READER_ACC_M,
                    None,
                    None,
                    False,
                    s.received_at,
                    s.topic,
                )
            )
        return fixes

    # 2 ------------------------------------------------------------------------------------------------
    def _admit(
        self, view: RegistryView, fixes: list[Fix], now: float, rejections: list[Rejection], rate: RateBatch
    ) -> _Admitted:
        kept: list[tuple[int, Fix]] = []
        tags = view.rows.tags
        for fix in fixes:
            refused = refusal(fix, tags=tags, now=now, max_future_s=self._settings.max_future_s)
            if refused is None and not rate.allow(fix.tag, fix.received_at):
                refused = (Reason.RATE_LIMITED, f"tag {fix.tag!r} is over {self._rate.rate_per_s:g} fixes/s")
            if refused is None:
                kept.append((tags[fix.tag], fix))
            else:
                reason, detail = refused
                payload = _fix_payload(fix)
                rejections.append(Rejection(fix.topic, payload, reason, detail, fix.received_at))
        kept.sort(key=lambda cf: (cf[0], cf[1].ts))
        return _Admitted([f for _, f in kept], np.array([c for c, _ in kept], dtype=np.int64))

    async def _states_of(self, a: _Admitted) -> dict[int, ChildState]:
        """The batch's children's states as the batches before it left them (committed, or prepared
        and committing), read from PostgreSQL the first time."""
        children = sorted(set(a.child_ids.tolist()))
        await self._load_states([c for c in children if self._latest(c) is None])
        # (a new ChildState only for a child never seen: building one per lookup costs every child)
        return {c: known if (known := self._latest(c)) is not None else ChildState() for c in children}

    def _latest(self, child: int) -> ChildState | None:
        """A child's state as the batches before this one left it: prepared and committing, else
        committed (``commit`` puts a state in the second before it takes it out of the first)."""
        state = self._ahead.get(child)
        return state if state is not None else self._states.get(child)

    # 3 ------------------------------------------------------------------------------------------------
    def _geofence(
        self, view: RegistryView, a: _Admitted, states: dict[int, ChildState]
    ) -> tuple[Verdicts, np.ndarray]:
        """One kernel call for the batch, with the crossings of the segment from each fix's previous
        fix (whose timestamps come back beside the verdicts; nan: none)."""
        n = len(a.fixes)
        lon = np.fromiter((f.lon for f in a.fixes), dtype=np.float64, count=n)
        lat = np.fromiter((f.lat for f in a.fixes), dtype=np.float64, count=n)
        acc = np.fromiter((f.acc for f in a.fixes), dtype=np.float64, count=n)
        ts = np.fromiter((f.ts for f in a.fixes), dtype=np.float64, count=n)
        prev_ts, prev_lon, prev_lat, prev_acc = previous_fixes(a.child_ids, ts, lon, lat, acc, states)
        disc = self.rules.zone_disc_m  # zones are judged on a disc of Rules.zone_sigma
        verdicts = view.index.check(
            lon,
            lat,
            disc(acc),
            view.route_slots(a.child_ids),
            prev_lon=prev_lon,
            prev_lat=prev_lat,
            prev_acc=disc(np.nan_to_num(prev_acc, nan=0.0)),
        )
        return verdicts, prev_ts

    # 4 ------------------------------------------------------------------------------------------------
    def _monitor(
        self,
        view: RegistryView,
        a: _Admitted,
        v: Verdicts,
        prev_ts: np.ndarray,
        states: dict[int, ChildState],
        outcome: BatchOutcome,
    ) -> tuple[list[ChildEvent], list[bool]]:
        """The rules per fix, in time order per child; ``states`` is replaced child by child. Returns
        the events, and for each fix whether it decided (it is later than its child's last decided fix:
        not stored before)."""
        events: list[ChildEvent] = []
        decided: list[bool] = []
        zones = view.rows.zones
        # the batch's arrays as Python lists once (indexing a numpy array per fix costs more than the rules)
        children = a.child_ids.tolist()
        route_m, corridor_m = v.route_distance_m.tolist(), v.corridor_m.tolist()
        nearest_m, from_ts = v.nearest_zone_m.tolist(), prev_ts.tolist()
        certain = _zone_sets(v.certain_offsets, v.certain_zone_ids)
        possible = _zone_sets(v.possible_offsets, v.possible_zone_ids)
        crossed = _zone_sets(v.crossed_offsets, v.crossed_zone_ids)
        for i, fix in enumerate(a.fixes):
            child = children[i]
            prev = from_ts[i]
            obs = Observation(
                ts=fix.ts,
                lon=fix.lon,
                lat=fix.lat,
                acc=fix.acc,
                route_distance_m=route_m[i],
                corridor_m=corridor_m[i],
                certain_zones=certain[i],
                possible_zones=possible[i],
                crossed_zones=crossed[i],
                crossed_from_ts=None if prev != prev else prev,  # nan: no previous fix
                nearest_zone_m=nearest_m[i],
                batt=fix.batt,
                sos=fix.sos,
            )
            ctx = view.context_of_child(child)
            states[child], new_events, verdict = step(states[child], obs, ctx, self.rules)
            if verdict == Verdict.DECIDED and fix.topic.endswith("/sightings") and _at_gate(view, fix):
                states[child], at_gate = gate(states[child], fix.ts, ctx, self.rules)
                new_events += at_gate
            outcome.verdicts[verdict.value] += 1
            decided.append(verdict == Verdict.DECIDED)
            for e in new_events:
                zone = zones.get(e.zone_id) if e.zone_id is not None else None
                events.append(
                    ChildEvent(
                        child, e, fix.lon, fix.lat, fix.acc, fix.received_at, zone.severity if zone else None
                    )
                )
        return events, decided

    async def _load_states(self, child_ids: list[int]) -> None:
        """Checkpointed states of children not in memory. A state that came meanwhile (a batch
        committed it while the read was on its way) is newer than the one read: it stays."""
        if child_ids:
            for child, raw in (await load_child_states(self._pool, child_ids)).items():
                if child not in self._states:
                    self._states[child] = ChildState.from_json(raw)

    # 5 ------------------------------------------------------------------------------------------------
    def _records(
        self,
        view: RegistryView,
        a: _Admitted,
        decided: list[bool],
        v: Verdicts,
        rejections: list[Rejection],
        states: dict[int, ChildState],
        events: list[ChildEvent],
        outcome: BatchOutcome,
        rate: RateBatch,
    ) -> PreparedBatch:
        children = a.child_ids.tolist()  # Python ints and floats once, not numpy scalars per fix
        route_m = v.route_distance_m.tolist()
        positions: list[PositionRecord] = [
            (
                f.tag,
                _utc(f.ts),
                children[i],
                f.lon,
                f.lat,
                f.acc,
                f.batt,
                f.seq,
                f.sos,
                _utc(f.received_at),
                None if route_m[i] != route_m[i] else route_m[i],  # nan: no route
            )
            for i, f in enumerate(a.fixes)
        ]
        new_positions = [r for r, d in zip(positions, decided, strict=True) if d]
        maybe_stored = [r for r, d in zip(positions, decided, strict=True) if not d]
        dead: list[DeadLetterRecord] = [
            (_utc(r.received_at), r.topic, r.payload, r.reason.value, r.detail) for r in rejections
        ]
        # a state step() left alone is the one the batch started from; one it replaced has changed (a
        # decided fix moves last_ts at least): identity says it, without a field-by-field comparison
        new = [(c, s) for c, s in states.items() if self._latest(c) is not s]
        following = [
            (c, s.last_ts, s.last_lon, s.last_lat, s.last_acc)
            for c, s in new
            if (s.off_route or s.zones_in) and s.last_ts is not None
        ]
        outcome.fixes = len(a.fixes)
        outcome.rejected.update(r.reason.value for r in rejections)
        return PreparedBatch(
            outcome=outcome,
            states=states,
            rate=rate,
            positions=maybe_stored,
            new_positions=new_positions,
            dead=dead,
            events=events,
            recipients=_recipients(view, events),
            webhook_schools=_webhook_schools(view, events),
            following=following,
            changed={c: encode_state(s.to_json()) for c, s in new},
        )

    # the clock ----------------------------------------------------------------------------------------
    async def tick(self, now: float | None = None) -> list[ChildEvent]:
        """Let time decide (signal lost, not arrived) for every child with a schedule; commit what
        changed.

        Which children time may change is found first, on a snapshot of the states, in a worker thread
        and without ``writer``: at city scale that is a pass over hundreds of thousands of children,
        and the batches go on meanwhile (holding ``writer`` for it stopped every batch for most of a
        second, every tick). Then, holding ``writer``, the rules run again for those children alone,
        on their states as the batches have left them, and what changed is committed. A child the
        snapshot missed (its state came after it) is seen at the next tick: the rules depend only on
        the state and the moment, and say each thing once. ``now``: the moment to judge (a test's);
        by default the clock's, read again once the clock has its turn."""
        view = self._view()
        if not self._all_loaded:
            await self._load_states([c for c in view.contexts if c not in self._states])
            self._all_loaded = True
        clock = _StageClock(self._metrics.stage_seconds)
        due = await asyncio.to_thread(
            _due_children,
            self._states,
            self._never_seen_awaited(view),
            view,
            time.time() if now is None else now,
            self.rules,
        )
        clock.lap("clock_scan")
        if not due:
            return []
        self.clock_waiting += 1
        try:
            await self.writer.acquire()
        finally:
            self.clock_waiting -= 1
        try:
            clock.lap("clock_waits_for_batches")
            return await self._tick(self._view(), due, time.time() if now is None else now)
        finally:
            self.writer.release()
            clock.lap("clock_commit")

    async def _tick(self, view: RegistryView, due: list[int], now: float) -> list[ChildEvent]:
        """Holding ``writer``: the rules for the due children on their newest states (in a worker
        thread: at an arrival deadline every child of the schedule is due, a city's worth), then one
        transaction. Nothing is prepared ahead while the clock holds ``writer``: the committed states
        are the newest, and no batch moves them meanwhile."""
        changed, events, encoded = await asyncio.to_thread(self._decide_due, view, due, now)
        if not changed:
            return []
        async with self._pool.acquire() as conn, conn.transaction():
            await apply_events(
                conn, events, _recipients(view, events), _webhook_schools(view, events), self.escalation
            )
            await save_child_states(conn, encoded)
        self._states.update(changed)
        self._metrics.events.update(e.event.kind.value for e in events)
        return events

    def _decide_due(
        self, view: RegistryView, due: list[int], now: float
    ) -> tuple[dict[int, ChildState], list[ChildEvent], dict[int, str]]:
        """The rules for the due children, and the checkpoints of the states they change. Children
        never seen share one default state, so a schedule's answer for them is worked out (and
        encoded) once and shared: states are never changed in place."""
        changed: dict[int, ChildState] = {}
        events: list[ChildEvent] = []
        encoded: dict[int, str] = {}
        blank = ChildState()
        answers: dict[tuple[int, int], tuple[ChildState, list[Event], str]] = {}  # (state, schedule) ids
        for child in due:
            ctx = view.context_of_child(child)
            state = self._states.get(child) or blank
            key = (id(state), id(ctx.schedule))
            if key not in answers:
                new, raised = tick(state, now, ctx, self.rules)
                answers[key] = (new, raised, encode_state(new.to_json()) if new is not state else "")
            new, raised, checkpoint = answers[key]
            if new is not state:
                changed[child], encoded[child] = new, checkpoint
                events += [ChildEvent(child, e, None, None, None, None) for e in raised]
        return changed, events, encoded

    def _never_seen_awaited(self, view: RegistryView) -> list[tuple[RouteSchedule, list[int]]]:
        """Children whose route has an expected arrival, by schedule: the clock decides for them even
        if they never sent a fix (they may not arrive). A child never seen on a route without arrivals
        has nothing to lose a signal from or to miss: the clock's pass is over the children that send,
        and these (a schedule at a time: most ticks none of its deadlines comes due)."""
        if self._awaited[0] != view.version:
            groups: dict[int, tuple[RouteSchedule, list[int]]] = {}
            for child, ctx in view.contexts.items():
                if ctx.schedule is not None and ctx.schedule.arrivals:
                    groups.setdefault(id(ctx.schedule), (ctx.schedule, []))[1].append(child)
            self._awaited = (view.version, list(groups.values()))
        return self._awaited[1]


READER_ACC_M = 10.0  # a reader sees a card within a few metres


class _StageClock:
    """Adds the wall-clock time since the last lap to the named stage's total (in ``totals``: the
    metrics' own, or one the event loop adds to them)."""

    def __init__(self, totals: defaultdict[str, float] | None = None) -> None:
        self.totals: defaultdict[str, float] = defaultdict(float) if totals is None else totals
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        t = time.perf_counter()
        self.totals[stage] += t - self._t
        self._t = t


_NO_ZONES: frozenset[int] = frozenset()


def _zone_sets(offsets: np.ndarray, zone_ids: np.ndarray) -> list[frozenset[int]]:
    """Each fix's zone ids (a CSR slice of the geofence's answer) as a frozenset; most fixes are in
    no zone, and they share one empty set."""
    bounds = offsets.tolist()
    ids = zone_ids.tolist()
    return [frozenset(ids[lo:hi]) if hi > lo else _NO_ZONES for lo, hi in pairwise(bounds)]


def _at_gate(view: RegistryView, fix: Fix) -> bool:
    reader = view.readers.get(fix.topic.rsplit("/", 2)[-2])
    return reader is not None and reader.role == "gate"


def _due_children(
    states: dict[int, ChildState],
    awaited: list[tuple[RouteSchedule, list[int]]],
    view: RegistryView,
    now: float,
    rules: Rules,
) -> list[int]:
    """The children for whom the clock rules would change something at ``now`` (run in a worker
    thread: ``states`` is copied first, in one step the event loop cannot interleave with).

    A child never seen has the default state, so its answer is its schedule's: asked once per
    schedule (children of a school's routes share one schedule object, see build_view), and the
    children of a schedule with nothing due are not looked at one by one."""
    snapshot = states.copy()
    contexts = view.contexts
    due: list[int] = []
    for child, state in snapshot.items():
        ctx = contexts.get(child)
        if ctx is not None and ctx.schedule is not None and tick(state, now, ctx, rules)[0] is not state:
            due.append(child)
    blank = ChildState()
    for schedule, children in awaited:
        if tick(blank, now, ChildContext(schedule=schedule), rules)[0] is not blank:
            due += [c for c in children if c not in snapshot]
    return due


def _webhook_schools(view: RegistryView, events: list[ChildEvent]) -> dict[int, int | None]:
    """child id -> its school's id, for children whose school has a webhook."""
    out: dict[int, int | None] = {}
    for e in events:
        child = view.rows.children.get(e.child_id)
        rules = view.school_rules.get(child.school_id) if child else None
        out[e.child_id] = child.school_id if child and rules and rules.webhook_url else None
    return out


def _recipients(view: RegistryView, events: list[ChildEvent]) -> dict[int, list[Recipient]]:
    rows = view.rows
    out: dict[int, list[Recipient]] = {}
    for child in {e.child_id for e in events}:
        out[child] = [
            Recipient(g.id, g.channels, bool(g.phone))
            for g in (
                rows.guardians[gid] for gid in rows.child_guardians.get(child, ()) if gid in rows.guardians
            )
        ]
    return out


def _fix_payload(fix: Fix) -> bytes:
    """A refused fix's own JSON (a gateway batch's other items are not its business)."""
    return msgspec.json.encode(
        {
            "tag": fix.tag,
            "ts": fix.ts,
            "lat": fix.lat,
            "lon": fix.lon,
            "acc": fix.acc,
            "batt": fix.batt,
            "sos": fix.sos,
        }
    )
