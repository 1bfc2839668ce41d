"""The alert-quality bench's figure (``bench/alert_quality.py --plot PATH``): every run of both worlds
on one page, each figure with its 95 % interval.

Four panels: false alarms per 1,000 child-days by fix interval (log scale, the target and its bound
drawn); recall by fix interval (departures in both worlds, zone entries of today's world, the city's
three stay cells the issue names); each stay cell of the city-like world's depth x stay x accuracy
grid, its recall against its Neyman-Pearson ceiling (a cell more than 10 points below its ceiling is
drawn in red); the delays (departures from 60 m out: median and p95; stays from 30 m deep: median).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _ci(x: dict[str, Any] | None) -> tuple[float, float, float] | None:
    """value, lower, upper of a proportion, rate or quantile dict (None: nothing measured)."""
    if not x or x.get("value") is None:
        return None
    lo, hi = x.get("ci95") or (None, None)
    v = float(x["value"])
    return v, v if lo is None else float(lo), v if hi is None else float(hi)


def series(results: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, float, float, float]]]:
    """Every plotted line as (interval, value, lower, upper) points, by label (pure: what the plot
    draws, testable without matplotlib)."""
    out: dict[str, list[tuple[float, float, float, float]]] = {}

    def add(label: str, interval: float, x: dict[str, Any] | None) -> None:
        c = _ci(x)
        if c is not None:
            out.setdefault(label, []).append((interval, *c))

    for r in results:
        iv = float(r["fix_interval_s"])
        if r["world"] == "today":
            ci = r["ci95"]
            add("fa|today", iv, ci["false_alarms_per_1000_child_days"])
            add("recall|today: departures", iv, ci["recall_departures_target"])
            add("recall|today: zone entries", iv, ci["recall_zone_entries_target"])
            add("delay|today: departure median", iv, ci.get("delay_departures_from_60m_median_s"))
            add("delay|today: departure p95", iv, ci.get("delay_departures_from_60m_p95_s"))
        else:
            add("fa|city", iv, r["false_alarms"]["per_1000_child_days"])
            add("recall|city: departures", iv, r["departures"]["recall"])
            for name, x in r["stays"]["targets"].items():
                add(f"recall|city: stays {name}", iv, x)
            add("delay|city: departure median", iv, r["departures"]["delay_from_60m_median_s"])
            add("delay|city: departure p95", iv, r["departures"]["delay_from_60m_p95_s"])
            add("delay|city: stay from 30 m deep, median", iv, r["stays"]["delay_after_30m_deep_median_s"])
    for pts in out.values():
        pts.sort()
    return out


def plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = series(results)
    fig, ax = plt.subplots(2, 2, figsize=(13, 9.5))
    panels = {"fa": ax[0][0], "recall": ax[0][1], "delay": ax[1][1]}
    nth: dict[str, int] = {}
    for key, pts in s.items():
        panel, label = key.split("|", 1)
        a = panels[panel]
        nth[panel] = nth.get(panel, -1) + 1
        xs = [p[0] * 1.05 ** nth[panel] for p in pts]  # side by side, not on top of each other
        if panel == "fa":  # on a log scale a zero is drawn as its upper bound, pointing down
            zero = [(x, p) for x, p in zip(xs, pts, strict=True) if p[1] <= 0.0]
            pts = [p for p in pts if p[1] > 0.0]
            xs = [p[0] * 1.05 ** nth[panel] for p in pts]
            if zero:
                a.scatter(
                    [x for x, _ in zero],
                    [p[3] for _, p in zero],
                    marker="v",
                    s=60,
                    color=f"C{nth[panel]}",
                    label=f"{label}: none (the 95 % upper bound)",
                )
            if not pts:
                continue
        ys = [p[1] for p in pts]
        err = [[max(0.0, p[1] - p[2]) for p in pts], [max(0.0, p[3] - p[1]) for p in pts]]
        a.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label, color=f"C{nth[panel]}")
    a = panels["fa"]
    a.set_yscale("log")
    a.axhline(1.0, color="green", ls="--", lw=1, label="target 1 (upper bound 2)")
    a.axhline(2.0, color="green", ls=":", lw=1)
    a.set_title("false alarms per 1,000 child-days (95 % CI)")
    a = panels["recall"]
    a.axhline(0.995, color="green", ls="--", lw=1, label="target 99.5 % (lower bound 99 %)")
    a.set_ylim(0.0, 1.02)
    a.set_title("recall (95 % CI)")
    a = panels["delay"]
    a.axhline(20.0, color="green", ls="--", lw=1, label="median targets (departure 20 s)")
    a.axhline(15.0, color="olive", ls="--", lw=1, label="stay from 30 m deep: 15 s")
    a.axhline(60.0, color="green", ls=":", lw=1, label="departure p95 target 60 s")
    a.set_title("delays, s (95 % CI of each quantile)")
    for a in panels.values():
        a.set_xscale("log")
        a.set_xticks([1, 5, 15, 30, 60], ["1", "5", "15", "30", "60"])
        a.set_xlabel("fix interval, s")
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    g = ax[1][0]
    markers = {1.0: "v", 5.0: "s", 15.0: "o", 30.0: "D", 60.0: "^"}
    for r in results:
        if r["world"] != "city":
            continue
        iv = float(r["fix_interval_s"])
        cells = [c for c in r["stays"]["grid"].values() if c.get("value") is not None]
        for flagged in (False, True):
            mine = [c for c in cells if bool(c.get("flag")) == flagged]
            if mine:
                g.scatter(
                    [c["ceiling"] for c in mine],
                    [c["value"] for c in mine],
                    s=[8 + 4 * min(c["n"], 60) for c in mine],
                    marker=markers.get(iv, "o"),
                    color="red" if flagged else "tab:blue",
                    alpha=0.5,
                    label=f"{iv:g} s" + (" (> 10 points below)" if flagged else ""),
                )
    g.plot([0, 1], [0, 1], color="black", lw=1)
    g.plot([0.1, 1], [0, 0.9], color="red", ls=":", lw=1, label="10 points below the ceiling")
    g.set_xlim(0, 1.02)
    g.set_ylim(0, 1.02)
    g.set_xlabel("Neyman-Pearson ceiling of the cell")
    g.set_ylabel("recall of the cell (marker size: stays in it)")
    g.set_title("city-like world: depth x stay x accuracy cells")
    g.legend(fontsize=7)
    g.grid(alpha=0.3)
    fig.suptitle("bench/alert_quality.py: alert quality by world and fix interval")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.quality.plot PNG OUTPUT [OUTPUT ...]``: the figure again from saved runs'
    output (their JSON lines, one per world and interval)."""
    import argparse

    from bench.quality.tables import read

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("png", type=Path)
    ap.add_argument("output", type=Path, nargs="+", help="what bench/alert_quality.py printed")
    args = ap.parse_args(argv)
    plot(read(args.output), args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
