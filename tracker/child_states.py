"""The monitor's state of every child, in memory: committed, and prepared ahead.

The batch loop prepares a batch while the one before it commits, so a child may have two states: the
one its last committed batch left (``committed``), and one a batch prepared on top of it left, not
committed yet (``ahead``). A batch starts from each child's latest state (ahead, else committed), and
becomes committed only when its transaction succeeded: until then nothing of it is applied, and a batch
whose commit failed for good is forgotten with everything prepared on top of it (``discard_ahead``).

``writer`` says who may move the states: a run of batches (each prepared while the one before it
commits) or the clock's rules (``tracker.clock``), never both at once. The batch loop lets the clock
in between two batches when ``clock_waiting`` says it waits.

A child's state is read from its PostgreSQL checkpoint the first time it is needed (a restart resumes
where the last process committed); a state read from PostgreSQL never replaces one a batch committed
while the read was on its way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import asyncpg

from tracker.monitor import ChildState
from tracker.store.batches import load_child_states


class ChildStates:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.committed: dict[int, ChildState] = {}
        self._ahead: dict[int, ChildState] = {}  # states of batches prepared and not committed yet
        self.all_loaded = False  # every child's checkpoint read (the clock needs them all)
        self.writer = asyncio.Lock()
        """who may move the children's states: a run of batches or the clock, never both at once"""
        self.clock_waiting = 0  # the clock waits for ``writer`` (the batch loop lets it in between batches)

    def latest(self, child: int) -> ChildState | None:
        """A child's state as the batches before this one left it: prepared and committing, else
        committed (``commit`` puts a state in the second before it takes it out of the first)."""
        state = self._ahead.get(child)
        return state if state is not None else self.committed.get(child)

    async def of_batch(self, children: Iterable[int]) -> dict[int, ChildState]:
        """The batch's children's states as the batches before it left them (committed, or prepared
        and committing), read from PostgreSQL the first time."""
        wanted = sorted(set(children))
        await self.load([c for c in wanted if self.latest(c) is None])
        # (a new ChildState only for a child never seen: building one per lookup costs every child)
        return {c: known if (known := self.latest(c)) is not None else ChildState() for c in wanted}

    async def load(self, child_ids: list[int]) -> None:
        """Checkpointed states of children not in memory. A state that came meanwhile (a batch
        committed it while the read was on its way) is newer than the one read: it stays."""
        if child_ids:
            for child, raw in (await load_child_states(self._pool, child_ids)).items():
                if child not in self.committed:
                    self.committed[child] = ChildState.from_json(raw)

    def changed(self, states: dict[int, ChildState]) -> list[tuple[int, ChildState]]:
        """The states a batch moved: step() leaves a state alone or replaces it (a decided fix moves
        ``last_ts`` at least), so identity says it, without a field-by-field comparison."""
        return [(c, s) for c, s in states.items() if self.latest(c) is not s]

    def hold(self, states: dict[int, ChildState]) -> None:
        """A batch is prepared: the batches prepared after it start from its states."""
        self._ahead.update(states)

    def commit(self, states: dict[int, ChildState]) -> None:
        """A batch (or the clock) committed these states. Committed first, then out of ``ahead``: a
        batch being prepared in a worker thread meanwhile finds each child's state in one or the other."""
        self.committed.update(states)
        ahead = self._ahead
        for child, state in states.items():
            if ahead.get(child) is state:  # not moved on by a batch prepared after this one
                del ahead[child]

    def discard_ahead(self) -> None:
        """Forget the states of batches prepared and not committed (a commit failed for good: the
        batches after it were prepared on states that never came to be)."""
        self._ahead.clear()
