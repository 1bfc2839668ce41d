"""MQTT's Variable Byte Integer as the tracker's own packet readers read it (tracker.ingest.mqtt_wire)."""

from __future__ import annotations

import pytest

from tracker.ingest.mqtt_wire import variable_int

# (bytes, where it starts, end, what is read: (value, index after) or None)
CASES = [
    (b"\x00", 0, None, (0, 1)),
    (b"\x7f", 0, None, (127, 1)),
    (b"\x80\x01", 0, None, (128, 2)),
    (b"\xff\x7f", 0, None, (16_383, 2)),
    (b"\xff\xff\xff\x7f", 0, None, (268_435_455, 4)),  # the largest MQTT allows
    (b"\x30\xc1\x02rest", 1, None, (321, 3)),  # after a fixed header's first byte
    (b"\x80", 0, None, None),  # cut short: not whole yet
    (b"\x80\x01", 0, 1, None),  # whole only past `end`
    (b"\xff\xff\xff\xff\x01", 0, None, None),  # five bytes: not MQTT
]


@pytest.mark.parametrize(("data", "at", "end", "read"), CASES)
def test_variable_int(data: bytes, at: int, end: int | None, read: tuple[int, int] | None) -> None:
    assert variable_int(data, at, end) == read
