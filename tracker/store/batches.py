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


async def store_positions(conn: asyncpg.Connection, records: Sequence[PositionRecord]) -> int:
    """COPY the fixes into a staging table, then insert those not stored yet (idempotent on tag + ts).
    Returns how many were new. Must run inside a transaction."""
    if not records:
        return 0
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
    return int(status.split()[-1])


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
