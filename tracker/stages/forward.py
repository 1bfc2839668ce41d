"""The front of a cluster's pipeline: stage 1 on whichever worker fetched a message, then each fix on
to the worker that owns its child.

In one process the stages run one after the other (tracker.pipeline). In a cluster (tracker.ingest.
jetstream) a broker message is fetched by any worker (the engine spreads them), but a child must have
one writer: the owner of its partition (``tracker.cluster.partitions``; a PostgreSQL lease says who).
So the fetching worker decodes the message with stage 1's own functions, finds each fix's child by its
tag, and forwards the fixes, grouped by the child's partition, to the owner; there the pipeline starts
again from stage 1 with the forwarded fixes (``tracker.ingest.forwarded``) and goes through stage 2
(admission: future timestamps, rate limits, an SOS stamped at its receipt) to the commit.

What the front refuses is what needs no owner to be refused: a payload that does not decode, an unknown
tag or reader. Those are dead-lettered by the front, with the same reasons and details as in one
process. Pure: the caller publishes and writes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from tracker.cluster.partitions import partition_of_child
from tracker.config import Settings
from tracker.ingest.decode import Fix, RawMessage, Reason, Rejection
from tracker.ingest.filters import refusal
from tracker.registry_view import RegistryView
from tracker.stages.front import NO_ANSWER, Refused, decode_batch, fix_payload
from tracker.store.batches import DeadLetterRecord


@dataclass(frozen=True)
class Routed:
    """A front batch: its fixes by the partition of their child, and what was refused here."""

    by_partition: dict[int, list[Fix]]
    refused: Refused
    ignored: Counter[str]
    forwarded: Counter[int]  # per message waiting for an answer (its index), how many fixes went on

    def dead_letters(self) -> list[DeadLetterRecord]:
        return [dead_letter(r) for r in self.refused.rejections]


def route(messages: list[RawMessage], view: RegistryView, settings: Settings, partitions: int) -> Routed:
    """Stage 1 for a batch of messages, and each decoded fix's partition (that of its tag's child)."""
    fixes, origins, refused, ignored = decode_batch(messages, view, settings)
    tags = view.rows.tags
    by_partition: dict[int, list[Fix]] = {}
    forwarded: Counter[int] = Counter()
    for fix, origin in zip(fixes, origins, strict=True):
        child = tags.get(fix.tag)
        if child is None:
            why = refusal(fix, tags=tags, now=fix.received_at, max_future_s=settings.max_future_s)
            reason, detail = why if why is not None else (Reason.UNKNOWN_TAG, "")
            refused[0].append(Rejection(fix.topic, fix_payload(fix), reason, detail, fix.received_at))
            refused[1].append(origin)
            continue
        by_partition.setdefault(partition_of_child(child, partitions), []).append(fix)
        if origin != NO_ANSWER:
            forwarded[origin] += 1
    return Routed(by_partition, Refused(*refused), ignored, forwarded)


def dead_letter(r: Rejection) -> DeadLetterRecord:
    return (datetime.fromtimestamp(r.received_at, UTC), r.topic, r.payload, r.reason.value, r.detail)
