"""A batch's positions in columns (tracker.store.batches.PositionRows): each row is the record it
stands for, and the binary COPY stores the microseconds a datetime of it would."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest

from tracker.store.batches import _PG_EPOCH_US, PositionRows, unix_us


def rows() -> PositionRows:
    return PositionRows(
        ["tag-1", "é", "a" * 64],
        np.array([1.7e9 + 0.1234565, 946684800.0, 4102444799.9999995]),
        np.array([1, 2, 3], dtype=np.int64),
        np.array([126.9, -0.0, 180.0]),
        np.array([37.5, 0.0, -90.0]),
        np.array([8.0, np.nan, 0.1]),
        [80, None, 0],
        [None, 4294967295, 0],
        [False, True, False],
        np.array([1.7e9 + 0.5, 1.7e9 + 0.25, 1.7e9]),
        np.array([np.nan, 12.5, 3.3]),
    )


def test_unix_us_rounds_as_datetime_fromtimestamp() -> None:
    rng = random.Random(7)
    values = [rng.uniform(946684800.0, 4102444800.0) for _ in range(20_000)]
    values += [1.7e9 + k / 1e6 + 5e-7 for k in range(200)]  # halves of a microsecond, as near as floats go
    values += [1.7e9 + 0.9999995, 1.7e9 + 0.9999996, 1234567890.0000005, 1e9 + 0.4999995]
    got = unix_us(np.array(values)).tolist()
    for v, us in zip(values, got, strict=True):
        at = datetime.fromtimestamp(v, UTC)
        expected = int((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000 + at.microsecond
        assert us == expected, v


def test_a_row_is_the_record_it_stands_for() -> None:
    r = rows()
    assert r[1] == (
        "é",
        datetime.fromtimestamp(946684800.0, UTC),
        2,
        -0.0,
        0.0,
        None,
        None,
        4294967295,
        True,
        datetime.fromtimestamp(1.7e9 + 0.25, UTC),
        12.5,
    )
    assert r[0][5] == 8.0 and r[0][10] is None
    assert list(r.select(np.array([False, True, True]))) == [r[1], r[2]]
    assert len(r.select(np.zeros(3, dtype=bool)).copy_data()) == 21  # header and trailer


def _fields(data: bytes) -> list[list[bytes | None]]:
    """Decode binary COPY data into each row's raw fields (None: NULL)."""
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00" and data[11:19] == bytes(8)
    at, out = 19, []
    while True:
        count = int.from_bytes(data[at : at + 2], "big", signed=True)
        at += 2
        if count == -1:
            assert at == len(data)
            return out
        row: list[bytes | None] = []
        for _ in range(count):
            n = int.from_bytes(data[at : at + 4], "big", signed=True)
            at += 4
            row.append(None if n < 0 else data[at : at + n])
            at += max(n, 0)
        out.append(row)


def test_copy_data_holds_each_field_in_postgresql_binary_form() -> None:
    r = rows()
    got = _fields(r.copy_data())
    assert len(got) == 3 and all(len(row) == 11 for row in got)
    first, second = got[0], got[1]
    assert first[0] == b"tag-1" and second[0] == "é".encode() and got[2][0] == b"a" * 64
    ts = datetime.fromtimestamp(1.7e9 + 0.1234565, UTC)
    us = round((ts - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds() * 1e6)
    assert first[1] == us.to_bytes(8, "big", signed=True)
    assert second[1] == (946684800 * 1_000_000 - _PG_EPOCH_US).to_bytes(8, "big")
    assert first[2] == (1).to_bytes(8, "big")
    assert first[3] == np.array(126.9, ">f8").tobytes() and second[3] == np.array(-0.0, ">f8").tobytes()
    assert first[5] == np.array(8.0, ">f4").tobytes() and second[5] is None
    assert first[6] == (80).to_bytes(2, "big") and second[6] is None
    assert first[7] is None and second[7] == (4294967295).to_bytes(8, "big")
    assert first[8] == b"\x00" and second[8] == b"\x01"
    assert first[10] is None and second[10] == np.array(12.5, ">f4").tobytes()


def test_a_real_beyond_float4_is_refused_as_asyncpg_refuses_it() -> None:
    r = rows()
    r.route_m[2] = 1e39
    with pytest.raises(ValueError):
        r.copy_data()
