"""What goes on the wire (schemas/position.v1.json, gateway-batch.v1.json) and the fix that carries it."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

TAGS_TOPIC = "{prefix}tracker/v1/tags/{tag}/position"
GATEWAY_TOPIC = "{prefix}tracker/v1/gateways/{gateway}/positions"
READER_TOPIC = "{prefix}tracker/v1/readers/{reader}/sightings"
OWNTRACKS_TOPIC = "{prefix}owntracks/{user}/{device}"
FORMATS = ("native", "owntracks")
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
    delivery: str | None = None
    """None: sent when made; 'late': held back and sent after later fixes; 'duplicate': a second copy"""

    @property
    def ts(self) -> float:
        return self.position.ts


class OwnTracksLocation(msgspec.Struct, kw_only=True, tag_field="_type", tag="location", omit_defaults=True):
    """The OwnTracks app's location message (https://owntracks.org/booklet/tech/json/, _type=location):
    ``tst`` whole Unix seconds, ``acc`` whole metres, ``batt`` percent, ``tid`` a two-character tracker
    id, ``t`` the trigger ("u": a manual publish, which is what an SOS press is sent as; the format has
    no SOS of its own). Published to ``owntracks/{user}/{device}``."""

    lat: float
    lon: float
    tst: int
    acc: int
    batt: int
    tid: str
    t: str | None = None


class ReaderSighting(msgspec.Struct):
    """rfid-sighting.v1: a reader at a school gate saw these cards."""

    ts: float
    tags: list[str]


class GateSighting(msgspec.Struct, kw_only=True):
    """A child's card passing its school's gate reader (arriving or leaving), as the simulator made it."""

    reader: str
    tag: str
    child_id: int
    ts: float
    event: str
    """'arrive' or 'leave'"""


_encoder = msgspec.json.Encoder()


def position_topic(prefix: str, tag: str) -> str:
    return TAGS_TOPIC.format(prefix=prefix, tag=tag)


def gateway_topic(prefix: str, gateway: str) -> str:
    return GATEWAY_TOPIC.format(prefix=prefix, gateway=gateway)


def reader_topic(prefix: str, reader: str) -> str:
    return READER_TOPIC.format(prefix=prefix, reader=reader)


def owntracks_topic(prefix: str, user: str, device: str) -> str:
    return OWNTRACKS_TOPIC.format(prefix=prefix, user=user, device=device)


def owntracks_location(fix: Fix) -> OwnTracksLocation:
    p = fix.position
    return OwnTracksLocation(
        lat=p.lat,
        lon=p.lon,
        tst=int(p.ts),
        acc=max(1, round(p.acc)),
        batt=p.batt,
        tid=fix.tag[-2:],
        t="u" if p.sos else None,
    )


def encode_owntracks(fix: Fix) -> bytes:
    return _encoder.encode(owntracks_location(fix))


def encode_sightings(ts: float, tags: Sequence[str]) -> bytes:
    return _encoder.encode(ReaderSighting(ts=round(ts, 3), tags=list(tags)))


def encode_position(fix: Fix) -> bytes:
    return _encoder.encode(fix.position)


def encode_batch(fixes: Sequence[Fix]) -> bytes:
    if len(fixes) > MAX_BATCH:
        raise ValueError(f"a gateway batch holds at most {MAX_BATCH} fixes")
    items = [TaggedPosition(**msgspec.structs.asdict(f.position), tag=f.tag) for f in fixes]
    return _encoder.encode(items)
