"""Per-child status machine: pure (verdicts + previous state + schedule -> new state + events)."""

from tracker.monitor.machine import step
from tracker.monitor.model import ChildState, Event, EventKind, Observation, Rules, Verdict
from tracker.monitor.schedule import CommuteWindow, RouteSchedule

__all__ = [
    "ChildState",
    "CommuteWindow",
    "Event",
    "EventKind",
    "Observation",
    "RouteSchedule",
    "Rules",
    "Verdict",
    "step",
]
