"""The tracker's decisions, alert for alert, on the quality bench's tracks: the same as another commit's?

A change made for speed (issue 16.6: less Python per fix) must not change a single decision. This runs
the quality bench's two worlds (bench/alert_quality.py: ``--world today`` and ``--world city`` at
every quick interval) through :class:`tracker.offline.OfflineTracker` (what ``tracker replay
--alerts-out`` runs: admission, the geofence of a batch, the monitor fix by fix, the clock's passes),
in one process, and writes

* every alert of the ledger (one JSON line each, floats exact: ``repr``), and
* every event the monitor and the clock returned, in order, with the verdict counts,

then, with ``--base COMMIT``, runs the same at that commit (a git worktree in a temporary directory,
this script's own copy run there) and compares the two files line by line. Exit status 0 only when
both are identical; the first differences are printed.

    .venv/bin/python bench/decisions_same.py --base b011934        # compare HEAD's tree with b011934
    .venv/bin/python bench/decisions_same.py --out /tmp/now        # only write this tree's files

The worlds are the bench's ``--quick`` sizes (today: 200 children x 1 day; city: 60 child-days at 15 s,
2 at 1 s, 10 at 5 s, 40 at 30 s and 60 s); ``--small`` runs a tenth of the city for a quick look.
The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

CITY_QUICK = {15.0: 60, 1.0: 2, 5.0: 10, 30.0: 40, 60.0: 40}


def _f(x: Any) -> Any:
    """A float written exactly (json would round-trip it too, but repr says so)."""
    return repr(x) if isinstance(x, float) else x


def _record(out_dir: Path, small: bool) -> dict[str, Any]:
    """Run both worlds in this process with whatever ``tracker`` is importable; write the files."""
    from tracker import offline as offline_mod

    trackers: list[Any] = []
    events: list[str] = []
    original_init = offline_mod.OfflineTracker.__init__
    original_batch = offline_mod.OfflineTracker.batch
    original_clock = offline_mod.OfflineTracker.clock

    def init(self: Any, *a: Any, **kw: Any) -> None:
        original_init(self, *a, **kw)
        trackers.append(self)

    def note(tag: str, k: int, ce: Any) -> str:
        e = ce.event
        return json.dumps(
            [
                tag,
                k,
                ce.child_id,
                e.kind.value,
                _f(e.ts),
                e.zone_id,
                e.detail,
                _f(ce.lon),
                _f(ce.lat),
                _f(ce.acc),
                _f(ce.received_at),
                ce.zone_severity,
            ]
        )

    def batch(self: Any, fixes: Any, now: float) -> Any:
        out = original_batch(self, fixes, now)
        k = trackers.index(self)
        events.extend(note("fix", k, ce) for ce in out)
        return out

    def clock(self: Any, now: float) -> Any:
        out = original_clock(self, now)
        k = trackers.index(self)
        events.extend(note("clock", k, ce) for ce in out)
        return out

    offline_mod.OfflineTracker.__init__ = init  # type: ignore[method-assign]
    offline_mod.OfflineTracker.batch = batch  # type: ignore[method-assign]
    offline_mod.OfflineTracker.clock = clock  # type: ignore[method-assign]

    from bench.quality.city_sim import CityParams, simulate_city
    from bench.quality.sim import Params, simulate

    started = time.process_time()
    runs: list[tuple[str, int]] = []  # (world, trackers made by it)
    simulate(Params(children=200 if not small else 40, days=1, workers=1))
    runs.append(("today", len(trackers)))
    for interval, child_days in CITY_QUICK.items():
        n = max(1, child_days // 10) if small else child_days
        days = min(10, max(1, n // 20))
        simulate_city(CityParams(child_days=n, days=days, interval_s=interval, workers=1))
        runs.append((f"city {interval:g} s", len(trackers)))
    cpu = time.process_time() - started

    alerts: list[str] = []
    verdicts: Counter[str] = Counter()
    for k, t in enumerate(trackers):
        verdicts.update(t.verdicts)
        for a in t.ledger.alerts:
            f = a.fix
            alerts.append(
                json.dumps(
                    {
                        "tracker": k,
                        "child_id": a.child_id,
                        "kind": a.kind,
                        "zone_id": a.zone_id,
                        "severity": a.severity,
                        "opened_at": _f(a.opened_at),
                        "resolved_at": _f(a.resolved_at),
                        "event": a.event,
                        "resolved_by": a.resolved_by,
                        "updates": a.updates,
                        "fix": None
                        if f is None
                        else [f.tag, _f(f.ts), _f(f.lon), _f(f.lat), _f(f.acc), _f(f.received_at)],
                    }
                )
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "alerts.jsonl").write_text("".join(line + "\n" for line in alerts))
    (out_dir / "events.jsonl").write_text("".join(line + "\n" for line in events))
    summary = {
        "alerts": len(alerts),
        "events": len(events),
        "verdicts": dict(sorted(verdicts.items())),
        "runs": runs,
        "cpu_s": round(cpu, 1),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _at_commit(commit: str, out_dir: Path, small: bool) -> None:
    """This script's own copy, run in a worktree of ``commit``."""
    with tempfile.TemporaryDirectory(prefix="decisions-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True)
        try:
            script = tree / "bench" / "_decisions_same_copy.py"
            script.write_text(Path(__file__).read_text())
            cmd = [sys.executable, str(script), "--record-only", "--out", str(out_dir)]
            subprocess.run([*cmd, *(["--small"] if small else [])], check=True, cwd=tree)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)


def _compare(a: Path, b: Path, name: str) -> int:
    left = (a / name).read_text().splitlines()
    right = (b / name).read_text().splitlines()
    differ = [(i, x, y) for i, (x, y) in enumerate(zip(left, right, strict=False)) if x != y]
    extra = abs(len(left) - len(right))
    for i, x, y in differ[:5]:
        print(f"{name} line {i + 1}:\n  base: {x}\n  this: {y}", file=sys.stderr)
    if extra:
        print(f"{name}: base has {len(left)} lines, this tree {len(right)}", file=sys.stderr)
    return len(differ) + extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--base", help="a commit to compare this tree's decisions with")
    ap.add_argument("--out", help="where to write this tree's files (default: a temporary directory)")
    ap.add_argument("--small", action="store_true", help="a tenth of the city: a quick look, not the check")
    ap.add_argument("--record-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="decisions-out-") as tmp:
        here = Path(args.out) if args.out else Path(tmp) / "this"
        summary = _record(here, args.small)
        if args.record_only or not args.base:
            print(json.dumps(summary, separators=(",", ":")))
            return 0
        base = Path(tmp) / "base"
        _at_commit(args.base, base, args.small)
        base_summary = json.loads((base / "summary.json").read_text())
        differences = {name: _compare(base, here, name) for name in ("alerts.jsonl", "events.jsonl")}
        same = not any(differences.values()) and base_summary["verdicts"] == summary["verdicts"]
        result = {
            "same": same,
            "base": args.base,
            "differences": differences,
            "alerts": summary["alerts"],
            "events": summary["events"],
            "verdicts": summary["verdicts"],
            "base_verdicts": base_summary["verdicts"],
            "cpu_s": {"base": base_summary["cpu_s"], "this": summary["cpu_s"]},
        }
        print(
            f"{'identical' if same else 'DIFFERENT'}: {summary['alerts']:,} alerts, {summary['events']:,} "
            f"events ({args.base}: {base_summary['alerts']:,}, {base_summary['events']:,}); "
            f"CPU {base_summary['cpu_s']} s at {args.base}, {summary['cpu_s']} s here",
            file=sys.stderr,
        )
        print(json.dumps(result, separators=(",", ":")))
        return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
