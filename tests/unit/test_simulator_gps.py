"""GPS noise: the reported accuracy is the actual error's 68 % radius; multipath; battery."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from simulator.gps import R68_PER_SIGMA, GpsConfig, GpsModel, sigma_for_accuracy


def readings(config: GpsConfig, devices: int = 300, fixes: int = 200, interval_s: float = 15.0) -> list:
    out = []
    for d in range(devices):
        model = GpsModel(random.Random(f"gps-test:{d}"), config, 0.0)
        out += [model.read(interval_s * (k + 1)) for k in range(fixes)]
    return out


def test_the_68_percent_radius_of_the_chosen_normal_is_the_accuracy() -> None:
    assert pytest.approx(1.5096, abs=1e-4) == R68_PER_SIGMA
    rng = np.random.default_rng(1)
    sigma = sigma_for_accuracy(20.0)
    radius = np.hypot(*rng.normal(0.0, sigma, size=(2, 200_000)))
    assert np.quantile(radius, 0.68) == pytest.approx(20.0, rel=0.01)


def test_empirical_68_percent_radius_matches_reported_accuracy() -> None:
    quiet = GpsConfig(multipath_probability=0.0)
    rs = readings(quiet)
    ratio = np.array([math.hypot(r.dx, r.dy) / r.acc for r in rs])
    assert np.quantile(ratio, 0.68) == pytest.approx(1.0, abs=0.04)
    # and it holds for good and poor fixes alike
    acc = np.array([r.acc for r in rs])
    for part in (acc < np.median(acc), acc >= np.median(acc)):
        assert np.quantile(ratio[part], 0.68) == pytest.approx(1.0, abs=0.06)


def test_reported_accuracy_stays_in_range_and_drifts() -> None:
    rs = readings(GpsConfig(multipath_probability=0.0), devices=50)
    acc = np.array([r.acc for r in rs]).reshape(50, -1)
    assert acc.min() >= 5.0 and acc.max() <= 50.0
    steps = np.abs(np.diff(acc, axis=1))
    assert np.median(steps) > 0.01, "it wanders from fix to fix"
    assert np.median(steps) < 0.2 * np.median(acc), "but slowly"
    assert len({round(float(a), 0) for a in acc[:, 0]}) > 10, "devices differ"


def test_error_drifts_rather_than_jumping_between_fixes() -> None:
    rs = readings(GpsConfig(multipath_probability=0.0), devices=100)
    dx = np.array([r.dx / r.acc for r in rs]).reshape(100, -1)
    rho = np.corrcoef(dx[:, :-1].ravel(), dx[:, 1:].ravel())[0, 1]
    assert rho == pytest.approx(math.exp(-15.0 / 45.0), abs=0.08)


def test_multipath_is_mostly_honest_and_sometimes_lies() -> None:
    config = GpsConfig(multipath_probability=0.02, multipath_lie_fraction=0.2)
    rs = readings(config)
    honest = [r for r in rs if r.multipath == "honest"]
    lies = [r for r in rs if r.multipath == "lie"]
    episodes = len(rs) * 0.02
    assert 0.12 * episodes < len(lies) < 0.28 * episodes
    assert len(honest) > len(lies)
    assert all(50.0 <= r.acc <= 150.0 for r in honest)
    honest_ratio = [math.hypot(r.dx, r.dy) / r.acc for r in honest]
    assert np.quantile(honest_ratio, 0.68) == pytest.approx(1.0, abs=0.15)
    assert all(r.acc <= 50.0 for r in lies)
    lie_ratio = [math.hypot(r.dx, r.dy) / r.acc for r in lies]
    assert np.median(lie_ratio) > 2.5, "a lying fix is far beyond its stated accuracy"


def test_battery_drains_slowly_and_never_below_one() -> None:
    model = GpsModel(random.Random(3), GpsConfig(), 0.0)
    levels = [model.battery(h * 3600.0) for h in range(0, 200)]
    assert levels == sorted(levels, reverse=True)
    assert 50 <= levels[0] <= 100 and levels[-1] == 1
    assert 2 * 5 - 1 <= levels[0] - levels[5] <= 5 * 5 + 1, "2–5 % an hour"


def test_disabled_gps_reports_no_error() -> None:
    model = GpsModel(random.Random(3), GpsConfig(enabled=False), 0.0)
    r = model.read(15.0)
    assert (r.dx, r.dy, r.multipath) == (0.0, 0.0, None)
    assert 5.0 <= r.acc <= 50.0


def test_contradictory_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        GpsConfig(acc_min_m=60.0, acc_max_m=50.0)
    with pytest.raises(ValueError):
        GpsConfig(multipath_probability=1.5)
