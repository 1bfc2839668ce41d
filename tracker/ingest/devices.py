"""What the decoders of device protocols (OwnTracks, OsmAnd) share: their result, the range checks of a
fix, and the mapping of a device identity to a registered tag.

A device protocol names a device, not a tag: the registry maps ``"{protocol}:{device}"`` to a tag
(table ``tag_devices``). An identity it does not know is refused as ``unknown_device``; nothing is
ever registered on the fly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from tracker.ingest.decode import (
    ACC_MAX,
    OVERSIZED_KEEP_BYTES,
    TS_MAX,
    TS_MIN,
    Fix,
    RawMessage,
    Reason,
    Rejection,
)

DEVICE_MAX_CHARS = 200


@dataclass
class Decoded:
    """What one message became: fixes, refusals (dead-lettered), and message types that are valid
    but carry no position (OwnTracks ``lwt``, ``card``, ...): counted, not dead-lettered."""

    fixes: list[Fix] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)


class Refused(Exception):
    """A payload cannot be used; ``reason`` goes to the dead-letter row."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def device_key(protocol: str, device: str) -> str:
    return f"{protocol}:{device}"


def tag_of(devices: Mapping[str, str], protocol: str, device: str) -> str:
    """The registered tag of a device identity, or Refused(unknown_device)."""
    tag = devices.get(device_key(protocol, device))
    if tag is None:
        raise Refused(
            Reason.UNKNOWN_DEVICE, f"{protocol} device {device[:DEVICE_MAX_CHARS]!r} is not registered"
        )
    return tag


def checked_fix(
    msg: RawMessage,
    *,
    tag: str,
    ts: float,
    lat: float,
    lon: float,
    acc: float | None,
    batt: float | None,
    sos: bool,
) -> Fix:
    """A Fix, after the same range checks the native schema makes (finite, lat/lon on the globe,
    a timestamp between 2000 and 2100, battery 0..100), except that the accuracy may be unknown.

    A phone app does not always state its accuracy: the OwnTracks app leaves ``acc`` out when it is 0,
    and Android (``Location.getAccuracy()``) and OsmAnd report 0 for a location that has no accuracy
    estimate. So ``acc`` None *or 0* means "not stated" here and becomes nan in the Fix: no real fix
    is exact to the metre, and a 0 taken at its word would make one fix "certainly" inside a zone
    whose edge it is a metre from. Such a fix is stored and judged as a fix of unknown accuracy
    (tracker.monitor.machine says what it may decide). A stated accuracy must be within 0..100 km.
    The native format (schemas/position.v1.json) keeps ``acc`` required, and 0 there is 0."""
    for name, value in (("ts", ts), ("lat", lat), ("lon", lon)):
        if not math.isfinite(value):
            raise Refused(Reason.SCHEMA_VIOLATION, f"{name} is not a finite number")
    if not TS_MIN <= ts <= TS_MAX:
        raise Refused(Reason.SCHEMA_VIOLATION, f"timestamp {ts!r} is not between 2000 and 2100")
    if not -90 <= lat <= 90:
        raise Refused(Reason.SCHEMA_VIOLATION, f"lat {lat!r} is not within -90..90")
    if not -180 <= lon <= 180:
        raise Refused(Reason.SCHEMA_VIOLATION, f"lon {lon!r} is not within -180..180")
    if acc is None or acc == 0:
        acc = math.nan
    elif not (math.isfinite(acc) and 0 < acc <= ACC_MAX):
        raise Refused(Reason.SCHEMA_VIOLATION, f"accuracy {acc!r} is not within 0..{ACC_MAX:.0f} m")
    level: int | None = None
    if batt is not None and math.isfinite(batt) and 0 <= batt <= 100:
        level = round(batt)  # an unknown or absurd battery level is left out, not a reason to refuse
    return Fix(
        tag=tag,
        ts=float(ts),
        lat=float(lat),
        lon=float(lon),
        acc=float(acc),
        batt=level,
        seq=None,
        sos=sos,
        received_at=msg.received_at,
        topic=msg.topic,
    )


def refuse(msg: RawMessage, reason: Reason, detail: str) -> Decoded:
    return Decoded(rejections=[Rejection(msg.topic, msg.payload, reason, detail, msg.received_at)])


def oversized(msg: RawMessage, max_bytes: int) -> Decoded | None:
    if len(msg.payload) > max_bytes:
        detail = f"{len(msg.payload)} bytes > limit {max_bytes}"
        head = msg.payload[:OVERSIZED_KEEP_BYTES]  # the dead letter keeps the beginning only
        return Decoded(rejections=[Rejection(msg.topic, head, Reason.OVERSIZED, detail, msg.received_at)])
    return None
