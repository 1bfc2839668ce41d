"""The registry's per-child and per-guardian rows in arrays: read-only mappings without a Python object
per row.

At city scale (400,000 children, a guardian each) the registry's dicts of row objects were most of a
worker's memory: 530 MiB of RSS for the rows alone (bench/worker_memory.py; a ChildRow, its name, its
id and its dict entry are some 240 bytes, a guardian with its tuple of channels 330, a tag 120, a
child's guardians 150). Here a row is a few array elements (ids sorted, for a binary search; names in
one UTF-8 buffer with offsets), and the mapping hands out a row object when one is asked for: the
pipeline asks for the rows of a batch's children, the API for a school's.

Each table is a ``collections.abc.Mapping`` with the same keys and values as the dict it replaces
(``ChildTable``: child id -> ChildRow, ``TagTable``: tag -> child id, ``GuardianTable``: guardian id
-> GuardianRow, ``LinkTable``: child id -> its guardians' ids by priority), so every reader of
``RegistryRows`` reads them as before. A lookup is a binary search (about 2 us, where a dict takes
0.2 us): ``TagTable.children_of`` finds a whole batch's tags in one call.

Ids (children's, guardians', schools', routes') are int32 while every one of a table fits
(``narrow_ids``): half the memory of int64, 11 MiB of a worker holding 400,000 children
(bench/worker_memory.py). A table holding one id beyond int32 keeps int64: never wrapped.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from tracker.store.registry_rows import ChildRow, GuardianRow

I64 = npt.NDArray[np.int64]
Ids = npt.NDArray[np.int32] | npt.NDArray[np.int64]
"""ids as a table holds them: int32 when they fit, else int64 (``narrow_ids``)"""
V = TypeVar("V")
_INT32 = np.iinfo(np.int32)


class Strings:
    """Strings in one UTF-8 buffer with offsets (None allowed: a null mask)."""

    __slots__ = ("_buf", "_null", "_off")

    def __init__(self, values: Sequence[str | None]) -> None:
        encoded = [b"" if v is None else v.encode() for v in values]
        self._buf = b"".join(encoded)
        self._off = _offsets([len(e) for e in encoded])
        nulls = [i for i, v in enumerate(values) if v is None]
        self._null = frozenset(nulls)

    @classmethod
    def joined(cls, parts: Sequence[Strings]) -> Strings:
        """The strings of these, one after the other (what a table read in chunks is made of)."""
        new = cls.__new__(cls)
        new._buf = b"".join(p._buf for p in parts)
        lengths = [np.diff(p._off.astype(np.int64)) for p in parts]
        new._off = _offsets(np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64))
        nulls: list[int] = []
        at = 0
        for p in parts:
            nulls.extend(at + i for i in p._null)
            at += len(p)
        new._null = frozenset(nulls)
        return new

    def __getitem__(self, i: int) -> str | None:
        if i in self._null:
            return None
        return self._buf[self._off[i] : self._off[i + 1]].decode()

    def take(self, positions: Sequence[int]) -> Strings:
        return Strings([self[i] for i in positions])

    def __len__(self) -> int:
        return len(self._off) - 1

    @property
    def nbytes(self) -> int:
        return len(self._buf) + self._off.nbytes


def _offsets(counts: npt.ArrayLike) -> npt.NDArray[np.int32] | I64:
    """CSR offsets of runs of these lengths: int32 while they fit (half the memory of int64: at city
    scale, 1.6 MiB per 400,000 names)."""
    off = np.zeros(np.size(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    return off.astype(np.int32) if off[-1] < 2**31 else off


def narrow_ids(values: npt.ArrayLike) -> Ids:
    """Integer ids as int32 when every one fits, else as int64 (an id beyond int32 keeps the whole
    array in int64: never wrapped)."""
    a = np.asarray(values, dtype=np.int64)
    if a.size and (int(a.min()) < _INT32.min or int(a.max()) > _INT32.max):
        return a
    return a.astype(np.int32)


_BOUNDS: dict[np.dtype[Any], tuple[int, int]] = {}


def _bounds(dtype: np.dtype[Any]) -> tuple[int, int]:
    """The range of an integer dtype (``np.iinfo`` is made anew at every call: some 2 µs, where
    ``find_id`` is called for every fix)."""
    bounds = _BOUNDS.get(dtype)
    if bounds is None:
        info = np.iinfo(dtype)
        bounds = _BOUNDS[dtype] = (int(info.min), int(info.max))
    return bounds


def find_id(ids: Ids, key: object) -> int:
    """The position of an integer key in sorted ``ids`` (int32 or int64), or -1."""
    if type(key) is not int:
        if not isinstance(key, int | np.integer) or isinstance(key, bool):
            return -1
        key = int(key)
    if not ids.size:
        return -1
    low, high = _bounds(ids.dtype)
    if not (low <= key <= high):
        return -1
    i = int(ids.searchsorted(key))  # (a Python int: searched in the ids' own type, no copy of them)
    return i if i < ids.size and int(ids[i]) == key else -1


def find_ids(ids: Ids, keys: npt.ArrayLike) -> I64:
    """Vectorised ``find_id``: the position of each key in sorted ``ids``, -1 where absent. The keys
    are cast to the ids' type (those out of its range are absent), never the ids to the keys': a
    search of int64 keys in int32 ids would copy the ids at every call."""
    k = np.asarray(keys, dtype=np.int64)
    if not ids.size:
        return np.full(k.shape, -1, dtype=np.int64)
    bounds = np.iinfo(ids.dtype)
    fits = (k >= bounds.min) & (k <= bounds.max)
    k = np.where(fits, k, 0).astype(ids.dtype)
    pos = np.minimum(ids.searchsorted(k), ids.size - 1)
    return np.where(fits & (ids[pos] == k), pos, -1).astype(np.int64)


class _IdTable(Mapping[int, V], Generic[V]):
    """A mapping over sorted int64 ids; ``_row(i)`` makes the value at position i."""

    _ids: Ids

    def _row(self, i: int) -> V:
        raise NotImplementedError

    def __getitem__(self, key: int) -> V:
        i = find_id(self._ids, key)
        if i < 0:
            raise KeyError(key)
        return self._row(i)

    def get(self, key: int, default: V | None = None) -> V | None:  # type: ignore[override]
        i = find_id(self._ids, key)
        return default if i < 0 else self._row(i)

    def __contains__(self, key: object) -> bool:
        return find_id(self._ids, key) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __len__(self) -> int:
        return int(self._ids.size)

    def positions(self, keys: npt.ArrayLike) -> I64:
        """Vectorised lookup: the position of each key, -1 where absent."""
        return find_ids(self._ids, keys)


def _sorted(ids: Sequence[int] | I64) -> tuple[I64, I64]:
    arr = np.asarray(ids, dtype=np.int64)
    order = np.argsort(arr, kind="stable")
    return arr[order], order


def _identity(order: I64) -> bool:
    """Whether an order leaves everything where it is (rows read ``ORDER BY id``)."""
    return bool(np.array_equal(order, np.arange(order.size)))


def _concat(parts: list[I64] | list[npt.NDArray[np.int32]], dtype: type = np.int64) -> Any:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


class ChildTable(_IdTable[ChildRow]):
    """child id -> ChildRow (tracker.store.registry_rows), from arrays."""

    __slots__ = ("_ids", "_names", "_route", "_school")

    def __init__(
        self,
        ids: Sequence[int],
        school_ids: Sequence[int],
        route_ids: Sequence[int | None],
        names: Sequence[str],
    ) -> None:
        ids_sorted, order = _sorted(ids)
        self._ids = narrow_ids(ids_sorted)
        self._school = narrow_ids(np.asarray(school_ids, dtype=np.int64)[order])
        self._route = narrow_ids(np.array([-1 if r is None else r for r in route_ids], dtype=np.int64)[order])
        self._names = Strings([names[i] for i in order.tolist()])

    @staticmethod
    def part(rows: Sequence[Sequence[Any]]) -> tuple[I64, I64, I64, Strings]:
        """(id, school id, route id or None, name) rows made arrays: a chunk of the rows read (a city's
        rows as Python objects all at once were a worker's peak at start: bench/worker_memory.py)."""
        n = len(rows)
        return (
            np.fromiter((r[0] for r in rows), np.int64, n),
            np.fromiter((r[1] for r in rows), np.int64, n),
            np.fromiter((-1 if r[2] is None else r[2] for r in rows), np.int64, n),
            Strings([r[3] for r in rows]),
        )

    @classmethod
    def from_parts(cls, parts: Sequence[tuple[I64, I64, I64, Strings]]) -> ChildTable:
        """The table of the rows of these parts (``part``), one after the other."""
        new = cls.__new__(cls)
        ids, order = _sorted(_concat([p[0] for p in parts]))
        new._ids = narrow_ids(ids)
        new._school = narrow_ids(_concat([p[1] for p in parts])[order])
        new._route = narrow_ids(_concat([p[2] for p in parts])[order])
        names = Strings.joined([p[3] for p in parts])
        new._names = names if _identity(order) else names.take(order.tolist())
        return new

    def _row(self, i: int) -> ChildRow:
        route = int(self._route[i])
        name = self._names[i]
        assert name is not None
        return ChildRow(int(self._ids[i]), int(self._school[i]), None if route < 0 else route, name)

    @property
    def ids(self) -> Ids:
        """Every child id, ascending (read-only)."""
        return self._ids

    @property
    def school_ids(self) -> Ids:
        """Each child's school, in the order of ``ids``."""
        return self._school

    @property
    def route_ids(self) -> Ids:
        """Each child's route, -1 for none, in the order of ``ids``."""
        return self._route

    @property
    def nbytes(self) -> int:
        return self._ids.nbytes + self._school.nbytes + self._route.nbytes + self._names.nbytes


def children_at(children: Mapping[int, ChildRow], schools: Collection[int]) -> dict[int, int]:
    """child id -> school id, for the children of these schools (in arrays for a ChildTable)."""
    if isinstance(children, ChildTable):
        at = np.isin(children.school_ids, np.fromiter(schools, dtype=np.int64, count=len(schools)))
        return dict(zip(children.ids[at].tolist(), children.school_ids[at].tolist(), strict=True))
    return {c.id: c.school_id for c in children.values() if c.school_id in schools}


class TagTable(Mapping[str, int]):
    """tag id -> child id: the tags sorted in a fixed-width byte array (tags are short ASCII ids)."""

    __slots__ = ("_child", "_last", "_tags")

    def __init__(self, pairs: Iterable[tuple[str, int]]) -> None:
        self._sorted([self.part(list(pairs))])

    @staticmethod
    def part(rows: Sequence[Sequence[Any]]) -> tuple[npt.NDArray[np.bytes_], I64]:
        """(tag id, child id) rows made arrays (see ``ChildTable.part``): 400,000 tags fetched as
        Records at once, beside the tuples sorted from them, were the registry read's peak."""
        tags = [r[0].encode() for r in rows]
        width = max((len(t) for t in tags), default=1)
        return np.array(tags, dtype=f"S{width}"), np.fromiter((r[1] for r in rows), np.int64, len(rows))

    @classmethod
    def from_parts(cls, parts: Sequence[tuple[npt.NDArray[np.bytes_], I64]]) -> TagTable:
        """The table of the rows of these parts (``part``): the same arrays as ``TagTable(pairs)``
        (sorted by tag, then child: numpy orders zero-padded ASCII bytes as Python orders bytes)."""
        new = cls.__new__(cls)
        new._sorted(parts)
        return new

    def _sorted(self, parts: Sequence[tuple[npt.NDArray[np.bytes_], I64]]) -> None:
        """The table's arrays from its parts: sorted by tag, then child."""
        width = max((p[0].dtype.itemsize for p in parts), default=1)
        tags = (
            np.concatenate([p[0].astype(f"S{width}") for p in parts]) if parts else np.zeros(0, f"S{width}")
        )
        child = _concat([p[1] for p in parts])
        order = np.lexsort((child, tags))
        self._tags = tags[order]
        self._child = narrow_ids(child[order])
        self._last: tuple[str, int] = ("", -1)  # the last tag found (a fix's tag is looked up twice)

    def _find(self, tag: object) -> int:
        if not isinstance(tag, str):
            return -1
        last = self._last
        if last[0] == tag and last[1] >= 0:
            return last[1]
        key = tag.encode()
        tags = self._tags
        if not tags.size or len(key) > tags.dtype.itemsize or key.endswith(b"\0"):
            return -1
        i = int(tags.searchsorted(key))
        if i < tags.size and tags[i] == key:
            self._last = (tag, i)
            return i
        return -1

    def __getitem__(self, tag: str) -> int:
        i = self._find(tag)
        if i < 0:
            raise KeyError(tag)
        return int(self._child[i])

    def get(self, tag: str, default: int | None = None) -> int | None:  # type: ignore[override]
        i = self._find(tag)
        return default if i < 0 else int(self._child[i])

    def __contains__(self, tag: object) -> bool:
        return self._find(tag) >= 0

    def __iter__(self) -> Iterator[str]:
        return (t.decode() for t in self._tags.tolist())

    def __len__(self) -> int:
        return int(self._tags.size)

    def children_of(self, tags: Sequence[str]) -> I64:
        """Vectorised lookup: each tag's child id, -1 for an unknown tag."""
        out = np.full(len(tags), -1, dtype=np.int64)
        if not self._tags.size or not tags:
            return out
        width = self._tags.dtype.itemsize
        keys = [t.encode() for t in tags]
        fits = np.array([len(k) <= width and not k.endswith(b"\0") for k in keys], dtype=bool)
        arr = np.array([k if f else b"" for k, f in zip(keys, fits, strict=True)], dtype=f"S{width}")
        pos = np.minimum(self._tags.searchsorted(arr), self._tags.size - 1)
        hit = fits & (self._tags[pos] == arr)
        out[hit] = self._child[pos[hit]]
        return out

    @property
    def nbytes(self) -> int:
        return self._tags.nbytes + self._child.nbytes


def _codes(codes: npt.NDArray[np.int32], distinct: int) -> npt.NDArray[np.integer[Any]]:
    """Codes of ``distinct`` values in the narrowest type that holds them (a guardian's language and
    channels: a handful of values, a byte each where int32 took four)."""
    return codes.astype(np.min_scalar_type(max(distinct - 1, 0)))


class _GuardianPart(NamedTuple):
    ids: I64
    names: Strings
    phones: Strings
    lang_code: npt.NDArray[np.int32]
    langs: list[str]
    channel_code: npt.NDArray[np.int32]
    channels: list[tuple[str, ...]]


class GuardianTable(_IdTable[GuardianRow]):
    """guardian id -> GuardianRow (tracker.store.registry_rows), from arrays; languages and sets of
    channels (a handful of distinct values) are stored once each."""

    __slots__ = ("_channel_code", "_channels", "_ids", "_lang_code", "_langs", "_names", "_phones")

    def __init__(
        self,
        rows: Sequence[tuple[int, str, str | None, str, Sequence[str]]],
    ) -> None:
        ids, order = _sorted([r[0] for r in rows])
        self._ids = narrow_ids(ids)
        ordered = [rows[i] for i in order.tolist()]
        self._names = Strings([r[1] for r in ordered])
        self._phones = Strings([r[2] for r in ordered])
        langs: dict[str, int] = {}
        channels: dict[tuple[str, ...], int] = {}
        lang_code = np.array(
            [langs.setdefault(sys.intern(r[3]), len(langs)) for r in ordered], dtype=np.int32
        )
        channel_code = np.array(
            [channels.setdefault(tuple(map(sys.intern, r[4])), len(channels)) for r in ordered],
            dtype=np.int32,
        )
        self._lang_code = _codes(lang_code, len(langs))
        self._channel_code = _codes(channel_code, len(channels))
        self._langs = list(langs)
        self._channels = list(channels)

    @staticmethod
    def part(rows: Sequence[Sequence[Any]]) -> _GuardianPart:
        """(id, name, phone, language, channels) rows made arrays (see ``ChildTable.part``)."""
        n = len(rows)
        langs: dict[str, int] = {}
        channels: dict[tuple[str, ...], int] = {}
        lang_code = np.fromiter((langs.setdefault(r[3], len(langs)) for r in rows), np.int32, n)
        channel_code = np.fromiter(
            (channels.setdefault(tuple(r[4]), len(channels)) for r in rows), np.int32, n
        )
        return _GuardianPart(
            np.fromiter((r[0] for r in rows), np.int64, n),
            Strings([r[1] for r in rows]),
            Strings([r[2] for r in rows]),
            lang_code,
            list(langs),
            channel_code,
            list(channels),
        )

    @classmethod
    def from_parts(cls, parts: Sequence[_GuardianPart]) -> GuardianTable:
        """The table of the rows of these parts (``part``), one after the other."""
        langs: dict[str, int] = {}
        channels: dict[tuple[str, ...], int] = {}
        lang_codes: list[npt.NDArray[np.int32]] = []
        channel_codes: list[npt.NDArray[np.int32]] = []
        for p in parts:  # each part's codes made the table's
            to = np.array([langs.setdefault(sys.intern(v), len(langs)) for v in p.langs], dtype=np.int32)
            lang_codes.append(to[p.lang_code] if to.size else p.lang_code)
            to = np.array(
                [channels.setdefault(tuple(map(sys.intern, v)), len(channels)) for v in p.channels],
                dtype=np.int32,
            )
            channel_codes.append(to[p.channel_code] if to.size else p.channel_code)
        new = cls.__new__(cls)
        ids, order = _sorted(_concat([p.ids for p in parts]))
        new._ids = narrow_ids(ids)
        names, phones = Strings.joined([p.names for p in parts]), Strings.joined([p.phones for p in parts])
        if not _identity(order):
            names, phones = names.take(order.tolist()), phones.take(order.tolist())
        new._names, new._phones = names, phones
        new._lang_code = _codes(_concat(lang_codes, np.int32)[order], len(langs))
        new._channel_code = _codes(_concat(channel_codes, np.int32)[order], len(channels))
        new._langs = list(langs)
        new._channels = list(channels)
        return new

    def _row(self, i: int) -> GuardianRow:
        name = self._names[i]
        assert name is not None
        return GuardianRow(
            int(self._ids[i]),
            name,
            self._phones[i],
            self._langs[int(self._lang_code[i])],
            self._channels[int(self._channel_code[i])],
        )

    @property
    def nbytes(self) -> int:
        n = self._ids.nbytes + self._lang_code.nbytes + self._channel_code.nbytes
        return n + self._names.nbytes + self._phones.nbytes


class LinkTable(_IdTable[tuple[int, ...]]):
    """child id -> its guardians' ids by priority (a child with none is absent), in CSR arrays."""

    __slots__ = ("_guardians", "_ids", "_off")

    def __init__(self, links: Iterable[tuple[int, int]]) -> None:
        """``links``: (child id, guardian id) pairs, each child's in priority order."""
        pairs = list(links)
        child = np.array([c for c, _ in pairs], dtype=np.int64)
        guardian = np.array([g for _, g in pairs], dtype=np.int64)
        self._set(child, guardian)

    @staticmethod
    def part(rows: Sequence[Sequence[Any]]) -> tuple[I64, I64]:
        """(child id, guardian id) rows made arrays (see ``ChildTable.part``)."""
        n = len(rows)
        return np.fromiter((r[0] for r in rows), np.int64, n), np.fromiter((r[1] for r in rows), np.int64, n)

    @classmethod
    def from_parts(cls, parts: Sequence[tuple[I64, I64]]) -> LinkTable:
        """The table of the links of these parts (``part``), one after the other, each child's in
        priority order."""
        new = cls.__new__(cls)
        new._set(_concat([p[0] for p in parts]), _concat([p[1] for p in parts]))
        return new

    def _set(self, child: I64, guardian: I64) -> None:
        order = np.argsort(child, kind="stable")  # keeps each child's priority order
        child, self._guardians = child[order], narrow_ids(guardian[order])
        ids, counts = np.unique(child, return_counts=True)
        self._ids = narrow_ids(ids)
        self._off = _offsets(counts)

    def _row(self, i: int) -> tuple[int, ...]:
        return tuple(self._guardians[self._off[i] : self._off[i + 1]].tolist())

    @property
    def nbytes(self) -> int:
        return self._ids.nbytes + self._off.nbytes + self._guardians.nbytes
