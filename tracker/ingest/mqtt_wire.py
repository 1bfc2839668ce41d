"""MQTT's wire encoding where the tracker reads packets itself (the ingestor's buffer reader, the
broker probe)."""

from __future__ import annotations


def variable_int(
    buf: bytes | bytearray | memoryview, at: int, end: int | None = None
) -> tuple[int, int] | None:
    """MQTT's Variable Byte Integer (a remaining length, a properties' length) at ``buf[at]``: 1 to 4
    bytes of 7 bits each, low first. (value, the index after it), or None when it is not whole before
    ``end`` (the buffer's length by default) or runs past 4 bytes."""
    stop = len(buf) if end is None else end
    value, shift, i = 0, 0, at
    while i < stop and i - at < 4:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i
    return None
