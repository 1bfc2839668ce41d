"""bench/alert_quality.py: its scoring on a hand-made truth, and a tiny run of the whole bench.

The tiny run (16 children, one morning commute window, a high incident rate) takes a few seconds;
it checks what the bench exists to show: on the same fixes the monitor catches every departure the
issue's target covers, as the naive rule does, with far fewer false alarms.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import alert_quality  # noqa: E402
from bench.quality import score  # noqa: E402
from bench.quality.score import Alert, Incident  # noqa: E402
from bench.quality.sim import (  # noqa: E402
    ARRIVALS,
    BEYOND_MIN_S,
    WINDOWS,
    ZONE_MIN_S,
    Outcome,
    Params,
    simulate,
)

# --- scoring on a hand-made truth -----------------------------------------------------------------

INCIDENTS = [
    Incident("leave_route", child=1, start=100, end=200, match_from=90),  # 0: hit early, then again
    Incident("enter_zone", child=1, start=300, end=400, zone_id=7),  # 1: hit (a wrong-zone alert first)
    Incident("enter_zone", child=2, start=100, end=150, zone_id=7),  # 2: alert too late: missed
    Incident("leave_route", child=2, start=500, end=540, target=False),  # 3: missed, below target
    Incident("sos", child=3, start=50, end=50, target=False),  # 4: hit at once
    Incident("go_silent", child=3, start=600, end=900, target=False, in_scope=False),  # 5: not judged
    Incident("leave_route", child=4, start=100, end=200),  # 6: hit on the last second of the grace
]
ALERTS = [
    Alert(1, "left_route", 95),  # hit 0 (after match_from, before start): delay -5
    Alert(1, "left_route", 150),  # duplicate of 0
    Alert(1, "entered_zone", 320, zone_id=8),  # wrong zone: false alarm
    Alert(1, "entered_zone", 330, zone_id=7),  # hit 1: delay 30
    Alert(2, "entered_zone", 211, zone_id=7),  # after end + grace (210): false alarm
    Alert(3, "sos", 50),  # hit 4: delay 0
    Alert(3, "signal_lost", 800),  # explained by an incident out of scope: ignored
    Alert(4, "left_route", 260),  # hit 6: end + grace exactly, delay 160
    Alert(5, "left_route", 100),  # no incident at all: false alarm
    Alert(2, "not_arrived", 1000, detail="school"),  # explained by incident 2, the first of child 2
    Alert(5, "not_arrived", 100, detail="school"),  # nothing explains it: false alarm
]


def test_matching_sorts_every_alert_into_exactly_one_bin() -> None:
    m = score.match(INCIDENTS, ALERTS, grace_s=60.0)
    assert {i: a.ts for i, a in m.hit_by.items()} == {0: 95, 1: 330, 4: 50, 6: 260}
    assert [(i, a.ts) for i, a in m.duplicates] == [(0, 150)]
    assert sorted((a.child, a.kind, a.ts) for a in m.false_alarms) == [
        (1, "entered_zone", 320),
        (2, "entered_zone", 211),
        (5, "left_route", 100),
        (5, "not_arrived", 100),
    ]
    assert [(i, a.kind) for i, a in m.explained] == [(2, "not_arrived")]
    assert [a.kind for a in m.ignored] == ["signal_lost"]
    binned = len(m.hit_by) + len(m.duplicates) + len(m.false_alarms) + len(m.explained) + len(m.ignored)
    assert binned == len(ALERTS)


def test_recall_false_alarm_rate_and_delay_are_computed_from_the_matching() -> None:
    m = score.match(INCIDENTS, ALERTS, grace_s=60.0)
    s = score.summarize(INCIDENTS, ALERTS, m, child_days=8)
    r = s["recall"]
    assert r["overall"] == round(4 / 6, 4)  # six incidents in scope, four hit
    assert r["target"] == 0.75  # targets 0, 1, 2, 6: all but 2
    assert r["departures_target"] == 1.0
    assert r["zone_entries_target"] == 0.5
    assert r["leave_route"] == {"all": round(2 / 3, 4), "target": 1.0}
    assert r["sos"] == {"all": 1.0, "target": None}
    assert "go_silent" not in r  # its only incident is out of scope
    assert s["false_alarms"] == {"total": 4, "entered_zone": 2, "left_route": 1, "not_arrived": 1}
    assert s["false_alarms_per_1000_child_days"] == 500.0
    assert s["duplicates"] == 1
    # target departures and zone entries hit after -5, 30 and 160 s
    assert s["delay_s"]["target"] == {"median": 30.0, "p95": 147.0, "n": 3}
    assert s["delay_s"]["sos"]["median"] == 0.0
    t = score.targets(s, {"false_alarms": {"total": 399}})
    assert t["recall_departures_100"] and not t["recall_zone_entries_100"]
    assert not t["median_delay_le_20s"]
    assert not t["false_alarms_100x_fewer"]  # 399 < 100 x 4
    assert score.targets(s, {"false_alarms": {"total": 400}})["false_alarms_100x_fewer"]
    assert not t["false_alarms_below_1_per_1000_child_days"]
    assert not t["all"]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 0.5, None), ([3.0], 0.95, 3.0), ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5), ([0.0, 10.0], 0.95, 9.5)],
)
def test_quantile_interpolates_like_numpy(values: list[float], q: float, expected: float | None) -> None:
    assert score.quantile(values, q) == expected


# --- a tiny run of the bench ----------------------------------------------------------------------

TINY = Params(
    children=16,
    days=1,
    schools=2,
    incidents_per_hour=2.0,
    windows=(WINDOWS[0],),
    arrivals=(ARRIVALS[0],),
    workers=1,
)


@pytest.fixture(scope="module")
def tiny() -> tuple[Outcome, dict[str, Any]]:
    out, elapsed = simulate(TINY)
    matchings = {rule: score.match(out.incidents, out.alerts[rule]) for rule in ("monitor", "naive")}
    return out, alert_quality.report(TINY, out, matchings, elapsed, 1)


def test_tiny_run_has_incidents_of_every_kind_and_truth_that_fits_the_target(
    tiny: tuple[Outcome, dict[str, Any]],
) -> None:
    out, _ = tiny
    counts = score.incident_counts(out.incidents)
    for kind in ("leave_route", "zone_walk_departure", "enter_zone", "sos"):
        assert counts[kind]["all"] > 0, kind
    for inc in out.incidents:
        if not inc.in_scope:  # begun after the window: maybe cut short by the end of the run
            continue
        assert inc.end >= inc.start
        if inc.kind in score.DEPARTURES:
            assert inc.target == (inc.facts["beyond60_s"] >= BEYOND_MIN_S)  # seconds watched
            assert inc.facts["max_beyond_m"] >= 0.0  # the sampled true track did leave the corridor
        if inc.kind == "enter_zone" and inc.target:
            assert inc.end - inc.start >= ZONE_MIN_S
            assert inc.facts["sampled_inside_s"] >= ZONE_MIN_S - 2  # sampled every second
        assert inc.evidence, "every incident keeps the fixes around it"


def test_tiny_run_monitor_beats_the_naive_rule(tiny: tuple[Outcome, dict[str, Any]]) -> None:
    _, r = tiny
    mon, naive = r["monitor"], r["naive"]
    assert mon["recall"]["departures_target"] == 1.0
    assert naive["recall"]["departures_target"] == 1.0
    assert mon["recall"]["sos"]["all"] == 1.0
    assert naive["false_alarms"]["total"] >= 50  # GPS noise alone fools a single-fix rule
    assert 10 * mon["false_alarms"]["total"] <= naive["false_alarms"]["total"]
    assert mon["duplicates"] < naive["duplicates"]
    assert set(r["targets"]) >= {
        "recall_departures_100",
        "recall_zone_entries_100",
        "median_delay_le_20s",
        "false_alarms_100x_fewer",
        "false_alarms_below_1_per_1000_child_days",
    }


def test_tiny_run_report_is_one_json_line(tiny: tuple[Outcome, dict[str, Any]]) -> None:
    _, r = tiny
    params = TINY
    line = json.dumps(r)
    assert "\n" not in line
    back = json.loads(line)
    assert back["params"]["children"] == params.children and back["params"]["seed"] == params.seed
    assert back["params"]["child_days"] == params.children * params.days
    fa = back["monitor"]["false_alarms_per_1000_child_days"]
    assert math.isclose(fa, 1000 * back["monitor"]["false_alarms"]["total"] / params.children, abs_tol=1e-3)
    assert alert_quality.lines(back)[0].startswith("alert quality: 16 children x 1 school days")
