"""The status a page shows for a child, from the monitor's state: one row per case, and which wins."""

from __future__ import annotations

import pytest

from tracker.monitor.model import ChildState
from tracker.monitor.status import Status, child_status


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, Status.UNKNOWN),
        (ChildState(), Status.UNKNOWN),
        (ChildState(last_ts=1.0), Status.ON_ROUTE),
        (ChildState(last_ts=1.0, at="home"), Status.AT_HOME),
        (ChildState(last_ts=1.0, at="school"), Status.AT_SCHOOL),
        (ChildState(last_ts=1.0, signal_lost=True), Status.SIGNAL_LOST),
        (ChildState(last_ts=1.0, off_route=True), Status.OFF_ROUTE),
        (ChildState(last_ts=1.0, zones_in={7}), Status.IN_DANGER_ZONE),
        # several at once: the most urgent wins
        (ChildState(last_ts=1.0, off_route=True, zones_in={7}, signal_lost=True), Status.IN_DANGER_ZONE),
        (ChildState(last_ts=1.0, off_route=True, signal_lost=True), Status.OFF_ROUTE),
        (ChildState(last_ts=1.0, signal_lost=True, at="school"), Status.SIGNAL_LOST),
        # a zone counted but not yet confirmed is not "in a danger zone"
        (ChildState(last_ts=1.0, zone_counts={7: 1}), Status.ON_ROUTE),
    ],
)
def test_status_from_monitor_state(state: ChildState | None, expected: Status) -> None:
    assert child_status(state) == expected


def test_status_survives_the_checkpoint_round_trip() -> None:
    state = ChildState(last_ts=5.0, off_route=True, zones_in={3})
    assert child_status(ChildState.from_json(state.to_json())) == Status.IN_DANGER_ZONE
