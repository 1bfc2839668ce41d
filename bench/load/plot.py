"""The picture an operator looks at: the tracker's throughput over the run (with the ceiling and each
phase marked), publish → websocket latency of incident alerts, and the tracker's memory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

WINDOW_S = 2.0


class _Sample(Protocol):
    t: float
    fixes_in: int
    rejected: int
    rss_mb: float


class _Phase(Protocol):
    name: str
    t_start: float
    t_end: float


def plot(
    path: Path,
    samples: Sequence[_Sample],
    phases: Sequence[_Phase],
    latency: Sequence[tuple[float, float]],
    report: dict[str, Any],
) -> None:
    if not samples:
        return
    t0 = samples[0].t
    fig, (ax_rate, ax_lat, ax_mem) = plt.subplots(
        3, 1, figsize=(11, 9), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1.3]}
    )
    xs, rates = [], []  # over a 2 s window: the counters move once per pipeline batch
    j = 0
    for b in samples[1:]:
        while j < len(samples) - 1 and b.t - samples[j + 1].t >= WINDOW_S:
            j += 1
        a = samples[j]
        if b.t > a.t:
            xs.append(b.t - t0)
            rates.append(((b.fixes_in + b.rejected) - (a.fixes_in + a.rejected)) / (b.t - a.t))
    ax_rate.plot(xs, rates, lw=0.9, color="tab:blue", label="tracker: fixes handled per second (2 s window)")
    ceiling = report.get("ceiling", {}).get("qos1_msg_per_s")
    if ceiling:
        ax_rate.axhline(
            ceiling, color="tab:gray", ls="--", lw=1, label=f"bare subscriber, QoS 1: {ceiling:,.0f} msg/s"
        )
    ax_rate.axhline(100_000, color="tab:red", ls=":", lw=1, label="target, batches of 100: 100,000 fixes/s")
    colours = ["#e8f0fe", "#fef3e0", "#e6f4ea", "#fce8e6"]
    for i, p in enumerate(phases):
        for ax in (ax_rate, ax_lat, ax_mem):
            ax.axvspan(p.t_start - t0, p.t_end - t0, color=colours[i % len(colours)], zorder=0)
        ax_rate.text(
            p.t_start - t0, 1.0, " " + p.name, transform=ax_rate.get_xaxis_transform(), va="top", fontsize=8
        )
    ax_rate.set_ylabel("fixes / s")
    ax_rate.legend(loc="upper right", fontsize=8)
    ax_rate.set_title(
        f"tracker end to end: {report.get('children_registered', 0):,} children registered, "
        f"{report.get('machine', {}).get('cpus')} CPUs"
    )
    if latency:
        ax_lat.scatter(
            [a - t0 for a, _ in latency],
            [x * 1000 for _, x in latency],
            s=6,
            color="tab:purple",
            label="incident alert: publish → websocket",
        )
        lat = report.get("latency", {})
        for q, style in (("p50_ms", ":"), ("p99_ms", "--")):
            if lat.get(q) is not None:
                ax_lat.axhline(lat[q], color="tab:purple", ls=style, lw=1, label=f"{q[:3]} {lat[q]:.0f} ms")
        ax_lat.axhline(250, color="tab:red", ls=":", lw=1, label="target p99 250 ms")
        ax_lat.legend(loc="upper right", fontsize=8)
    ax_lat.set_ylabel("latency, ms")
    ax_mem.plot([s.t - t0 for s in samples], [s.rss_mb for s in samples], color="tab:green", lw=1)
    ax_mem.axhline(1536, color="tab:red", ls=":", lw=1)
    ax_mem.set_ylabel("tracker RSS, MiB")
    ax_mem.set_xlabel("seconds since the tracker was ready")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_workers(path: Path, report: dict[str, Any]) -> None:
    """``bench/e2e.py --workers``: each figure against the number of workers (one group of bars per N)."""
    rows = report.get("per_workers", [])
    if not rows:
        return
    ns = [r["workers"] for r in rows]
    xs = list(range(len(ns)))
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    (ax_rate, ax_cpu, ax_engine), (ax_lat, ax_take, ax_rss) = axes
    w = 0.38
    for off, key, label in (
        (-w / 2, "single_qos1", "single fixes, QoS 1"),
        (w / 2, "batch100", "batches of 100"),
    ):
        ax_rate.bar([x + off for x in xs], [r[key]["fixes_per_s"] for r in rows], w, label=label)
        ax_engine.bar([x + off for x in xs], [r[key]["engine_cpu_us_per_fix"] for r in rows], w, label=label)
        alls = [r["fixes_per_tracker_cpu_s"][key]["all"] or 0 for r in rows]
        ax_cpu.bar([x + off for x in xs], alls, w, alpha=0.45, label=f"{label}: all workers")
        for x, r in zip(xs, rows, strict=True):
            each = [v for v in r["fixes_per_tracker_cpu_s"][key]["each"] if v]
            ax_cpu.scatter([x + off] * len(each), each, color="black", s=14, zorder=3)
    if rows[0]["workers"] == 1:
        one = rows[0]["fixes_per_tracker_cpu_s"]["single_qos1"]["all"] or 0
        ax_cpu.axhline(0.9 * one, color="tab:red", ls=":", lw=1, label="90 % of one worker (single fixes)")
    ax_rate.set_title("fixes / s sustained (all workers)")
    ax_cpu.set_title("fixes per tracker CPU-second (dots: each worker)")
    ax_engine.set_title("engine CPU per fix, µs (all nats-server nodes)")
    p50 = [r["latency"]["p50_ms"] for r in rows]
    p99 = [r["latency"]["p99_ms"] for r in rows]
    ax_lat.bar([x - w / 2 for x in xs], p50, w, label="p50")
    ax_lat.bar([x + w / 2 for x in xs], p99, w, label="p99")
    for x, r in zip(xs, rows, strict=True):
        ax_lat.text(
            x, 0, f"{r['latency']['offered_fixes_per_s']:,.0f}/s", ha="center", va="bottom", fontsize=8
        )
    ax_lat.axhline(250, color="tab:red", ls=":", lw=1, label="target p99 250 ms")
    ax_lat.set_title("publish → websocket, ms (offered load at the foot)")
    owned = [(r.get("takeover") or {}).get("all_partitions_owned_after_s") or 0 for r in rows]
    done = [(r.get("takeover") or {}).get("stream_stored_after_s") or 0 for r in rows]
    ax_take.bar([x - w / 2 for x in xs], owned, w, label="every partition owned again")
    ax_take.bar([x + w / 2 for x in xs], done, w, label="the stream stored")
    ax_take.axhline(15, color="tab:red", ls=":", lw=1, label="target 15 s")
    ax_take.set_title("after SIGKILL of one worker, s (N ≥ 2)")
    for x, r in zip(xs, rows, strict=True):
        peaks = list(r["rss_peak_mb"].values())
        ax_rss.scatter([x] * len(peaks), peaks, color="tab:green", s=18)
    ax_rss.set_title("peak RSS of each worker, MiB")
    ax_rss.set_ylim(bottom=0)
    for ax in axes.flat:
        ax.set_xticks(xs, [f"{n} worker{'s' if n > 1 else ''}" for n in ns])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    load = report.get("machine", {}).get("load_at_end")
    fig.suptitle(
        f"tracker workers on NATS ({report.get('nats_nodes')} node(s)): "
        f"{report.get('children_registered', 0):,} children, {report.get('machine', {}).get('cpus')} CPUs"
        + (f", load {load[0]:.1f} at the end" if load else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
