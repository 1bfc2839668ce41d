"""The Traccar Client app and OsmAnd: the OsmAnd HTTP protocol (https://www.traccar.org/osmand/).

Two forms, both POSTed (or sent with GET) to the tracker's ``/ingest/osmand`` endpoint, which gives
the message the topic ``http/osmand`` and the query string (plus any form body) or the JSON body as
payload:

- query / form parameters: ``id`` (or ``deviceid``), ``lat`` and ``lon`` (or ``location=lat,lon``),
  ``timestamp``, ``accuracy`` (metres), ``batt`` (percent), ``valid``, ``alarm`` (``sos`` raises SOS);
  ``hdop`` is the accuracy when ``accuracy`` is absent, and ``altitude``, ``speed``, ``bearing`` are
  accepted and ignored. The OsmAnd app's own live-tracking URL is a template the user fills in,
  ``...?id=..&lat={0}&lon={1}&timestamp={2}&hdop={3}&altitude={4}&speed={5}``: the app sends the
  time in milliseconds and, despite the name, its location's accuracy radius in metres as ``{3}``
  (OsmAnd's LiveMonitoringData takes ``hdop`` from ``Location.getAccuracy()``), 0 when the location
  has none. A fix without either is not refused: its accuracy is unknown (tracker.ingest.devices);
- JSON (Traccar Client 9 and later): ``{"location": {"timestamp", "coords": {"latitude",
  "longitude", "accuracy", ...}, "battery": {"level": 0..1}, "extras": {...}}, "device_id"}``; an
  ``alarm`` of ``sos`` in ``extras`` (or beside ``location``) raises SOS.

Timestamps may be seconds or milliseconds since the epoch, ISO 8601, or ``yyyy-MM-dd HH:mm:ss``
(UTC unless the text names an offset). The device id maps to a tag through ``osmand:{id}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from tracker.ingest.decode import TOO_DEEP, RawMessage, Reason
from tracker.ingest.devices import DEVICE_MAX_CHARS, Decoded, Refused, checked_fix, oversized, refuse, tag_of

PROTOCOL = "osmand"
HTTP_TOPIC = "http/osmand"
MAX_FIELDS = 64
MS_THRESHOLD = 1e11  # a number of seconds this large would be in the year 5138: it is milliseconds


class _Coords(msgspec.Struct):
    latitude: float
    longitude: float
    accuracy: float | None = None


class _Battery(msgspec.Struct):
    level: float | None = None


class _Location(msgspec.Struct):
    timestamp: str | float
    coords: _Coords
    battery: _Battery | None = None
    extras: dict[str, Any] | None = None


class _Body(msgspec.Struct):
    location: _Location
    device_id: str
    alarm: str | None = None


_body = msgspec.json.Decoder(_Body)


def is_json(payload: bytes) -> bool:
    return payload.lstrip()[:1] == b"{"


def device_of(payload: bytes) -> str | None:
    """The device id a message names (before anything else is checked), or None."""
    try:
        if is_json(payload):
            value = msgspec.json.decode(payload)
            device = value.get("device_id") if isinstance(value, dict) else None
        else:
            params = _params(payload)
            device = params.get("id") or params.get("deviceid")
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    return device if isinstance(device, str) and 0 < len(device) <= DEVICE_MAX_CHARS else None


def decode(msg: RawMessage, *, max_bytes: int, devices: Mapping[str, str]) -> Decoded:
    """One OsmAnd request: a fix, or a refusal with its reason."""
    if (big := oversized(msg, max_bytes)) is not None:
        return big
    try:
        return Decoded(
            fixes=[_decode_json(msg, devices) if is_json(msg.payload) else _decode_query(msg, devices)]
        )
    except msgspec.ValidationError as e:
        return refuse(msg, Reason.SCHEMA_VIOLATION, f"osmand: {e}")
    except msgspec.DecodeError as e:
        return refuse(msg, Reason.MALFORMED_JSON, str(e))
    except RecursionError:
        return refuse(msg, Reason.MALFORMED_JSON, TOO_DEEP)
    except Refused as e:
        return refuse(msg, e.reason, e.detail)


def _decode_json(msg: RawMessage, devices: Mapping[str, str]) -> Any:
    b = _body.decode(msg.payload)
    loc = b.location
    extras = loc.extras or {}
    sos = "sos" in (str(extras.get("alarm", "")).lower(), (b.alarm or "").lower())
    level = loc.battery.level if loc.battery is not None else None
    return checked_fix(
        msg,
        tag=_tag(devices, b.device_id),
        ts=parse_timestamp(loc.timestamp),
        lat=loc.coords.latitude,
        lon=loc.coords.longitude,
        acc=loc.coords.accuracy,
        batt=None if level is None or level < 0 else level * 100,  # 0..1; -1: unknown
        sos=sos,
    )


def _decode_query(msg: RawMessage, devices: Mapping[str, str]) -> Any:
    p = _params(msg.payload)
    device = p.get("id") or p.get("deviceid")
    if not device:
        raise Refused(Reason.SCHEMA_VIOLATION, "osmand: id (or deviceid) is missing")
    tag = _tag(devices, device)
    if p.get("valid", "true").lower() in ("false", "0"):
        raise Refused(Reason.INVALID_FIX, "osmand: the device marked the position not valid")
    if "lat" in p and "lon" in p:
        lat, lon = _number(p, "lat"), _number(p, "lon")
    elif "location" in p:
        lat_text, _, lon_text = p["location"].partition(",")
        lat, lon = _number({"lat": lat_text}, "lat"), _number({"lon": lon_text}, "lon")
    else:
        raise Refused(Reason.SCHEMA_VIOLATION, "osmand: lat and lon (or location) are missing")
    if "timestamp" not in p:
        raise Refused(Reason.SCHEMA_VIOLATION, "osmand: timestamp is missing")
    return checked_fix(
        msg,
        tag=tag,
        ts=parse_timestamp(p["timestamp"]),
        lat=lat,
        lon=lon,
        acc=_accuracy(p),
        batt=_number(p, "batt") if p.get("batt") else None,
        sos=p.get("alarm", "").lower() == "sos",
    )


def _accuracy(p: Mapping[str, str]) -> float | None:
    """``accuracy`` in metres, else the OsmAnd app's ``hdop`` (its accuracy in metres), else None:
    not stated. An empty value is not stated either (a template whose placeholder had nothing)."""
    for name in ("accuracy", "hdop"):
        if p.get(name):
            return _number(p, name)
    return None


def _tag(devices: Mapping[str, str], device: str) -> str:
    if not 0 < len(device) <= DEVICE_MAX_CHARS:
        raise Refused(Reason.SCHEMA_VIOLATION, f"osmand: a device id has 1..{DEVICE_MAX_CHARS} characters")
    return tag_of(devices, PROTOCOL, device)


def _params(payload: bytes) -> dict[str, str]:
    """Query or form parameters (the first of repeated names); at most MAX_FIELDS of them."""
    text = payload.decode("utf-8", "replace").lstrip("?")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError as e:
        raise Refused(Reason.SCHEMA_VIOLATION, f"osmand: {e}") from None
    out: dict[str, str] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def _number(p: Mapping[str, str], name: str) -> float:
    try:
        value = float(p[name])
    except (TypeError, ValueError):
        raise Refused(Reason.SCHEMA_VIOLATION, f"osmand: {name} {p[name][:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise Refused(Reason.SCHEMA_VIOLATION, f"osmand: {name} is not a finite number")
    return value


def parse_timestamp(value: str | float) -> float:
    """Seconds since the epoch from seconds, milliseconds, ISO 8601 or 'yyyy-MM-dd HH:mm:ss'."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                when = datetime.fromisoformat(text[:64])
            except ValueError:
                raise Refused(
                    Reason.SCHEMA_VIOLATION, f"osmand: timestamp {text[:40]!r} is not a time"
                ) from None
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    else:
        number = float(value)
    if not math.isfinite(number):
        raise Refused(Reason.SCHEMA_VIOLATION, "osmand: timestamp is not a finite number")
    return number / 1000 if abs(number) >= MS_THRESHOLD else number
