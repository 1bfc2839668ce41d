"""The schedule's day memo (bounds and windows of the last local day, as timestamps) answers exactly as
the local time does, on school days, holidays, closed days, and days whose UTC offset changes."""

from __future__ import annotations

import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from tracker.monitor.schedule import RouteSchedule

WINDOWS = [
    {"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00"},
    {"days": [0, 1, 2, 3, 4], "start": "14:00", "end": "16:30"},
    {"days": [5], "start": "22:00", "end": "24:00"},
]


def _by_local_time(s: RouteSchedule, ts: float) -> tuple[bool, str]:
    return s.window_at(ts) is not None, s.local(ts).date().isoformat()


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
        assert (schedule.watched(ts), schedule.local_day(ts)) == _by_local_time(schedule, ts), ts
    for edge in ("2026-03-08T01:59:59", "2026-03-08T03:00:00", "2026-11-01T01:30:00", "2026-09-25T07:30:00"):
        ts = datetime.fromisoformat(edge).replace(tzinfo=ZoneInfo(timezone)).timestamp()
        for t in (ts - 1e-3, ts, ts + 1e-3):
            assert (schedule.watched(t), schedule.local_day(t)) == _by_local_time(schedule, t)
