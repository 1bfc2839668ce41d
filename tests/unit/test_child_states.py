"""The committed states held compact (tracker.child_states over tracker.compact_states): a batch
starts from states made again from the committed ones, says what it moved by identity, and stores
again only those; what it left alone keeps its bytes."""

from __future__ import annotations

import asyncio

from tracker.child_states import ChildStates
from tracker.compact_states import DENSE_MAX, CompactStates
from tracker.monitor import ChildState


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_batch_moves_some_states_and_stores_those_alone() -> None:
    states = ChildStates(pool=None)  # type: ignore[arg-type]  # every child is in memory: no read
    states.committed.update({1: ChildState(last_ts=10.0), 2: ChildState(last_ts=20.0)})
    bytes_of_2 = states.committed._blob[2]

    batch = _run(states.of_batch([2, 1, 1]))
    assert batch == {1: ChildState(last_ts=10.0), 2: ChildState(last_ts=20.0)}
    moved = batch[1].copy()
    moved.last_ts = 11.0
    batch[1] = moved
    assert states.changed(batch) == [(1, moved)]  # 2 is the object the batch started from

    states.hold(batch)
    # the next batch starts from the one before it, committed or not
    after = _run(states.of_batch([1]))
    assert after[1] is moved and states.changed(after) == []
    states.commit(batch)
    assert states.committed[1] == moved and states.committed[1] is not moved
    assert states.committed._blob[2] is bytes_of_2  # left alone: not stored again
    assert states.latest(2) == ChildState(last_ts=20.0)


def test_a_discarded_batch_leaves_the_committed_states() -> None:
    states = ChildStates(pool=None)  # type: ignore[arg-type]
    states.committed[5] = ChildState(last_ts=1.0, zones_in={3})
    batch = _run(states.of_batch([5]))
    moved = batch[5].copy()
    moved.zones_in = {3, 4}
    batch[5] = moved
    states.hold(batch)
    assert states.latest(5) is moved
    states.discard_ahead()
    assert states.latest(5) == ChildState(last_ts=1.0, zones_in={3})


# A state's bytes leave out the fields holding their constant default (None, False, 0, 0.0: that very
# object) and store the rest; made again, every field has its value, its type and its place.
STATES_MADE_AGAIN = [
    ChildState(),
    ChildState(last_ts=10.0, last_lon=127.0, last_lat=37.5, last_acc=8.0),
    ChildState(off_count=0.0, on_count=0, signal_lost=0, off_route=None, at="school"),  # type: ignore[arg-type]
    ChildState(last_ts=0.0, off_score=-0.0, speed_mps=float("inf"), fast_measures=True),
    ChildState(
        zone_lingers={4: (2.0, 1.0)}, zones_in={3, 9}, place_counts={"home": 0}, arrived={"home": 5.0}
    ),
    ChildState(zone_lingers={4: (2.0, 1.0, 127.01, 37.52, 12.5), 7: (0.5, 3.0)}),  # (an idle run: its start)
    ChildState(pace=[1.0, 2.0, 3.0, 4.0], fast_from=[1.0, 2.0, 3.0, 4.0], clock=[600.0, 0.5, 0.25]),
    ChildState(not_arrived=["school@08:30"], low_battery_day="2026-12-06", heard_ts=3.5),
]


def test_a_state_is_made_again_with_its_values_types_and_order() -> None:
    from tracker.compact_states import _unpack, pack

    shared = [1.0, 2.0]
    twice = ChildState(pace=shared, fast_from=shared)  # one list in two fields: two equal lists again
    for state in [*STATES_MADE_AGAIN, twice]:
        again = _unpack(pack(state)[0])
        assert again == state and again is not state
        assert list(again.__dict__) == list(state.__dict__)
        assert [type(v) for v in again.__dict__.values()] == [type(v) for v in state.__dict__.values()]
        assert all(  # its own containers, never the template's nor the state's
            a is not b
            for a, b in zip(again.__dict__.values(), state.__dict__.values(), strict=True)
            if isinstance(a, dict | set | list)
        )
    assert len(pack(ChildState())[0]) < 24  # (the nine empty containers and the mask)


def test_states_are_packed_from_several_threads_at_once() -> None:
    import threading

    from tracker.compact_states import _unpack, pack

    wrong: list[ChildState] = []

    def pack_many(k: int) -> None:
        for i in range(2000):
            state = ChildState(last_ts=float(i * k), off_count=i % 5, zones_in={k})
            if _unpack(pack(state)[0]) != state:
                wrong.append(state)

    threads = [threading.Thread(target=pack_many, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_get_many_is_get_of_each_child() -> None:
    states = CompactStates()
    near, far = ChildState(last_ts=1.0, zones_in={3}), ChildState(last_ts=2.0)
    states[5] = near
    states[DENSE_MAX + 7] = far
    children = [5, 6, DENSE_MAX + 7, DENSE_MAX + 8, 10**9, -1, 0]
    assert states.get_many(children) == [states.get(c) for c in children]
    assert states.get_many(children)[:3] == [near, None, far]
    assert states.get_many([]) == []
    assert CompactStates().get_many([1, DENSE_MAX + 1]) == [None, None]


def test_put_many_stores_as_setting_each_child_does() -> None:
    one, many = CompactStates(), CompactStates()
    items = [
        (3, ChildState(last_ts=5.0, at="school", not_arrived=["a"])),
        (5000, ChildState(heard_ts=9.0, signal_lost=True)),
        (DENSE_MAX + 1, ChildState(last_ts=1.0)),
    ]
    one[3] = ChildState()
    many[3] = ChildState()
    for child, state in items:
        one[child] = state
    many.put_many(items)
    assert len(one) == len(many) == 3
    assert [one.get(c) for c, _ in items] == [many.get(c) for c, _ in items] == [s for _, s in items]
    for column in ("_blob", "_heard", "_flags", "_settled"):
        a, b = getattr(one, column), getattr(many, column)
        assert a.size == b.size and all(x == y or (x != x and y != y) for x, y in zip(a, b, strict=True))
