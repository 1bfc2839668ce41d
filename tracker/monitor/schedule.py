"""When things are watched: a route's commute windows on school days, a danger zone's hours.

Pure: built once from the registry and asked about Unix timestamps, in the school's time zone.
School days are the windows' weekdays minus Korean public holidays (the `holidays` package) minus
the school's own closed days.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

import holidays

WEEKDAYS = frozenset(range(5))  # Monday = 0
Destination = Literal["school", "home"]
ROUTE_MODES = ("walk", "bicycle", "shuttle", "bus")
"""How a route is travelled (its speeds: tracker.monitor.Rules.mode_max_mps); a commute window may
name its own (a child who walks to school in the morning and rides the academy's shuttle home)"""


@cache
def public_holidays(country: str = "KR") -> Container[date]:
    """A country's public holidays (years are filled in on demand)."""
    return holidays.country_holidays(country)


def _days(raw: dict[str, Any]) -> frozenset[int]:
    days = frozenset(int(d) for d in raw.get("days", sorted(WEEKDAYS)))
    if not days or not days <= frozenset(range(7)):
        raise ValueError(f"days must be weekday numbers 0-6 (Monday = 0): {raw.get('days')}")
    return days


@dataclass(frozen=True)
class Window:
    """[start, end) in local time on the given weekdays; "24:00" ends at midnight. A route's window
    may name how the route is travelled in it (``mode``, one of ROUTE_MODES; None: the route's own)."""

    start: time
    end: time
    days: frozenset[int] = WEEKDAYS
    mode: str | None = None

    def holds(self, local: datetime) -> bool:
        return local.weekday() in self.days and self.start <= local.time() < self.end

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Window:
        """From the registry's JSON: {"days": [0..6], "start": "07:30", "end": "09:00"}, and a
        route's window may add "mode": "walk" (or "bicycle", "shuttle", "bus")."""
        start = time.fromisoformat(raw["start"])
        end = time.max if raw["end"] in ("24:00", "24:00:00") else time.fromisoformat(raw["end"])
        if not start < end:
            raise ValueError(f"window must start before it ends: {raw['start']}-{raw['end']}")
        mode = raw.get("mode")
        if mode is not None and mode not in ROUTE_MODES:
            raise ValueError(f"a window's mode is one of {', '.join(ROUTE_MODES)}, not {mode!r}")
        return cls(start, end, _days(raw), mode)


@dataclass(frozen=True)
class Arrival:
    """By `at` (local time, on `days`) the child should have reached `to`: the route's end (the
    school) by default, or its start (home). The monitor raises 'not arrived' otherwise."""

    at: time
    days: frozenset[int] = WEEKDAYS
    to: Destination = "school"

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Arrival:
        """From the registry's JSON: {"days": [0..4], "time": "08:40", "to": "school"}."""
        at = time.fromisoformat(raw["time"])
        to = raw.get("to", "school")
        if to == "school":
            return cls(at, _days(raw), "school")
        if to == "home":
            return cls(at, _days(raw), "home")
        raise ValueError(f"an arrival is at 'school' or 'home', not {to!r}")


@dataclass(frozen=True)
class ScheduleAt:
    """A schedule's answers for one moment: watched?, the local day, the deadlines passed by then."""

    watched: bool
    local_day: str
    deadlines: tuple[tuple[str, float, float, Destination], ...]


@dataclass(frozen=True)
class _Day:
    start: float  # the local day's first moment, as a timestamp
    end: float  # the next day's
    iso: str
    watched: tuple[tuple[float, float], ...]  # [start, end) of the windows watching it
    modes: tuple[tuple[float, float, str], ...] = ()  # [start, end) of those naming a mode, and it


@dataclass(frozen=True)
class RouteSchedule:
    timezone: ZoneInfo
    windows: tuple[Window, ...]
    arrivals: tuple[Arrival, ...] = ()
    closed_days: frozenset[date] = field(default_factory=frozenset)
    always: bool = False  # watched around the clock, every day (the demo city)
    country: str | None = "KR"  # whose public holidays are not school days; None: none
    _last_at: list[tuple[float, ScheduleAt] | None] = field(
        default_factory=lambda: [None], compare=False, repr=False
    )  # the last answer of `at`: the clock asks it for every child that shares the schedule
    _last_day: list[_Day | None] = field(default_factory=lambda: [None], compare=False, repr=False)
    # the local day of the last fix asked about (the monitor asks `watched` and `local_day` for every
    # fix; a batch's fixes fall on one or two days): its bounds and watched intervals as timestamps
    modes_named: bool = field(init=False, compare=False, repr=False)
    """some window names its own mode (else ``mode_at`` is None without a look)"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes_named", any(w.mode is not None for w in self.windows))

    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.timezone)

    def school_day(self, day: date) -> bool:
        if day in self.closed_days:
            return False
        return self.country is None or day not in public_holidays(self.country)

    def _day(self, ts: float) -> _Day | None:
        """The local day holding `ts` as timestamps; None on a day whose UTC offset changes (daylight
        saving time: asked of the local time itself)."""
        day = self._last_day[0]
        if day is not None and day.start <= ts < day.end:
            return day
        local_date = self.local(ts).date()
        start = datetime.combine(local_date, time.min, self.timezone)
        end = datetime.combine(local_date + timedelta(days=1), time.min, self.timezone)
        if start.utcoffset() != end.utcoffset():
            return None
        if self.always:
            watched: tuple[tuple[float, float], ...] = ((start.timestamp(), end.timestamp()),)
            modes: tuple[tuple[float, float, str], ...] = ()
        elif not self.school_day(local_date):
            watched, modes = (), ()
        else:
            todays = [w for w in self.windows if local_date.weekday() in w.days]
            watched = tuple(
                (
                    datetime.combine(local_date, w.start, self.timezone).timestamp(),
                    datetime.combine(local_date, w.end, self.timezone).timestamp(),
                )
                for w in todays
            )
            modes = tuple(
                (a, c, w.mode) for (a, c), w in zip(watched, todays, strict=True) if w.mode is not None
            )
        day = _Day(start.timestamp(), end.timestamp(), local_date.isoformat(), watched, modes)
        self._last_day[0] = day
        return day

    def window_at(self, ts: float) -> Window | None:
        """The window watching `ts`, if any (`always`: a whole-day pseudo-window)."""
        local = self.local(ts)
        if self.always:
            return _ALL_DAY
        if not self.school_day(local.date()):
            return None
        return next((w for w in self.windows if w.holds(local)), None)

    def watched(self, ts: float) -> bool:
        day = self._day(ts)
        if day is None:
            return self.window_at(ts) is not None
        for start, end in day.watched:  # noqa: SIM110 - asked for every fix: a generator costs more
            if start <= ts < end:
                return True
        return False

    def mode_at(self, ts: float) -> str | None:
        """The mode the window watching ``ts`` names (None: none does, or no window watches it: the
        route's own mode applies)."""
        if not self.modes_named:
            return None
        day = self._day(ts)
        if day is None:
            window = self.window_at(ts)
            return window.mode if window is not None else None
        for start, end, mode in day.modes:
            if start <= ts < end:
                return mode
        return None

    def local_day(self, ts: float) -> str:
        day = self._day(ts)
        return day.iso if day is not None else self.local(ts).date().isoformat()

    def at(self, ts: float) -> ScheduleAt:
        """What the clock rules ask of the schedule at one moment. Worked out once per moment: a
        tick asks it for every child that shares the schedule (a city's children share a few)."""
        last = self._last_at[0]
        if last is not None and last[0] == ts:
            return last[1]
        answer = ScheduleAt(self.watched(ts), self.local_day(ts), tuple(self.deadlines(ts)))
        self._last_at[0] = (ts, answer)
        return answer

    def deadlines(self, ts: float) -> list[tuple[str, float, float, Destination]]:
        """The arrival deadlines of the local day of `ts` that have passed by `ts`:
        (key, window start, deadline, destination), key naming the day and window."""
        local = self.local(ts)
        day = local.date()
        if not self.always and not self.school_day(day):
            return []
        out = []
        for i, a in enumerate(self.arrivals):
            if day.weekday() not in a.days:
                continue
            deadline = datetime.combine(day, a.at, self.timezone)
            if deadline.timestamp() > ts:
                continue
            # 'arrived' counts from the start of the commute window holding the deadline (else midnight)
            window = next((w for w in self.windows if w.holds(deadline) or w.end == a.at), None)
            begin = datetime.combine(day, window.start if window else time.min, self.timezone)
            out.append((f"{day.isoformat()}/{i}", begin.timestamp(), deadline.timestamp(), a.to))
        return out

    @classmethod
    def from_registry(
        cls,
        timezone: str,
        windows: list[dict[str, Any]],
        *,
        arrivals: Sequence[dict[str, Any]] = (),
        closed_days: frozenset[date] = frozenset(),
        always: bool = False,
        country: str | None = "KR",
    ) -> RouteSchedule:
        return cls(
            ZoneInfo(timezone),
            tuple(Window.parse(w) for w in windows),
            tuple(Arrival.parse(a) for a in arrivals),
            closed_days,
            always,
            country,
        )


_ALL_DAY = Window(time.min, time.max, frozenset(range(7)))


@dataclass(frozen=True)
class Hours:
    """A danger zone's hours ([start, end) local time on weekdays, e.g. a construction site's working
    hours); a zone without hours is always on."""

    timezone: ZoneInfo
    windows: tuple[Window, ...]

    def active(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, self.timezone)
        return any(w.holds(local) for w in self.windows)

    @classmethod
    def from_registry(cls, timezone: str, raw: list[dict[str, Any]]) -> Hours:
        return cls(ZoneInfo(timezone), tuple(Window.parse(w) for w in raw))
