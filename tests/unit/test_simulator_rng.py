"""The per-child random streams: reproducible, independent, with the distributions they claim."""

from __future__ import annotations

import math
import statistics
import sys
from collections import Counter

from simulator.rng import Rng


def test_a_seed_reproduces_its_stream_and_seeds_differ() -> None:
    a, b, c = Rng("1:tag-1:gps"), Rng("1:tag-1:gps"), Rng("1:tag-1:walk")
    xs = [a.random() for _ in range(100)]
    assert xs == [b.random() for _ in range(100)]
    assert xs != [c.random() for _ in range(100)]


def test_distributions() -> None:
    rng = Rng("moments")
    u = [rng.random() for _ in range(100_000)]
    assert min(u) >= 0.0 and max(u) < 1.0 and abs(statistics.fmean(u) - 0.5) < 0.005
    g = [rng.gauss(3.0, 2.0) for _ in range(100_000)]
    assert abs(statistics.fmean(g) - 3.0) < 0.03 and abs(statistics.stdev(g) - 2.0) < 0.03
    e = [rng.expovariate(0.5) for _ in range(100_000)]
    assert abs(statistics.fmean(e) - 2.0) < 0.05
    assert {rng.randint(1, 3) for _ in range(1000)} == {1, 2, 3}
    picks = Counter(rng.choices(["a", "b"], weights=[1.0, 3.0])[0] for _ in range(40_000))
    assert abs(picks["b"] / 40_000 - 0.75) < 0.015
    assert all(1.0 <= rng.uniform(1.0, 2.0) < 2.0 for _ in range(1000))


def test_neighbouring_seeds_are_not_correlated() -> None:
    first = [Rng(f"1:tag-{i}:gps").random() for i in range(20_000)]
    second = [Rng(f"1:tag-{i + 1}:gps").random() for i in range(20_000)]
    assert abs(statistics.correlation(first, second)) < 0.03
    assert not math.isnan(statistics.fmean(first))


def test_it_is_small() -> None:
    assert sys.getsizeof(Rng("x")) < 100
