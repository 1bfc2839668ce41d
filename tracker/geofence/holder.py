"""Hot swap of the geofence index without a restart.

A batch of fixes takes ``holder.current`` once and uses that one index for everything (resolving
route slots *and* checking): indexes are immutable, and :meth:`IndexHolder.swap` replaces the
reference in one assignment, so a batch never sees half of an old and half of a new index.
"""

from __future__ import annotations

import threading

from tracker.geofence.index import GeofenceIndex

__all__ = ["IndexHolder"]


class IndexHolder:
    """Holds the current :class:`GeofenceIndex`; readers take no lock, swappers serialise."""

    __slots__ = ("_index", "_lock")

    def __init__(self, index: GeofenceIndex) -> None:
        if not isinstance(index, GeofenceIndex):
            raise TypeError(f"IndexHolder needs a GeofenceIndex, got {type(index).__name__}")
        self._index = index
        self._lock = threading.Lock()

    @property
    def current(self) -> GeofenceIndex:
        """The index to use for one whole batch (take it once per batch)."""
        return self._index

    def swap(self, index: GeofenceIndex) -> None:
        """Make ``index`` current (one reference assignment).

        Raises ``ValueError`` when ``index`` is older (lower ``version``) than the current one: a build
        that finishes late must not replace a newer index. Swapping in the current index is a no-op.
        """
        if not isinstance(index, GeofenceIndex):
            raise TypeError(f"IndexHolder.swap needs a GeofenceIndex, got {type(index).__name__}")
        with self._lock:
            if index.version < self._index.version:
                raise ValueError(
                    f"refusing to swap in index version {index.version}: current is {self._index.version}"
                )
            self._index = index
