"""Payload decoders for the native wire format (schemas/position.v1.json, gateway-batch.v1.json).

Decoding uses msgspec's typed structs (about 10x faster than json.loads + a JSON Schema validator);
the structs mirror the JSON Schemas in ``schemas/``, and tests/unit/test_decode.py checks that both
accept and refuse the same payloads. Every refusal names its reason (a `Reason`), which is what the
dead-letter table and the metrics show.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

import msgspec

TAG_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_TAG_RE = re.compile(TAG_PATTERN)
GATEWAY_MAX_ITEMS = 1000
OVERSIZED_KEEP_BYTES = 1024  # the dead letter of an oversized payload keeps its beginning only
TOO_DEEP = "JSON nested too deeply"  # msgspec raises RecursionError on such input (found by fuzzing)


class Reason(StrEnum):
    """Why a message (or one item of a gateway batch) was dead-lettered."""

    UNKNOWN_TOPIC = "unknown_topic"
    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNKNOWN_TAG = "unknown_tag"
    UNKNOWN_READER = "unknown_reader"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_DEVICE = "unknown_device"  # an OwnTracks / OsmAnd identity mapped to no tag
    INVALID_FIX = "invalid_fix"  # the device itself says the position is not valid (OsmAnd valid=false)
    ENCRYPTED_NO_KEY = "encrypted_no_key"  # an OwnTracks encrypted payload, and no key for the device
    UNDECRYPTABLE = "undecryptable"  # an OwnTracks encrypted payload the device's key does not open
    RATE_LIMITED = "rate_limited"  # one tag sent more fixes than its token bucket allows
    INTERNAL_ERROR = "internal_error"  # a bug met this message: kept so that nothing is lost


TS_MIN, TS_MAX = 946684800.0, 4102444800.0  # 2000-01-01 .. 2100-01-01, as schemas/position.v1.json
ACC_MAX = 100000.0
Ts = Annotated[float, msgspec.Meta(ge=TS_MIN, le=TS_MAX)]
Lat = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Lon = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Acc = Annotated[float, msgspec.Meta(ge=0, le=ACC_MAX)]
Batt = Annotated[int, msgspec.Meta(ge=0, le=100)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=4294967295)]
TagId = Annotated[str, msgspec.Meta(pattern=TAG_PATTERN)]


class PositionV1(msgspec.Struct):
    """schemas/position.v1.json"""

    ts: Ts
    lat: Lat
    lon: Lon
    acc: Acc
    batt: Batt | msgspec.UnsetType = msgspec.UNSET
    seq: Seq | msgspec.UnsetType = msgspec.UNSET
    sos: bool = False


class GatewayItemV1(PositionV1, kw_only=True):
    """One item of schemas/gateway-batch.v1.json."""

    tag: TagId


class SightingV1(msgspec.Struct):
    """schemas/rfid-sighting.v1.json"""

    ts: Ts
    tags: Annotated[list[TagId], msgspec.Meta(min_length=1, max_length=500)]


# The per-message and per-fix records are frozen msgspec Structs: built ten times faster than frozen
# dataclasses (whose __init__ goes through object.__setattr__ field by field), on the hot path.
class RawMessage(msgspec.Struct, frozen=True):
    """A broker message as it arrived; `mid` is what gets acknowledged once its effects are committed."""

    topic: str
    payload: bytes
    received_at: float
    mid: int = 0
    qos: int = 0
    session: int = 0  # which broker connection delivered it: a mid means nothing on another one


class Fix(msgspec.Struct, frozen=True):
    """A decoded position fix of one tag.

    ``acc`` is nan when the sender stated no accuracy (a phone app may not: see
    tracker.ingest.devices); nan rather than None so that a batch's accuracies stay one float array
    for the geofence, which already reads nan as "unknown" (never certainly in a zone). The native
    format always states it."""

    tag: str
    ts: float
    lat: float
    lon: float
    acc: float  # metres, the 68 % radius; nan: not stated
    batt: int | None
    seq: int | None
    sos: bool
    received_at: float
    topic: str
    stamped_at_receipt: bool = False  # an SOS stamped out of range: admission set ts to received_at


class Sighting(msgspec.Struct, frozen=True):
    """An RFID reader saw a tag."""

    reader: str
    tag: str
    ts: float
    received_at: float
    topic: str


class Rejection(msgspec.Struct, frozen=True):
    topic: str
    payload: bytes
    reason: Reason
    detail: str
    received_at: float


_position_decoder = msgspec.json.Decoder(PositionV1)
_gateway_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_gateway_item_decoder = msgspec.json.Decoder(GatewayItemV1)
_gateway_whole_decoder = msgspec.json.Decoder(list[GatewayItemV1])
_sighting_decoder = msgspec.json.Decoder(SightingV1)


_TOPICS_KEPT = 200_000
_topics: dict[tuple[str, str], tuple[str, str] | None] = {}


def parse_topic(topic: str, prefix: str) -> tuple[str, str] | None:
    """('tag', tag_id), ('gateway', gateway_id) or ('reader', reader_id) for a topic this decoder
    knows, else None. (Each tag publishes on its own topic, again and again: the answers are kept,
    up to ``_TOPICS_KEPT`` topics, then forgotten all at once.)"""
    key = (topic, prefix)
    known = _topics.get(key, _UNKNOWN)
    if known is not _UNKNOWN:
        return known  # type: ignore[return-value]
    route = _parse_topic(topic, prefix)
    if len(_topics) >= _TOPICS_KEPT:
        _topics.clear()
    _topics[key] = route
    return route


_UNKNOWN = object()


def _parse_topic(topic: str, prefix: str) -> tuple[str, str] | None:
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) == 5 and parts[:3] == ["tracker", "v1", "tags"] and parts[4] == "position":
        return ("tag", parts[3]) if _TAG_RE.match(parts[3]) else None
    if len(parts) == 5 and parts[:3] == ["tracker", "v1", "gateways"] and parts[4] == "positions":
        return ("gateway", parts[3]) if _TAG_RE.match(parts[3]) else None
    if len(parts) == 5 and parts[:3] == ["tracker", "v1", "readers"] and parts[4] == "sightings":
        return ("reader", parts[3]) if _TAG_RE.match(parts[3]) else None
    return None


def decode_sightings(
    msg: RawMessage, *, prefix: str, max_bytes: int
) -> tuple[list[Sighting], list[Rejection]]:
    """Decode an RFID reader's message (schemas/rfid-sighting.v1.json) into one sighting per tag."""
    route = parse_topic(msg.topic, prefix)
    if route is None or route[0] != "reader":
        return [], [
            Rejection(msg.topic, msg.payload, Reason.UNKNOWN_TOPIC, "not a reader topic", msg.received_at)
        ]
    if len(msg.payload) > max_bytes:
        detail = f"{len(msg.payload)} bytes > limit {max_bytes}"
        head = msg.payload[:OVERSIZED_KEEP_BYTES]
        return [], [Rejection(msg.topic, head, Reason.OVERSIZED, detail, msg.received_at)]
    try:
        s = _sighting_decoder.decode(msg.payload)
    except msgspec.DecodeError as e:
        return [], [Rejection(msg.topic, msg.payload, *_why(msg.payload, e), msg.received_at)]
    except RecursionError:
        return [], [Rejection(msg.topic, msg.payload, Reason.MALFORMED_JSON, TOO_DEEP, msg.received_at)]
    return [Sighting(route[1], tag, s.ts, msg.received_at, msg.topic) for tag in dict.fromkeys(s.tags)], []


def decode_message(msg: RawMessage, *, prefix: str, max_bytes: int) -> tuple[list[Fix], list[Rejection]]:
    """Decode one broker message into fixes; whatever cannot be used becomes a Rejection."""

    def reject(reason: Reason, detail: str, payload: bytes = msg.payload) -> Rejection:
        return Rejection(msg.topic, payload, reason, detail, msg.received_at)

    route = parse_topic(msg.topic, prefix)
    if route is None:
        return [], [reject(Reason.UNKNOWN_TOPIC, "topic is not a known tracker/v1 topic")]
    if len(msg.payload) > max_bytes:
        detail = f"{len(msg.payload)} bytes > limit {max_bytes}"
        return [], [reject(Reason.OVERSIZED, detail, msg.payload[:OVERSIZED_KEEP_BYTES])]
    kind, ident = route
    if kind == "tag":
        try:
            p = _position_decoder.decode(msg.payload)
        except msgspec.DecodeError as e:
            return [], [reject(*_why(msg.payload, e))]
        except RecursionError:
            return [], [reject(Reason.MALFORMED_JSON, TOO_DEEP)]
        return [_fix(ident, p, msg)], []

    try:  # the common case, a batch without a bad item, in one call (a third of the decoding time)
        whole = _gateway_whole_decoder.decode(msg.payload)
        if len(whole) <= GATEWAY_MAX_ITEMS:
            return [_fix(g.tag, g, msg) for g in whole], []
    except msgspec.DecodeError:
        pass  # find out below which items are bad, or why the whole is
    try:
        items = _gateway_decoder.decode(msg.payload)
    except msgspec.DecodeError as e:
        reason, detail = _why(msg.payload, e)
        return [], [reject(reason, f"gateway batch must be a JSON array: {detail}")]
    except RecursionError:
        return [], [reject(Reason.MALFORMED_JSON, TOO_DEEP)]
    if len(items) > GATEWAY_MAX_ITEMS:
        return [], [reject(Reason.OVERSIZED, f"{len(items)} items > limit {GATEWAY_MAX_ITEMS}")]
    fixes: list[Fix] = []
    rejections: list[Rejection] = []
    for i, raw in enumerate(items):
        try:
            g = _gateway_item_decoder.decode(raw)
        except msgspec.ValidationError as e:
            rejections.append(reject(Reason.SCHEMA_VIOLATION, f"item {i}: {e}", bytes(raw)))
            continue
        except RecursionError:
            rejections.append(reject(Reason.MALFORMED_JSON, f"item {i}: {TOO_DEEP}", bytes(raw)))
            continue
        fixes.append(_fix(g.tag, g, msg))
    return fixes, rejections


def _why(payload: bytes, e: msgspec.DecodeError) -> tuple[Reason, str]:
    """Malformed JSON or a schema violation? The typed decoder stops at the first problem it meets,
    which may be a bad value before a syntax error; on this error path, ask an untyped parse."""
    if isinstance(e, msgspec.ValidationError):
        try:
            msgspec.json.decode(payload)
        except msgspec.DecodeError as syntax:
            return Reason.MALFORMED_JSON, str(syntax)
        except RecursionError:
            return Reason.MALFORMED_JSON, TOO_DEEP
        return Reason.SCHEMA_VIOLATION, str(e)
    return Reason.MALFORMED_JSON, str(e)


def _fix(tag: str, p: PositionV1, msg: RawMessage) -> Fix:
    # (positional, in Fix's order: tag, ts, lat, lon, acc, batt, seq, sos, received_at, topic)
    batt, seq = p.batt, p.seq
    return Fix(
        tag,
        p.ts,
        p.lat,
        p.lon,
        p.acc,
        None if batt is msgspec.UNSET else batt,
        None if seq is msgspec.UNSET else seq,
        p.sos,
        msg.received_at,
        msg.topic,
    )
