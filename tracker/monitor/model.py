"""The monitor's vocabulary: what it is shown, what it remembers, what it says."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    LEFT_ROUTE = "left_route"
    BACK_ON_ROUTE = "back_on_route"
    ENTERED_ZONE = "entered_zone"
    LEFT_ZONE = "left_zone"
    SOS = "sos"
    LOW_BATTERY = "low_battery"


class Verdict(StrEnum):
    """Whether a fix was allowed to decide anything, and if not, why (a metric label)."""

    DECIDED = "decided"
    DUPLICATE = "duplicate"  # same timestamp as the last decided fix
    STALE = "stale"  # older than the child's last decided fix
    POOR_ACCURACY = "poor_accuracy"  # accuracy radius above the limit


@dataclass(frozen=True)
class Observation:
    """One fix of one child, with the geofence core's answers for it."""

    ts: float
    acc: float
    route_distance_m: float  # nan: the child has no route (or it is not in the index)
    corridor_m: float
    certain_zones: frozenset[int]  # zones whose interior holds the whole accuracy circle
    possible_zones: frozenset[int]  # zones that may hold the fix
    batt: int | None = None
    sos: bool = False

    @property
    def has_route(self) -> bool:
        return not math.isnan(self.route_distance_m)

    @property
    def certainly_off_route(self) -> bool:
        """Off the corridor even if the true position is the reported one moved `acc` towards the route.

        The direction is chosen on purpose: a parent is only told when the fix cannot be jitter.
        """
        return self.route_distance_m - self.acc > self.corridor_m

    @property
    def on_route(self) -> bool:
        """The reported position is inside the corridor (the gap to `certainly_off_route` is the
        hysteresis band: a fix in it neither raises nor resolves)."""
        return self.route_distance_m <= self.corridor_m


@dataclass(frozen=True)
class Rules:
    """Thresholds of the alert rules (Settings carries them from the environment)."""

    max_accuracy_m: float = 100.0
    off_route_min_fixes: int = 2
    off_route_min_s: float = 10.0
    on_route_min_fixes: int = 2
    zone_confirm_fixes: int = 2
    zone_exit_fixes: int = 2
    low_battery_pct: int = 15


@dataclass
class ChildState:
    """What the monitor remembers of one child between fixes (checkpointed as JSON)."""

    last_ts: float | None = None
    off_route: bool = False  # a 'left route' incident is open
    off_count: int = 0  # consecutive fixes certainly off the corridor
    off_since: float | None = None  # ts of the first of them
    on_count: int = 0  # consecutive fixes back inside, while off route
    zone_counts: dict[int, int] = field(default_factory=dict)  # zone -> consecutive certain fixes
    zones_in: set[int] = field(default_factory=set)  # zones with an open incident
    zone_exit_counts: dict[int, int] = field(default_factory=dict)  # zone -> consecutive fixes outside
    low_battery_day: str | None = None  # local date of the last low-battery notice

    def to_json(self) -> dict[str, Any]:
        return {
            "last_ts": self.last_ts,
            "off_route": self.off_route,
            "off_count": self.off_count,
            "off_since": self.off_since,
            "on_count": self.on_count,
            "zone_counts": {str(k): v for k, v in self.zone_counts.items()},
            "zones_in": sorted(self.zones_in),
            "zone_exit_counts": {str(k): v for k, v in self.zone_exit_counts.items()},
            "low_battery_day": self.low_battery_day,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ChildState:
        return cls(
            last_ts=raw.get("last_ts"),
            off_route=bool(raw.get("off_route", False)),
            off_count=int(raw.get("off_count", 0)),
            off_since=raw.get("off_since"),
            on_count=int(raw.get("on_count", 0)),
            zone_counts={int(k): int(v) for k, v in raw.get("zone_counts", {}).items()},
            zones_in={int(z) for z in raw.get("zones_in", [])},
            zone_exit_counts={int(k): int(v) for k, v in raw.get("zone_exit_counts", {}).items()},
            low_battery_day=raw.get("low_battery_day"),
        )


@dataclass(frozen=True)
class Event:
    """A status change of one child, decided by one fix."""

    kind: EventKind
    ts: float
    zone_id: int | None = None
