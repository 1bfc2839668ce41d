"""Children standing still at home, indoors, 20-40 m from a road zone: which zone rule alerts them.

Issue 15's city-like world (bench/quality/city.py) reported tens of false alarms per child-day, almost
all from children at home beside an arterial road drawn as a zone. This isolates that case: each child
stays indoors at its walk route's home (the route's start, 20-40 m north of the road's kerb) for 24
hours, with the city world's tags and noise (``city_sim.fixes_of_day``: indoor fixes 2.5x the accuracy
and the error with it, 20 % of devices whose error is 1.5x what they report, lying multipath jumps),
through :class:`tracker.offline.OfflineTracker`. Every 'entered danger zone' is put down to the rule
that decided it (1-4 of docs/alert-quality.md), by watching the monitor's zone step; the noise model
is checked against what it claims (the share of fixes whose true error exceeds the reported accuracy).

    python -m bench.quality.stand [--children 40] [--interval 15] [--rule NAME=VALUE ...]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np

from bench.quality.city import build_blocks, world_doc
from bench.quality.city_sim import TZ, CityParams, Day, fixes_of_day, make_tag, school_days, unit_noise
from bench.quality.score import poisson_interval
from tracker.config import Settings
from tracker.ingest.decode import Fix
from tracker.monitor import EventKind, Rules, machine
from tracker.offline import OfflineTracker
from tracker.replay import world_view


class RuleWatch:
    """Wraps the monitor's zone step to name the rule behind each entry (restored by ``close``), and
    its route step to tell a 'left route' of the evidence (the CUSUM) from one of going faster than
    the route's mode allows. ``rule_of[(ts, lon, lat, zone)]``: the rule behind the event its fix
    raised (zone None: left route), for an alert to be put down to its rule by the fix that opened it.
    It watches, never decides: the monitor's own functions run unchanged."""

    def __init__(self) -> None:
        self.by_rule: Counter[str] = Counter()
        self.entry_acc: list[float] = []
        self.rule_of: dict[tuple[float, float, float, int | None], str] = {}
        self._orig = machine._zones
        self._orig_route = machine._route

        def route(
            s: Any,
            obs: Any,
            watched: Any,
            weight: float,
            mode_max: Any,
            rules: Any,
            events: list[Any],
            **kw: Any,
        ) -> None:
            before = s.off_score
            n = len(events)
            self._orig_route(s, obs, watched, weight, mode_max, rules, events, **kw)
            for e in events[n:]:
                if e.kind == EventKind.LEFT_ROUTE:
                    step = min(obs.off_route_sigmas - rules.off_route_sigma, rules.off_route_step_cap)
                    cusum = before + step * weight >= rules.off_route_score
                    self.rule_of[(obs.ts, obs.lon, obs.lat, None)] = "evidence" if cusum else "too fast"

        def zones(s: Any, obs: Any, ctx: Any, j: Any, rules: Any, events: list[Any]) -> None:
            counts, passes, lingers = dict(s.zone_counts), set(s.zone_passes), dict(s.zone_lingers)
            n = len(events)
            self._orig(s, obs, ctx, j, rules, events)
            for e in events[n:]:
                if e.kind != EventKind.ENTERED_ZONE:
                    continue
                z = e.zone_id
                if z in passes:
                    rule = "3 pass-through"
                elif z in counts or z in obs.certain_zones:
                    rule = "1 certain twice" if z in obs.certain_zones else "2 short visit"
                elif z in lingers or z in obs.crossed_zones:
                    rule = "4 linger"
                else:
                    rule = "?"
                self.by_rule[rule] += 1
                self.entry_acc.append(obs.acc)
                self.rule_of[(obs.ts, obs.lon, obs.lat, z)] = rule

        machine._zones = zones  # type: ignore[assignment]
        machine._route = route  # type: ignore[assignment]

    def close(self) -> None:
        machine._zones = self._orig  # type: ignore[assignment]
        machine._route = self._orig_route  # type: ignore[assignment]


def run(children: int, interval_s: float, rules: Rules, seed: int = 1) -> dict[str, Any]:
    p = CityParams(interval_s=interval_s, seed=seed)
    blocks = build_blocks(10)
    homes = []
    by_route: dict[int, list[dict[str, Any]]] = {}
    for k in range(1, children + 1):
        b = blocks[(k - 1) % len(blocks)]
        r = b.routes[(k - 1) // len(blocks) % 4]  # the four walk routes: homes 20-40 m from the road
        homes.append((k, b, r))
        by_route.setdefault(r.id, []).append({"id": k, "tag": f"home-{k}"})
    view = world_view(world_doc(blocks, by_route), Settings())
    day = school_days(1)[0]
    day_start = datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp()
    noise = unit_noise(children, p, np.random.default_rng([seed, 0]))
    fixes: list[Fix] = []
    beyond_acc = 0
    indoor_acc: list[float] = []
    gap_m: list[float] = []
    for j, (k, b, r) in enumerate(homes):
        tag = make_tag(random.Random(seed * 7_000_003 + k), p)
        d = Day()
        d.pts.append((0.0, *r.home))
        d.stay(86400.0, "home", indoor=True)
        f = fixes_of_day(d, tag, p, np.random.default_rng([seed, k]), noise[:, j, :])
        err = np.hypot(f.x - f.tx, f.y - f.ty)
        beyond_acc += int((err > f.acc).sum())
        indoor_acc += f.acc.tolist()
        gap_m.append(b.zone_distance(*r.home))
        lon, lat = b.projection().to_lonlat_arrays(f.x, f.y)
        for i in range(len(f.t)):
            fixes.append(
                Fix(
                    f"home-{k}",
                    float(f.t[i] + day_start),
                    float(lat[i]),
                    float(lon[i]),
                    float(f.acc[i]),
                    None,
                    None,
                    False,
                    float(f.t[i] + day_start + 0.5),
                    "tags/x",
                )
            )
    watch = RuleWatch()
    t0 = time.monotonic()
    try:
        alerts = OfflineTracker(view, rules).run(fixes, until=day_start + 86400.0)
    finally:
        watch.close()
    zone = [a for a in alerts if a.kind == "danger_zone"]
    other = Counter(a.kind for a in alerts if a.kind != "danger_zone" and a.severity != "info")
    n_fix = len(fixes)
    acc = np.asarray(indoor_acc)
    hours = children * 24.0
    lo, hi = poisson_interval(len(zone))
    return {
        "children": children,
        "interval_s": interval_s,
        "hours": hours,
        "fixes": n_fix,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "home_from_zone_m": [round(min(gap_m), 1), round(max(gap_m), 1)],
        "accuracy_m_p10_p50_p90": [round(float(np.percentile(acc, q)), 1) for q in (10, 50, 90)],
        "share_error_beyond_accuracy": round(beyond_acc / n_fix, 3),
        "zone_alerts": len(zone),
        "zone_alerts_per_1000_h": round(1000 * len(zone) / hours, 1),
        "ci95_per_1000_h": [round(1000 * lo / hours, 2), round(1000 * hi / hours, 2)],
        "by_rule": dict(watch.by_rule),
        "entry_acc_median_m": round(float(np.median(watch.entry_acc)), 1) if watch.entry_acc else None,
        "other_alerts": dict(other),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=40)
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rule", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()
    overrides = {n: float(v) for n, _, v in (r.partition("=") for r in args.rule)}
    rules = Rules(**overrides)  # type: ignore[arg-type]
    print(json.dumps(run(args.children, args.interval, rules, args.seed) | {"rules": overrides}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
