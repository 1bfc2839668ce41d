"""Which previous fix the geofence draws each fix's segment from (tracker.monitor.segments)."""

from __future__ import annotations

import math

from tracker.monitor import ChildState, previous_fixes

DECIDED = ChildState(last_ts=100.0, last_lon=127.0, last_lat=37.5, last_acc=12.0)


def _prev(children: list[int], ts: list[float], states: dict[int, ChildState]) -> list[tuple[float, ...]]:
    lon = [127.0 + i / 1000 for i in range(len(ts))]
    lat = [37.5 + i / 1000 for i in range(len(ts))]
    acc = [10.0 + i for i in range(len(ts))]
    out = previous_fixes(children, ts, lon, lat, acc, states)
    return [tuple(float(a[i]) for a in out) for i in range(len(ts))]


def test_a_first_fix_starts_from_the_last_decided_fix_in_the_state() -> None:
    assert _prev([1], [115.0], {1: DECIDED}) == [(100.0, 127.0, 37.5, 12.0)]


def test_a_child_never_seen_has_no_previous_fix() -> None:
    (got,) = _prev([1], [115.0], {})
    assert all(math.isnan(x) for x in got)


def test_a_second_fix_in_the_batch_starts_from_the_first() -> None:
    got = _prev([1, 1], [115.0, 130.0], {1: DECIDED})
    assert got[1] == (115.0, 127.0, 37.5, 10.0)


def test_a_fix_in_the_batch_older_than_the_state_is_skipped() -> None:
    """A stale fix will not decide: the segment of the next one starts from the state's fix."""
    got = _prev([1, 1], [90.0, 130.0], {1: DECIDED})
    assert got[1] == (100.0, 127.0, 37.5, 12.0)


def test_children_do_not_share_segments() -> None:
    got = _prev([1, 2], [115.0, 116.0], {1: DECIDED})
    assert got[0] == (100.0, 127.0, 37.5, 12.0)
    assert all(math.isnan(x) for x in got[1])


def test_fixes_of_children_interleaved_come_back_in_the_callers_order() -> None:
    got = _prev([2, 1, 2, 1], [115.0, 115.0, 130.0, 130.0], {1: DECIDED})
    assert all(math.isnan(x) for x in got[0])  # child 2's first fix: nothing before it
    assert got[1] == (100.0, 127.0, 37.5, 12.0)  # child 1's first: its state
    assert got[2] == (115.0, 127.0, 37.5, 10.0)  # child 2's second: its first (index 0)
    assert got[3] == (115.0, 127.001, 37.501, 11.0)  # child 1's second: its first (index 1)
