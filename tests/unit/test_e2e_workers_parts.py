"""Parts of ``bench/e2e.py --workers`` (bench/e2e_workers.py) that decide what it reports against the
issue's targets: ratios against one worker, and whether each target is met — a scenario table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.e2e_workers import ratios, sizing, targets  # noqa: E402


def run(
    n: int,
    single_each: list[int | None],
    batch_each: list[int | None],
    *,
    takeover: float | None = 10.0,
    p99: float = 100.0,
    rate_is: str = "half the measured single-fix capacity",
) -> dict[str, Any]:
    def phase(each: list[int | None]) -> dict[str, Any]:
        total = [x for x in each if x]
        return {
            "fixes_per_s": 1000.0 * n,
            "fixes_per_tracker_cpu_s": round(sum(total) / len(total)) if total else None,
            "engine_cpu_us_per_fix": 100.0,
        }

    r: dict[str, Any] = {
        "workers": n,
        "single_qos1": phase(single_each),
        "batch100": phase(batch_each),
        "fixes_per_tracker_cpu_s": {
            "single_qos1": {"each": single_each},
            "batch100": {"each": batch_each},
        },
        "latency": {"p99_ms": p99, "rate_is": rate_is},
    }
    if n >= 2:
        r["takeover"] = {"all_partitions_owned_after_s": takeover}
    return r


ONE = run(1, [4000], [20000])

SCENARIOS = [
    # (what, the N=2 run, lost by N, per-CPU met, takeover met, latency met)
    ("both workers keep 90 % or more", run(2, [3800, 3600], [19000, 18000]), {}, True, True, True),
    ("one worker at 89 % in batches", run(2, [3800, 3600], [19000, 17800]), {}, False, True, True),
    ("a worker with no CPU figure", run(2, [3800, None], [19000, 18000]), {}, False, True, True),
    ("a takeover over 15 s", run(2, [3800, 3600], [19000, 18000], takeover=15.5), {}, True, False, True),
    ("a takeover never done", run(2, [3800, 3600], [19000, 18000], takeover=None), {}, True, False, True),
    (
        "p99 over 250 ms at half capacity",
        run(2, [3800, 3600], [19000, 18000], p99=251),
        {},
        True,
        True,
        False,
    ),
    (
        "p99 at the fixed load is not the half-capacity target",
        run(2, [3800, 3600], [19000, 18000], p99=900, rate_is="the fixed offered load"),
        {},
        True,
        True,
        True,
    ),
]


@pytest.mark.parametrize(("what", "two", "lost", "per_cpu", "takeover", "latency"), SCENARIOS)
def test_targets(
    what: str, two: dict[str, Any], lost: dict[str, int], per_cpu: bool, takeover: bool, latency: bool
) -> None:
    per_n = [ONE, two]
    got = targets(per_n, ratios(per_n), {"1": 0, "2": 0} | lost)
    assert got["two_workers_each_ge_0.9_of_one_per_cpu_s"]["met"] is per_cpu, what
    assert got["takeover_le_15s"]["met"] is takeover, what
    if latency and two["latency"]["rate_is"].startswith("the fixed"):
        # only N=1's (at half capacity) counts
        assert got["latency_p99_le_250ms_at_half_capacity"]["value"] == [100.0], what
    assert got["latency_p99_le_250ms_at_half_capacity"]["met"] is latency, what
    assert got["zero_lost"]["met"] is True


def test_a_fix_lost_fails_the_target_whichever_n_lost_it() -> None:
    per_n = [ONE, run(2, [3800, 3600], [19000, 18000])]
    got = targets(per_n, ratios(per_n), {"1": 0, "2": 1})
    assert got["zero_lost"] == {"value": {"1": 0, "2": 1}, "met": False}


def test_ratios_are_against_one_worker_of_the_same_run() -> None:
    per_n = [ONE, run(2, [3800, 3600], [19000, 18000])]
    rel = ratios(per_n)
    assert rel["1"]["single_qos1_fixes_per_cpu_s_each"] == [1.0]
    assert rel["2"]["single_qos1_fixes_per_cpu_s_each"] == [0.95, 0.9]
    assert rel["2"]["batch100_fixes_per_s"] == 2.0
    assert ratios([run(2, [3800, 3600], [19000, 18000])]) == {}  # no N=1 in the run: no ratios


def test_sizing_scales_with_the_fix_rate() -> None:
    rows = {(r["children"], r["interval_s"]): r for r in sizing([ONE])}
    small, fast = rows[(100_000, 15.0)], rows[(100_000, 5.0)]
    assert small["fixes_per_s"] == 6667 and fast["postgres_rows_per_s"] == 20000
    # 6,667 fixes/s at 4,000 per worker CPU-s, each worker at half its core: 4 workers
    assert small["single"]["workers"] == 4 and small["single"]["worker_cores"] == 1.7
    # the engine: 20,000 fixes/s at 100 µs each is 2 cores, on three nodes used to half: 2 cores each
    assert fast["single"]["engine_cores"] == 2.0 and fast["single"]["cores_per_broker_node"] == 2
