"""The city-like world's figures, each with its 95 % interval, and the Neyman-Pearson ceiling per cell.

Pure: child-days (their activities and incidents, in unix time) and raised alerts in, figures out.

Matching (times are when the alert was raised, the server's time): an alert of the incident's kind
for the child (and zone) raised from the incident's start (30 s before, for a stay: the fix error
may put the child inside first) to 60 s after its end is a hit of it; a second one is a repeat. An
SOS is a hit when raised within 10 minutes of the press (a store-and-forward tag delivers late); its
delay is measured from the receipt of its fix. An unregistered shuttle ride is hit by its first
left-route or danger-zone alert; the others are repeats. Any other alert is a false alarm, put
where the child was when it was raised (or in the 60 s before): at a crosswalk (waiting or
crossing), on a registered shuttle (or waiting for it), standing 5-15 m or 15-50 m from a zone, or
elsewhere. Two are explained and counted apart: "signal lost" while underground (or in the minute
after), and "left route" on the way to or from a zone stay.

The ceiling of a stay: the best any test could do on the same fixes. The likelihood-ratio test
between "the child follows its true path into the zone" and "the child stands 10 m outside the
edge" (the middle of the 5-15 m band), both known exactly, on the fixes taken while it is inside,
with the error the tag really has (sigma = acc / 1.51, times 1.5 for the under-reporting devices),
drifting (Ornstein-Uhlenbeck, tau 45 s: an AR(1) between fixes), and a false-alarm probability of
the window's length over 100 hours (the 5-15 m target: 1 false alarm per 100 hours). Its detection
probability is Phi(sqrt(Q) - z(1 - alpha)), Q the Mahalanobis distance of the two paths (exact for a
Gauss-Markov error, computed fix by fix). Canyon bias, multipath and indoor errors are left out of
it: they are noise added independently of where the child is, so they can only lower the best
test's power; the ceiling is an upper bound. A cell's ceiling is the mean over its stays (a Monte-
Carlo over the stays the world drew: depths, times inside, accuracies, devices, fix phases).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

from bench.quality.city_sim import ChildDay, CityOutcome, RaisedAlert
from bench.quality.score import proportion, quantile_interval, rate

DEPTHS = ((0.0, 10.0, "0-10"), (10.0, 20.0, "10-20"), (20.0, 40.0, "20-40"), (40.0, math.inf, ">40"))
STAYS = ((10.0, 30.0, "10-30"), (30.0, 120.0, "30-120"), (120.0, 300.0, "120-300"), (300.0, math.inf, ">300"))
ACCS = (
    (0.0, 10.0, "<=10"),
    (10.0, 15.0, "10-15"),
    (15.0, 20.0, "15-20"),
    (20.0, 30.0, "20-30"),
    (30.0, math.inf, ">30"),
)
TARGET_CELLS = (
    ("20 m deep for 60 s at <= 10 m", 20.0, 60.0, 10.0),
    ("40 m deep for 120 s at <= 20 m", 40.0, 120.0, 20.0),
    ("20 m deep for 300 s at <= 15 m", 20.0, 300.0, 15.0),
)
H0_OUTSIDE_M = 10.0
H0_BUDGET_S = 100 * 3600.0
TAU_S = 45.0
WINDOWS = ((7.5 * 3600, (9 + 10 / 60) * 3600), (12.5 * 3600, 16.5 * 3600))
GRACE_S = 60.0
STATIONARY = ("home", "school", "academy", "stand_near", "kerb_wait", "board_wait")


def _bin(x: float, bins: Sequence[tuple[float, float, str]]) -> str:
    return next(name for lo, hi, name in bins if lo <= x < hi)


def ceiling(inc: dict[str, Any]) -> float:
    """The Neyman-Pearson detection probability of one stay (see the module's docstring)."""
    ts, sig, depth = inc.get("fix_t", []), inc.get("sigma", []), inc.get("depth_at_fix", [])
    if not ts:
        return 0.0
    q = 0.0
    prev_t, prev_x = None, 0.0
    for t, s, dep in zip(ts, sig, depth, strict=True):
        x = (dep + H0_OUTSIDE_M) / s  # the two paths' difference, in this fix's sigmas
        if prev_t is None:
            q += x * x
        else:
            rho = math.exp(-(t - prev_t) / TAU_S)
            q += (x - rho * prev_x) ** 2 / max(1e-12, 1.0 - rho * rho)
        prev_t, prev_x = t, x
    alpha = min(0.5, max(1e-12, inc["inside_s"] / H0_BUDGET_S))
    z = NormalDist().inv_cdf(1.0 - alpha)
    return NormalDist().cdf(math.sqrt(q) - z)


def _in_window(day: ChildDay, t: float) -> bool:
    local = t - day.day_start
    return any(a <= local < c for a, c in WINDOWS)


def _fits(inc: dict[str, Any], a: RaisedAlert) -> bool:
    k = inc["kind"]
    if k == "enter_zone":
        return (
            a.kind == "entered_zone"
            and a.zone_id == inc["zone_id"]
            and inc["start"] - 30 <= a.raised_at <= inc["end"] + GRACE_S
        )
    if k == "leave_route":
        return a.kind == "left_route" and inc["start"] <= a.raised_at <= inc["end"] + GRACE_S
    if k == "sos":
        return a.kind == "sos" and inc["start"] <= a.raised_at <= inc["start"] + 600
    if k == "unregistered_ride":
        return (
            a.kind in ("left_route", "entered_zone") and inc["start"] <= a.raised_at <= inc["end"] + GRACE_S
        )
    return False


def _where(day: ChildDay, t: float) -> tuple[str, dict[str, Any]]:
    """What the child was doing at t or in the 60 s before (the most telling activity)."""
    order = (
        "crossing",
        "kerb_wait",
        "ride_registered",
        "board_wait",
        "subway",
        "stay_trip",
        "stand_near",
        "home",
        "school",
        "academy",
        "walk",
    )
    found: dict[str, dict[str, Any]] = {}
    for kind, a, c, facts in day.acts:
        if a <= t and t - GRACE_S <= c:
            found.setdefault(kind, facts)
    for kind in order:
        if kind in found:
            return kind, found[kind]
    return "other", {}


def score_city(out: CityOutcome, *, interval_s: float) -> dict[str, Any]:
    """Every figure of the city-like world for one fix interval."""
    day_of: dict[int, list[ChildDay]] = defaultdict(list)
    for d in out.days:
        day_of[d.child].append(d)
    incidents: list[tuple[ChildDay, dict[str, Any]]] = [(d, i) for d in out.days for i in d.incidents]
    by_child: dict[int, list[int]] = defaultdict(list)
    for n, (d, _) in enumerate(incidents):
        by_child[d.child].append(n)
    hit: dict[int, RaisedAlert] = {}
    repeats = 0
    fa: Counter[str] = Counter()
    fa_band: Counter[str] = Counter()
    explained: Counter[str] = Counter()
    signal_lost_days: Counter[tuple[int, float]] = Counter()
    for a in sorted(out.alerts, key=lambda x: x.raised_at):
        cands = [n for n in by_child.get(a.child, []) if _fits(incidents[n][1], a)]
        if cands:
            fresh = [n for n in cands if n not in hit]
            if fresh:
                hit[fresh[0]] = a
            else:
                repeats += 1
            continue
        day = next((d for d in day_of[a.child] if d.day_start <= a.raised_at < d.day_start + 86400), None)
        where, facts = _where(day, a.raised_at) if day else ("other", {})
        if a.kind == "signal_lost" and where == "subway":
            explained["signal_lost_underground"] += 1
            continue
        if a.kind == "left_route" and where == "stay_trip":
            explained["left_route_on_way_to_a_stay"] += 1
            continue
        if a.kind == "signal_lost" and day is not None:
            signal_lost_days[(a.child, day.day_start)] += 1
        fa[a.kind] += 1
        if where in ("crossing", "kerb_wait"):
            fa_band["crosswalk"] += 1
        elif where in ("ride_registered", "board_wait"):
            fa_band["registered_shuttle"] += 1
        elif where in STATIONARY:
            zm = facts.get("zone_m", 1e6)
            fa_band[
                "stand_5_15" if 5 <= zm < 15 else "stand_15_50" if 15 <= zm < 50 else f"stand_{where}_other"
            ] += 1
        else:
            fa_band[where] += 1
    # exposure
    hours = Counter[str]()
    crossings = rides = 0
    for d in out.days:
        trips = [(a, c) for k, a, c, _ in d.acts if k == "stay_trip"]
        for kind, a, c, facts in d.acts:
            if kind == "crossing":
                crossings += 1
            elif kind == "ride_registered":
                rides += 1
            if kind in STATIONARY:
                dur = (c - a) - sum(max(0.0, min(c, c2) - max(a, a2)) for a2, c2 in trips)
                zm = facts.get("zone_m", 1e6)
                if 5 <= zm < 15:
                    hours["5_15"] += dur / 3600
                elif 15 <= zm < 50:
                    hours["15_50"] += dur / 3600
    child_days = len(out.days)
    # departures
    deps = [
        (n, d, i)
        for n, (d, i) in enumerate(incidents)
        if i["kind"] == "leave_route" and i.get("beyond60_s", 0) >= 30 and _in_window(d, i["start"])
    ]
    dep_delay = [hit[n].raised_at - i["t60"] for n, _, i in deps if n in hit]
    # stays
    grid: dict[str, dict[str, Any]] = {}
    cells: dict[tuple[str, str, str], list[tuple[bool, float]]] = defaultdict(list)
    targets: dict[str, list[bool]] = defaultdict(list)
    at30: list[float] = []
    stays = 0
    for n, (_, i) in enumerate(incidents):
        if i["kind"] != "enter_zone" or i.get("acc_median") is None:
            continue
        stays += 1
        key = (_bin(i["depth_m"], DEPTHS), _bin(i["inside_s"], STAYS), _bin(i["acc_median"], ACCS))
        cells[key].append((n in hit, ceiling(i)))
        for name, dmin, smin, amax in TARGET_CELLS:
            if i["depth_m"] >= dmin and i["inside_s"] >= smin and i["acc_median"] <= amax:
                targets[name].append(n in hit)
        if i.get("at30") is not None and n in hit:
            at30.append(hit[n].raised_at - i["at30"])
    for (dep, st, ac), rows in sorted(cells.items()):
        k = sum(h for h, _ in rows)
        grid[f"{dep} m | {st} s | acc {ac} m"] = {
            **proportion(k, len(rows)),
            "ceiling": round(sum(c for _, c in rows) / len(rows), 4),
        }
    # sos
    sos = [(n, d, i) for n, (d, i) in enumerate(incidents) if i["kind"] == "sos"]
    sos_delay = [
        hit[n].raised_at - out.sos_received[(d.child, i["start"])]
        for n, d, i in sos
        if n in hit and (d.child, i["start"]) in out.sos_received
    ]
    rides_unreg = [n for n, (_, i) in enumerate(incidents) if i["kind"] == "unregistered_ride"]
    keeps = sum(1 for v in signal_lost_days.values() if v >= 2)
    return {
        "fix_interval_s": interval_s,
        "child_days": child_days,
        "fixes": out.fixes,
        "refused": dict(out.refused),
        "incidents": dict(Counter(i["kind"] for _, i in incidents)),
        "departures": {
            "recall": proportion(sum(n in hit for n, _, _ in deps), len(deps)),
            "delay_from_60m_median_s": quantile_interval(dep_delay, 0.5),
            "delay_from_60m_p95_s": quantile_interval(dep_delay, 0.95),
        },
        "stays": {
            "count": stays,
            "targets": {name: proportion(sum(v), len(v)) for name, v in targets.items()},
            "delay_after_30m_deep_median_s": quantile_interval(at30, 0.5),
            "grid": grid,
        },
        "false_alarms": {
            "by_kind": dict(fa),
            "by_place": dict(fa_band),
            "per_1000_child_days": rate(sum(fa.values()), child_days, 1000.0),
            "per_1000_h_standing_15_50_m": rate(fa_band["stand_15_50"], hours["15_50"], 1000.0),
            "per_100_h_standing_5_15_m": rate(fa_band["stand_5_15"], hours["5_15"], 100.0),
            "per_1000_crosswalk_crossings": rate(fa_band["crosswalk"], crossings, 1000.0),
            "registered_shuttle_rides": {"rides": rides, "alerts": fa_band["registered_shuttle"]},
            "repeated_per_100_incidents": rate(repeats, len(incidents), 100.0),
            "explained_apart": dict(explained),
        },
        "unregistered_rides": proportion(sum(n in hit for n in rides_unreg), len(rides_unreg)),
        "clocks": {
            "signal_lost_not_underground": fa["signal_lost"],
            "child_days_with_repeated_signal_lost": keeps,
            "skewed_tags": sum(1 for d in out.days if d.tag.clock_offset_s != 0.0),
            "sos": proportion(len(sos_delay), len(sos)),
            "sos_delay_after_receipt_max_s": round(max(sos_delay), 2) if sos_delay else None,
            "sos_delay_after_receipt_median_s": quantile_interval(sos_delay, 0.5),
        },
    }
