"""Partition leases against the real PostgreSQL (tracker.cluster.leases): keepers take their fair
share, a worker that joins gets a share handed over, one that stops renewing is fenced by itself
before its leases lapse and then taken over, one that stops hands everything over.

Each keeper has a pool and a worker id of its own, as separate processes would. Most tests run the
rounds by hand, in a chosen order (``LeaseKeeper.round``); the ones about time run the keepers' own
loops with a short TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tests.helpers import wait_until
from tracker.cluster.fencing import fence
from tracker.cluster.leases import LeaseKeeper
from tracker.store.db import create_pool

P = 64


class Told:
    """What a keeper told its worker, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []

    def gained(self, partitions: list[int]) -> None:
        self.calls.append(("gained", partitions))

    def lost(self, partitions: list[int]) -> None:
        self.calls.append(("lost", partitions))

    def of(self, kind: str) -> list[int]:
        return sorted(p for k, ps in self.calls if k == kind for p in ps)


@pytest.fixture
async def make_keeper(database_url: str) -> AsyncIterator[Callable[..., Awaitable[tuple[LeaseKeeper, Told]]]]:
    pools: list[asyncpg.Pool] = []

    async def make(
        worker: str, partitions: int = P, ttl_s: float = 2.0, **kw: Any
    ) -> tuple[LeaseKeeper, Told]:
        pool = await create_pool(database_url, min_size=1, max_size=3)
        pools.append(pool)
        told = Told()
        keeper = LeaseKeeper(pool, worker, partitions, ttl_s, on_gained=told.gained, on_lost=told.lost, **kw)
        return keeper, told

    yield make
    for pool in pools:
        await pool.close()


async def _settle(keepers: list[LeaseKeeper]) -> None:
    """Rounds in turn until a whole pass changes nothing."""
    for _ in range(10):
        before = [dict(k.owned) for k in keepers]
        for k in keepers:
            await k.round()
        if [k.owned for k in keepers] == before:
            return
    raise AssertionError("the keepers did not settle")


async def _leases(pool: asyncpg.Pool) -> dict[int, tuple[str | None, int, bool]]:
    """partition -> (owner, token, lease still running on the server)."""
    rows = await pool.fetch(
        "SELECT partition, owner, token, coalesce(expires_at > now(), false) AS running FROM partition_leases"
    )
    return {r["partition"]: (r["owner"], r["token"], r["running"]) for r in rows}


def _held_by(leases: dict[int, tuple[str | None, int, bool]], worker: str) -> dict[int, int]:
    return {p: token for p, (owner, token, running) in leases.items() if owner == worker and running}


@pytest.mark.parametrize(
    ("workers", "shares"),
    [
        (1, [64]),
        (2, [32, 32]),
        (3, [22, 22, 20]),  # ceil(64 / 3) = 22 each at most; the last to take finds 20 left
    ],
)
async def test_keepers_take_their_fair_share_and_nothing_twice(
    make_keeper: Any, workers: int, shares: list[int]
) -> None:
    keepers = [(await make_keeper(f"w{i}"))[0] for i in range(workers)]
    await _settle(keepers)
    assert [len(k.owned) for k in keepers] == shares
    owned = [p for k in keepers for p in k.owned]
    assert sorted(owned) == list(range(P))  # every partition, each once
    leases = await _leases(keepers[0].pool)
    for k in keepers:
        assert _held_by(leases, k.worker_id) == k.owned  # the server agrees, token for token
        assert k.live_workers == workers
    assert all(token >= 1 for _, token, _ in leases.values())


async def test_a_worker_that_joins_gets_a_share_handed_over_after_before_release(make_keeper: Any) -> None:
    """The one above its share gives up its highest partitions: first ``before_release`` (while it
    still holds them on the server), then the leases are freed and taken at once by the newcomer,
    each with a new token."""
    seen_in_before_release: list[dict[int, tuple[str | None, int, bool]]] = []
    released: list[list[int]] = []

    async def before_release(partitions: list[int]) -> None:
        released.append(partitions)
        seen_in_before_release.append(await _leases(first.pool))

    first, told_first = await make_keeper("first", before_release=before_release)
    await first.round()
    tokens_before = dict(first.owned)
    assert len(tokens_before) == P and told_first.of("gained") == list(range(P))

    second, told_second = await make_keeper("second")
    await _settle([second, first])
    assert released == [list(range(32, 64))]
    assert set(_held_by(seen_in_before_release[0], "first")) == set(range(P))  # still its own then
    assert sorted(first.owned) == list(range(32)) and told_first.of("lost") == list(range(32, 64))
    assert sorted(second.owned) == list(range(32, 64)) and told_second.of("gained") == list(range(32, 64))
    assert all(second.owned[p] == tokens_before[p] + 1 for p in second.owned)
    assert all(first.owned[p] == tokens_before[p] for p in first.owned)  # kept, not taken again


# What a round does with a lease it holds (partition 2 of 4), after the server's row was changed.
# A lease is the keeper's as long as owner and token are: the token is what proves nobody else wrote.
# A lost partition free again (or in its own name) is taken back at once, with a new token.
ROUND_CASES = [
    ("nothing changed", None, "kept"),
    ("expired, nobody took it", "expires_at = now() - interval '1 second'", "kept"),
    ("taken over by another worker", "owner = 'other', token = token + 1", "lost"),
    ("freed by hand", "owner = NULL, expires_at = now()", "lost, taken again"),
    ("token moved on under its own name (its id reused)", "token = token + 1", "lost, taken again"),
]


@pytest.mark.parametrize(("case", "change", "verdict"), ROUND_CASES, ids=[c[0] for c in ROUND_CASES])
async def test_a_round_keeps_a_lease_only_while_owner_and_token_are_its_own(
    make_keeper: Any, case: str, change: str | None, verdict: str
) -> None:
    keeper, told = await make_keeper("me", partitions=4)
    await keeper.round()
    token = keeper.owned[2]
    if change is not None:
        await keeper.pool.execute(f"UPDATE partition_leases SET {change} WHERE partition = 2")
    await keeper.round()
    lost = told.of("lost") == [2]
    again = told.of("gained") == [0, 1, 2, 2, 3]
    outcome = "lost, taken again" if lost and again else "lost" if lost else "kept"
    assert outcome == verdict
    if verdict == "kept":
        assert keeper.owned[2] == token
    elif verdict == "lost":
        assert 2 not in keeper.owned
    else:
        assert keeper.owned[2] > token
    assert _held_by(await _leases(keeper.pool), "me") == keeper.owned


class Pausable:
    """A keeper's sleep between rounds that can be made to last (a process paused, or cut off)."""

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.running.set()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.running.wait()


async def test_a_keeper_that_stops_renewing_is_fenced_by_itself_first_then_taken_over(
    make_keeper: Any,
) -> None:
    ttl, margin = 2.0, 0.8
    pause = Pausable()
    stuck, told_stuck = await make_keeper("stuck", ttl_s=ttl, margin_s=margin, sleep=pause.sleep)
    others = [await make_keeper(w, ttl_s=ttl) for w in ("other-1", "other-2")]
    keepers = [stuck, *(k for k, _ in others)]
    tasks = [asyncio.ensure_future(k.run()) for k in keepers]
    try:
        await wait_until(lambda: sorted(len(k.owned) for k in keepers) == [20, 22, 22], 20)
        pause.running.clear()  # after the round in progress, its rounds stop: no heartbeat, no renewal
        await wait_until(lambda: stuck._round.locked() is False, 5, interval=0.01)
        held = dict(stuck.owned)
        told_stuck.calls.clear()  # (it may have given partitions up while the three balanced)

        await wait_until(lambda: not stuck.owned, 3 * ttl, interval=0.01)
        # it let go while the server still held the leases in its name: no one could have taken them
        leases = await _leases(stuck.pool)
        assert _held_by(leases, "stuck") == held
        assert told_stuck.of("lost") == sorted(held)

        # after the TTL the others count one worker less, and take its partitions with new tokens
        await wait_until(lambda: sorted(len(k.owned) for k, _ in others) == [32, 32], 6 * ttl)
        leases = await _leases(stuck.pool)
        for p, token in held.items():
            owner, new_token, _ = leases[p]
            assert owner in ("other-1", "other-2") and new_token == token + 1
        assert sorted(p for k, _ in others for p in k.owned) == list(range(P))
    finally:
        for k in keepers:
            k._stopping = True
        pause.running.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_keeper_that_stops_hands_every_partition_over(make_keeper: Any) -> None:
    """stop(): marked stopping (not counted live any more), ``before_release``, leases freed at once;
    the other's next round takes them all, without waiting for a TTL."""
    seen: list[dict[int, tuple[str | None, int, bool]]] = []

    async def before_release(partitions: list[int]) -> None:
        seen.append(await _leases(leaving.pool))

    leaving, told = await make_keeper("leaving", ttl_s=60.0, before_release=before_release)
    staying, _ = await make_keeper("staying", ttl_s=60.0)
    await _settle([leaving, staying])
    held = dict(leaving.owned)
    assert len(held) == 32
    told.calls.clear()

    await leaving.stop()
    assert leaving.owned == {} and told.calls == [("lost", sorted(held))]
    assert set(_held_by(seen[-1], "leaving")) == set(held)  # before_release ran while they were its own
    leases = await _leases(staying.pool)
    assert all(leases[p][0] is None and not leases[p][2] for p in held)  # freed, not lapsing in 60 s
    assert await staying.pool.fetchval("SELECT stopping FROM cluster_workers WHERE worker = 'leaving'")

    await staying.round()
    assert staying.live_workers == 1 and sorted(staying.owned) == list(range(P))
    assert all(staying.owned[p] == held[p] + 1 for p in held)
    await leaving.run()  # a stopped keeper's loop ends at once


async def test_workers_gone_for_a_day_are_forgotten_and_never_counted(make_keeper: Any) -> None:
    keeper, _ = await make_keeper("fresh")
    await keeper.pool.execute(
        "INSERT INTO cluster_workers (worker, seen_at) VALUES"
        " ('gone-long-ago', now() - interval '2 days'), ('gone-a-minute-ago', now() - interval '1 minute')"
    )
    await keeper.round()
    rows = await keeper.pool.fetch("SELECT worker FROM cluster_workers ORDER BY worker")
    assert [r["worker"] for r in rows] == ["fresh", "gone-a-minute-ago"]
    assert keeper.live_workers == 1 and len(keeper.owned) == P


@pytest.mark.parametrize(
    ("seen_ago_s", "ended"),
    [
        # a worker gone (cut off, paused) with a commit in flight: its transaction holds the lease rows
        # FOR SHARE for as long as PostgreSQL hears nothing; it is ended and the partitions taken
        (3600, True),
        # a live worker's commit in flight on a lease that just lapsed: left alone, and not waited on
        # (its rows are skipped this round, taken once the commit is over)
        (0, False),
    ],
)
async def test_a_commit_in_flight_on_a_lapsed_lease_is_never_waited_on(
    make_keeper: Any, database_url: str, seen_ago_s: int, ended: bool
) -> None:
    """tests/e2e/test_cluster_cut.py's case by hand: a worker's batch past its fencing check (the lease
    rows FOR SHARE), its lease lapsed; another keeper's round neither blocks nor bumps a token under
    the commit, and ends the transaction only if its worker is no longer live."""
    keeper, _ = await make_keeper("taker", partitions=4)
    pool = await create_pool(database_url, min_size=1, max_size=1, worker_id="other")
    try:
        conn = await pool.acquire()
        await conn.execute(
            "INSERT INTO cluster_workers (worker, seen_at)"
            " VALUES ('other', now() - make_interval(secs => $1))",
            seen_ago_s,
        )
        await conn.execute(
            "INSERT INTO partition_leases (partition, owner, token, expires_at)"
            " SELECT generate_series(0, 3), 'other', 7, now() - interval '1 second'"
        )
        transaction = conn.transaction()
        await transaction.start()
        await fence(conn, {0: 7, 1: 7})  # a batch of partitions 0 and 1, past its fencing check

        await asyncio.wait_for(keeper.round(), 10)  # never waits on the commit
        leases = await _leases(keeper.pool)
        if ended:
            assert _held_by(leases, "taker") == {p: 8 for p in range(4)}
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                await conn.fetchval("SELECT 1")  # its session is gone: the batch was rolled back
        else:
            assert _held_by(leases, "taker") == {2: 8, 3: 8}  # the rows under the commit: skipped
            assert (leases[0][1], leases[1][1]) == (7, 7)
            await transaction.commit()  # the commit goes through: nothing took its partitions meanwhile
    finally:
        pool.terminate()
