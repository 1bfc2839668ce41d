"""Batch writes of the hot path: positions (COPY), dead letters (COPY), monitor state checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

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
