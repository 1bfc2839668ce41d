"""The OwnTracks app (https://owntracks.org/booklet/tech/json/), over MQTT and in its HTTP mode.

Over MQTT the app publishes to ``owntracks/{user}/{device}`` (``_type`` ``location``, and ``lwt``, its
last will) and to ``owntracks/{user}/{device}/event`` (``_type`` ``transition``: it entered or left one
of its own waypoints, with the position where it happened). In HTTP mode it POSTs the same JSON to
one endpoint, naming itself in the ``X-Limit-U`` / ``X-Limit-D`` headers; the tracker gives those
messages the topic ``http/owntracks/{user}/{device}``.

``location`` and ``transition`` become fixes of the tag that ``owntracks:{user}/{device}`` is
registered for (``tst`` seconds, ``acc`` metres, ``batt`` percent). The app leaves ``acc`` out when
it is 0 (the phone had no accuracy estimate): such a fix is kept, of unknown accuracy
(tracker.ingest.devices). Every other ``_type`` (``lwt``, ``card``, ``status``, ``waypoint``, ...)
and an empty payload (the app sends one when a friend is deleted) carry no position: counted, not
dead-lettered.

``_type: encrypted`` (``{"_type": "encrypted", "data": "<base64>"}``) is the app's payload
encryption (booklet, "Payload encryption"): libsodium's secretbox (XSalsa20-Poly1305) under the
user's secret as UTF-8, cut to 32 bytes or padded with zero bytes to 32 (`secret_key`), the random
24-byte nonce before the box. With the device's key registered (``PUT /api/v1/tags/{id}/devices``)
it is opened with PyNaCl, as the OwnTracks Recorder opens it, and the message inside is decoded as if
it had come in clear. Without a key it is dead-lettered as ``encrypted_no_key``, and one the key does
not open (a wrong key, an altered message) as ``undecryptable``: either way a device whose fixes are
all refused, which the school must hear of, not a type to count and forget.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections import Counter
from collections.abc import Mapping

import msgspec
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from tracker.ingest.decode import TOO_DEEP, RawMessage, Reason
from tracker.ingest.devices import Decoded, Refused, checked_fix, device_key, oversized, refuse, tag_of

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


class _Encrypted(msgspec.Struct):
    data: str


_typed = msgspec.json.Decoder(_Typed)
_location = msgspec.json.Decoder(_Location)
_encrypted = msgspec.json.Decoder(_Encrypted)
KEY_BYTES = SecretBox.KEY_SIZE  # 32
_BOX_MIN = SecretBox.NONCE_SIZE + SecretBox.MACBYTES  # a nonce and an authenticator, at least


def secret_key(secret: str) -> bytes:
    """The secretbox key the app derives from the user's secret: its UTF-8 bytes, cut to 32 or padded
    with zero bytes to 32 (the Android app's EncryptionProvider, the iOS app and the Recorder agree)."""
    return secret.encode()[:KEY_BYTES].ljust(KEY_BYTES, b"\0")


def opened(payload: bytes, key: bytes) -> bytes:
    """The message inside an ``encrypted`` payload, or Refused(undecryptable)."""
    box = _encrypted.decode(payload)
    try:
        sealed = b64decode("".join(box.data.split()), validate=True)  # line breaks, if any, are not data
    except (binascii.Error, ValueError):
        raise Refused(Reason.UNDECRYPTABLE, "owntracks: encrypted data is not base64") from None
    if len(sealed) < _BOX_MIN:
        raise Refused(Reason.UNDECRYPTABLE, "owntracks: encrypted data is shorter than a nonce and a MAC")
    try:
        return SecretBox(key).decrypt(sealed)  # the nonce is the first 24 bytes
    except CryptoError:
        raise Refused(
            Reason.UNDECRYPTABLE,
            "owntracks: the device's key does not open the encrypted payload (another secret in the app,"
            " or the message was altered)",
        ) from None


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


def decode(
    msg: RawMessage,
    *,
    prefix: str,
    max_bytes: int,
    devices: Mapping[str, str],
    keys: Mapping[str, bytes] | None = None,
) -> Decoded:
    """One OwnTracks message: a fix, a refusal with its reason, or a counted type without position.
    ``keys``: "owntracks:user/device" -> the secretbox key of a device that encrypts its payloads."""
    who = identity(msg.topic, prefix)
    if who is None:
        return refuse(msg, Reason.UNKNOWN_TOPIC, "not an owntracks/{user}/{device} topic")
    if (big := oversized(msg, max_bytes)) is not None:
        return big
    if not msg.payload.strip():
        return Decoded(ignored=Counter(["owntracks:empty"]))
    device = f"{who[0]}/{who[1]}"
    payload, inside = msg.payload, ""
    try:
        kind = _typed.decode(payload).type
        if kind == "encrypted":
            tag_of(devices, PROTOCOL, device)  # an unknown device is that first, whatever it sends
            key = (keys or {}).get(device_key(PROTOCOL, device))
            if key is None:
                raise Refused(
                    Reason.ENCRYPTED_NO_KEY,
                    f"owntracks: device {device[:200]!r} encrypts its payloads and no key is registered"
                    " for it (the app's secret, PUT /api/v1/tags/{id}/devices)",
                )
            payload, inside = opened(payload, key), "decrypted payload: "
            kind = _typed.decode(payload).type
            if kind == "encrypted":
                raise Refused(Reason.SCHEMA_VIOLATION, "owntracks: an encrypted payload inside another")
        if kind is None:
            return refuse(msg, Reason.SCHEMA_VIOLATION, f"owntracks: {inside}the mandatory _type is missing")
        if kind not in POSITION_TYPES:
            return Decoded(ignored=Counter([f"owntracks:{kind if kind in _KNOWN_TYPES else 'other'}"]))
        p = _location.decode(payload)
        tag = tag_of(devices, PROTOCOL, device)
        fix = checked_fix(msg, tag=tag, ts=p.tst, lat=p.lat, lon=p.lon, acc=p.acc, batt=p.batt, sos=False)
    except msgspec.ValidationError as e:
        return refuse(msg, Reason.SCHEMA_VIOLATION, f"owntracks: {inside}{e}")
    except msgspec.DecodeError as e:
        return refuse(msg, Reason.MALFORMED_JSON, f"{inside}{e}")
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
        "lwt",
        "request",
        "status",
        "steps",
        "waypoint",
        "waypoints",
    }
)
