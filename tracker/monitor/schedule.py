"""When a route is watched: its commute windows, in the school's time zone.

Pure: a schedule is built once from the registry and asked about Unix timestamps.
School days are the window's weekdays; public holidays and a school's closed days come with the
alert-rules issue (the `holidays` package), and plug in here as `closed_days`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAYS = frozenset(range(5))  # Monday = 0


@dataclass(frozen=True)
class CommuteWindow:
    """[start, end) in local time on the given weekdays; end 24:00 is written as start < end = time.max."""

    start: time
    end: time
    days: frozenset[int] = WEEKDAYS

    def holds(self, local: datetime) -> bool:
        return local.weekday() in self.days and self.start <= local.time() < self.end

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> CommuteWindow:
        """From the registry's JSON: {"days": [0..6], "start": "07:30", "end": "09:00"}."""
        start = time.fromisoformat(raw["start"])
        end = time.max if raw["end"] in ("24:00", "24:00:00") else time.fromisoformat(raw["end"])
        if not start < end:
            raise ValueError(f"commute window must start before it ends: {raw['start']}-{raw['end']}")
        days = frozenset(int(d) for d in raw.get("days", sorted(WEEKDAYS)))
        if not days or not days <= frozenset(range(7)):
            raise ValueError(
                f"commute window days must be weekday numbers 0-6 (Monday = 0): {raw.get('days')}"
            )
        return cls(start, end, days)


@dataclass(frozen=True)
class RouteSchedule:
    timezone: ZoneInfo
    windows: tuple[CommuteWindow, ...]
    closed_days: frozenset[date] = field(default_factory=frozenset)
    always: bool = False  # watched around the clock (the demo city)

    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.timezone)

    def watched(self, ts: float) -> bool:
        if self.always:
            return True
        local = self.local(ts)
        if local.date() in self.closed_days:
            return False
        return any(w.holds(local) for w in self.windows)

    def local_day(self, ts: float) -> str:
        return self.local(ts).date().isoformat()

    @classmethod
    def from_registry(
        cls, timezone: str, windows: list[dict[str, Any]], *, always: bool = False
    ) -> RouteSchedule:
        return cls(ZoneInfo(timezone), tuple(CommuteWindow.parse(w) for w in windows), always=always)
