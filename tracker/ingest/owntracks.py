"""The OwnTracks app (https://owntracks.org/booklet/tech/json/), over MQTT and in its HTTP mode.

Over MQTT the app publishes to ``owntracks/{user}/{device}`` (``_type`` ``location``, and ``lwt``, its
last will) and to ``owntracks/{user}/{device}/event`` (``_type`` ``transition``: it entered or left one
of its own waypoints, with the position where it happened). In HTTP mode it POSTs the same JSON to
one endpoint, naming itself in the ``X-Limit-U`` / ``X-Limit-D`` headers; the tracker gives those
messages the topic ``http/owntracks/{user}/{device}``.

``location`` and ``transition`` become fixes of the tag that ``owntracks:{user}/{device}`` is
registered for (``tst`` seconds, ``acc`` metres, ``batt`` percent). Every other ``_type`` (``lwt``,
``card``, ``status``, ``waypoint``, ``encrypted``, ...) and an empty payload (the app sends one when
a friend is deleted) carry no position: counted, not dead-lettered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import msgspec

from tracker.ingest.decode import TOO_DEEP, RawMessage, Reason
from tracker.ingest.devices import Decoded, Refused, checked_fix, oversized, refuse, tag_of

PROTOCOL = "owntracks"
HTTP_TOPIC = "http/owntracks"
POSITION_TYPES = ("location", "transition")
_SEGMENT_MAX = 100


class _Typed(msgspec.Struct):
    type: str | None = msgspec.field(name="_type", default=None)


class _Location(msgspec.Struct):
    """The fields of ``_type: location`` and ``_type: transition`` the tracker uses."""

    lat: float
    lon: float
    tst: float
    acc: float | None = None
    batt: float | None = None


_typed = msgspec.json.Decoder(_Typed)
_location = msgspec.json.Decoder(_Location)


def identity(topic: str, prefix: str) -> tuple[str, str] | None:
    """(user, device) of an OwnTracks topic (MQTT, under the prefix, or the HTTP endpoint's), else None."""
    if topic.startswith(HTTP_TOPIC + "/"):
        parts = topic[len(HTTP_TOPIC) + 1 :].split("/")
    elif topic.startswith(prefix + "owntracks/"):
        parts = topic[len(prefix) + len("owntracks/") :].split("/")
        if len(parts) == 3 and parts[2] == "event":
            parts = parts[:2]
    else:
        return None
    if len(parts) != 2 or not all(0 < len(p) <= _SEGMENT_MAX for p in parts):
        return None
    return parts[0], parts[1]


def http_topic(user: str, device: str) -> str:
    return f"{HTTP_TOPIC}/{user}/{device}"


def decode(msg: RawMessage, *, prefix: str, max_bytes: int, devices: Mapping[str, str]) -> Decoded:
    """One OwnTracks message: a fix, a refusal with its reason, or a counted type without position."""
    who = identity(msg.topic, prefix)
    if who is None:
        return refuse(msg, Reason.UNKNOWN_TOPIC, "not an owntracks/{user}/{device} topic")
    if (big := oversized(msg, max_bytes)) is not None:
        return big
    if not msg.payload.strip():
        return Decoded(ignored=Counter(["owntracks:empty"]))
    try:
        kind = _typed.decode(msg.payload).type
        if kind is None:
            return refuse(msg, Reason.SCHEMA_VIOLATION, "owntracks: the mandatory _type is missing")
        if kind not in POSITION_TYPES:
            return Decoded(ignored=Counter([f"owntracks:{kind if kind in _KNOWN_TYPES else 'other'}"]))
        p = _location.decode(msg.payload)
        tag = tag_of(devices, PROTOCOL, f"{who[0]}/{who[1]}")
        fix = checked_fix(msg, tag=tag, ts=p.tst, lat=p.lat, lon=p.lon, acc=p.acc, batt=p.batt, sos=False)
    except msgspec.ValidationError as e:
        return refuse(msg, Reason.SCHEMA_VIOLATION, f"owntracks: {e}")
    except msgspec.DecodeError as e:
        return refuse(msg, Reason.MALFORMED_JSON, str(e))
    except RecursionError:
        return refuse(msg, Reason.MALFORMED_JSON, TOO_DEEP)
    except Refused as e:
        return refuse(msg, e.reason, e.detail)
    return Decoded(fixes=[fix])


# the documented types (a bounded set of metric labels: anything else counts as "other")
_KNOWN_TYPES = frozenset(
    {
        "beacon",
        "card",
        "cmd",
        "configuration",
        "encrypted",
        "lwt",
        "request",
        "status",
        "steps",
        "waypoint",
        "waypoints",
    }
)
