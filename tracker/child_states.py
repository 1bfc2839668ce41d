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

The committed states are held compact (tracker.compact_states: a city's states in bytes, not
objects); a batch's children's states are made from them when the batch starts (``of_batch``), and
the batch's own objects say what it moved (``changed``: by identity) and what need not be stored
again when it commits (a state as it was made from the committed one: ``_clean``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import asyncpg
import numpy as np
import numpy.typing as npt

from tracker import heap
from tracker.compact_states import CompactStates, Packed, pack
from tracker.monitor import ChildState
from tracker.store.batches import decode_state, load_child_states

LOAD_CHUNK = 5_000


def _packed(checkpoints: dict[int, str]) -> list[tuple[int, Packed]]:
    """Checkpoints' JSON text (``load_child_states``) made packed states: decoded, made a state and
    packed one at a time, so that a chunk's decoded dicts are never alive at once."""
    return [(child, pack(ChildState.from_json(decode_state(raw)))) for child, raw in checkpoints.items()]


class ChildStates:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.committed = CompactStates()
        self._ahead: dict[int, ChildState] = {}  # states of batches prepared and not committed yet
        self._clean: dict[int, ChildState] = {}  # states batches started from, as made from committed
        self._started: dict[int, ChildState] = {}  # the last batch's children's states as it started
        self.all_loaded = False  # every child's checkpoint read (the clock needs them all)
        self.writer = asyncio.Lock()
        """who may move the children's states: a run of batches or the clock, never both at once"""
        self.clock_waiting = 0  # the clock waits for ``writer`` (the batch loop lets it in between batches)
        self.forgets = 0  # how many times states were forgotten (``forget``): a read begun before is void

    def latest(self, child: int) -> ChildState | None:
        """A child's state as the batches before this one left it: prepared and committing, else
        committed (``commit`` puts a state in the second before it takes it out of the first)."""
        state = self._ahead.get(child)
        return state if state is not None else self.committed.get(child)

    async def of_batch(self, children: Iterable[int]) -> dict[int, ChildState]:
        """The batch's children's states as the batches before it left them (committed, or prepared
        and committing), read from PostgreSQL the first time."""
        wanted = sorted(set(children))
        behind = [c for c in wanted if c not in self._ahead]
        held = self.committed.held(behind).tolist()
        await self.load([c for c, h in zip(behind, held, strict=True) if not h])
        out: dict[int, ChildState] = {}
        self._started = started = {}
        ahead = self._ahead  # (as the load left it: a commit meanwhile moved states from it to committed)
        behind = [c for c in wanted if c not in ahead]
        made = dict(zip(behind, self.committed.get_many(behind), strict=True))  # made from their bytes
        for c in wanted:
            state = ahead.get(c)
            if state is None:
                state = made[c]
                if state is not None:
                    self._clean[c] = state
            if state is not None:
                started[c] = out[c] = state
            else:  # (a new ChildState only for a child never seen: one per lookup would cost every child)
                out[c] = ChildState()
        return out

    async def load(self, child_ids: list[int] | npt.NDArray[np.integer]) -> None:
        """Checkpointed states of children not in memory. A state that came meanwhile (a batch
        committed it while the read was on its way) is newer than the one read: it stays. Read
        ``LOAD_CHUNK`` children at a time (the clock's first tick reads a city: its decoded JSON all
        at once was a peak of several hundred MB), decoded and packed in a worker thread."""
        for start in range(0, len(child_ids), LOAD_CHUNK):
            chunk = child_ids[start : start + LOAD_CHUNK]
            await self._load(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
        if len(child_ids) > LOAD_CHUNK:
            heap.trim()  # the decoded checkpoints are garbage now

    async def _load(self, child_ids: list[int]) -> None:
        while child_ids:
            forgets = self.forgets
            loaded = await load_child_states(self._pool, child_ids)
            if forgets != self.forgets:  # read before a partition changed hands (``forget``): read again
                continue
            packed = _packed(loaded) if len(loaded) < 64 else await asyncio.to_thread(_packed, loaded)
            committed = self.committed
            for child, p in packed:
                if child not in committed:
                    committed.put_packed(child, p)
            return

    def changed(self, states: dict[int, ChildState]) -> list[tuple[int, ChildState]]:
        """The states a batch moved: step() leaves a state alone or replaces it (a decided fix moves
        ``last_ts`` at least), so identity says it, without a field-by-field comparison."""
        started = self._started  # (the batch's states came from ``of_batch``, just before)
        return [(c, s) for c, s in states.items() if (started.get(c) or self.latest(c)) is not s]

    def hold(self, states: dict[int, ChildState]) -> None:
        """A batch is prepared: the batches prepared after it start from its states."""
        self._ahead.update(states)

    def commit(self, states: dict[int, ChildState]) -> None:
        """A batch (or the clock) committed these states. Committed first, then out of ``ahead``: a
        batch being prepared in a worker thread meanwhile finds each child's state in one or the other."""
        committed, ahead, clean = self.committed, self._ahead, self._clean
        # (a state as made from the committed one is not stored again)
        committed.put_many([(c, s) for c, s in states.items() if clean.pop(c, None) is not s])
        for child, state in states.items():
            if ahead.get(child) is state:  # not moved on by a batch prepared after this one
                del ahead[child]

    def forget(self, children: Callable[[int], bool]) -> None:
        """Forget these children's states, committed and ahead (their partition changed hands:
        tracker.cluster): they are read from their checkpoints again when next needed."""
        for states in (self.committed, self._ahead):
            for child in [c for c in states if children(c)]:
                del states[child]
        self._clean.clear()
        self.all_loaded = False
        self.forgets += 1

    def discard_ahead(self) -> None:
        """Forget the states of batches prepared and not committed (a commit failed for good: the
        batches after it were prepared on states that never came to be)."""
        self._ahead.clear()
        self._clean.clear()
