"""Benchmark: alert quality on the simulator's ground truth, the monitor against the naive rule.

Simulated children walk the demo city's kind of routes (Seoul neighbourhoods, L-shaped routes with
30-40 m corridors, danger zones beside them) with realistic GPS noise (accuracy 5-50 m, drift,
multipath jumps, gaps) and scripted incidents (leave the route, enter a danger zone, SOS, go silent).
Every fix goes through the pipeline's logic (geofence index per batch, then tracker.monitor's step
and tick) and through the naive rule of Traccar, AWS Location and Tile38 (a single fix's centre
decides). Alerts are matched to the ground truth (bench/quality/score.py says how).

The default run: 2,000 children x 2 school days (each day its two commute windows, 07:30-09:10 and
12:30-16:30 in Asia/Seoul: about 6 million fixes), 0.1 incidents per child-hour, on 20 schools; about
7 CPU-minutes, spread over the CPUs (--workers).

Prints the figures side by side, whether each of issue 4's targets is met, the monitor's misses and
false alarms by cause with an example of each fix by fix (every incident and every alert keeps the
child's fixes around it), and as the last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from bench.quality import score  # noqa: E402
from bench.quality.explain import analyse, counts, explain  # noqa: E402
from bench.quality.plan import city_targets, decide, today_targets  # noqa: E402
from bench.quality.sim import Outcome, Params, city_size, simulate, zone_depths  # noqa: E402
from tracker.monitor import Rules  # noqa: E402

CITY_CHILD_DAYS = {15.0: 10_000, 1.0: 100, 5.0: 500, 30.0: 2_500, 60.0: 2_500}
"""child-days of the city-like world per fix interval (15 s: the issue's 10,000; the others what the
hour allows: 1 s is 15x the fixes of 15 s, and its 100 child-days decide only a target it misses).
Not `make bench`'s: it runs ``--quick``; this full plan is ``make bench-quality`` (see
docs/alert-quality.md for how long it takes and how many child-days each target needs)"""
CITY_QUICK = {15.0: 60, 1.0: 2, 5.0: 10, 30.0: 40, 60.0: 40}


def report(
    params: Params, out: Outcome, matchings: dict[str, score.Matching], elapsed_s: float, workers: int
) -> dict[str, Any]:
    """The JSON object: parameters, incidents, both rules side by side, targets, the monitor's misses
    and false alarms by cause."""
    child_days = params.children * params.days
    rules = {}
    for rule in ("monitor", "naive"):
        m = matchings[rule]
        rules[rule] = score.summarize(out.incidents, out.alerts[rule], m, child_days=child_days)
        rules[rule]["notices"] = dict(sorted(out.notices[rule].items()))
    misses, fas = analyse(out.incidents, matchings["monitor"], zone_depths(params))
    m_fa = rules["monitor"]["false_alarms"]["total"]
    n_fa = rules["naive"]["false_alarms"]["total"]
    watched_h = sum((_hm(w["end"]) - _hm(w["start"])) / 3600.0 for w in params.windows) * child_days
    return {
        "bench": "alert_quality",
        "params": {
            "children": params.children,
            "days": params.days,
            "seed": params.seed,
            "child_days": child_days,
            "commute_window_child_hours": round(watched_h, 1),
            "incidents_per_child_hour": params.incidents_per_hour,
            "leave_extra_m": list(params.leave_extra_m),
            "stay_s": list(params.stay_s),
            "windows": [f"{w['start']}-{w['end']}" for w in params.windows],
            **city_size(params),
            "fixes": out.fixes,
            "workers": workers,
            "rules": dict(params.rules),
            "fix_interval_s": params.interval_s,
            "elapsed_s": round(elapsed_s, 1),
        },
        "incidents": score.incident_counts(out.incidents),
        "verdicts": dict(sorted(out.verdicts.items())),
        "monitor": rules["monitor"],
        "naive": rules["naive"],
        "false_alarm_ratio_naive_to_monitor": round(n_fa / m_fa, 1) if m_fa else None,
        "targets": score.targets(rules["monitor"], rules["naive"]),
        "monitor_misses_by_cause": counts(misses),
        "monitor_false_alarms_by_cause": counts(fas),
        "ci95": _today_intervals(out, matchings["monitor"], child_days),
    }


def _today_intervals(out: Outcome, m: score.Matching, child_days: int) -> dict[str, Any]:
    """The monitor's headline figures with their 95 % intervals (Clopper-Pearson, exact Poisson)."""
    scoped = [i for i, inc in enumerate(out.incidents) if inc.in_scope and inc.target]
    deps = [i for i in scoped if out.incidents[i].kind in score.DEPARTURES]
    zones = [i for i in scoped if out.incidents[i].kind in score.ZONE_ENTRIES]
    dep_delay = [m.hit_by[i].ts - _since(out.incidents[i]) for i in deps if i in m.hit_by]
    zone_delay = [m.hit_by[i].ts - _since(out.incidents[i]) for i in zones if i in m.hit_by]
    return {
        "recall_departures_target": score.proportion(sum(i in m.hit_by for i in deps), len(deps)),
        "recall_zone_entries_target": score.proportion(sum(i in m.hit_by for i in zones), len(zones)),
        "false_alarms_per_1000_child_days": score.rate(len(m.false_alarms), child_days, 1000.0),
        "repeated_per_100_incidents": score.rate(len(m.duplicates), len(out.incidents), 100.0),
        "delay_departures_from_60m_median_s": score.quantile_interval(dep_delay, 0.5),
        "delay_departures_from_60m_p95_s": score.quantile_interval(dep_delay, 0.95),
        "delay_zone_entries_median_s": score.quantile_interval(zone_delay, 0.5),
    }


def _since(inc: score.Incident) -> float:
    """What the delay of a target incident is measured from (as ``score.summarize``)."""
    return inc.qualified_at if inc.qualified_at is not None else inc.start


def _hm(hhmm: str) -> float:
    h, m = hhmm.split(":")
    return int(h) * 3600.0 + int(m) * 60.0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} s"


def lines(r: dict[str, Any]) -> list[str]:
    p = r["params"]
    mon, nai = r["monitor"], r["naive"]
    out = [
        f"alert quality: {p['children']} children x {p['days']} school days ({p['child_days']} child-days,"
        f" {p['commute_window_child_hours']:.0f} child-hours in commute windows {', '.join(p['windows'])}),"
        f" seed {p['seed']}; {p['schools']} schools, {p['routes']} routes, {p['zones']} zones;"
        f" {p['fixes']:,} fixes in {p['elapsed_s']:.0f} s on {p['workers']} worker(s)",
        "matching: an alert of the incident's kind for the child (and zone) from the walk's start to 60 s"
        " after the incident's end is a hit; a second one a repeat; any other alert a false alarm."
        " Delay: alert - the moment a departure first reached 60 m beyond the corridor (what the"
        " recall target calls a departure) or the zone boundary was crossed; also shown: the delay"
        " from the corridor's edge.",
        "incidents begun in a commute window (target: the issue's recall target covers it: a departure"
        " >= 60 m beyond the corridor for >= 30 s while watched, a zone entry >= 10 s):",
    ]
    for kind, n in r["incidents"].items():
        out.append(
            f"  {kind:20s} {n['all']:6d}   target {n['target']:6d}   (outside a window: {n['out_of_scope']})"
        )
    out.append(f"{'':46s}{'monitor':>22s}{'naive':>22s}")

    def row(label: str, a: str, b: str) -> None:
        out.append(f"  {label:44s}{a:>22s}{b:>22s}")

    for kind in score.ALERT_KINDS:
        row(f"alerts {kind}", str(mon["alerts"].get(kind, 0)), str(nai["alerts"].get(kind, 0)))
    for kind in score.INCIDENT_KINDS:
        if kind in mon["recall"]:
            row(
                f"recall {kind} (target / all)",
                f"{_pct(mon['recall'][kind]['target'])} / {_pct(mon['recall'][kind]['all'])}",
                f"{_pct(nai['recall'][kind]['target'])} / {_pct(nai['recall'][kind]['all'])}",
            )
    row(
        "recall departures (target)",
        _pct(mon["recall"]["departures_target"]),
        _pct(nai["recall"]["departures_target"]),
    )
    row(
        "recall zone entries (target)",
        _pct(mon["recall"]["zone_entries_target"]),
        _pct(nai["recall"]["zone_entries_target"]),
    )
    row("recall overall", _pct(mon["recall"]["overall"]), _pct(nai["recall"]["overall"]))
    row("false alarms", str(mon["false_alarms"]["total"]), str(nai["false_alarms"]["total"]))
    row(
        "false alarms / 1,000 child-days",
        f"{mon['false_alarms_per_1000_child_days']:.2f}",
        f"{nai['false_alarms_per_1000_child_days']:.1f}",
    )
    row("repeat alerts within one incident", str(mon["duplicates"]), str(nai["duplicates"]))
    mq, nq = mon["delay_s"].get("target_qualified", {}), nai["delay_s"].get("target_qualified", {})
    row("delay median (target dep. from 60 m out + zone)", _s(mq.get("median")), _s(nq.get("median")))
    row("delay p95", _s(mq.get("p95")), _s(nq.get("p95")))
    for group, label in (
        ("departures_qualified", "departures from 60 m out"),
        ("zone_entries", "zone entries"),
    ):
        a, b = mon["delay_s"].get(group, {}), nai["delay_s"].get(group, {})
        row(
            f"  delay {label} median / p95",
            f"{_s(a.get('median'))} / {_s(a.get('p95'))}",
            f"{_s(b.get('median'))} / {_s(b.get('p95'))}",
        )
    md, nd = mon["delay_s"].get("target", {}), nai["delay_s"].get("target", {})
    row("delay median (dep. from the corridor's edge + zone)", _s(md.get("median")), _s(nd.get("median")))
    row("delay p95", _s(md.get("p95")), _s(nd.get("p95")))
    for kind in score.DELAY_KINDS:
        if kind in mon["delay_s"] or kind in nai["delay_s"]:
            a, b = mon["delay_s"].get(kind, {}), nai["delay_s"].get(kind, {})
            row(
                f"  delay {kind} median / p95",
                f"{_s(a.get('median'))} / {_s(a.get('p95'))}",
                f"{_s(b.get('median'))} / {_s(b.get('p95'))}",
            )
    ratio = r["false_alarm_ratio_naive_to_monitor"]
    out.append(
        f"  false alarms naive / monitor: {'no monitor false alarm' if ratio is None else f'{ratio:.0f}x'}"
    )
    out.append("targets (issue 4):")
    for name, met in r["targets"].items():
        out.append(f"  {name:44s} {'met' if met else 'NOT MET'}")
    return out


def _rule(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or name not in {f.name for f in fields(Rules)}:
        raise SystemExit(f"--rule {text!r}: expected NAME=VALUE with NAME one of the monitor's Rules")
    return name, float(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=2000)
    ap.add_argument("--days", type=int, default=2, help="school days (each: two commute windows)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--schools", type=int, default=20, help="schools in the city (the demo's four first)")
    ap.add_argument("--incidents-per-hour", type=float, default=0.1, help="per child, in the windows")
    ap.add_argument("--workers", type=int, default=0, help="processes (0: one per CPU)")
    ap.add_argument(
        "--examples", type=int, default=1, help="misses / false alarms shown fix by fix, per cause"
    )
    ap.add_argument(
        "--interval", type=float, default=None, help="one fix interval, seconds (as --intervals S)"
    )
    ap.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one of the monitor's Rules (e.g. off_route_sigma=3.5); repeatable",
    )
    ap.add_argument(
        "--world",
        choices=("today", "city", "both"),
        default="both",
        help="today's world (bench/quality/world.py), the city-like one (bench/quality/city.py), or both",
    )
    ap.add_argument(
        "--intervals",
        default="1,5,15,30,60",
        help="fix intervals, seconds, comma-separated: each world is run at each (a JSON line each)",
    )
    ap.add_argument(
        "--city-child-days",
        type=int,
        default=0,
        help="child-days of the city-like world at every interval (0: the plan in CITY_CHILD_DAYS)",
    )
    ap.add_argument("--quick", action="store_true", help="a few minutes: small runs of both worlds")
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="the city-like world's plan (CITY_CHILD_DAYS, or CITY_QUICK) times this (0.2: a fifth)",
    )
    ap.add_argument(
        "--city-stays-per-day",
        type=float,
        default=None,
        help="zone stays per child-day of the city-like world (0.4): more decide the stay cells in fewer"
        " child-days (a stay's recall does not depend on how many others the day holds)",
    )
    ap.add_argument(
        "--why",
        action="store_true",
        help="city-like world: name the rule behind each alert (bench.quality.stand.RuleWatch)",
    )
    ap.add_argument("--plot", type=Path, help="write a figure of every run's figures to this path (PNG)")
    args = ap.parse_args(argv)
    if args.quick:
        args.children, args.days = min(args.children, 200), 1
    intervals = (
        [args.interval] if args.interval is not None else [float(x) for x in args.intervals.split(",") if x]
    )
    results: list[dict[str, Any]] = []
    if args.world in ("today", "both"):
        for interval in intervals:
            results.append(_today(args, interval))
    if args.world in ("city", "both"):
        for interval in intervals:
            results.append(_city(args, interval))
    if args.plot:
        from bench.quality.plot import plot

        plot(results, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def cpu_seconds() -> float:
    """CPU seconds of this process and of its workers that have ended (a pool's, once shut down): what
    a run costs whatever else the machine was doing (its wall time depends on that)."""
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


def today_children(children: int, interval_s: float) -> int:
    """Children of today's world at a fix interval: at 15 s and slower as asked; faster, as many
    fewer as the interval is shorter (a 1 s child-day is 15x the fixes of a 15 s one), at least 10."""
    return max(10, round(children * min(1.0, interval_s / 15.0)))


def _city(args: argparse.Namespace, interval: float) -> dict[str, Any]:
    from bench.quality.city_report import city_lines, plan_lines
    from bench.quality.city_score import score_city
    from bench.quality.city_sim import CityParams, simulate_city

    plan = CITY_QUICK if args.quick else CITY_CHILD_DAYS
    child_days = args.city_child_days or max(1, round(args.scale * plan.get(interval, 500)))
    days = min(10, max(1, child_days // 20))
    p = CityParams(
        child_days=child_days,
        days=days,
        interval_s=interval,
        seed=args.seed,
        workers=args.workers,
        rules=tuple(_rule(text) for text in args.rule),
        why=args.why,
        **({} if args.city_stays_per_day is None else {"stays_per_day": args.city_stays_per_day}),
    )
    cpu0 = cpu_seconds()
    out, elapsed = simulate_city(p)
    cpu = cpu_seconds() - cpu0
    figures = score_city(out, interval_s=interval)
    speed = figures["fixes"] / elapsed if elapsed > 0 else 0.0
    result = {
        "bench": "alert_quality",
        "world": "city",
        "seed": args.seed,
        "elapsed_s": round(elapsed, 1),
        "fixes_per_s": round(speed),
        "cpu_s": round(cpu, 1),
        "fixes_per_cpu_s": round(figures["fixes"] / cpu) if cpu > 0 else None,
        **figures,
        "decide": decide(city_targets(figures), 86400.0 / interval, speed),
    }
    print("\n".join(city_lines(result)))
    print("\n".join(plan_lines(result)))
    print(json.dumps(result, separators=(",", ":")))
    return result


def _today(args: argparse.Namespace, interval: float) -> dict[str, Any]:
    params = Params(
        rules=tuple(_rule(text) for text in args.rule),
        interval_s=interval,
        children=today_children(args.children, interval),
        days=args.days,
        seed=args.seed,
        schools=args.schools,
        incidents_per_hour=args.incidents_per_hour,
        workers=args.workers,
    )
    from bench.quality.city_report import plan_lines

    workers = max(1, min(params.workers or os.cpu_count() or 1, params.children))
    cpu0 = cpu_seconds()
    out, elapsed = simulate(params)
    cpu = cpu_seconds() - cpu0
    matchings = {rule: score.match(out.incidents, out.alerts[rule]) for rule in ("monitor", "naive")}
    result = report(params, out, matchings, elapsed, workers)
    child_days = params.children * params.days
    speed = out.fixes / elapsed if elapsed > 0 else 0.0
    result = {
        "world": "today",
        "fix_interval_s": interval,
        "fixes_per_s": round(speed),
        "cpu_s": round(cpu, 1),
        "fixes_per_cpu_s": round(out.fixes / cpu) if cpu > 0 else None,
        **result,
        "decide": decide(today_targets(result), out.fixes / child_days, speed),
    }
    print("\n".join(lines(result)))
    print(
        "\n".join(explain(out.incidents, matchings["monitor"], zone_depths(params), examples=args.examples))
    )
    print("\n".join(plan_lines(result)))
    print(json.dumps(result, separators=(",", ":")))
    return result


if __name__ == "__main__":
    raise SystemExit(main())
