"""A worker whose event loop is busy for longer than its lease (a burst, a long batch, the clock's scan
of a city) is alive: with its lease keeper on a thread and connections of its own
(tracker.cluster.keeper_thread, what a worker runs) it keeps its partitions; the keeper on the
worker's own loop (tracker.cluster.leases.LeaseKeeper alone) cannot renew them and loses them all.
A loop silent for longer than the keeper's stall limit is wedged, not busy: then the keeper renews
nothing, and the partitions go to the others.
And what crosses between the two loops: gains and losses are told on the worker's loop, a graceful
stop runs ``before_release`` there and frees every lease."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import asyncpg
import pytest

from tests.helpers import wait_until
from tracker.cluster.keeper_thread import ThreadedLeaseKeeper
from tracker.cluster.leases import LeaseKeeper
from tracker.store.db import create_pool

TTL_S = 4.0
PARTITIONS = 4


def busy(seconds: float) -> None:
    """Hold the event loop with Python work, as a worker's batches do (the GIL is shared, not given up)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1


async def leases(database_url: str) -> dict[int, tuple[str | None, bool]]:
    """Each partition's owner and whether its lease is still running."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT partition, owner, expires_at > now() AS live FROM partition_leases")
    finally:
        await conn.close()
    return {r["partition"]: (r["owner"], r["live"]) for r in rows}


# (where the keeper runs, how long the worker's event loop is held, the keeper's stall limit (a loop
# silent longer is wedged, not busy), does the worker keep its partitions)
CASES = [
    ("on the worker's event loop, busy 1.5 leases", "loop", 1.5 * TTL_S, None, False),
    ("on a thread of its own, busy 1.5 leases", "thread", 1.5 * TTL_S, 3 * TTL_S, True),
    (
        "on a thread of its own, the loop wedged past the stall limit",
        "thread",
        2.5 * TTL_S,
        0.5 * TTL_S,
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "where", "held_s", "stall_limit_s", "kept"), CASES, ids=[c[0] for c in CASES]
)
async def test_a_busy_worker_keeps_its_partitions_only_with_a_keeper_of_its_own(
    database_url: str, case: str, where: str, held_s: float, stall_limit_s: float | None, kept: bool
) -> None:
    main = threading.get_ident()
    told: list[tuple[str, list[int], bool]] = []  # (gained | lost, partitions, on the worker's thread)

    def gained(ps: list[int]) -> None:
        told.append(("gained", ps, threading.get_ident() == main))

    def lost(ps: list[int]) -> None:
        told.append(("lost", ps, threading.get_ident() == main))

    pool = None
    keeper: Any
    if where == "thread":
        keeper = ThreadedLeaseKeeper(
            database_url, "w", PARTITIONS, TTL_S, stall_limit_s=stall_limit_s, on_gained=gained, on_lost=lost
        )
    else:
        pool = await create_pool(database_url, worker_id="w")
        keeper = LeaseKeeper(pool, "w", PARTITIONS, TTL_S, on_gained=gained, on_lost=lost)
    running = asyncio.ensure_future(keeper.run())
    try:
        await wait_until(lambda: len(keeper.share().tokens) == PARTITIONS, 20, interval=0.05)
        tokens = dict(keeper.share().tokens)
        busy(held_s)
        await asyncio.sleep(0.2)  # what was told meanwhile runs now
        now = await leases(database_url)
        if kept:
            assert dict(keeper.share().tokens) == tokens, case  # the same leases, never lost
            assert now == {p: ("w", True) for p in range(PARTITIONS)}, case
            assert [(kind, ps) for kind, ps, _ in told] == [("gained", list(range(PARTITIONS)))], case
        else:
            # all lost (and maybe taken back at once, under new tokens: a takeover of itself)
            assert ("lost", list(range(PARTITIONS))) in [(kind, ps) for kind, ps, _ in told], case
            assert all(keeper.share().tokens.get(p) != t for p, t in tokens.items()), case
        assert all(on_main for _, _, on_main in told), case  # told on the worker's loop

        # a graceful stop frees every lease it holds
        await asyncio.wait_for(keeper.stop(), 10)
        assert keeper.share().tokens == {}
        assert all(owner is None or not live for owner, live in (await leases(database_url)).values())
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        if pool is not None:
            await pool.close()


async def test_a_graceful_stop_waits_for_before_release_on_the_workers_loop(database_url: str) -> None:
    main = threading.get_ident()
    released: list[tuple[list[int], bool]] = []

    async def before_release(ps: list[int]) -> None:
        await asyncio.sleep(0.1)  # (the batch in flight commits)
        released.append((ps, threading.get_ident() == main))

    keeper = ThreadedLeaseKeeper(database_url, "w", PARTITIONS, TTL_S, before_release=before_release)
    running = asyncio.ensure_future(keeper.run())
    try:
        await wait_until(lambda: len(keeper.share().tokens) == PARTITIONS, 20, interval=0.05)
        assert keeper.owns(0) and not keeper.owns(PARTITIONS)
        await asyncio.wait_for(keeper.stop(), 10)
        assert released == [(list(range(PARTITIONS)), True)]
        assert not keeper.owns(0)
        await asyncio.wait_for(running, 2 * TTL_S)  # the keeper's thread ends after its stop
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_keeper_whose_thread_ends_leaves_the_worker_owning_nothing(database_url: str) -> None:
    """The keeper's thread dies (here: its task cancelled under it): the worker is told it lost every
    partition and owns none, instead of reading on for partitions nobody renews."""
    lost: list[list[int]] = []
    keeper = ThreadedLeaseKeeper(database_url, "w", PARTITIONS, TTL_S, on_lost=lost.append)
    running = asyncio.ensure_future(keeper.run())
    try:
        await wait_until(lambda: len(keeper.share().tokens) == PARTITIONS, 20, interval=0.05)
        assert keeper._loop is not None and keeper._task is not None
        keeper._loop.call_soon_threadsafe(keeper._task.cancel)
        await wait_until(lambda: lost, 10, interval=0.05)
        assert sorted(p for ps in lost for p in ps) == list(range(PARTITIONS))
        assert keeper.share().tokens == {} and not keeper.owns(0)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_keeper_cancelled_as_it_starts_takes_nothing(database_url: str) -> None:
    keeper = ThreadedLeaseKeeper(database_url, "w", PARTITIONS, TTL_S)
    running = asyncio.ensure_future(keeper.run())
    await asyncio.sleep(0)  # its thread started, its keeper not made yet
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await asyncio.sleep(TTL_S / 2)  # more than a round's time
    assert all(owner != "w" for owner, _ in (await leases(database_url)).values())
    assert keeper.share().tokens == {}
