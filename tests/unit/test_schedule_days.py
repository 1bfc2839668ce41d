"""The schedule's day memo (bounds and windows of the last local day, as timestamps) answers exactly as
the local time does, on school days, holidays, closed days, and days whose UTC offset changes: whether
the moment is watched, its local day, and the mode its window names."""

from __future__ import annotations

import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from tracker.monitor.schedule import RouteSchedule

WINDOWS = [
    {"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00", "mode": "walk"},
    {"days": [0, 1, 2, 3, 4], "start": "14:00", "end": "16:30"},
    {"days": [5], "start": "22:00", "end": "24:00"},
]


def _by_local_time(s: RouteSchedule, ts: float) -> tuple[bool, str, str | None]:
    window = s.window_at(ts)
    return window is not None, s.local(ts).date().isoformat(), window.mode if window else None


def _memo(s: RouteSchedule, ts: float) -> tuple[bool, str, str | None]:
    return s.watched(ts), s.local_day(ts), s.mode_at(ts)


@pytest.mark.parametrize(
    ("timezone", "always"),
    [
        ("Asia/Seoul", False),  # public holidays (Chuseok, ...)
        ("America/New_York", False),  # daylight saving time starts and ends
        ("Australia/Lord_Howe", False),  # a half-hour shift
        ("Asia/Seoul", True),
    ],
)
def test_the_day_memo_answers_as_the_local_time_does(timezone: str, always: bool) -> None:
    schedule = RouteSchedule.from_registry(
        timezone, WINDOWS, closed_days=frozenset({date(2026, 5, 13)}), always=always
    )
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=ZoneInfo(timezone)).timestamp()
    ts = start
    for _ in range(40_000):  # a walk through the year, mostly in small steps as fixes come
        ts += rng.choice([1.0, 15.0, 60.0, 900.0, 3600.0 * 7])
        assert _memo(schedule, ts) == _by_local_time(schedule, ts), ts
    for edge in ("2026-03-08T01:59:59", "2026-03-08T03:00:00", "2026-11-01T01:30:00", "2026-09-25T07:30:00"):
        ts = datetime.fromisoformat(edge).replace(tzinfo=ZoneInfo(timezone)).timestamp()
        for t in (ts - 1e-3, ts, ts + 1e-3):
            assert _memo(schedule, t) == _by_local_time(schedule, t)


def test_a_window_names_a_mode_of_a_route_or_none() -> None:
    schedule = RouteSchedule.from_registry("Asia/Seoul", WINDOWS)
    morning = datetime(2026, 12, 7, 8, 0, tzinfo=ZoneInfo("Asia/Seoul")).timestamp()
    assert schedule.modes_named and schedule.mode_at(morning) == "walk"
    assert schedule.mode_at(morning + 6 * 3600) is None  # 14:00: the route's own mode
    assert schedule.mode_at(morning - 3600) is None  # no window
    assert not RouteSchedule.from_registry("Asia/Seoul", WINDOWS[1:]).modes_named
    with pytest.raises(ValueError, match="mode is one of walk, bicycle, shuttle, bus, not 'car'"):
        RouteSchedule.from_registry("Asia/Seoul", [WINDOWS[0] | {"mode": "car"}])
