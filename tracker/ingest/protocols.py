"""Which decoder a message goes to, for the device protocols beside the native one (OwnTracks over
MQTT and HTTP, OsmAnd over HTTP). The native topics (tracker/v1/...) stay with tracker.ingest.decode."""

from __future__ import annotations

from collections.abc import Mapping

from tracker.ingest import osmand, owntracks
from tracker.ingest.decode import RawMessage
from tracker.ingest.devices import Decoded


def is_device_message(topic: str, prefix: str) -> bool:
    return topic.startswith((prefix + "owntracks/", "http/"))


def decode_device(
    msg: RawMessage,
    *,
    prefix: str,
    max_bytes: int,
    devices: Mapping[str, str],
    keys: Mapping[str, bytes] | None = None,
) -> Decoded:
    """``devices``: "protocol:device" -> tag id; ``keys``: "owntracks:user/device" -> the key of a
    device that encrypts its payloads (tracker.ingest.owntracks)."""
    if msg.topic == osmand.HTTP_TOPIC:
        return osmand.decode(msg, max_bytes=max_bytes, devices=devices)
    return owntracks.decode(msg, prefix=prefix, max_bytes=max_bytes, devices=devices, keys=keys)
