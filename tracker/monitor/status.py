"""A child's status at a glance, derived from the monitor's own state: the one place this is decided.

The pages (parent, school) and the API show it; it never raises or resolves anything. The order says
which status wins when several hold at once: the most urgent for a parent first.
"""

from __future__ import annotations

from enum import StrEnum

from tracker.monitor.model import ChildState


class Status(StrEnum):
    IN_DANGER_ZONE = "in_danger_zone"  # an entered-zone incident is open
    OFF_ROUTE = "off_route"  # a left-route incident is open
    SIGNAL_LOST = "signal_lost"  # no usable fix for a while inside a commute window
    AT_SCHOOL = "at_school"  # inside the school's fence (or seen by its gate)
    AT_HOME = "at_home"  # inside the home fence round the route's start
    ON_ROUTE = "on_route"  # none of the above, and a fix has been decided
    UNKNOWN = "unknown"  # the monitor has not decided any fix of this child yet


def child_status(state: ChildState | None) -> Status:
    """The status shown for a child whose checkpointed monitor state is ``state`` (None: none kept)."""
    if state is None:
        return Status.UNKNOWN
    if state.zones_in:
        return Status.IN_DANGER_ZONE
    if state.off_route:
        return Status.OFF_ROUTE
    if state.signal_lost:
        return Status.SIGNAL_LOST
    if state.at == "school":
        return Status.AT_SCHOOL
    if state.at == "home":
        return Status.AT_HOME
    if state.last_ts is None:
        return Status.UNKNOWN
    return Status.ON_ROUTE
