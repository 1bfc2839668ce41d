"""How many child-days a run needs to decide a target, and how long that takes (issue 15.5).

Pure: a target, what one child-day holds of the thing it counts (departures, stays of a cell, hours
standing by a zone, crosswalk crossings, child-days themselves) and the run's speed in, child-days
and hours out.

A target is decided when its 95 % interval lies wholly on one side of the bound it names: a recall
"at least 99.5 % with the lower bound at least 99 %" is met once the Clopper-Pearson lower bound
reaches 99 %; a rate "at most 1 per 1,000 child-days with the upper bound at most 2" once the exact
Poisson upper bound is at most 2 (for the other rates, which name no bound of their own, twice the
target, as for that one). How many cases that takes depends on the truth, so three figures:

* ``all_right``: nothing missed (recall) or nothing raised (rate): the fewest cases that can meet it;
* ``at_target``: the truth exactly at the target (recall 99.5 %, rate 1 per 1,000): the cases a run
  needs to show a rule that only just meets it does;
* ``refute``: for a rate measured above its bound, the cases that put the lower bound above the
  target at the measured rate (already decided when the run's own interval says so).

Cases become child-days by what one child-day of the world holds of them, and child-days become
time by the fixes a child-day holds at the interval (86,400 / interval: tags are on all day) over
the run's fixes per second (what the whole bench does: simulating the fixes and judging them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from bench.quality.score import clopper_pearson, poisson_interval


@dataclass(frozen=True)
class Recall:
    """At least ``goal`` of the cases caught, the 95 % lower bound at least ``lower``."""

    name: str
    goal: float = 0.995
    lower: float = 0.99


@dataclass(frozen=True)
class Rate:
    """At most ``goal`` per ``per`` units, the 95 % upper bound at most ``upper``."""

    name: str
    goal: float
    per: float
    unit: str
    upper: float


@cache
def recall_cases(t: Recall) -> dict[str, int]:
    """Cases a run needs: every one caught (``all_right``), or ``goal`` of them (``at_target``)."""
    all_right = math.ceil(math.log(0.025) / math.log(t.lower))  # (alpha/2)^(1/n) >= lower
    lo, hi = all_right, all_right
    while _lower(math.floor(t.goal * hi), hi) < t.lower:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # the first n whose lower bound at recall ``goal`` reaches ``lower``
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _lower(math.floor(t.goal * mid), mid) >= t.lower else (mid, hi)
    return {"all_right": all_right, "at_target": hi}


def _lower(k: int, n: int) -> float:
    ci = clopper_pearson(k, n)
    return 0.0 if ci is None else ci[0]


def rate_exposure(t: Rate, measured: float | None = None) -> dict[str, float | None]:
    """Units of exposure (child-days, hours, crossings, incidents) a run needs: with no event at all,
    with the truth at ``goal``, and (``measured`` above ``upper``) to refute it at that rate."""
    zero = poisson_interval(0)[1] / t.upper * t.per
    k = 1
    while poisson_interval(k)[1] > k * t.upper / t.goal:
        k += 1
    refute: float | None = None
    if measured is not None and measured > t.goal:
        j = 1
        while poisson_interval(j)[0] <= j * t.goal / measured:
            j += 1
        refute = j / measured * t.per
    return {"all_right": zero, "at_target": k / t.goal * t.per, "refute": refute}


def child_days(cases: float | None, per_child_day: float) -> float | None:
    """Child-days that hold ``cases`` when one child-day holds ``per_child_day`` (None: never)."""
    if cases is None or per_child_day <= 0:
        return None
    return cases / per_child_day


def run_hours(days: float | None, fixes_per_child_day: float, fixes_per_s: float) -> float | None:
    """Hours to run ``days`` child-days of ``fixes_per_child_day`` each at ``fixes_per_s`` (a
    child-day of the city-like world is 24 hours of tag time: 86,400 / the interval)."""
    if days is None or fixes_per_s <= 0:
        return None
    return days * fixes_per_child_day / fixes_per_s / 3600.0


def decide(
    targets: list[tuple[Recall | Rate, float, float | None]], fixes_per_child_day: float, fixes_per_s: float
) -> dict[str, dict[str, object]]:
    """For each (target, its cases or units per child-day, the measured rate or None): the cases
    and child-days each figure of the module's docstring needs, and the hours at this speed."""
    out: dict[str, dict[str, object]] = {}
    for t, per_day, measured in targets:
        need: dict[str, float | None] = dict(
            recall_cases(t) if isinstance(t, Recall) else rate_exposure(t, measured)
        )
        row: dict[str, object] = {"per_child_day": round(per_day, 5)}
        for key, cases in need.items():
            days = child_days(cases, per_day)
            hours = run_hours(days, fixes_per_child_day, fixes_per_s)
            row[key] = {
                "cases": None if cases is None else round(cases, 1),
                "child_days": None if days is None else math.ceil(days),
                "hours": None if hours is None else round(hours, 2),
            }
        out[t.name] = row
    return out


DEPARTURES = Recall("departures >= 60 m for >= 30 s: recall")
FALSE_ALARMS = Rate("false alarms per 1,000 child-days", 1.0, 1000.0, "child-days", 2.0)
STAND_15_50 = Rate("standing 15-50 m: per 1,000 h", 1.0, 1000.0, "hours", 2.0)
STAND_5_15 = Rate("standing 5-15 m: per 100 h", 1.0, 100.0, "hours", 2.0)
CROSSWALK = Rate("own crosswalk: per 1,000 crossings", 1.0, 1000.0, "crossings", 2.0)
REPEATS = Rate("repeated alerts per 100 incidents", 1.0, 100.0, "incidents", 2.0)


def _per_day(x: dict[str, Any], days: int, key: str = "n") -> float:
    return float(x.get(key) or 0.0) / days if days else 0.0


def city_targets(f: dict[str, Any]) -> list[tuple[Recall | Rate, float, float | None]]:
    """Issue 15.5's targets of the city-like world with what one of its child-days holds of each,
    read off one run's figures (``city_score.score_city``)."""
    days = f["child_days"]
    fa = f["false_alarms"]
    out: list[tuple[Recall | Rate, float, float | None]] = [
        (DEPARTURES, _per_day(f["departures"]["recall"], days), None)
    ]
    for name, x in f["stays"]["targets"].items():
        out.append((Recall(f"stays {name}: recall"), _per_day(x, days), None))
    for t, key in (
        (FALSE_ALARMS, "per_1000_child_days"),
        (STAND_15_50, "per_1000_h_standing_15_50_m"),
        (STAND_5_15, "per_100_h_standing_5_15_m"),
        (CROSSWALK, "per_1000_crosswalk_crossings"),
        (REPEATS, "repeated_per_100_incidents"),
    ):
        out.append((t, _per_day(fa[key], days, "exposure"), fa[key]["value"]))
    return out


def today_targets(r: dict[str, Any]) -> list[tuple[Recall | Rate, float, float | None]]:
    """The same for today's world (its commute windows only: a child-day is 5 h 40 min of fixes)."""
    days = r["params"]["child_days"]
    ci = r["ci95"]
    return [
        (DEPARTURES, _per_day(ci["recall_departures_target"], days), None),
        (Recall("zone entries >= 10 s: recall"), _per_day(ci["recall_zone_entries_target"], days), None),
        (FALSE_ALARMS, 1.0, ci["false_alarms_per_1000_child_days"]["value"]),
    ]
