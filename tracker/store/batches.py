"""Batch writes of the hot path: positions (COPY), dead letters (COPY), monitor state checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, overload

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

POSITION_COLUMNS = (
    "tag_id",
    "ts",
    "child_id",
    "lon",
    "lat",
    "acc",
    "batt",
    "seq",
    "sos",
    "received_at",
    "route_distance_m",
)
PositionRecord = tuple[  # acc None: not stated (tracker.ingest.devices)
    str, datetime, int, float, float, float | None, int | None, int | None, bool, datetime, float | None
]
DeadLetterRecord = tuple[datetime, str, bytes, str, str]

_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 UTC, PostgreSQL's timestamps' zero, in Unix µs
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # binary COPY: signature, flags, extension length
_COPY_TRAILER = b"\xff\xff"
_NULL = -1  # a field's length in binary COPY: NULL
_FIELDS = len(POSITION_COLUMNS)


def unix_us(ts: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Unix times as the microseconds of ``datetime.fromtimestamp(t, UTC)`` (what asyncpg stores of
    such a datetime): CPython rounds the fraction of a second to a microsecond, half to even
    (``_PyTime_DoubleToDenominator``), as ``np.rint`` does; the same steps here, so a fix's stored
    ``ts`` (half of the positions' key) is the same whichever way it is written."""
    frac, whole = np.modf(ts)
    us = np.rint(frac * 1e6)
    up, down = us >= 1e6, us < 0
    us[up] -= 1e6
    whole[up] += 1.0
    us[down] += 1e6
    whole[down] -= 1.0
    return whole.astype(np.int64) * 1_000_000 + us.astype(np.int64)


class PositionRows(Sequence[PositionRecord]):
    """A batch's admitted fixes as the positions table stores them, in columns: COPYed in PostgreSQL's
    binary format made from the arrays at once (``copy_data``), where asyncpg's
    ``copy_records_to_table`` encoded a tuple of Python objects field by field (two datetimes each),
    some 2 µs a fix. As a sequence, each row is the ``PositionRecord`` it stands for (made on demand:
    the school live map, the fixes that may be stored already)."""

    __slots__ = ("acc", "batt", "child", "lat", "lon", "received", "route_m", "seq", "sos", "tags", "ts")

    def __init__(
        self,
        tags: list[str],
        ts: npt.NDArray[np.float64],
        child: npt.NDArray[np.int64],
        lon: npt.NDArray[np.float64],
        lat: npt.NDArray[np.float64],
        acc: npt.NDArray[np.float64],  # nan: NULL
        batt: list[int | None],
        seq: list[int | None],
        sos: list[bool],
        received: npt.NDArray[np.float64],
        route_m: npt.NDArray[np.float64],  # nan: NULL
    ) -> None:
        self.tags, self.ts, self.child, self.lon, self.lat, self.acc = tags, ts, child, lon, lat, acc
        self.batt, self.seq, self.sos, self.received, self.route_m = batt, seq, sos, received, route_m

    def __len__(self) -> int:
        return len(self.tags)

    @overload
    def __getitem__(self, i: int) -> PositionRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[PositionRecord]: ...
    def __getitem__(self, i: int | slice) -> PositionRecord | list[PositionRecord]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        acc, route = float(self.acc[i]), float(self.route_m[i])
        return (
            self.tags[i],
            datetime.fromtimestamp(float(self.ts[i]), UTC),
            int(self.child[i]),
            float(self.lon[i]),
            float(self.lat[i]),
            None if acc != acc else acc,
            self.batt[i],
            self.seq[i],
            self.sos[i],
            datetime.fromtimestamp(float(self.received[i]), UTC),
            None if route != route else route,
        )

    def select(self, which: npt.NDArray[np.bool_]) -> PositionRows:
        """The rows where ``which`` is true, in their order."""
        at = np.flatnonzero(which).tolist()
        return PositionRows(
            [self.tags[k] for k in at],
            self.ts[which],
            self.child[which],
            self.lon[which],
            self.lat[which],
            self.acc[which],
            [self.batt[k] for k in at],
            [self.seq[k] for k in at],
            [self.sos[k] for k in at],
            self.received[which],
            self.route_m[which],
        )

    def copy_data(self) -> bytes:
        """The rows in PostgreSQL's binary COPY format, columns in ``POSITION_COLUMNS``' order (text,
        timestamptz, bigint, float8, float8, real, smallint, bigint, bool, timestamptz, real): the bytes
        asyncpg's ``copy_records_to_table`` sends for the records, built a column at a time."""
        n = len(self)
        tags = [t.encode() for t in self.tags]
        tag_len = np.fromiter(map(len, tags), dtype=np.int64, count=n)
        batt_null = np.fromiter((b is None for b in self.batt), dtype=bool, count=n)
        seq_null = np.fromiter((q is None for q in self.seq), dtype=bool, count=n)
        batt = np.array([0 if b is None else b for b in self.batt], dtype=np.int16)
        seq = np.array([0 if q is None else q for q in self.seq], dtype=np.int64)
        acc_null, route_null = np.isnan(self.acc), np.isnan(self.route_m)
        acc, route_m = _real(self.acc), _real(self.route_m)
        # (field count, then each field: its length and its bytes, or the length -1 for NULL)
        fields: list[tuple[npt.NDArray[Any] | None, npt.NDArray[np.bool_] | None, int]] = [
            (None, None, 0),  # the tag: its own length
            ((unix_us(self.ts) - _PG_EPOCH_US).astype(">i8"), None, 8),
            (self.child.astype(">i8"), None, 8),
            (self.lon.astype(">f8"), None, 8),
            (self.lat.astype(">f8"), None, 8),
            (acc, acc_null, 4),
            (batt.astype(">i2"), batt_null, 2),
            (seq.astype(">i8"), seq_null, 8),
            (np.array(self.sos, dtype=np.uint8), None, 1),
            ((unix_us(self.received) - _PG_EPOCH_US).astype(">i8"), None, 8),
            (route_m, route_null, 4),
        ]
        sizes = np.full(n, 2 + 4 * _FIELDS, dtype=np.int64) + tag_len
        for _, null, width in fields[1:]:
            sizes += width if null is None else np.where(null, 0, width)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        starts += len(_COPY_HEADER)
        out = np.zeros(len(_COPY_HEADER) + int(sizes.sum()) + len(_COPY_TRAILER), dtype=np.uint8)
        out[: len(_COPY_HEADER)] = np.frombuffer(_COPY_HEADER, dtype=np.uint8)
        out[len(out) - len(_COPY_TRAILER) :] = np.frombuffer(_COPY_TRAILER, dtype=np.uint8)
        _put(out, starts, np.full(n, _FIELDS, dtype=">i2"))
        at = starts + 2
        _put(out, at, tag_len.astype(">i4"))
        at += 4
        if n:  # the tags' bytes, one after another, each at its row's place
            joined = np.frombuffer(b"".join(tags), dtype=np.uint8)
            first = np.zeros(n, dtype=np.int64)
            np.cumsum(tag_len[:-1], out=first[1:])
            out[np.repeat(at - first, tag_len) + np.arange(joined.size)] = joined
        at += tag_len
        for values, null, width in fields[1:]:
            assert values is not None
            if null is None:
                _put(out, at, np.full(n, width, dtype=">i4"))
                _put(out, at + 4, values)
                at += 4 + width
            else:
                _put(out, at, np.where(null, _NULL, width).astype(">i4"))
                there = ~null
                _put(out, at[there] + 4, values[there])
                at += 4 + np.where(null, 0, width)
        return out.tobytes()


def _real(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """float8 values as a real column stores them (the nearest float4, as asyncpg's cast); a finite
    value beyond float4's range is refused, as asyncpg refuses it."""
    with np.errstate(over="ignore"):
        out = values.astype(">f4")
    if np.any(np.isinf(out) & ~np.isinf(values)):
        raise ValueError("value out of float32 range")
    return out


def _put(out: npt.NDArray[np.uint8], at: npt.NDArray[np.int64], values: npt.NDArray[Any]) -> None:
    """Write each value's bytes (one fixed width, already in network order) at its offset in ``out``."""
    width = values.dtype.itemsize
    if at.size:
        out[at[:, None] + np.arange(width)] = np.ascontiguousarray(values).view(np.uint8).reshape(-1, width)


class StoredBefore(Exception):
    """A fix given to ``store_positions`` as new was stored already: the transaction is spoiled; run it
    again with every fix as one that may be stored (``new=()``)."""


_INSERT_MAYBE_STORED = (
    f"INSERT INTO positions ({', '.join(POSITION_COLUMNS)})"
    " SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::float8[], $5::float8[],"
    " $6::real[], $7::smallint[], $8::bigint[], $9::bool[], $10::timestamptz[], $11::real[])"
    " ON CONFLICT (tag_id, ts) DO NOTHING"
)


async def store_positions(
    conn: asyncpg.Connection, maybe_stored: Sequence[PositionRecord], *, new: Sequence[PositionRecord] = ()
) -> int:
    """Store fixes, idempotent on tag + timestamp; returns how many were not stored before. Must run
    inside a transaction.

    ``new``: fixes that should not be stored yet (the monitor decided them: each is later than its
    child's last decided fix), COPYed straight into the table. Should one be there after all (the same
    tag and time as a fix that decided nothing), raises StoredBefore. ``maybe_stored``: fixes that may
    be stored already (a redelivery; a duplicate): one INSERT of arrays that skips those.

    Round trips are what a batch's commit waits for (and, while the next batch is decided in a worker
    thread, each reply waits for the interpreter besides): a savepoint around the COPY and a staging
    table for the others cost five more per batch, for a collision that almost never happens."""
    stored = 0
    if new:
        try:
            if isinstance(new, PositionRows):
                data = memoryview(new.copy_data())  # (bytes would be taken for a file's path)
                await conn.copy_to_table("positions", source=data, columns=POSITION_COLUMNS, format="binary")
            else:
                await conn.copy_records_to_table("positions", records=new, columns=POSITION_COLUMNS)
        except asyncpg.UniqueViolationError as e:
            raise StoredBefore(str(e)) from e
        stored = len(new)
    if maybe_stored:
        columns = [list(column) for column in zip(*maybe_stored, strict=True)]
        status = await conn.execute(_INSERT_MAYBE_STORED, *columns)
        stored += int(status.split()[-1])
    return stored


async def store_dead_letters(conn: asyncpg.Connection, records: Sequence[DeadLetterRecord]) -> None:
    if records:
        await conn.copy_records_to_table(
            "dead_letters", records=records, columns=("received_at", "topic", "payload", "reason", "detail")
        )


async def load_child_states(
    conn: asyncpg.Connection | asyncpg.Pool, child_ids: Sequence[int]
) -> dict[int, str]:
    """Checkpointed states: child id -> the checkpoint's JSON text (``decode_state`` makes it the dict
    ``ChildState.from_json`` reads). Read as text and decoded by the caller where it packs them (a
    worker thread), not by the connection's jsonb codec (``json.loads``) on the event loop: a city's
    first clock tick decoded 400,000 checkpoints there, ~4 CPU-s with the loop held, and each chunk's
    decoded dicts alive at once left ~20 MiB of Python's small-object heap free but held among the
    packed states (bench/worker_memory.py)."""
    rows = await conn.fetch(
        "SELECT child_id, state::text FROM child_state WHERE child_id = ANY($1::bigint[])", child_ids
    )
    return {r[0]: r[1] for r in rows}


_json_decode = msgspec.json.Decoder().decode


def decode_state(text: str) -> dict[str, Any]:
    """A checkpoint's JSON text (``load_child_states``) as the dict its jsonb decodes to: the same
    values as ``json.loads`` gives (PostgreSQL writes jsonb's numbers and strings out as JSON),
    several times faster."""
    state: dict[str, Any] = _json_decode(text)
    return state


_json = msgspec.json.Encoder()  # several times faster than json.dumps on the monitor's state dicts


def encode_state(state: dict[str, Any]) -> str:
    """A state checkpoint's JSON, made where the batch is decided (a worker thread), not on the event
    loop that writes it."""
    return _json.encode(state).decode()


async def save_child_states(conn: asyncpg.Connection, states: dict[int, str]) -> None:
    """Checkpoint states (child id -> ``encode_state`` of the state)."""
    if not states:
        return
    await conn.execute(
        "INSERT INTO child_state (child_id, state, updated_at)"
        " SELECT c, s::jsonb, now() FROM unnest($1::bigint[], $2::text[]) AS t(c, s)"
        " ON CONFLICT (child_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
        list(states),
        list(states.values()),
    )
