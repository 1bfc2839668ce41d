"""Which partition a child is in, and which children a worker owns (pure: no I/O).

A child is in partition ``child_id % partitions``. Partitions are of children, not of tags: a child
may carry several tags (a watch, a phone, an RFID card) and a gateway's message carries many tags,
while "one writer per child" is what the monitor's state needs. Child ids come from a sequence, so
the modulo spreads them evenly over the partitions (consecutive ids go to consecutive partitions:
a school enrolled at once is spread over every worker), and it is the same on every worker, in
Python, in NumPy and in SQL (``child_id % $partitions``), without a table to share.

``Share`` is a worker's ownership at one moment: the partitions it holds and each one's fencing token
(``tracker.cluster.leases`` keeps it; ``tracker.cluster.fencing`` checks the tokens in a commit).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

NOT_OWNED = -1
"""The token a batch carries for a partition its worker did not own when it was prepared: no lease
ever has it (tokens start at 0 and only go up), so a commit carrying it is always fenced."""


def partition_of_child(child_id: int, partitions: int) -> int:
    """The partition of a child: its id modulo the partition count (see the module's docstring)."""
    return child_id % partitions


def partitions_of_children(child_ids: np.ndarray, partitions: int) -> np.ndarray:
    """``partition_of_child`` of every id of an integer array (non-negative ids: NumPy's % and
    Python's agree on them)."""
    return np.asarray(child_ids, dtype=np.int64) % partitions


@dataclass(frozen=True)
class Share:
    """The partitions a worker owns at one moment, with the token of each (a snapshot: the lease
    keeper's ``owned`` moves on, this does not)."""

    partitions: int
    tokens: Mapping[int, int] = field(default_factory=dict)  # partition -> fencing token

    def owns(self, child_id: int) -> bool:
        return child_id % self.partitions in self.tokens

    def owned_mask(self, child_ids: np.ndarray) -> np.ndarray:
        """Which of these children are in an owned partition."""
        return np.isin(partitions_of_children(child_ids, self.partitions), list(self.tokens))

    def tokens_for(self, child_ids: np.ndarray) -> dict[int, int]:
        """The token of every partition these children are in (``NOT_OWNED`` for one not owned): what
        a batch of theirs is prepared under, and what its commit checks."""
        found = np.unique(partitions_of_children(child_ids, self.partitions)).tolist()
        return {p: self.tokens.get(p, NOT_OWNED) for p in found}

    @property
    def owned(self) -> list[int]:
        return sorted(self.tokens)


class Ownership(Protocol):
    """What the pipeline and the clock ask of a worker's lease keeper (tracker.cluster.leases)."""

    def share(self) -> Share:
        """The partitions owned now, with their tokens."""
        ...

    def fenced(self, stale: Mapping[int, int]) -> None:
        """A commit was fenced: these partitions (-> the token it was prepared under) changed hands."""
        ...


def default_worker_id() -> str:
    """A worker's name when TRACKER_WORKER_ID is empty: hostname-pid (unique per process)."""
    return f"{socket.gethostname()}-{os.getpid()}"
