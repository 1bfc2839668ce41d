"""Stage 5's rows: what a batch's one transaction writes, and what the batch says about itself.

Pure: built in the worker thread that decided the batch, so that the event loop only sends them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tracker.alerts.lifecycle import ChildEvent, Recipient
from tracker.ingest.decode import RawMessage, Rejection
from tracker.ingest.http import MessageAnswer
from tracker.ingest.ratelimit import RateBatch
from tracker.monitor import ChildState, Observation
from tracker.registry_view import RegistryView
from tracker.stages.front import NO_ANSWER, Admitted, Refused
from tracker.store.alerts import AlertFacts, DeliveryJob
from tracker.store.batches import DeadLetterRecord, PositionRecord, encode_state


@dataclass
class BatchOutcome:
    messages: int = 0
    fixes: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)  # what the monitor made of each fix
    events: list[ChildEvent] = field(default_factory=list)
    outbox_rows: int = 0
    ignored: Counter[str] = field(default_factory=Counter)  # valid messages without a position
    answers: dict[int, MessageAnswer] = field(default_factory=dict)  # HTTP message id -> its answer
    # every admitted fix as stored (the list the commit writes, not a copy): the school's live map
    # (tracker.api.live_feed) reads it after the commit, only when someone watches
    positions: list[PositionRecord] = field(default_factory=list)
    # critical websocket deliveries claimed in the commit, to send at once (tracker.stages.commit)
    at_once: list[tuple[DeliveryJob, AlertFacts]] = field(default_factory=list)


@dataclass
class PreparedBatch:
    """A batch decided and ready to commit: what the transaction writes, and the states it leaves."""

    outcome: BatchOutcome
    states: dict[int, ChildState]  # the batch's children, as the batch leaves them
    rate: RateBatch
    maybe_stored: list[PositionRecord]  # fixes that decided nothing: they may be stored already
    new_positions: list[PositionRecord]  # fixes that decided: later than any stored fix of their child
    dead: list[DeadLetterRecord]
    events: list[ChildEvent]
    recipients: dict[int, list[Recipient]]
    webhook_schools: dict[int, int | None]
    following: list[tuple[int, float, float | None, float | None, float | None]]
    changed: dict[int, str]  # child -> state JSON, for the children whose state changed
    # workers (tracker.cluster): the fencing token of each partition of the batch's children, as the
    # worker held them when the batch was prepared; the commit checks them first. None: one process
    tokens: dict[int, int] | None = None


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
    children = admitted.child_ids.tolist()  # Python ints once, not numpy scalars per fix
    received = _Stamps()  # a message's fixes share their receipt time: one datetime for them
    positions: list[PositionRecord] = [
        (
            f.tag,
            datetime.fromtimestamp(f.ts, UTC),
            child,
            f.lon,
            f.lat,
            None if f.acc != f.acc else f.acc,  # nan: not stated, NULL in positions.acc
            f.batt,
            f.seq,
            f.sos,
            received[f.received_at],
            None if (d := obs.route_distance_m) != d else d,  # nan: no route
        )
        for f, child, obs in zip(admitted.fixes, children, observations, strict=True)
    ]
    new_positions = [r for r, d in zip(positions, decided, strict=True) if d]
    maybe_stored = [r for r, d in zip(positions, decided, strict=True) if not d]
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


def webhook_schools(view: RegistryView, events: list[ChildEvent]) -> dict[int, int | None]:
    """child id -> its school's id, for children whose school has a webhook."""
    out: dict[int, int | None] = {}
    for e in events:
        child = view.rows.children.get(e.child_id)
        rules = view.school_rules.get(child.school_id) if child else None
        out[e.child_id] = child.school_id if child and rules and rules.webhook_url else None
    return out


def recipients(view: RegistryView, events: list[ChildEvent]) -> dict[int, list[Recipient]]:
    """child id -> the guardians an alert of the child goes to, in escalation order."""
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


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class _Stamps(dict[float, datetime]):
    """Unix time -> its UTC datetime, each made once."""

    def __missing__(self, ts: float) -> datetime:
        self[ts] = at = datetime.fromtimestamp(ts, UTC)
        return at
