"""The clock's rules: what time alone decides (signal lost, not arrived), for every child with a
schedule, every tick.

Which children time may change is found first, on a snapshot of the states, in a worker thread and
without the writer role: at city scale that is a pass over hundreds of thousands of children, and the
batches go on meanwhile (holding the role for it stopped every batch for most of a second, every
tick). Then, holding the role, the rules run again for those children alone, on their states as the
batches have left them, and what changed is committed. A child the snapshot missed (its state came
after it) is seen at the next tick: the rules depend only on the state and the moment, and say each
thing once.

With workers (issue 16, ``ownership``), a worker's clock looks only at the children of the partitions
it owns (as they were when the tick began), and its commit is fenced like a batch's: a tick whose
partitions changed hands meanwhile writes nothing, and the new owner's clock says it instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import asyncpg
import numpy as np

from tracker.alerts.escalation import Escalation
from tracker.alerts.lifecycle import ChildEvent
from tracker.child_states import ChildStates
from tracker.cluster.fencing import Fenced, fence
from tracker.cluster.partitions import Ownership, Share
from tracker.compact_states import CompactStates
from tracker.metrics import Metrics, StageClock
from tracker.monitor import ChildContext, ChildState, Event, RouteSchedule, Rules, tick
from tracker.registry_view import RegistryView
from tracker.stages.records import recipients, webhook_schools
from tracker.store.alert_lifecycle import apply_events
from tracker.store.batches import encode_state, save_child_states

log = logging.getLogger(__name__)


class Clock:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        view: Callable[[], RegistryView],
        states: ChildStates,
        rules: Rules,
        escalation: Escalation,
        metrics: Metrics,
        ownership: Ownership | None = None,
    ) -> None:
        """``ownership``: a worker's lease keeper (tracker.cluster); None: every child is this
        process's."""
        self._pool = pool
        self._ownership = ownership
        self._view = view
        self._states = states
        self._rules = rules
        self._escalation = escalation
        self._metrics = metrics
        # (view version, children whose route expects an arrival, grouped by their schedule)
        self._awaited: tuple[int, list[tuple[RouteSchedule, list[int]]]] = (-1, [])

    async def tick(self, now: float | None = None) -> list[ChildEvent]:
        """Let time decide for every child with a schedule; commit what changed. ``now``: the moment to
        judge (a test's); by default the clock's, read again once the clock has its turn."""
        view = self._view()
        states = self._states
        share = None if self._ownership is None else self._ownership.share()
        owns = None if share is None else share.owns
        if not states.all_loaded:
            forgets = states.forgets
            # the ids as an array, not a list of 400,000 Python ints held through the load (bench/
            # worker_memory.py: ~15 MiB of the first tick's peak); the same children, in the same order
            ids, committed = view.children.ids, states.committed
            missing = np.fromiter(
                (c not in committed and (owns is None or owns(c)) for c in ids.tolist()), bool, ids.size
            )
            await states.load(ids[missing])
            states.all_loaded = forgets == states.forgets  # (a partition changed hands meanwhile: next tick)
        clock = StageClock(self._metrics.stage_seconds)
        due = await asyncio.to_thread(
            due_children,
            states.committed,
            self._never_seen_awaited(view),
            view,
            time.time() if now is None else now,
            self._rules,
            owns,
        )
        clock.lap("clock_scan")
        if not due:
            return []
        states.clock_waiting += 1
        try:
            await states.writer.acquire()
        finally:
            states.clock_waiting -= 1
        try:
            clock.lap("clock_waits_for_batches")
            return await self._decide_and_commit(
                self._view(), due, time.time() if now is None else now, share
            )
        finally:
            states.writer.release()
            clock.lap("clock_commit")

    async def _decide_and_commit(
        self, view: RegistryView, due: list[int], now: float, share: Share | None = None
    ) -> list[ChildEvent]:
        """Holding the writer role: the rules for the due children on their newest states (in a worker
        thread: at an arrival deadline every child of the schedule is due, a city's worth), then one
        transaction. Nothing is prepared ahead while the clock holds the role: the committed states are
        the newest, and no batch moves them meanwhile."""
        changed, events, encoded = await asyncio.to_thread(
            decide_due, view, due, self._states.committed, now, self._rules
        )
        if not changed:
            return []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if share is not None:  # first, as a batch's commit (tracker.cluster.fencing)
                    await fence(conn, share.tokens_for(np.fromiter(changed, np.int64, len(changed))))
                await apply_events(
                    conn, events, recipients(view, events), webhook_schools(view, events), self._escalation
                )
                await save_child_states(conn, encoded)
        except Fenced as e:
            log.warning("the clock's commit was %s", e)
            if self._ownership is not None:
                self._ownership.fenced(e.stale)
            return []
        self._states.commit(changed)
        self._metrics.events.update(e.event.kind.value for e in events)
        return events

    def _never_seen_awaited(self, view: RegistryView) -> list[tuple[RouteSchedule, list[int]]]:
        """Children whose route has an expected arrival, by schedule: the clock decides for them even
        if they never sent a fix (they may not arrive). A child never seen on a route without arrivals
        has nothing to lose a signal from or to miss: the clock's pass is over the children that send,
        and these (a schedule at a time: most ticks none of its deadlines comes due)."""
        if self._awaited[0] != view.version:
            self._awaited = (view.version, awaited_by_schedule(view))
        return self._awaited[1]


def awaited_by_schedule(view: RegistryView) -> list[tuple[RouteSchedule, list[int]]]:
    """The children whose route has an expected arrival, grouped by their (shared) schedule."""
    groups: dict[int, tuple[RouteSchedule, list[int]]] = {}
    if isinstance(view, RegistryView):  # its children by context, in arrays
        for ctx, children in view.context_groups:
            if ctx.schedule is not None and ctx.schedule.arrivals:
                groups.setdefault(id(ctx.schedule), (ctx.schedule, []))[1].extend(children.tolist())
        return [(schedule, sorted(children)) for schedule, children in groups.values()]
    for child, ctx in view.contexts.items():
        if ctx.schedule is not None and ctx.schedule.arrivals:
            groups.setdefault(id(ctx.schedule), (ctx.schedule, []))[1].append(child)
    return list(groups.values())


def decide_due(
    view: RegistryView, due: list[int], committed: Mapping[int, ChildState], now: float, rules: Rules
) -> tuple[dict[int, ChildState], list[ChildEvent], dict[int, str]]:
    """The rules for the due children at ``now``, and the checkpoints of the states they change
    (pure: ``tracker replay`` runs the clock's pass with it too). Children never seen share one
    default state, so a schedule's answer for them is worked out (and encoded) once and shared:
    states are never changed in place."""
    changed: dict[int, ChildState] = {}
    events: list[ChildEvent] = []
    encoded: dict[int, str] = {}
    blank = ChildState()
    answers: dict[tuple[int, int], tuple[ChildState, list[Event], str]] = {}  # (state, schedule) ids
    held: list[ChildState] = []  # a state made at lookup (tracker.compact_states) lives on: its id is a key
    for child in due:
        ctx = view.context_of_child(child)
        state = committed.get(child) or blank
        held.append(state)
        key = (id(state), id(ctx.schedule))
        if key not in answers:
            new, raised = tick(state, now, ctx, rules)
            answers[key] = (new, raised, encode_state(new.to_json()) if new is not state else "")
        new, raised, checkpoint = answers[key]
        if new is not state:
            changed[child], encoded[child] = new, checkpoint
            events += [ChildEvent(child, e, None, None, None, None) for e in raised]
    return changed, events, encoded


def due_children(
    states: Mapping[int, ChildState],
    awaited: list[tuple[RouteSchedule, list[int]]],
    view: RegistryView,
    now: float,
    rules: Rules,
    owns: Callable[[int], bool] | None = None,
) -> list[int]:
    """The children for whom the clock rules would change something at ``now`` (run in a worker
    thread: ``states`` is copied first, in one step the event loop cannot interleave with); with
    ``owns`` (a worker's partitions: tracker.cluster), only among the children it owns.

    A child never seen has the default state, so its answer is its schedule's: asked once per
    schedule (children of a school's routes share one schedule object, see build_view), and the
    children of a schedule with nothing due are not looked at one by one."""
    snapshot = states.copy()  # type: ignore[attr-defined]
    if isinstance(snapshot, CompactStates) and isinstance(view, RegistryView):
        due = _due_among_held(snapshot, view, now, rules, owns)
    else:
        contexts = view.contexts
        due = []
        for child, state in snapshot.items():
            if owns is not None and not owns(child):
                continue
            ctx = contexts.get(child)
            if ctx is not None and ctx.schedule is not None and tick(state, now, ctx, rules)[0] is not state:
                due.append(child)
    blank = ChildState()
    for schedule, children in awaited:
        if tick(blank, now, ChildContext(schedule=schedule), rules)[0] is not blank:
            due += [c for c in children if c not in snapshot and (owns is None or owns(c))]
    return due


def _due_among_held(
    snapshot: CompactStates, view: RegistryView, now: float, rules: Rules, owns: Callable[[int], bool] | None
) -> list[int]:
    """``due_children`` over the states of a CompactStates: a context's children at a time, ``tick``
    asked only for those the store says time may change (``CompactStates.candidates``), each on its
    state made again."""
    due: list[int] = []
    for ctx, group in view.context_groups:
        schedule = ctx.schedule
        if schedule is None:
            continue
        children = group[snapshot.held(group)]
        if owns is not None:
            children = children[np.fromiter(map(owns, children.tolist()), dtype=bool, count=children.size)]
        if not children.size:
            continue
        keys = tuple(key for key, _start, _deadline, _destination in schedule.at(now).deadlines)
        for child in children[snapshot.candidates(children, now, rules.signal_lost_s, keys)].tolist():
            state = snapshot[child]
            if tick(state, now, ctx, rules)[0] is not state:
                due.append(child)
    return sorted(due)
