"""The alert-quality bench's figures as the Markdown tables of docs/alert-quality.md.

``python -m bench.quality.tables OUTPUT [OUTPUT ...]`` reads the JSON lines that
``bench/alert_quality.py`` printed (one per world and fix interval) and prints the tables: both worlds
per interval, the city-like world's false alarms by cause, by rule, its clocks, the depth x stay x
accuracy grid beside its Neyman-Pearson ceiling (one per interval), and the child-days each target
needs. Pure but for ``main``: results in, lines out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.quality.city_score import ACCS, DEPTHS, STAYS


def pct(x: dict[str, Any] | None) -> str:
    """A proportion with its 95 % interval: ``100 % (98.2-100), 204/204``."""
    if not x or x.get("value") is None:
        return "—"
    lo, hi = x["ci95"]
    return f"{100 * x['value']:.1f} % ({100 * lo:.1f}-{100 * hi:.1f}), {x['k']}/{x['n']}"


def rate(x: dict[str, Any] | None) -> str:
    """A rate with its 95 % interval and the count behind it: ``1,330 (1,060-1,660), 80 in 60``."""
    if not x or x.get("value") is None:
        return "—"
    lo, hi = x["ci95"]
    return f"{_g(x['value'])} ({_g(lo)}-{_g(hi)}), {x['k']} in {_g(x['exposure'])}"


def quant(x: dict[str, Any] | None) -> str:
    """A quantile with its 95 % interval (a bound the sample is too small for: ``?``)."""
    if not x or x.get("value") is None:
        return "—"
    lo, hi = ("?" if v is None else f"{v:g}" for v in x["ci95"])
    return f"{x['value']:g} s ({lo}-{hi}), n {x['n']}"


def _g(v: float) -> str:
    if v == int(v):
        return f"{int(v):,}"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2g}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


def _run(r: dict[str, Any]) -> str:
    """A run's name in a column or a title: its interval and its child-days."""
    days = r["child_days"] if "child_days" in r else r["params"]["child_days"]
    return f"{r['fix_interval_s']:g} s, {days:,} child-days"


def _by_interval(results: Sequence[dict[str, Any]], world: str) -> list[dict[str, Any]]:
    return sorted((r for r in results if r["world"] == world), key=lambda r: r["fix_interval_s"])


def today_table(results: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for r in _by_interval(results, "today"):
        ci, p = r["ci95"], r["params"]
        rows.append(
            [
                f"{r['fix_interval_s']:g} s",
                f"{p['child_days']:,} ({p['fixes']:,} fixes, {p['elapsed_s']:.0f} s)",
                pct(ci["recall_departures_target"]),
                pct(ci["recall_zone_entries_target"]),
                rate(ci["false_alarms_per_1000_child_days"]),
                quant(ci.get("delay_departures_from_60m_median_s")),
                quant(ci.get("delay_departures_from_60m_p95_s")),
                quant(ci.get("delay_zone_entries_median_s")),
                rate(ci.get("repeated_per_100_incidents")),
            ]
        )
    return _table(
        [
            "interval",
            "child-days (fixes, run time)",
            "departures ≥ 60 m for ≥ 30 s: recall",
            "zone entries ≥ 10 s: recall",
            "false alarms per 1,000 child-days",
            "departure delay from 60 m out: median",
            "p95",
            "zone entry delay from the boundary: median",
            "repeated alerts per 100 incidents",
        ],
        rows,
    )


def city_table(results: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    names: list[str] = []
    for r in _by_interval(results, "city"):
        names += [n for n in sorted(r["stays"]["targets"]) if n not in names]
    for r in _by_interval(results, "city"):
        rows.append(
            [
                f"{r['fix_interval_s']:g} s",
                f"{r['child_days']:,} ({r['fixes']:,} fixes, {r['elapsed_s']:.0f} s)",
                pct(r["departures"]["recall"]),
                *(pct(r["stays"]["targets"].get(n)) for n in names),
                rate(r["false_alarms"]["per_1000_child_days"]),
                quant(r["departures"]["delay_from_60m_median_s"]),
                quant(r["departures"]["delay_from_60m_p95_s"]),
                quant(r["stays"]["delay_after_30m_deep_median_s"]),
                pct(r["stays"].get("in_own_corridor_in_a_window")),
            ]
        )
    return _table(
        [
            "interval",
            "child-days of 24 h (fixes, run time)",
            "departures ≥ 60 m for ≥ 30 s: recall",
            *(f"stays {n}: recall" for n in names),
            "false alarms per 1,000 child-days",
            "departure delay from 60 m out: median",
            "p95",
            "stay reaching 30 m: delay after, median",
            "stays in a window inside the own corridor (not judged): caught anyway",
        ],
        rows,
    )


def causes_table(results: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for r in _by_interval(results, "city"):
        fa = r["false_alarms"]
        sh = fa["registered_shuttle_rides"]
        rows.append(
            [
                f"{r['fix_interval_s']:g} s",
                rate(fa["per_1000_h_standing_15_50_m"]),
                rate(fa["per_100_h_standing_5_15_m"]),
                rate(fa["per_1000_crosswalk_crossings"]),
                f"{sh['alerts']} in {sh['rides']} rides",
                rate(fa["repeated_per_100_incidents"]),
                pct(r.get("unregistered_rides")),
                ", ".join(f"{k} {v}" for k, v in sorted(fa["by_place"].items(), key=lambda kv: -kv[1])),
            ]
        )
    return _table(
        [
            "interval",
            "standing 15-50 m: per 1,000 h (target ≤ 1)",
            "standing 5-15 m: per 100 h (≤ 1)",
            "own crosswalk: per 1,000 crossings (≤ 1)",
            "registered shuttle (none)",
            "repeated per 100 incidents (≤ 1)",
            "unregistered rides alerted",
            "every false alarm by where the child was",
        ],
        rows,
    )


def rules_table(results: Sequence[dict[str, Any]]) -> list[str]:
    """False alarms by kind, rule (``--why``) and place: one column per interval."""
    runs = _by_interval(results, "city")
    keys: dict[str, int] = {}
    for r in runs:
        for k, v in r["false_alarms"].get("by_rule_and_place", {}).items():
            keys[k] = keys.get(k, 0) + v
    rows = [
        [
            k.replace("|", "\\|"),
            *(str(r["false_alarms"].get("by_rule_and_place", {}).get(k, 0)) for r in runs),
        ]
        for k in keys
    ]
    rows.sort(key=lambda row: -sum(int(c) for c in row[1:]))
    return _table(["kind by rule \\| where", *(_run(r) for r in runs)], rows)


def clocks_table(results: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for r in _by_interval(results, "city"):
        ck = r["clocks"]
        by = ck.get("by_clock", {})
        rows.append(
            [
                f"{r['fix_interval_s']:g} s",
                f"{ck['signal_lost_not_underground']} ({ck['child_days_with_repeated_signal_lost']})",
                ", ".join(f"{c} {x['signal_lost']} in {x['child_days']}" for c, x in by.items()),
                pct(ck.get("sos_within_5_s")),
                "—"
                if ck["sos_delay_after_receipt_max_s"] is None
                else f"{ck['sos_delay_after_receipt_max_s']} s",
                ", ".join(
                    f"{c} {x['sos']['k']}/{x['sos']['n']} (max {x['sos_delay_after_receipt_max_s']} s)"
                    for c, x in by.items()
                    if x["sos"]["n"]
                ),
                str(r["false_alarms"]["explained_apart"].get("signal_lost_underground", 0)),
            ]
        )
    return _table(
        [
            "interval",
            "signal lost, not underground (child-days with it repeated)",
            "signal lost by clock: alerts in child-days",
            "SOS alerted within 5 s of receipt",
            "SOS delay after receipt, max",
            "SOS by clock",
            "signal lost underground (counted apart)",
        ],
        rows,
    )


def grid_table(r: dict[str, Any]) -> list[str]:
    """One run's grid: a row per depth x stay, a column per accuracy class; each cell ``recall
    (k/n) | ceiling``, **bold** where more than 10 points below the ceiling."""
    grid = r["stays"]["grid"]
    rows = []
    for _, _, d in DEPTHS:
        for _, _, s in STAYS:
            row = [f"{d} m", f"{s} s"]
            for _, _, a in ACCS:
                c = grid.get(f"{d} m | {s} s | acc {a} m")
                if not c or not c.get("n"):
                    row.append("—")
                    continue
                text = f"{100 * c['value']:.0f} % ({c['k']}/{c['n']}) \\| {100 * c['ceiling']:.0f} %"
                row.append(f"**{text}**" if c.get("flag") else text)
            rows.append(row)
    return _table(["depth", "time inside", *(f"acc {a} m" for _, _, a in ACCS)], rows)


def flagged(r: dict[str, Any]) -> tuple[int, int, int]:
    """Cells with stays, cells more than 10 points below the ceiling, of which even the interval's
    upper end is."""
    cells = [c for c in r["stays"]["grid"].values() if c.get("n")]
    return len(cells), sum(bool(c.get("flag")) for c in cells), sum(bool(c.get("flag_sure")) for c in cells)


def decide_table(results: Sequence[dict[str, Any]], world: str) -> list[str]:
    runs = _by_interval(results, world)
    names: list[str] = []
    for r in runs:
        names += [n for n in r.get("decide", {}) if n not in names]
    rows = []
    for n in names:
        row = [n]
        for r in runs:
            d = r.get("decide", {}).get(n)
            if not d:
                row.append("—")
                continue
            parts = []
            for key in ("all_right", "at_target", "refute"):
                x = d.get(key)
                if x and x.get("child_days") is not None:
                    parts.append(f"{x['child_days']:,} ({x['hours']:g} h)")
                elif key != "refute":
                    parts.append("—")
            row.append(" / ".join(parts))
        rows.append(row)
    return _table(["target", *(f"{_run(r)} ({r['fixes_per_s']:,} fixes/s)" for r in runs)], rows)


def markdown(results: Sequence[dict[str, Any]]) -> list[str]:
    out = ["#### Today's world", "", *today_table(results), ""]
    out += ["#### The city-like world", "", *city_table(results), ""]
    out += ["False alarms by cause:", "", *causes_table(results), ""]
    out += ["False alarms by the rule that raised them (`--why`) and where the child was:", ""]
    out += [*rules_table(results), ""]
    out += ["Clocks:", "", *clocks_table(results), ""]
    for r in _by_interval(results, "city"):
        n, f, sure = flagged(r)
        out += [
            f"Stays at {_run(r)}: recall (stays caught / stays) \\| Neyman-Pearson ceiling;"
            f" {n} cells with stays, {f} more than 10 points below their ceiling (bold), {sure} of them"
            " even at the upper end of their 95 % interval:",
            "",
            *grid_table(r),
            "",
        ]
    for world in ("today", "city"):
        if _by_interval(results, world):
            out += [
                f"Child-days to decide each target, {world}'s world: nothing missed or raised / the truth"
                " at the target / to refute the measured rate (hours at the run's speed):",
                "",
                *decide_table(results, world),
                "",
            ]
    return out


def read(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every JSON line of the bench's output files."""
    return [
        json.loads(line)
        for p in paths
        for line in p.read_text().splitlines()
        if line.startswith("{") and '"bench":"alert_quality"' in line
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output", type=Path, nargs="+", help="what bench/alert_quality.py printed")
    args = ap.parse_args(argv)
    print("\n".join(markdown(read(args.output))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
