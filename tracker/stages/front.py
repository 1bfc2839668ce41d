"""Stages 1 and 2: broker and HTTP messages in, admitted fixes out, every refusal with its reason.

1. decode + validate (``tracker.ingest.decode``, the device protocols, RFID sightings: a sighting is a
   fix at the reader's registered place);
2. admit: the named filters of ``tracker.ingest.filters`` (unknown tag, stamped in the future), then
   the tag's token bucket (``rate_limited``).

Each fix and each refusal remembers which message of the batch it came from when that message waits
for an answer (an HTTP request: ``RawMessage.session == HTTP_SESSION``), so that the request is answered
with the pipeline's own outcome for it (see ``tracker.stages.records.MessageAnswer``).

Pure apart from the rate limiter's batch (decided on copies; charged only when the batch commits).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
import numpy as np

from tracker.config import Settings
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
from tracker.ingest.forwarded import FORWARDED_SESSION, decode_forwarded
from tracker.ingest.http import HTTP_SESSION
from tracker.ingest.protocols import decode_device, is_device_message
from tracker.ingest.ratelimit import RateBatch, TagRateLimiter
from tracker.registry_view import RegistryView
from tracker.store.registry_tables import TagTable

READER_ACC_M = 10.0  # a reader sees a card within a few metres
NO_ANSWER = -1  # origin of a fix or refusal whose message waits for no answer (a broker message)


@dataclass(frozen=True)
class Admitted:
    """The fixes that go on to the geofence and the monitor."""

    fixes: list[Fix]  # sorted by child, then time
    child_ids: np.ndarray  # int64, one per fix
    origins: list[int]  # per fix: its message's index in the batch if that message waits for an answer


@dataclass(frozen=True)
class Refused:
    """What stages 1-2 refused (dead letters), each with the origin of its message as in `Admitted`."""

    rejections: list[Rejection]
    origins: list[int]


@dataclass(frozen=True)
class Front:
    admitted: Admitted
    refused: Refused
    rate: RateBatch  # the batch's token-bucket decisions, charged once it commits
    ignored: Counter[str]  # valid messages without a position (OwnTracks lwt, card ...), by type


def front(
    messages: list[RawMessage], view: RegistryView, settings: Settings, limiter: TagRateLimiter, now: float
) -> Front:
    """Stages 1-2 for a batch of messages."""
    fixes, fix_origins, refused, ignored = decode_batch(messages, view, settings)
    rate = limiter.batch()
    admitted = admit(view, fixes, fix_origins, now, settings.max_future_s, rate, limiter, refused)
    return Front(admitted, Refused(*refused), rate, ignored)


def decode_batch(
    messages: list[RawMessage], view: RegistryView, settings: Settings
) -> tuple[list[Fix], list[int], tuple[list[Rejection], list[int]], Counter[str]]:
    """Stage 1 alone: the batch's fixes (an RFID sighting as a fix at its reader) with the origin of
    each, what was refused (with origins), and the valid messages without a position. A cluster's
    front runs it too (tracker.stages.forward)."""
    fixes, fix_origins, sightings, sighting_origins, refused, ignored = _decode(messages, view, settings)
    for fix, origin in _sightings_as_fixes(view, sightings, sighting_origins, refused):
        fixes.append(fix)
        fix_origins.append(origin)
    return fixes, fix_origins, refused, ignored


def _decode(
    messages: list[RawMessage], view: RegistryView, settings: Settings
) -> tuple[list[Fix], list[int], list[Sighting], list[int], tuple[list[Rejection], list[int]], Counter[str]]:
    fixes: list[Fix] = []
    fix_origins: list[int] = []
    sightings: list[Sighting] = []
    sighting_origins: list[int] = []
    rejections: list[Rejection] = []
    rejection_origins: list[int] = []
    ignored: Counter[str] = Counter()
    prefix, max_bytes = settings.topic_prefix, settings.max_payload_bytes
    for k, msg in enumerate(messages):
        origin = k if msg.session == HTTP_SESSION else NO_ANSWER
        if msg.session == FORWARDED_SESSION:  # a cluster's front decoded these already
            forwarded = decode_forwarded(msg.payload)
            fixes.extend(forwarded)
            fix_origins.extend([origin] * len(forwarded))
            continue
        if msg.topic.endswith("/sightings"):
            seen, r = decode_sightings(msg, prefix=prefix, max_bytes=max_bytes)
            sightings.extend(seen)
            sighting_origins.extend([origin] * len(seen))
        elif is_device_message(msg.topic, prefix):  # OwnTracks, OsmAnd
            rows = view.rows
            d = decode_device(
                msg, prefix=prefix, max_bytes=max_bytes, devices=rows.devices, keys=rows.device_keys
            )
            fixes.extend(d.fixes)
            fix_origins.extend([origin] * len(d.fixes))
            ignored.update(d.ignored)
            r = d.rejections
        else:
            f, r = decode_message(msg, prefix=prefix, max_bytes=max_bytes)
            fixes.extend(f)
            fix_origins.extend([origin] * len(f))
        rejections.extend(r)
        rejection_origins.extend([origin] * len(r))
    return fixes, fix_origins, sightings, sighting_origins, (rejections, rejection_origins), ignored


def _sightings_as_fixes(
    view: RegistryView,
    sightings: list[Sighting],
    origins: list[int],
    refused: tuple[list[Rejection], list[int]],
) -> list[tuple[Fix, int]]:
    """An RFID reader's sighting is a fix at the reader's registered place (stored and judged like
    any fix, so a redelivered sighting is a duplicate); one at a school gate is also arrival."""
    out = []
    for s, origin in zip(sightings, origins, strict=True):
        reader = view.readers.get(s.reader)
        if reader is None:
            detail = f"reader {s.reader!r} is not registered"
            refused[0].append(
                Rejection(s.topic, s.tag.encode(), Reason.UNKNOWN_READER, detail, s.received_at)
            )
            refused[1].append(origin)
            continue
        fix = Fix(
            s.tag, s.ts, reader.lat, reader.lon, READER_ACC_M, None, None, False, s.received_at, s.topic
        )
        out.append((fix, origin))
    return out


def admit(
    view: RegistryView,
    fixes: list[Fix],
    origins: list[int],
    now: float,
    max_future_s: float,
    rate: RateBatch,
    limiter: TagRateLimiter,
    refused: tuple[list[Rejection], list[int]],
) -> Admitted:
    """Stage 2 for decoded fixes: the named filters at ``now``, then the tags' token buckets (at each
    fix's arrival); what is refused goes to ``refused``. An SOS stamped too far ahead is not refused:
    it is stamped at its receipt (``Fix.stamped_at_receipt``; the alert says so). ``tracker replay``
    admits past fixes with it, at the moment each batch was received."""
    kept: list[tuple[int, Fix, int]] = []
    tags = view.rows.tags
    known = _children_of(tags, [f.tag for f in fixes])  # the batch's tags in one search
    latest = now + max_future_s
    for fix, origin, of_tag in zip(fixes, origins, known, strict=True):
        # a known tag's fix stamped in time passes every filter (``refusal``'s answer, without asking)
        why = (
            None
            if of_tag >= 0 and fix.ts <= latest
            else refusal(fix, tags=tags, now=now, max_future_s=max_future_s)
        )
        if why is not None and fix.sos and why[0] == Reason.FUTURE_TIMESTAMP:
            # an SOS is never refused for its time: a press is real whatever the tag's clock says
            fix = msgspec.structs.replace(fix, ts=fix.received_at, stamped_at_receipt=True)
            why = refusal(fix, tags=tags, now=now, max_future_s=max_future_s)
        if why is None and not rate.allow(fix.tag, fix.received_at):
            why = (Reason.RATE_LIMITED, f"tag {fix.tag!r} is over {limiter.rate_per_s:g} fixes/s")
        if why is None:
            kept.append((of_tag if of_tag >= 0 else tags[fix.tag], fix, origin))
        else:
            reason, detail = why
            refused[0].append(Rejection(fix.topic, fix_payload(fix), reason, detail, fix.received_at))
            refused[1].append(origin)
    # by child, then time, arrival order kept among equals (lexsort is stable, as list.sort is)
    n = len(kept)
    child = np.fromiter((c for c, _, _ in kept), dtype=np.int64, count=n)
    ts = np.fromiter((f.ts for _, f, _ in kept), dtype=np.float64, count=n)
    order = np.lexsort((ts, child))
    ordered = [kept[i] for i in order.tolist()]
    return Admitted([f for _, f, _ in ordered], child[order], [o for _, _, o in ordered])


def _children_of(tags: Mapping[str, int], batch: list[str]) -> list[int]:
    """Each tag's child, -1 for an unknown tag."""
    if isinstance(tags, TagTable):
        return tags.children_of(batch).tolist()
    return [tags.get(t, -1) for t in batch]


def at_gate(view: RegistryView, fix: Fix) -> bool:
    """The fix is an RFID sighting by a school's gate reader (arrival, whatever the GPS says)."""
    if not fix.topic.endswith("/sightings"):
        return False
    reader = view.readers.get(fix.topic.rsplit("/", 2)[-2])
    return reader is not None and reader.role == "gate"


def fix_payload(fix: Fix) -> bytes:
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
