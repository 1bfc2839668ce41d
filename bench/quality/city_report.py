"""The city-like world's figures as lines of text (the JSON line follows them)."""

from __future__ import annotations

from typing import Any


def _p(x: dict[str, Any] | None) -> str:
    """A proportion or a rate with its interval."""
    if not x or x.get("value") is None:
        return "-"
    lo, hi = x["ci95"] or (None, None)
    if "n" in x:
        return f"{100 * x['value']:.1f} % ({x['k']}/{x['n']}; 95 % CI {100 * lo:.1f}-{100 * hi:.1f})"
    return f"{x['value']:.3g} ({x['k']} in {x['exposure']:g}; 95 % CI {lo:.3g}-{hi:.3g})"


def _q(x: dict[str, Any]) -> str:
    if x.get("value") is None:
        return "-"
    lo, hi = ("-" if v is None else v for v in x["ci95"])
    return f"{x['value']:.1f} s (n {x['n']}; 95 % CI {lo}-{hi})"


def city_lines(r: dict[str, Any]) -> list[str]:
    fa, st, dep, ck = r["false_alarms"], r["stays"], r["departures"], r["clocks"]
    out = [
        f"city-like world, {r['fix_interval_s']:g} s fixes: {r['child_days']} child-days of 24 h,"
        f" {r['fixes']:,} fixes in {r['elapsed_s']:.0f} s (refused: {r['refused'] or 'none'});"
        f" incidents {r['incidents']}",
        f"  departures >= 60 m beyond for >= 30 s: recall {_p(dep['recall'])}",
        f"    delay from 60 m out: median {_q(dep['delay_from_60m_median_s'])},"
        f" p95 {_q(dep['delay_from_60m_p95_s'])}",
    ]
    for name, x in st["targets"].items():
        out.append(f"  stays {name}: recall {_p(x)}")
    out.append(f"  stays reaching 30 m: median delay after {_q(st['delay_after_30m_deep_median_s'])}")
    if st.get("in_own_corridor_in_a_window"):
        out.append(
            "  stays in a commute window inside the child's own corridor (not judged: the zone minus the"
            f" corridor counts there), caught anyway: {_p(st['in_own_corridor_in_a_window'])}"
        )
    out += [
        f"  false alarms per 1,000 child-days (24 h): {_p(fa['per_1000_child_days'])};"
        f" by kind {fa['by_kind']}",
        f"    by place {fa['by_place']}",
        f"    per 1,000 h standing 15-50 m from a zone: {_p(fa['per_1000_h_standing_15_50_m'])}",
        f"    per 100 h standing 5-15 m from a zone: {_p(fa['per_100_h_standing_5_15_m'])}",
        f"    per 1,000 crosswalk crossings on the own route: {_p(fa['per_1000_crosswalk_crossings'])}",
        f"    registered shuttle rides: {fa['registered_shuttle_rides']}",
        f"    repeated alerts per 100 incidents: {_p(fa['repeated_per_100_incidents'])}",
        f"    explained apart: {fa['explained_apart']}",
        f"  unregistered shuttle rides alerted: {_p(r['unregistered_rides'])}",
        f"  clocks: signal lost (not underground) {ck['signal_lost_not_underground']},"
        f" child-days with it repeated {ck['child_days_with_repeated_signal_lost']};"
        f" SOS alerted {_p(ck['sos'])}, delay after receipt max {ck['sos_delay_after_receipt_max_s']} s,"
        f" within 5 s {_p(ck.get('sos_within_5_s'))}",
    ]
    for cls, x in ck.get("by_clock", {}).items():
        out.append(
            f"    {cls:14s} {x['child_days']:6d} child-days: signal lost {x['signal_lost']};"
            f" SOS {_p(x['sos'])}, delay after receipt max {x['sos_delay_after_receipt_max_s']} s"
        )
    if fa.get("by_rule_and_place"):
        out.append("  false alarms by kind, the rule behind them (--why) and where the child was:")
        out += [f"    {n:6d}  {what}" for what, n in fa["by_rule_and_place"].items()]
    if fa.get("by_noise"):
        out.append(
            "  false alarms by the error behind them (an episode in the 120 s before: canyon bias, a lying"
            " fix, honest multipath; none: the drifting normal error alone):"
        )
        out += [f"    {n:6d}  {what}" for what, n in fa["by_rule_and_noise"].items()]
    out.append(
        "  stays: depth | time inside | accuracy -> recall (95 % CI) beside the Neyman-Pearson ceiling"
        " (<< : more than 10 points below it; !! : even the interval's upper end is)"
    )
    for cell, x in st["grid"].items():
        flag = "!!" if x.get("flag_sure") else "<<" if x.get("flag") else ""
        out.append(f"    {cell:36s} {_p(x):44s} ceiling {100 * x['ceiling']:5.1f} % {flag}")
    return out


def _n(x: object) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if isinstance(x, (int, float)) and x >= 10 else f"{x:g}"


def plan_lines(r: dict[str, Any]) -> list[str]:
    """How many child-days each target needs at this interval, and the hours (bench/quality/plan.py)."""
    out = [
        f"  child-days to decide each target at {r['fix_interval_s']:g} s ({r.get('fixes_per_s', 0):,}"
        f" fixes/s measured in this run; {r.get('fixes_per_cpu_s') or 0:,} per CPU-second):"
        " nothing missed or raised / the truth at the target / to refute the measured rate;"
        " child-days (hours at this run's speed)",
    ]
    for name, row in r.get("decide", {}).items():
        cells = []
        for key in ("all_right", "at_target", "refute"):
            x = row.get(key)
            if not x or x.get("child_days") is None:
                cells.append("-")
                continue
            cells.append(f"{_n(x['child_days'])} ({_n(x['hours'])} h)")
        out.append(f"    {name:46s} " + " / ".join(cells))
    return out
