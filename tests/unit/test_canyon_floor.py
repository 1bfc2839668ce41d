"""bench/canyon_floor.py: which canyon episodes its floor counts, and that it reads the episodes the
city-like world's generator really drew."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.canyon_floor import (  # noqa: E402
    Episode,
    RecordingRng,
    bias_at,
    drift_sigma,
    judge_cluster,
    read_episodes,
)
from bench.quality.city import build_block  # noqa: E402
from bench.quality.city_sim import R68, CityParams, Day, DayFixes, Tag, fixes_of_day, plan_day, unit_noise  # noqa: E402

BLOCK = build_block(1)
ROUTE = next(r for r in BLOCK.routes if r.kind == "walk_east")
FORTY = "40 m deep for 120 s at <= 20 m"


def _standing_by_the_site(interval_s: float, episode: Episode) -> tuple[Day, DayFixes]:
    """A child standing 5 m in front of the redevelopment site's hoarding all day (after 17:00: no
    commute window), its fixes every ``interval_s`` without error but the episode's bias."""
    x0, x1, y0, _ = BLOCK.site
    spot = ((x0 + x1) / 2, y0 - 5.0)
    d = Day(pts=[(0.0, *spot), (86400.0, *spot)], acts=[("stand_near", 0.0, 86400.0, {})])
    t = np.arange(0.0, 86400.0, interval_s) + 0.5
    bx, by = bias_at([episode], t)
    acc = np.where(by != 0, episode.acc, 12.0)
    n = len(t)
    tx, ty = np.full(n, spot[0]), np.full(n, spot[1])
    f = DayFixes(t, tx + bx, ty + by, tx, ty, acc, acc / R68, t + 1.0, np.zeros(n, bool))
    return d, f


@pytest.mark.parametrize(
    ("interval_s", "bias_m", "length_s", "counted", "running_false_alarm"),
    [
        # 45 m deep for 150 s at 15 m: a stay of the 40 m / 120 s / <= 20 m cell's twin
        (15.0, 50.0, 150.0, True, 0.99),  # a running twin covers 50 m between two fixes: no evidence
        (60.0, 50.0, 150.0, True, 0.99),
        (1.0, 50.0, 150.0, True, 0.0),  # 50 m in a second: no child, the best test tells them apart
        (15.0, 15.0, 150.0, False, None),  # 10 m deep: no target cell
        (15.0, 50.0, 90.0, False, None),  # 45 m deep for 90 s: too short
    ],
)
def test_an_episode_is_counted_when_its_twin_is_a_target_stay(
    interval_s: float, bias_m: float, length_s: float, counted: bool, running_false_alarm: float | None
) -> None:
    ep = Episode(18 * 3600.0, 18 * 3600.0 + length_s, 0.0, bias_m, 15.0)
    d, f = _standing_by_the_site(interval_s, ep)
    sigma, ok = np.asarray(f.sigma_true), np.ones(len(f.t), bool)
    why, row = judge_cluster(BLOCK, ROUTE, d, f, Tag(12.0, 1.0, 0.0, False), [ep], sigma, ok)
    if not counted:
        assert row is None and why == "no_target_stay"
        return
    assert row is not None
    running = row["by_twin"]["running"]
    assert FORTY in running["cells"]
    assert running["false_alarm"] == pytest.approx(running_false_alarm, abs=1e-3)
    assert row["doing"] == "stand_near"


def test_a_store_and_forward_tag_is_not_counted() -> None:
    ep = Episode(18 * 3600.0, 18 * 3600.0 + 150.0, 0.0, 50.0, 15.0)
    d, f = _standing_by_the_site(15.0, ep)
    why, row = judge_cluster(
        BLOCK, ROUTE, d, f, Tag(12.0, 1.0, 0.0, True), [ep], np.asarray(f.sigma_true), np.ones(len(f.t), bool)
    )
    assert row is None and why == "store_forward"


def test_the_episodes_read_back_are_the_ones_the_generator_drew() -> None:
    """Many episodes in one day at 15 s fixes: inside each, every fix the drift explains reports the
    episode's accuracy, and fix - truth - bias is the unit noise times one sigma on both axes."""
    p = CityParams(interval_s=15.0, canyon_per_hour=20.0)
    d = plan_day(BLOCK, ROUTE, random.Random(7), p)
    noise = unit_noise(1, p, np.random.default_rng(5))[:, 0, :]
    rec = RecordingRng(np.random.default_rng(11))
    f = fixes_of_day(d, Tag(12.0, 1.5, 0.0, False), p, rec, noise)  # type: ignore[arg-type]
    phase, episodes = read_episodes(rec.calls)
    assert len(episodes) >= 5
    bx, by = bias_at(episodes, f.t)
    _, ok = drift_sigma(f, bx, by, phase, p.interval_s, noise)
    during = (bx != 0) | (by != 0)
    assert during.sum() >= 50
    assert ok[during].mean() > 0.9  # with a bias read wrong, none of them would be explained
    for e in episodes:
        w = ok & (f.t >= e.a) & (f.t < e.c) & (f.acc <= 50.0)
        alone = sum(1 for o in episodes if o.a < e.c and e.a < o.c) == 1
        if alone and w.any():
            assert np.allclose(f.acc[w], e.acc)
