"""The committed monitor states of a city's children, without a ChildState object per child.

A ChildState in memory is some 3.6 KiB (an instance dict of 28 fields, nine containers, most of them
empty, and the floats): 400,000 children's states were 1.4 GiB of a worker's RSS
(bench/worker_memory.py). Here a child's committed state is its field values pickled in one bytes
object (about 160 bytes: ``_encode``), in an array indexed by the child's id (ids come from a
sequence: dense), and a ChildState is made again when one is asked for: the children of a batch,
a clock decision, a school's live map. What is pickled is the state's own values, so the state made
again equals the one stored (sets, tuples and int keys included): nothing goes through the
checkpoint's JSON form.

The clock's pass (tracker.clock.due_children) looks at every child each tick; making 400,000 states
for it would cost seconds. So beside each state the store keeps what the clock rules read to decide
whether time alone can change a child (``tracker.monitor.tick``): when the tag was last heard from in
the tracker's time (``tick``'s ``last``: the later of the last decided fix and the last one heard,
plus the tag's clock offset), whether its signal is already lost, whether it is at school, and the
arrival deadlines already settled. ``candidates`` answers, for many children at once, those for
whom ``tick`` may change something; the clock makes their states and lets ``tick`` decide. It must
never leave out a child ``tick`` would change: tests/unit/test_clock_scan.py compares the pass over
this store with the pass over every state, moment by moment. (Its proper home is beside ``tick``, as
the monitor's own "when can time change this state"; it is here while tracker.monitor is not.)

A child id beyond ``DENSE_MAX`` (not from the sequence) keeps its ChildState as it is, in a dict, and
is always a candidate.
"""

from __future__ import annotations

import io
import operator
import pickle
import threading
from collections.abc import Iterator, MutableMapping
from itertools import compress
from typing import Any

import numpy as np
import numpy.typing as npt

from tracker.monitor import ChildState

DENSE_MAX = 1 << 24
"""Child ids below this are held in arrays indexed by id; others (none from the sequence) as objects."""

_FIELDS = tuple(ChildState().__dict__)
_DEFAULTS = tuple(ChildState().__dict__.values())
_NEVER = object()
_OMITTABLE = tuple(_NEVER if isinstance(v, dict | set | list) else v for v in _DEFAULTS)
"""each field's default when it is a constant (None, False, 0, 0.0: a field holding that very object
is left out of the bytes and restored as it); containers are always stored (each state its own)"""
_TEMPLATE = dict(zip(_FIELDS, _DEFAULTS, strict=True))  # (its containers are always replaced)
_PROTO = b"\x80" + bytes([pickle.HIGHEST_PROTOCOL])
_FRAME = pickle.FRAME[0]
_AT_SCHOOL = 1
_SIGNAL_LOST = 2
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


Packed = tuple[bytes, float, int, tuple[str, ...]]
"""a state as the store holds it: its bytes, and what the clock's candidates read"""


def pack(state: ChildState) -> Packed:
    """A state as the store holds it (pure: a worker thread may pack states to put)."""
    return (
        _encode(state),
        _last_heard(state),
        (_AT_SCHOOL if state.at == "school" else 0) | (_SIGNAL_LOST if state.signal_lost else 0),
        tuple(state.not_arrived),
    )


# A state's bytes: the pickle of its field values but those left at their constant default (a mask
# says which), pickled without a memo and without the frame header, which a pickle this short does not
# need: ~160 bytes where the pickle of every field was ~200, i.e. 192 bytes of a worker's memory per
# child where it was 240 (Python's allocator rounds to 16; bench/worker_memory.py). The mask's layout
# (which fields are stored) is worked out once per distinct mask.
_layouts: dict[tuple[bool, ...], tuple[int, tuple[bool, ...]]] = {}  # left out -> (mask, stored)
_names: dict[int, tuple[str, ...]] = {}  # mask -> the names of the fields stored
_picklers = threading.local()


def _encode(state: ChildState) -> bytes:
    values = tuple(state.__dict__.values())
    left_out = tuple(map(operator.is_, values, _OMITTABLE))
    layout = _layouts.get(left_out)
    if layout is None:
        mask = sum(1 << i for i, out in enumerate(left_out) if out)
        layout = _layouts[left_out] = (mask, tuple(not out for out in left_out))
    mine = _picklers.__dict__
    pickler = mine.get("pickler")
    if pickler is None:  # one per thread (worker threads pack states too), made once
        out = mine["out"] = io.BytesIO()
        pickler = mine["pickler"] = pickle.Pickler(out, pickle.HIGHEST_PROTOCOL)
        pickler.fast = True  # no memo: a state's values hold no cycles, and shared parts are equal again
    out = mine["out"]
    out.seek(0)
    out.truncate()
    pickler.dump((*compress(values, layout[1]), layout[0]))
    blob = out.getvalue()
    return _PROTO + blob[11:] if blob[2] == _FRAME else blob  # (2: PROTO; then FRAME and its 8 bytes)


def _unpack(blob: bytes) -> ChildState:
    values = pickle.loads(blob)
    mask = values[-1]
    names = _names.get(mask)
    if names is None:
        names = _names[mask] = tuple(f for i, f in enumerate(_FIELDS) if not (mask >> i) & 1)
    fields = _TEMPLATE.copy()  # every field in its order, at its default
    fields.update(zip(names, values, strict=False))  # (the mask, last, has no name)
    # as ChildState.copy() makes one: the instance dict set whole, without __init__
    state: ChildState = object.__new__(ChildState)
    state.__dict__ = fields
    return state


def _last_heard(state: ChildState) -> float:
    """``tick``'s moment the tag was last heard from, in the tracker's time (nan: never)."""
    last = state.last_ts
    if state.heard_ts is not None and (last is None or state.heard_ts > last):
        last = state.heard_ts
    return float("nan") if last is None else last + state.clock_offset


class CompactStates(MutableMapping[int, ChildState]):
    """child id -> committed ChildState (a new object at every lookup: never change it in place, as
    no state is)."""

    def __init__(self) -> None:
        self._blob: npt.NDArray[np.object_] = np.full(0, None, dtype=object)
        self._heard = np.zeros(0)
        self._flags = np.zeros(0, dtype=np.uint8)
        self._settled = np.zeros(0, dtype=np.int32)  # code of the tuple of deadline keys settled
        self._settled_codes: dict[tuple[str, ...], int] = {(): 0}
        self._settled_keys: list[tuple[str, ...]] = [()]
        self._unsettled_memo: dict[tuple[str, ...], B] = {}
        self._far: dict[int, ChildState] = {}
        self._n = 0

    # --- the mapping ----------------------------------------------------------------------------------
    def _dense(self, child: object) -> int:
        """The index of a child id held in the arrays, -1 for one held as an object, -2 for none."""
        if type(child) is not int:
            if not isinstance(child, int | np.integer) or isinstance(child, bool):
                return -2
            child = int(child)
        return child if 0 <= child < DENSE_MAX else -1

    def __getitem__(self, child: int) -> ChildState:
        i = self._dense(child)
        if i >= 0:
            blob = self._blob[i] if i < self._blob.size else None
            if blob is None:
                raise KeyError(child)
            return _unpack(blob)
        if i == -1:
            return self._far[int(child)]
        raise KeyError(child)

    def get(self, child: int, default: Any = None) -> Any:
        try:
            return self[child]
        except KeyError:
            return default

    def get_many(self, children: list[int]) -> list[ChildState | None]:
        """``get`` of each child (None: no state held), the dense ones' bytes taken at once (a batch's
        children: ``get`` one at a time cost a third of making the states again)."""
        ids = np.fromiter(children, dtype=np.int64, count=len(children))
        size = self._blob.size
        inside = (ids >= 0) & (ids < size)
        blobs = self._blob[np.where(inside, ids, 0)].tolist() if size else [None] * len(children)
        far = self._far
        return [
            (None if blob is None else _unpack(blob)) if dense else far.get(child)
            for child, dense, blob in zip(children, inside.tolist(), blobs, strict=True)
        ]

    def __contains__(self, child: object) -> bool:
        i = self._dense(child)
        if i >= 0:
            return i < self._blob.size and self._blob[i] is not None
        return i == -1 and int(child) in self._far  # type: ignore[call-overload]

    def __setitem__(self, child: int, state: ChildState) -> None:
        i = self._dense(child)
        if i < 0:
            if i == -2:
                raise TypeError(f"a child id is an integer, not {child!r}")
            self._n += int(child) not in self._far
            self._far[int(child)] = state
            return
        self._put(i, pack(state))

    def put_many(self, states: list[tuple[int, ChildState]]) -> None:
        """``self[child] = state`` for each (a batch's moved states), the columns written at once."""
        at: list[int] = []
        packs: list[Packed] = []
        for child, state in states:
            i = self._dense(child)
            if i < 0:
                self[child] = state
            else:
                at.append(i)
                packs.append(pack(state))
        if not at:
            return
        if max(at) >= self._blob.size:
            self._grow(max(at) + 1)
        blob = self._blob
        index = np.array(at, dtype=np.int64)
        self._heard[index] = [p[1] for p in packs]
        self._flags[index] = [p[2] for p in packs]
        self._settled[index] = [self._settled_code(p[3]) for p in packs]
        for i, p in zip(at, packs, strict=True):
            self._n += blob[i] is None
            blob[i] = p[0]  # last: a reader that finds a state finds its columns

    def put_packed(self, child: int, packed: Packed) -> None:
        """``self[child] = state`` for ``packed = pack(state)``."""
        i = self._dense(child)
        if i < 0:
            self[child] = _unpack(packed[0])
        else:
            self._put(i, packed)

    def _put(self, i: int, packed: Packed) -> None:
        blob, heard, flags, settled = packed
        if i >= self._blob.size:
            self._grow(i + 1)
        self._n += self._blob[i] is None
        self._heard[i] = heard
        self._flags[i] = flags
        self._settled[i] = self._settled_code(settled)
        self._blob[i] = blob

    def __delitem__(self, child: int) -> None:
        i = self._dense(child)
        if i >= 0 and i < self._blob.size and self._blob[i] is not None:
            self._blob[i] = None
            self._n -= 1
        elif i == -1 and int(child) in self._far:
            del self._far[int(child)]
            self._n -= 1
        else:
            raise KeyError(child)

    def __iter__(self) -> Iterator[int]:
        held = np.flatnonzero(
            np.fromiter((b is not None for b in self._blob.tolist()), bool, self._blob.size)
        )
        return iter([*held.tolist(), *self._far])

    def __len__(self) -> int:
        return self._n

    def copy(self) -> CompactStates:
        """A snapshot (the bytes are shared: they never change)."""
        new = CompactStates.__new__(CompactStates)
        blob, heard, flags, settled = self._blob, self._heard, self._flags, self._settled
        new._blob, new._heard, new._flags, new._settled = (
            blob.copy(),
            heard.copy(),
            flags.copy(),
            settled.copy(),
        )
        new._settled_codes = self._settled_codes  # append-only
        new._settled_keys = self._settled_keys
        new._unsettled_memo = {}
        new._far = dict(self._far)
        new._n = self._n
        return new

    def _grow(self, size: int) -> None:
        size = max(size, 2 * self._blob.size, 1024)
        old = self._blob.size
        blob = np.full(size, None, dtype=object)
        blob[:old] = self._blob
        heard = np.full(size, np.nan)
        heard[:old] = self._heard
        flags = np.zeros(size, dtype=np.uint8)
        flags[:old] = self._flags
        settled = np.zeros(size, dtype=np.int32)
        settled[:old] = self._settled
        self._heard, self._flags, self._settled = heard, flags, settled
        self._blob = blob  # last: a reader that finds a state finds its columns

    def _settled_code(self, keys: tuple[str, ...]) -> int:
        code = self._settled_codes.get(keys)
        if code is None:
            code = self._settled_codes[keys] = len(self._settled_keys)
            self._settled_keys.append(keys)
        return code

    # --- for the clock --------------------------------------------------------------------------------
    def held(self, children: npt.ArrayLike) -> B:
        """Which of these children have a state here."""
        c = np.asarray(children, dtype=np.int64)
        dense = (c >= 0) & (c < min(self._blob.size, DENSE_MAX))
        out = np.zeros(c.shape, dtype=bool)
        out[dense] = [b is not None for b in self._blob[c[dense]].tolist()]
        if self._far:
            far = ~dense & ((c < 0) | (c >= DENSE_MAX))
            out[far] = [int(x) in self._far for x in c[far].tolist()]
        return out

    def candidates(
        self, children: npt.ArrayLike, now: float, signal_lost_s: float, deadline_keys: tuple[str, ...]
    ) -> B:
        """Of these children (each with a state here), those whose state the clock rules may change at
        ``now``, their schedule's deadlines passed by then being ``deadline_keys`` (see the module's
        docstring): signal not lost yet, not at school, heard from ``signal_lost_s`` or more before
        ``now``; or a deadline not settled yet. Children held as objects are always candidates."""
        c = np.asarray(children, dtype=np.int64)
        dense = (c >= 0) & (c < DENSE_MAX)
        i = np.where(dense, c, 0)
        flags = self._flags[i]
        with np.errstate(invalid="ignore"):
            silent = (now - self._heard[i]) >= signal_lost_s  # nan (never heard): False
        out = silent & ((flags & (_AT_SCHOOL | _SIGNAL_LOST)) == 0)
        if deadline_keys:
            out |= self._unsettled(deadline_keys)[self._settled[i]]
        return out | ~dense

    def _unsettled(self, deadline_keys: tuple[str, ...]) -> B:
        """For each code of settled keys: whether one of ``deadline_keys`` is not among them."""
        known = self._settled_keys
        cached = self._unsettled_memo.get(deadline_keys)
        if cached is None or cached.size != len(known):
            wanted = set(deadline_keys)
            cached = np.array([not wanted <= set(keys) for keys in list(known)], dtype=bool)
            self._unsettled_memo[deadline_keys] = cached
        return cached

    @property
    def nbytes(self) -> int:
        """The arrays' bytes and the pickled states' (not the few objects held as they are)."""
        held = [b for b in self._blob.tolist() if b is not None]
        arrays = self._blob.nbytes + self._heard.nbytes + self._flags.nbytes + self._settled.nbytes
        return arrays + sum(len(b) + 33 for b in held)
