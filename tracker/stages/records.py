"""Stage 5's rows: what a batch's one transaction writes, and what the batch says about itself.

Pure: built in the worker thread that decided the batch, so that the event loop only sends them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from tracker.alerts.lifecycle import ChildEvent, Recipient
from tracker.ingest.decode import RawMessage, Rejection
from tracker.ingest.http import MessageAnswer
from tracker.ingest.ratelimit import RateBatch
from tracker.monitor import ChildState, Observation
from tracker.registry_view import RegistryView
from tracker.stages.front import NO_ANSWER, Admitted, Refused
from tracker.store.alerts import AlertFacts, DeliveryJob
from tracker.store.batches import DeadLetterRecord, PositionRecord, PositionRows, encode_state


@dataclass
class BatchOutcome:
    messages: int = 0
    fixes: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)  # what the monitor made of each fix
    judged_wide: int = 0  # fixes judged by their tag's learnt error scale (ChildState.error_scale > 1)
    events: list[ChildEvent] = field(default_factory=list)
    outbox_rows: int = 0
    ignored: Counter[str] = field(default_factory=Counter)  # valid messages without a position
    answers: dict[int, MessageAnswer] = field(default_factory=dict)  # HTTP message id -> its answer
    # every admitted fix as stored (the list the commit writes, not a copy): the school's live map
    # (tracker.api.live_feed) reads it after the commit, only when someone watches
    positions: Sequence[PositionRecord] = field(default_factory=list)
    # critical websocket deliveries claimed in the commit, to send at once (tracker.stages.commit)
    at_once: list[tuple[DeliveryJob, AlertFacts]] = field(default_factory=list)


@dataclass
class PreparedBatch:
    """A batch decided and ready to commit: what the transaction writes, and the states it leaves."""

    outcome: BatchOutcome
    states: dict[int, ChildState]  # the batch's children, as the batch leaves them
    rate: RateBatch
    maybe_stored: list[PositionRecord]  # fixes that decided nothing: they may be stored already
    new_positions: Sequence[PositionRecord]  # fixes that decided: later than any stored fix of their child
    dead: list[DeadLetterRecord]
    events: list[ChildEvent]
    recipients: dict[int, list[Recipient]]
    webhook_schools: dict[int, int | None]
    following: list[tuple[int, float, float | None, float | None, float | None]]
    changed: dict[int, str]  # child -> state JSON, for the children whose state changed
    # workers (tracker.cluster): the fencing token of each partition of the batch's children, as the
    # worker held them when the batch was prepared; the commit checks them first. None: one process
    tokens: dict[int, int] | None = None
    # when its preparation began, when each message arrived here and each fix was received (the
    # metrics' fix ages, observed once the batch is committed)
    started: float = math.nan
    arrived: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0), compare=False)
    receipts: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0), compare=False)


def answers(messages: list[RawMessage], admitted: Admitted, refused: Refused) -> dict[int, MessageAnswer]:
    """Each waiting message's answer, by its id (see ``tracker.ingest.http``): known once it is
    admitted, since every admitted fix is stored by the commit (a repeat of a stored one is stored
    already)."""
    fixes: Counter[int] = Counter(o for o in admitted.origins if o != NO_ANSWER)
    first: dict[int, Rejection] = {}
    for r, o in zip(refused.rejections, refused.origins, strict=True):
        if o != NO_ANSWER:
            first.setdefault(o, r)
    waiting = set(fixes) | set(first)
    return {messages[k].mid: MessageAnswer(fixes[k], first.get(k)) for k in waiting}


def records(
    view: RegistryView,
    admitted: Admitted,
    refused: Refused,
    observations: list[Observation],
    decided: list[bool],
    states: dict[int, ChildState],
    changed_states: list[tuple[int, ChildState]],
    events: list[ChildEvent],
    outcome: BatchOutcome,
    rate: RateBatch,
) -> PreparedBatch:
    """The rows of the batch's transaction. ``changed_states``: the children whose state the batch
    moved (the others are not checkpointed again)."""
    positions = position_rows(admitted, observations)
    decides = np.array(decided, dtype=bool)
    new_positions = positions.select(decides)
    maybe_stored = list(positions.select(~decides))
    dead: list[DeadLetterRecord] = [
        (_utc(r.received_at), r.topic, r.payload, r.reason.value, r.detail) for r in refused.rejections
    ]
    following = [
        (c, s.last_ts, s.last_lon, s.last_lat, s.last_acc)
        for c, s in changed_states
        if (s.off_route or s.zones_in) and s.last_ts is not None
    ]
    outcome.fixes = len(admitted.fixes)
    outcome.positions = positions
    outcome.rejected.update(r.reason.value for r in refused.rejections)
    return PreparedBatch(
        outcome=outcome,
        states=states,
        rate=rate,
        maybe_stored=maybe_stored,
        new_positions=new_positions,
        dead=dead,
        events=events,
        recipients=recipients(view, events),
        webhook_schools=webhook_schools(view, events),
        following=following,
        changed={c: encode_state(s.to_json()) for c, s in changed_states},
    )


def position_rows(admitted: Admitted, observations: list[Observation]) -> PositionRows:
    """The admitted fixes as stored (acc nan: not stated, NULL; route distance nan: no route, NULL)."""
    fixes = admitted.fixes
    n = len(fixes)
    cols = np.array([(f.ts, f.lon, f.lat, f.acc, f.received_at) for f in fixes], dtype=np.float64)
    cols = cols.reshape(n, 5).T
    return PositionRows(
        [f.tag for f in fixes],
        cols[0].copy(),
        admitted.child_ids.astype(np.int64),
        cols[1].copy(),
        cols[2].copy(),
        cols[3].copy(),
        [f.batt for f in fixes],
        [f.seq for f in fixes],
        [f.sos for f in fixes],
        cols[4].copy(),
        np.fromiter((o.route_distance_m for o in observations), dtype=np.float64, count=n),
    )


def webhook_schools(view: RegistryView, events: list[ChildEvent]) -> dict[int, int | None]:
    """child id -> its school's id, for children whose school has a webhook."""
    out: dict[int, int | None] = {}
    for child_id in dict.fromkeys(e.child_id for e in events):  # (each child once, in the events' order)
        child = view.rows.children.get(child_id)
        rules = view.school_rules.get(child.school_id) if child else None
        out[child_id] = child.school_id if child and rules and rules.webhook_url else None
    return out


def recipients(view: RegistryView, events: list[ChildEvent]) -> dict[int, list[Recipient]]:
    """child id -> the guardians an alert of the child goes to, in escalation order."""
    rows = view.rows
    guardians = rows.guardians
    out: dict[int, list[Recipient]] = {}
    for child in {e.child_id for e in events}:
        found = (guardians.get(gid) for gid in rows.child_guardians.get(child, ()))  # (one search each)
        out[child] = [Recipient(g.id, g.channels, bool(g.phone)) for g in found if g is not None]
    return out


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
