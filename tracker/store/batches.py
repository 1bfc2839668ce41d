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
PositionRecord = tuple[
    str, datetime, int, float, float, float, int | None, int | None, bool, datetime, float | None
]
DeadLetterRecord = tuple[datetime, str, bytes, str, str]


async def store_positions(
    conn: asyncpg.Connection, records: Sequence[PositionRecord], *, new: Sequence[PositionRecord] = ()
) -> int:
    """Store fixes, idempotent on tag + timestamp; returns how many were not stored before. Must run
    inside a transaction.

    ``records``: fixes that may be stored already (a redelivery): COPYed into a staging table, then
    inserted unless there. ``new``: fixes that should not be (the monitor decided them: each is later
    than its child's last decided fix), COPYed straight into the table, which costs PostgreSQL about
    half as much; should one be there after all (the same tag and time as a fix that decided nothing),
    they take the staging way too."""
    stored = 0
    if new:
        try:
            async with conn.transaction():  # a savepoint
                await conn.copy_records_to_table("positions", records=new, columns=POSITION_COLUMNS)
            stored = len(new)
        except asyncpg.UniqueViolationError:
            records = [*new, *records]
    if not records:
        return stored
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS positions_stage (LIKE positions INCLUDING DEFAULTS)"
        " ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table("positions_stage", records=records, columns=POSITION_COLUMNS)
    cols = ", ".join(POSITION_COLUMNS)
    status = await conn.execute(
        f"INSERT INTO positions ({cols}) SELECT DISTINCT ON (tag_id, ts) {cols} FROM positions_stage"
        " ON CONFLICT (tag_id, ts) DO NOTHING"
    )
    return stored + int(status.split()[-1])


async def store_dead_letters(conn: asyncpg.Connection, records: Sequence[DeadLetterRecord]) -> None:
    if records:
        await conn.copy_records_to_table(
            "dead_letters", records=records, columns=("received_at", "topic", "payload", "reason", "detail")
        )


async def load_child_states(
    conn: asyncpg.Connection | asyncpg.Pool, child_ids: Sequence[int]
) -> dict[int, Any]:
    rows = await conn.fetch(
        "SELECT child_id, state FROM child_state WHERE child_id = ANY($1::bigint[])", child_ids
    )
    return {r["child_id"]: r["state"] for r in rows}


_json = msgspec.json.Encoder()  # several times faster than json.dumps on the monitor's state dicts


async def save_child_states(conn: asyncpg.Connection, states: dict[int, dict[str, Any]]) -> None:
    if not states:
        return
    ids = list(states)
    await conn.execute(
        "INSERT INTO child_state (child_id, state, updated_at)"
        " SELECT c, s::jsonb, now() FROM unnest($1::bigint[], $2::text[]) AS t(c, s)"
        " ON CONFLICT (child_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
        ids,
        [_json.encode(states[i]).decode() for i in ids],
    )
