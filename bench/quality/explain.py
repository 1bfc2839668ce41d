"""Why the monitor missed an incident or raised a false alarm: a cause for each, and the fixes.

Every incident and every monitor alert carries its evidence (``sim.FixRow``: the child's fixes
around it, with what the geofence said, the monitor's verdict and events, and the truth behind each
fix: true distance to the route, true zones, multipath). The cause is read off that pattern; a few
cases of each cause are printed fix by fix.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bench.quality.score import ALERT_FOR, DEPARTURES, ZONE_ENTRIES, Alert, Incident, Matching
from bench.quality.sim import TIMEZONE, FixRow
from tracker.monitor import Rules
from tracker.monitor.model import R68_PER_SIGMA

RULES = Rules()
"""the monitor's default thresholds, for the wording"""
SIGNAL_LOST_S = RULES.signal_lost_s


def _decided(r: FixRow) -> bool:
    return r.verdict == "decided"


def _off(r: FixRow) -> bool:
    """Evidence of a departure (Rules.off_route_sigma sigmas of the fix's error beyond the corridor)."""
    return (r.route_m - r.corridor_m) * R68_PER_SIGMA / max(r.acc, 1.0) >= RULES.off_route_sigma


def _walking(r: FixRow, facts: Mapping[str, Any]) -> bool:
    """In the commute window, the fix may be on the child's route (machine.step: no lingering)."""
    in_window = facts.get("window_start", -math.inf) <= r.ts < facts.get("window_end", math.inf)
    return in_window and r.route_m - r.acc <= r.corridor_m


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def miss_cause(inc: Incident, zone_depth: Mapping[int, tuple[str, float]]) -> str:
    """A short cause for a missed incident, from the fixes seen while it lasted."""
    rows = [r for r in inc.evidence if inc.opens <= r.ts <= inc.end]
    rejected = Counter(r.verdict for r in rows if not _decided(r))
    f = inc.facts
    opened, closed = (
        ("left_route", "back_on_route")
        if inc.kind in DEPARTURES
        else (f"entered_zone:{inc.zone_id}", f"left_zone:{inc.zone_id}")
    )
    state = None
    for r in inc.evidence:
        if r.ts >= inc.opens:
            break
        for e in r.events:
            if e in (opened, closed):
                state = e
    if state == opened and inc.kind in (*DEPARTURES, *ZONE_ENTRIES):
        return f"an earlier {opened.split(':')[0]} alert was still open (not resolved before this incident)"
    if inc.kind in DEPARTURES:
        out = [r for r in rows if r.true_route_m > r.corridor_m]
        certain = [r for r in rows if _off(r) and _decided(r)]
        in_window = [r for r in certain if r.ts < f.get("window_end", math.inf)]
        need = RULES.off_route_min_fixes
        if len(certain) >= need > len(in_window):
            return "the commute window closed before the evidence added up"
        if len(out) < need:
            return f"fewer than {need} fixes while outside the corridor ({len(out)})"
        if rejected and len(certain) < need:
            return f"fixes refused ({', '.join(sorted(rejected))})"
        if not certain:
            return (
                f"never {RULES.off_route_sigma:g} sigma beyond the corridor (not far enough for the accuracy)"
            )
        if len(certain) < need:
            return f"fewer than {need} fixes {RULES.off_route_sigma:g} sigma beyond (the others in the band)"
        return "the evidence never added up (fixes in or near the corridor took it away)"
    if inc.kind in ZONE_ENTRIES:
        z = inc.zone_id
        assert z is not None
        kind, depth = zone_depth.get(z, ("?", math.nan))
        truly = [r for r in rows if z in r.true_zones]
        certain = [r for r in rows if z in r.certain and _decided(r)]
        crossings = [
            (a, b) for a, b in itertools.pairwise(inc.evidence) if z in b.crossed and b.ts >= inc.opens
        ]
        accurate = [
            (a, b)
            for a, b in crossings
            if max(a.acc, b.acc) <= RULES.zone_linger_max_acc_m and b.ts - a.ts <= RULES.crossing_max_gap_s
        ]
        usable = [(a, b) for a, b in accurate if not _walking(b, f)]
        where = f"{kind}: at most {depth:.0f} m deep"
        if not certain and crossings and not accurate:
            return (
                f"never certainly inside; crossings seen but their fixes less accurate than "
                f"{RULES.zone_linger_max_acc_m:.0f} m ({where})"
            )
        if not certain and accurate and not usable:
            return f"never certainly inside; crossings seen, to fixes that may be on the route ({where})"
        if not certain and usable:
            return (
                f"never certainly inside; {len(usable)} segment(s) into it, not"
                f" {RULES.zone_linger_crossings} in a row while it stayed possible ({where})"
            )
        if not truly:
            return f"no fix while inside and no crossing ({where})"
        if not certain:
            return f"never certainly inside, no crossing seen ({where})"
        if len(certain) == 1:
            return f"one certainly-inside fix, the next not near the zone ({kind})"
        return f"certainly-inside fixes not consecutive ({kind})"
    if inc.kind == "go_silent":
        if f.get("at") == "school":
            return "at school (signal lost is not raised there)"
        since = f.get("since_last_fix_s")
        last = f.get("last_fix_ts")
        if last is not None and last + SIGNAL_LOST_S >= f.get("window_end", math.inf):
            return "the commute window closed before the silence reached the signal-lost time"
        if since is not None and since < SIGNAL_LOST_S + 15.0:
            return f"silence too short: {since:.0f} s since the last fix"
        return "silence not alerted"
    return f"{inc.kind} not alerted"


def false_alarm_cause(a: Alert) -> str:
    """A short cause for a false alarm, from the fixes that raised it."""
    ev = list(a.evidence)
    if a.kind == "left_route":
        deciding = [r for r in ev if _off(r) and _decided(r)][-2:]
        if any(r.true_route_m > r.corridor_m for r in deciding):
            return "the child was truly outside the corridor (outside any scripted incident)"
        if any(r.multipath == "lie" for r in deciding):
            return "a multipath jump (one fix thrown far, with a small reported accuracy)"
        if any(r.multipath == "honest" for r in deciding):
            return "honest multipath: a large reported accuracy, the error still beyond it"
        return "drift: consecutive errors beyond accuracy + corridor (correlated GPS error)"
    if a.kind == "entered_zone":
        z = a.zone_id
        last = ev[-1] if ev else None
        if last is not None and z in last.crossed and z not in last.certain:
            pair = ev[-2:]
            if any(z in r.true_zones for r in pair):
                return "the child was truly inside the zone (outside any scripted incident)"
            if any(r.multipath == "lie" for r in pair):
                return "a crossing to or from a multipath jump (one fix thrown far, small accuracy)"
            return "segments into the zone from noisy fixes by its edge, the child truly outside"
        deciding = [r for r in ev if z in r.certain][-2:]
        if any(z in r.true_zones for r in deciding):
            return "the child was truly inside the zone (outside any scripted incident)"
        if any(r.multipath == "lie" for r in deciding):
            return "certainly inside by a multipath jump (small reported accuracy)"
        if any(r.multipath == "honest" for r in deciding):
            return "certainly inside by honest multipath"
        return "certainly inside by drift (error beyond the accuracy)"
    if a.kind == "signal_lost":
        refused = Counter(r.verdict for r in ev if not _decided(r))
        if refused:
            return f"fixes arriving but refused ({', '.join(sorted(refused))})"
        return "a gap in the fixes outside any scripted silence"
    if a.kind == "not_arrived":
        local = datetime.fromtimestamp(a.ts, ZoneInfo(TIMEZONE)).strftime("%H:%M")
        moves = [e for r in ev for e in r.events if e in ("arrived", "left_place")]
        before = ", ".join(moves) or "no move"
        return f"not arrived at {a.detail}, raised at {local} (the fixes before it: {before})"
    return f"{a.kind} {a.detail or ''}".strip()


def _zs(z: frozenset[int]) -> str:
    return ",".join(map(str, sorted(z))) if z else "-"


def fix_line(r: FixRow, t_ref: float) -> str:
    margin = r.route_m - r.acc - r.corridor_m
    state = "OFF " if margin > 0 else ("in  " if r.route_m <= r.corridor_m else "band")
    near = f"{r.nearest_m:.0f}" if math.isfinite(r.nearest_m) else "-"
    parts = [
        f"      {r.ts - t_ref:+7.1f}s d={r.route_m:6.1f} acc={r.acc:5.1f} d-acc-corr={margin:+6.1f} {state}",
        f"true_d={r.true_route_m:6.1f} zones certain={_zs(r.certain)} possible={_zs(r.possible)}",
        f"crossed={_zs(r.crossed)} true={_zs(r.true_zones)} near={near}",
    ]
    if r.verdict != "decided":
        parts.append(r.verdict)
    if r.multipath:
        parts.append(f"multipath={r.multipath}")
    if r.sos:
        parts.append("SOS")
    if r.events:
        parts.append("-> " + ",".join(r.events))
    return " ".join(parts)


def analyse(
    incidents: Sequence[Incident], m: Matching, zone_depth: Mapping[int, tuple[str, float]]
) -> tuple[dict[str, dict[str, list[Any]]], dict[str, dict[str, list[Any]]]]:
    """Misses by kind and cause, false alarms by kind and cause."""
    misses: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for i, inc in enumerate(incidents):
        if inc.in_scope and i not in m.hit_by:
            label = (
                f"{inc.kind} ({'target' if inc.target else 'below target'})"
                if inc.kind
                in (
                    *DEPARTURES,
                    *ZONE_ENTRIES,
                )
                else inc.kind
            )
            misses[label][miss_cause(inc, zone_depth)].append(inc)
    fas: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for a in m.false_alarms:
        fas[a.kind][false_alarm_cause(a)].append(a)
    return misses, fas


def counts(groups: Mapping[str, Mapping[str, list[Any]]]) -> dict[str, dict[str, int]]:
    return {
        k: dict(sorted(((c, len(v)) for c, v in causes.items()), key=lambda x: -x[1]))
        for k, causes in sorted(groups.items())
    }


def explain(
    incidents: Sequence[Incident],
    m: Matching,
    zone_depth: Mapping[int, tuple[str, float]],
    *,
    examples: int = 2,
) -> list[str]:
    misses, fas = analyse(incidents, m, zone_depth)
    lines = ["monitor misses (incidents begun in a commute window, no alert) by cause:"]
    if not misses:
        lines.append("  none")
    for label, causes in sorted(misses.items()):
        for cause, cases in sorted(causes.items(), key=lambda x: -len(x[1])):
            lines.append(f"  {len(cases):5d}  {label}: {cause}")
    lines.append("monitor false alarms by cause:")
    if not fas:
        lines.append("  none")
    for kind, causes in sorted(fas.items()):
        for cause, cases in sorted(causes.items(), key=lambda x: -len(x[1])):
            lines.append(f"  {len(cases):5d}  {kind}: {cause}")
    if examples <= 0:
        return lines
    lines.append(
        f"examples, fix by fix (at most {examples} per cause; time from the incident's start / the alert):"
    )
    for label, causes in sorted(misses.items()):
        for cause, cases in sorted(causes.items(), key=lambda x: -len(x[1])):
            for inc in cases[:examples]:
                facts = ", ".join(
                    f"{k}={v}" for k, v in inc.facts.items() if v is not None and "window" not in k
                )
                during = [r for r in inc.evidence if inc.start <= r.ts <= inc.end]
                if during:
                    facts += f", median accuracy while it lasted {_median([r.acc for r in during]):.0f} m"
                zone = "" if inc.zone_id is None else f" zone {inc.zone_id}"
                lines.append(
                    f"  MISS {label}{zone} child {inc.child}, {inc.end - inc.start:.0f} s, "
                    f"wanted {ALERT_FOR[inc.kind]}: {cause}  [{facts}]"
                )
                shown: list[FixRow | None] = [
                    r for r in inc.evidence if inc.start - 60.0 <= r.ts <= inc.end + 30.0
                ]
                if len(shown) > 14:
                    shown = [*shown[:9], None, *shown[-4:]]
                lines += ["      ..." if r is None else fix_line(r, inc.start) for r in shown]
    for kind, causes in sorted(fas.items()):
        for cause, cases in sorted(causes.items(), key=lambda x: -len(x[1])):
            for a in cases[:examples]:
                zone = "" if a.zone_id is None else f" zone {a.zone_id}"
                lines.append(f"  FALSE ALARM {kind}{zone} child {a.child}: {cause}")
                lines += [fix_line(r, a.ts) for r in a.evidence]
    return lines
