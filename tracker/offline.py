"""The tracker's decisions on past fixes, with its clock in the fixes' time: no servers, no I/O.

``tracker replay --world`` runs a file of fixes through it; what it decides is what the service would
have decided on the same fixes, because every decision is taken by the function the service takes it
with:

* admission (unknown tag, stamped in the future, the tag's token bucket):
  :func:`tracker.stages.front.admit`, at the moment each batch was received;
* geofencing a batch: :func:`tracker.stages.geofence.observe`;
* the monitor, fix by fix: :func:`tracker.stages.monitor.judge_batch` (``step``, and ``gate``);
* the clock's pass (signal lost, not arrived): :func:`tracker.clock.due_children` and
  :func:`tracker.clock.decide_due`, on the children the service's clock would look at
  (:func:`tracker.clock.awaited_by_schedule` for those never seen);
* what an event does to alerts: :func:`tracker.alerts.lifecycle.transitions`, ``incident_key`` and
  ``change_of`` (one open alert per child, kind and zone: the rule the alerts table's unique index
  keeps in the service), ``severity_of``;

all on the registry view the pipeline would build from the same registry
(:func:`tracker.registry_view.view_from_world`).

Time: fixes are taken in the order they were received and cut into batches by the second they were
received in (the service's batch loop takes what has arrived within ``TRACKER_BATCH_WAIT_MS``, so a
batch rarely spans more); before each batch the clock's pass runs at every multiple of
``TRACKER_TICK_S`` (Unix time) since the last pass, strictly before the batch's first fix was
received; after the last batch, up to ``until``. The service's own clock runs every ``TRACKER_TICK_S``
of its wall clock, at whatever phase it started: an alert the clock raises (signal lost, not arrived)
is stamped with the pass's time, so it may differ from the service's by up to ``TRACKER_TICK_S``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tracker.alerts.lifecycle import (
    ChildEvent,
    IncidentKey,
    change_of,
    incident_key,
    severity_of,
    transitions,
)
from tracker.clock import awaited_by_schedule, decide_due, due_children
from tracker.ingest.decode import Fix, Rejection
from tracker.ingest.ratelimit import TagRateLimiter
from tracker.monitor import ChildState, Observation, Rules
from tracker.registry_view import RegistryView
from tracker.stages.front import NO_ANSWER, admit
from tracker.stages.geofence import observe
from tracker.stages.monitor import judge_batch

__all__ = ["Alert", "AlertLedger", "JudgedBatch", "OfflineTracker", "clock_passes"]


@dataclass
class Alert:
    """An alert as the service's alerts table would hold it at the end, and the fix that opened it
    (None: the clock did)."""

    child_id: int
    kind: str  # the alerts table's kind: left_route, danger_zone, sos, signal_lost, not_arrived_school ...
    zone_id: int | None
    severity: str
    opened_at: float
    resolved_at: float | None
    fix: Fix | None
    event: str  # the monitor event that opened it (entered_zone, left_route, arrived ...)
    resolved_by: str | None = None  # the monitor event that resolved it (None: open, or a notice)
    updates: int = 0  # events of the same incident while it was open (the alert was updated, not repeated)

    @property
    def open(self) -> bool:
        return self.resolved_at is None


@dataclass
class AlertLedger:
    """The alerts that events make, kept as ``tracker.store.alert_lifecycle.apply_events`` keeps them
    in PostgreSQL: every rule of every event, in order; at most one open alert per incident key."""

    alerts: list[Alert] = field(default_factory=list)
    _open: dict[IncidentKey, Alert] = field(default_factory=dict)

    def apply(self, events: Iterable[ChildEvent], fixes: Sequence[Fix | None] | None = None) -> None:
        """``fixes[i]``: the fix behind ``events[i]`` (None, or no list: the clock's)."""
        events = list(events)
        behind = list(fixes) if fixes is not None else [None] * len(events)
        fix_of = {id(ce): f for ce, f in zip(events, behind, strict=True)}
        for ce, rule in transitions(events):
            key = incident_key(ce, rule)
            current = self._open.get(key)
            change = change_of(rule, current is not None)
            at = ce.event.ts
            if change == "resolved" and current is not None:
                current.resolved_at, current.resolved_by = at, ce.event.kind.value
                del self._open[key]
            elif change == "updated" and current is not None:
                current.updates += 1
            elif change in ("opened", "noticed"):
                alert = Alert(
                    ce.child_id,
                    rule.kind,
                    key[2],
                    severity_of(ce, rule),
                    at,
                    at if change == "noticed" else None,
                    fix_of[id(ce)],
                    ce.event.kind.value,
                )
                self.alerts.append(alert)
                if change == "opened":
                    self._open[key] = alert


@dataclass(frozen=True)
class JudgedBatch:
    """The last batch as the monitor saw it, fix by fix in the order judged: for a caller that
    explains the decisions (the quality bench keeps each child's recent fixes with them)."""

    fixes: list[Fix]
    children: list[int]
    observations: Sequence[Observation]
    decided: list[bool]


def clock_passes(after: float, before: float, tick_s: float) -> list[float]:
    """The clock's passes in (after, before): the multiples of ``tick_s``."""
    first = math.floor(after / tick_s) + 1
    out = []
    k = first
    while k * tick_s < before:
        out.append(k * tick_s)
        k += 1
    return out


class OfflineTracker:
    """One registry view, the children's states and the alerts, moved by batches of fixes and by
    clock passes (see the module's docstring)."""

    def __init__(
        self,
        view: RegistryView,
        rules: Rules,
        *,
        tick_s: float = 5.0,
        max_future_s: float = 300.0,
        tag_rate_per_s: float = 5.0,
        tag_burst: int = 300,
    ) -> None:
        self.view = view
        self.rules = rules
        self.tick_s = tick_s
        self.max_future_s = max_future_s
        self.states: dict[int, ChildState] = {}
        self.ledger = AlertLedger()
        self.verdicts: Counter[str] = Counter()  # what the monitor made of each admitted fix
        self.refused: list[Rejection] = []
        self.last_pass: float | None = None
        self._limiter = TagRateLimiter(rate_per_s=tag_rate_per_s, burst=tag_burst)
        self._awaited = awaited_by_schedule(view)
        self.last_batch: JudgedBatch | None = None

    def batch(self, fixes: list[Fix], now: float) -> list[ChildEvent]:
        """One batch received by ``now``: stages 2-4 of the pipeline, then its alerts."""
        view, rules = self.view, self.rules
        rate = self._limiter.batch()
        refused: tuple[list[Rejection], list[int]] = ([], [])
        admitted = admit(
            view, fixes, [NO_ANSWER] * len(fixes), now, self.max_future_s, rate, self._limiter, refused
        )
        rate.commit()
        self.refused += refused[0]
        children = admitted.child_ids.tolist()
        states = {c: self.states.get(c) or ChildState() for c in children}
        slots = view.route_slots(admitted.child_ids)
        observations = observe(view.index, rules, admitted.fixes, admitted.child_ids, slots, states)
        events, decided = judge_batch(
            view, rules, admitted.fixes, children, observations, states, self.verdicts
        )
        self.last_batch = JudgedBatch(admitted.fixes, children, observations, decided)
        self.states.update(states)
        # an event of a fix carries the fix's time and place: find the fix behind each event
        fix_of: dict[tuple[int, float, float | None, float | None], Fix] = {
            (c, f.ts, f.lon, f.lat): f for f, c in zip(admitted.fixes, children, strict=True)
        }
        self.ledger.apply(events, [fix_of.get((e.child_id, e.event.ts, e.lon, e.lat)) for e in events])
        return events

    def clock(self, now: float) -> list[ChildEvent]:
        """One pass of the clock's rules at ``now``."""
        due = due_children(self.states, self._awaited, self.view, now, self.rules)
        changed, events, _checkpoints = decide_due(self.view, due, self.states, now, self.rules)
        self.states.update(changed)
        self.ledger.apply(events)
        self.last_pass = now
        return events

    def run_clock(self, before: float) -> None:
        """The clock's passes since the last one, strictly before ``before``."""
        after = self.last_pass if self.last_pass is not None else before - self.tick_s
        for t in clock_passes(after, before, self.tick_s):
            self.clock(t)

    def run(self, fixes: Sequence[Fix], *, until: float | None = None) -> list[Alert]:
        """Every fix in the order received, in batches by the second received, the clock in between;
        at the end the clock runs on to ``until`` (default: the last fix received, plus the signal-lost
        time and a pass). Returns every alert made, in the order opened."""
        ordered = sorted(range(len(fixes)), key=lambda i: (fixes[i].received_at, i))
        batches: list[list[Fix]] = []
        for i in ordered:
            f = fixes[i]
            if batches and math.floor(batches[-1][0].received_at) == math.floor(f.received_at):
                batches[-1].append(f)
            else:
                batches.append([f])
        for b in batches:
            self.run_clock(b[0].received_at)
            self.batch(b, b[-1].received_at)
        if batches:
            last = batches[-1][-1].received_at
            end = until if until is not None else last + self.rules.signal_lost_s + self.tick_s
            self.run_clock(end + 1e-9)  # a pass at ``end`` itself too
        return self.ledger.alerts
