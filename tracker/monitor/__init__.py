"""Per-child status machine: pure (verdicts + previous state + clock -> new state + events)."""

from tracker.monitor.machine import gate, judge, metres, step, tick
from tracker.monitor.model import (
    ChildContext,
    ChildState,
    Event,
    EventKind,
    Observation,
    Place,
    Rules,
    Verdict,
)
from tracker.monitor.schedule import Arrival, Hours, RouteSchedule, Window, public_holidays
from tracker.monitor.segments import previous_fixes

__all__ = [
    "Arrival",
    "ChildContext",
    "ChildState",
    "Event",
    "EventKind",
    "Hours",
    "Observation",
    "Place",
    "RouteSchedule",
    "Rules",
    "Verdict",
    "Window",
    "gate",
    "judge",
    "metres",
    "previous_fixes",
    "public_holidays",
    "step",
    "tick",
]
