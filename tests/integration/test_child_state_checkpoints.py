"""A child's state read back from its PostgreSQL checkpoint (tracker.child_states over
tracker.store.batches): read as JSON text and decoded where it is packed, it is the state that was
checkpointed, and the one the connection's jsonb codec (``json.loads``) gives."""

from __future__ import annotations

from tests.helpers import build_small_world
from tracker.child_states import ChildStates
from tracker.monitor import ChildState
from tracker.store.batches import encode_state, save_child_states
from tracker.store.db import create_pool

# jsonb's own numbers (numeric: written out as they were read), ids as keys, sets as lists
CHECKPOINTED = [
    ChildState(),
    ChildState(last_ts=10.0, last_lon=127.0, last_lat=37.5, last_acc=8.0, at="school"),
    ChildState(
        zone_lingers={4: (2.0, 1.0), 6: (1.5, 2.0, 127.01, 37.52, 12.5)},
        zones_in={3, 9},
        place_counts={"home": 0},
        arrived={"home": 5.0},
    ),
    ChildState(pace=[1.0, 2.0, 3.0, 4.0], fast_from=[1.0, 2.0, 3.0, 4.0], clock=[600.0, 0.5, 0.25]),
    ChildState(not_arrived=["school@08:30"], low_battery_day="2026-12-06", heard_ts=3.5, signal_lost=True),
    ChildState(last_ts=1_765_000_000.123456, last_lon=126.97812345678901, last_lat=37.5, last_acc=1e-7),
    ChildState(zone_counts={7: 0.1 + 0.2}, zones_possible={7, 2_000_000_000}, speed_mps=5e-324),
    ChildState(off_score=1.7976931348623157e308, clock=[600.0, -0.0, 2.5e-10], on_count=3),
]


async def test_states_read_back_from_their_checkpoints_are_those_checkpointed(database_url: str) -> None:
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            world = await build_small_world(conn, [f"Kid{i}" for i in range(len(CHECKPOINTED))])
            kids = sorted(k.child_id for k in world.kids.values())
            wanted = dict(zip(kids, CHECKPOINTED, strict=True))
            await save_child_states(conn, {c: encode_state(s.to_json()) for c, s in wanted.items()})
            by_codec = {
                r["child_id"]: ChildState.from_json(r["state"])
                for r in await conn.fetch("SELECT child_id, state FROM child_state")
            }
        states = ChildStates(pool)
        await states.load(kids)
        assert len(states.committed) == len(kids)
        for c, state in wanted.items():
            assert states.committed[c] == by_codec[c] == ChildState.from_json(state.to_json())
            assert states.committed[c].__dict__ == by_codec[c].__dict__
            again = states.committed[c].__dict__.values()
            assert [type(v) for v in again] == [type(v) for v in by_codec[c].__dict__.values()]
    finally:
        await pool.close()
