"""Stage 4: the monitor's rules, fix by fix, in time order per child.

Pure: ``states`` (the batch's children's states) is replaced child by child, never changed in place,
so a batch that is not committed leaves the states it started from as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tracker.alerts.lifecycle import ChildEvent
from tracker.ingest.decode import Fix
from tracker.monitor import ChildState, Observation, Rules, Verdict, gate, step
from tracker.registry_view import RegistryView
from tracker.stages.front import at_gate


def judge_batch(
    view: RegistryView,
    rules: Rules,
    fixes: Sequence[Fix],
    children: Sequence[int],
    observations: Sequence[Observation],
    states: dict[int, ChildState],
    verdicts: Counter[str],
) -> tuple[list[ChildEvent], list[bool]]:
    """The events of the batch, and for each fix whether it decided (it is later than its child's last
    decided fix: not stored before). ``verdicts`` counts what the monitor made of each fix."""
    events: list[ChildEvent] = []
    decided: list[bool] = []
    zones = view.rows.zones
    owned: set[int] = set()  # children whose state in ``states`` is this batch's own copy
    contexts = view.contexts_of(np.asarray(children, dtype=np.int64))  # the batch's in one search
    counts: Counter[Verdict] = Counter()
    for fix, child, obs, ctx in zip(fixes, children, observations, contexts, strict=True):
        before = states[child]
        state, new_events, verdict = step(before, obs, ctx, rules, owned=child in owned)
        if state is not before:
            states[child] = state
            owned.add(child)
        is_decided = verdict == Verdict.DECIDED
        if is_decided and at_gate(view, fix):
            states[child], at_the_gate = gate(state, fix.ts, ctx, rules)
            owned.add(child)
            new_events += at_the_gate
        counts[verdict] += 1
        decided.append(is_decided)
        if not new_events:
            continue
        for e in new_events:
            zone = zones.get(e.zone_id) if e.zone_id is not None else None
            acc = None if fix.acc != fix.acc else fix.acc  # nan: not stated (an SOS may come so)
            events.append(
                ChildEvent(child, e, fix.lon, fix.lat, acc, fix.received_at, zone.severity if zone else None)
            )
    for verdict, n in counts.items():
        verdicts[verdict.value] += n
    return events, decided
