"""Benchmark: the geofence kernels compiled ahead of time against numba's JIT, in one process, in turn.

The module compiled ahead of time (tracker/geofence/kernels/compiled.py, ``make kernels``) is built for
the architecture's generic CPU; numba's JIT compiles for this one. Both run here on bench/geofence.py's
data (``--quick`` sizes by default: 20,000 routes, 2,467 zones, 200,000 fixes with their previous
fixes), every check in one call of the compiled kernel, alternated round by round so that a machine
whose load changes weighs on both alike; medians of ``--rounds``. Timed: the index's build, a check of
every fix in one call, the same with crossings, the service's batches of 2,000 fixes, and one fix per
call (what a call costs). Every answer of both is compared bit for bit. The last line is a JSON object.

    nice -n 19 .venv/bin/python bench/kernels_aot.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.geofence import (  # noqa: E402
    SEOUL,
    school_sites,
    seoul_neighbourhoods,
    synthetic_fixes,
    synthetic_routes,
    synthetic_zones,
)
from tracker.geofence import build_index, kernels  # noqa: E402
from tracker.geofence import index as index_module  # noqa: E402
from tracker.geofence.kernels import compiled  # noqa: E402


def _seconds(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--routes", type=int, default=20_000)
    parser.add_argument("--zones", type=int, default=2_000, help="synthetic zones besides Seoul's 467")
    parser.add_argument("--fixes", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        aot = compiled.ahead_of_time()
    except ImportError as exc:
        print(f"no module compiled ahead of time for these sources ({exc}): make kernels", file=sys.stderr)
        return 2
    ways = {
        "aot": {name: getattr(aot, name) for name in compiled.ENTRY_POINTS},
        "jit": compiled.jit_entry_points(),
    }

    rng = np.random.default_rng(args.seed)
    neighbourhoods = seoul_neighbourhoods()
    zones = neighbourhoods + synthetic_zones(rng, args.zones, first_id=1)
    routes, route_xy, seg_route = synthetic_routes(rng, args.routes, school_sites(rng, 600, neighbourhoods))
    fixes = synthetic_fixes(rng, args.fixes, route_xy, seg_route, args.routes)
    lon, lat, acc = fixes["lon"], fixes["lat"], fixes["acc"]
    prev = {"prev_lon": fixes["prev_lon"], "prev_lat": fixes["prev_lat"]}

    seconds: dict[str, dict[str, list[float]]] = {w: {} for w in ways}
    answers: dict[str, list[Any]] = {}
    for r in range(args.rounds + 1):  # round 0 compiles or loads, untimed
        for way, entry_points in ways.items():
            # every check in one call of the compiled kernel, both ways (not numba's pass-by-pass path)
            one_call = mock.patch.object(index_module, "_BIG_BATCH", 1 << 62)
            with mock.patch.multiple(kernels, **entry_points), one_call:
                t: dict[str, float] = {}
                t["build"] = _seconds(lambda: build_index(routes, zones, projection=SEOUL))
                index = build_index(routes, zones, projection=SEOUL)
                slots = index.route_slots(fixes["route_id"])
                fix_args = (lon, lat, acc, slots)
                out = []
                t0 = time.perf_counter()
                out.append(index.check(*fix_args, parallel=False))
                t["one_call"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                out.append(index.check(*fix_args, parallel=False, **prev))
                t["crossings"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                for i in range(0, args.fixes - 1999, 2000):
                    index.check(*(a[i : i + 2000] for a in fix_args), parallel=False)
                t["batches_2000"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                for i in range(20_000):
                    index.check(*(a[i : i + 1] for a in fix_args), parallel=False)
                t["one_fix"] = time.perf_counter() - t0
            if r == 0:
                answers[way] = out
                continue
            for k, v in t.items():
                seconds[way].setdefault(k, []).append(v)

    same = all(
        np.array_equal(getattr(a, f.name), getattr(b, f.name), equal_nan=True)
        and getattr(a, f.name).dtype == getattr(b, f.name).dtype
        for a, b in zip(answers["aot"], answers["jit"], strict=True)
        for f in dataclasses.fields(a)
    )
    med = {w: {k: statistics.median(v) for k, v in s.items()} for w, s in seconds.items()}
    rate = {
        w: {
            "build_s": m["build"],
            "fixes_per_s_one_call": args.fixes / m["one_call"],
            "fixes_per_s_with_crossings": args.fixes / m["crossings"],
            "fixes_per_s_batches_of_2000": (args.fixes // 2000 * 2000) / m["batches_2000"],
            "us_per_call_of_1_fix": m["one_fix"] / 20_000 * 1e6,
        }
        for w, m in med.items()
    }
    print(
        f"{len(routes)} routes, {len(zones)} zones, {args.fixes} fixes; medians of {args.rounds} rounds, "
        f"each compiler in turn; answers identical: {same}"
    )
    for key in rate["aot"]:
        a, j = rate["aot"][key], rate["jit"][key]
        print(f"  {key:28s} ahead of time {a:14,.2f}   JIT {j:14,.2f}   ratio {a / j:.2f}")
    print(json.dumps({"bench": "kernels_aot", "identical": same, "rounds": args.rounds, **rate}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
