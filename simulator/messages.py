"""What goes on the wire (schemas/position.v1.json, gateway-batch.v1.json) and the fix that carries it."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

TAGS_TOPIC = "{prefix}tracker/v1/tags/{tag}/position"
GATEWAY_TOPIC = "{prefix}tracker/v1/gateways/{gateway}/positions"
MAX_BATCH = 1000
"""gateway-batch.v1: maxItems"""


class Position(msgspec.Struct, kw_only=True):
    """The native payload: position.v1."""

    ts: float
    lat: float
    lon: float
    acc: float
    batt: int
    seq: int
    sos: bool = False


class TaggedPosition(Position, kw_only=True):
    """A gateway batch item: position.v1 plus the tag."""

    tag: str


class Fix(msgspec.Struct, kw_only=True):
    """A fix as the simulator made it: the payload, who sent it, and the truth behind it."""

    tag: str
    child_id: int
    route_id: int
    gateway: str
    position: Position
    true_lon: float
    true_lat: float
    multipath: str | None = None
    """None, 'honest' or 'lie' (see gps.py)"""

    @property
    def ts(self) -> float:
        return self.position.ts


_encoder = msgspec.json.Encoder()


def position_topic(prefix: str, tag: str) -> str:
    return TAGS_TOPIC.format(prefix=prefix, tag=tag)


def gateway_topic(prefix: str, gateway: str) -> str:
    return GATEWAY_TOPIC.format(prefix=prefix, gateway=gateway)


def encode_position(fix: Fix) -> bytes:
    return _encoder.encode(fix.position)


def encode_batch(fixes: Sequence[Fix]) -> bytes:
    if len(fixes) > MAX_BATCH:
        raise ValueError(f"a gateway batch holds at most {MAX_BATCH} fixes")
    items = [TaggedPosition(**msgspec.structs.asdict(f.position), tag=f.tag) for f in fixes]
    return _encoder.encode(items)
