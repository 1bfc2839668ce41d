"""Partitions of the children (tracker.cluster.partitions): the same partition in Python, NumPy and
SQL's terms, spread evenly over a sequence of ids, and a worker's share read as its tokens; the
clock's pass over a worker's own children only."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.unit.test_clock_scan import _state
from tests.unit.test_monitor_rules import ARRIVE_BY, MORNING, RULES, T0
from tracker.clock import due_children
from tracker.cluster.partitions import (
    NOT_OWNED,
    Share,
    default_worker_id,
    partition_of_child,
    partitions_of_children,
)
from tracker.monitor import ChildContext, RouteSchedule


@pytest.mark.parametrize(
    ("child_id", "partitions", "partition"),
    [
        (0, 64, 0),
        (1, 64, 1),
        (63, 64, 63),
        (64, 64, 0),
        (130, 64, 2),
        (2**40 + 5, 64, 5),  # bigint ids
        (7, 1, 0),  # one partition: every child
        (10, 3, 1),
    ],
)
def test_a_child_is_in_its_id_modulo_the_partition_count(
    child_id: int, partitions: int, partition: int
) -> None:
    assert partition_of_child(child_id, partitions) == partition
    assert partitions_of_children(np.array([child_id], dtype=np.int64), partitions).tolist() == [partition]


def test_a_sequence_of_ids_is_spread_evenly_and_the_array_form_agrees() -> None:
    ids = np.arange(1001, 1001 + 400_000, dtype=np.int64)  # ids as a sequence hands them out
    parts = partitions_of_children(ids, 64)
    assert parts.tolist()[:5] == [partition_of_child(int(c), 64) for c in ids[:5]]
    counts = np.bincount(parts, minlength=64)
    assert counts.min() == counts.max() == 400_000 // 64


def test_a_share_names_the_token_of_each_partition_of_a_batch() -> None:
    share = Share(4, {0: 7, 2: 3})
    children = np.array([8, 12, 2, 5, 6], dtype=np.int64)  # partitions 0, 0, 2, 1, 2
    assert share.tokens_for(children) == {0: 7, 1: NOT_OWNED, 2: 3}
    assert share.owned_mask(children).tolist() == [True, True, True, False, True]
    assert [share.owns(int(c)) for c in children] == [True, True, True, False, True]
    assert share.owned == [0, 2]
    assert Share(4).tokens_for(children) == {0: NOT_OWNED, 1: NOT_OWNED, 2: NOT_OWNED}


def test_a_worker_id_by_default_names_the_host_and_the_process() -> None:
    import os

    assert default_worker_id().endswith(f"-{os.getpid()}")


def test_the_clock_pass_of_a_worker_is_the_whole_pass_restricted_to_its_children() -> None:
    rng = random.Random(11)
    schedules: list[RouteSchedule] = [MORNING, ARRIVE_BY]
    contexts = {c: ChildContext(schedule=schedules[c % 2]) for c in range(3000)}
    view: Any = SimpleNamespace(contexts=contexts)
    share = Share(8, {1: 1, 4: 1, 5: 1})
    for minutes in (0, 41, 45, 61, 900):
        now = T0 + 60 * minutes
        day = ARRIVE_BY.at(now).local_day
        states = {c: _state(rng, day) for c in range(0, 3000, 3)}
        awaited = [(ARRIVE_BY, [c for c in range(1, 3000, 2) if c not in states])]
        everyone = due_children(states, awaited, view, now, RULES)
        mine = due_children(states, awaited, view, now, RULES, share.owns)
        assert sorted(mine) == sorted(c for c in everyone if c % 8 in (1, 4, 5)), minutes
        assert any(c % 8 not in (1, 4, 5) for c in everyone)  # the others' children were due too
