"""bench/quality/plan.py (how many child-days decide a target, and the hours), the fix-interval
scaling of today's world, and bench/quality/plot.py's series and figure, on hand-made figures."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.alert_quality import today_children  # noqa: E402
from bench.quality import plan, score  # noqa: E402
from bench.quality.plot import plot, series  # noqa: E402


def test_recall_cases_are_the_first_that_put_the_lower_bound_at_the_target() -> None:
    t = plan.Recall("x", goal=0.995, lower=0.99)
    need = plan.recall_cases(t)
    # every one caught: (0.025)^(1/n) >= 0.99 from n = 368 on
    assert need["all_right"] == 368
    assert score.clopper_pearson(368, 368)[0] >= 0.99 > score.clopper_pearson(367, 367)[0]
    n = need["at_target"]
    assert score.clopper_pearson(math.floor(0.995 * n), n)[0] >= 0.99
    assert score.clopper_pearson(math.floor(0.995 * (n - 1)), n - 1)[0] < 0.99
    assert 1_500 < n < 2_000


@pytest.mark.parametrize(
    ("measured", "all_right", "at_target", "refute"),
    [
        # no event: 3.689 (the Poisson upper bound of 0) / 2 per 1,000
        (None, 1844.4, 8000.0, None),
        # at the target the upper bound falls to twice the rate from 8 events on (15.76 / 8 < 2)
        (0.5, 1844.4, 8000.0, None),
        # 1,330 per 1,000 child-days: one event already puts the lower bound (0.0253) above 1 per 1,000
        (1330.0, 1844.4, 8000.0, 1000.0 / 1330.0),
    ],
)
def test_rate_exposure(
    measured: float | None, all_right: float, at_target: float, refute: float | None
) -> None:
    r = plan.rate_exposure(plan.FALSE_ALARMS, measured)
    assert r["all_right"] == pytest.approx(all_right, abs=0.1)
    assert r["at_target"] == pytest.approx(at_target)
    assert r["refute"] == (None if refute is None else pytest.approx(refute))


def test_a_rate_just_above_its_target_takes_many_events_to_refute() -> None:
    r = plan.rate_exposure(plan.FALSE_ALARMS, 1.5)
    assert r["refute"] is not None and r["refute"] > 10_000


def test_hours_follow_the_fixes_of_a_child_day() -> None:
    # 10,000 child-days of 24 h at 15 s = 57.6 million fixes; at 16,000 fixes/s that is an hour
    assert plan.run_hours(10_000, 86400 / 15, 16_000) == pytest.approx(1.0)
    assert plan.run_hours(100, 86400 / 1, 16_000) == pytest.approx(0.15)
    assert plan.run_hours(None, 5760, 1.0) is None
    assert plan.child_days(10.0, 0.0) is None
    assert plan.child_days(10.0, 0.5) == 20.0


def test_decide_turns_cases_into_child_days_and_hours() -> None:
    rows = plan.decide([(plan.DEPARTURES, 0.5, None), (plan.FALSE_ALARMS, 1.0, 2.0)], 5760.0, 5760.0)
    dep = rows[plan.DEPARTURES.name]
    assert dep["all_right"] == {"cases": 368, "child_days": 736, "hours": pytest.approx(736 / 3600, abs=0.01)}
    fa = rows[plan.FALSE_ALARMS.name]
    assert fa["at_target"]["child_days"] == 8000
    assert fa["refute"]["child_days"] is not None


@pytest.mark.parametrize(
    ("children", "interval", "expected"),
    [
        (2000, 15.0, 2000),
        (2000, 60.0, 2000),
        (2000, 5.0, 667),
        (2000, 1.0, 133),
        (200, 1.0, 13),
        (20, 1.0, 10),
    ],
)
def test_today_children_scale_with_the_interval(children: int, interval: float, expected: int) -> None:
    assert today_children(children, interval) == expected


def _today(interval: float, fa_k: int) -> dict[str, Any]:
    return {
        "world": "today",
        "fix_interval_s": interval,
        "ci95": {
            "false_alarms_per_1000_child_days": score.rate(fa_k, 600, 1000.0),
            "recall_departures_target": score.proportion(200, 204),
            "recall_zone_entries_target": score.proportion(109, 111),
            "delay_departures_from_60m_median_s": score.quantile_interval([1.0, 5.0, 9.0], 0.5),
        },
    }


def _city(interval: float) -> dict[str, Any]:
    cell = {**score.proportion(3, 4), "ceiling": 0.9, "flag": True}
    return {
        "world": "city",
        "fix_interval_s": interval,
        "false_alarms": {"per_1000_child_days": score.rate(80, 60, 1000.0)},
        "departures": {
            "recall": score.proportion(8, 8),
            "delay_from_60m_median_s": score.quantile_interval([10.0, 20.0], 0.5),
            "delay_from_60m_p95_s": score.quantile_interval([10.0, 20.0], 0.95),
        },
        "stays": {
            "targets": {"20 m deep for 60 s at <= 10 m": score.proportion(1, 1)},
            "delay_after_30m_deep_median_s": score.quantile_interval([], 0.5),
            "grid": {"20-40 m | 30-120 s | acc <=10 m": cell},
        },
    }


def test_series_has_a_point_per_world_and_interval_in_interval_order() -> None:
    s = series([_city(15.0), _today(15.0, 0), _city(1.0), _today(1.0, 2)])
    assert [p[0] for p in s["fa|city"]] == [1.0, 15.0]
    (v, lo, hi) = s["fa|today"][1][1:]
    assert v == 0.0 and lo == 0.0 and hi == pytest.approx(6.148, abs=0.01)  # 3.689 / 600 x 1000
    assert s["recall|today: departures"][0][1] == pytest.approx(200 / 204, abs=1e-4)
    assert "delay|city: stay from 30 m deep, median" not in s  # nothing measured: no point


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "q.png"
    plot([_today(15.0, 0), _city(15.0), _city(1.0)], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables_render_each_world_and_interval_and_bold_the_flagged_cells() -> None:
    from bench.quality import tables

    city = _city(15.0)
    city |= {
        "child_days": 60,
        "fixes": 344_903,
        "elapsed_s": 30.0,
        "fixes_per_s": 11_500,
        "decide": plan.decide([(plan.FALSE_ALARMS, 1.0, 1330.0)], 5760.0, 11_500.0),
    }
    city["false_alarms"] |= {
        "per_1000_h_standing_15_50_m": score.rate(27, 926.4, 1000.0),
        "per_100_h_standing_5_15_m": score.rate(4, 6.0, 100.0),
        "per_1000_crosswalk_crossings": score.rate(5, 129, 1000.0),
        "registered_shuttle_rides": {"rides": 6, "alerts": 0},
        "repeated_per_100_incidents": score.rate(0, 50, 100.0),
        "by_place": {"stand_15_50": 27, "walk": 16},
        "by_rule_and_place": {"entered_zone by 4 linger | stationary": 16},
        "explained_apart": {"signal_lost_underground": 13},
    }
    city["clocks"] = {
        "signal_lost_not_underground": 1,
        "child_days_with_repeated_signal_lost": 0,
        "sos_within_5_s": score.proportion(3, 3),
        "sos_delay_after_receipt_max_s": 2.9,
        "by_clock": {
            "slow": {
                "child_days": 3,
                "signal_lost": 0,
                "sos": score.proportion(1, 1),
                "sos_delay_after_receipt_max_s": 1.0,
            }
        },
    }
    text = "\n".join(tables.markdown([city]))
    assert "| 15 s | 60 (344,903 fixes, 30 s) | 100.0 % (63.1-100.0), 8/8 |" in text
    assert "1,333 (" in text and "80 in 60" in text  # the rate, its interval and its count
    assert "entered_zone by 4 linger \\| stationary | 16 |" in text  # a | inside a cell is escaped
    assert "**75 % (3/4) \\| 90 %**" in text  # flagged: bold
    assert "slow 0 in 3" in text and "slow 1/1 (max 1.0 s)" in text
    assert "8,000 (" in text  # child-days at the target
    assert tables.flagged(city) == (1, 1, 0)
