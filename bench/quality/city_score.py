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

A stay taken in a commute window whose deepest point is still inside the child's own corridor (the
route runs on the sidewalk 3-8 m from a road zone, the corridor is 30 m) is not judged: on its route
a child is judged by the zone minus its corridor (issue 15.3), so the rules raise nothing there by
design; those stays are counted apart (``in_own_corridor_in_a_window``: how many, and how many an
alert caught anyway), out of the grid and the targets.

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
from typing import Any

from bench.quality.city import CORRIDOR_M
from bench.quality.city_sim import ChildDay, CityOutcome, RaisedAlert
from bench.quality.score import proportion, quantile_interval, rate
from bench.zone_rule_mc import ar1_mahalanobis, np_detection

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
CEILING_POINTS = 10.0
"""issue 15.5: every cell of the grid within this many points of its Neyman-Pearson ceiling"""
SOS_WITHIN_S = 5.0
"""issue 15.5: every SOS alerts within 5 s of its receipt"""
STATIONARY = ("home", "school", "academy", "stand_near", "kerb_wait", "board_wait")


def _bin(x: float, bins: Sequence[tuple[float, float, str]]) -> str:
    return next(name for lo, hi, name in bins if lo <= x < hi)


def ceiling(inc: dict[str, Any]) -> float:
    """The Neyman-Pearson detection probability of one stay (see the module's docstring), by the
    bound of ``bench/zone_rule_mc.py`` (:func:`ar1_mahalanobis`, :func:`np_detection`)."""
    ts, sig, depth = inc.get("fix_t", []), inc.get("sigma", []), inc.get("depth_at_fix", [])
    if not ts:
        return 0.0
    x = [(dep + H0_OUTSIDE_M) / s for dep, s in zip(depth, sig, strict=True)]
    alpha = min(0.5, max(1e-12, inc["inside_s"] / H0_BUDGET_S))
    return np_detection(ar1_mahalanobis(ts, x, TAU_S), alpha)


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


def below_ceiling(cell: dict[str, Any], ceiling_p: float) -> dict[str, Any]:
    """A cell's recall beside its ceiling: how many points below it, and the flag of the target
    ("each cell within 10 points of its ceiling"): ``flag`` when the recall is more than
    ``CEILING_POINTS`` below, ``flag_sure`` when even the upper end of its 95 % interval is."""
    out = {**cell, "ceiling": round(ceiling_p, 4)}
    if cell.get("value") is None:
        return out | {"below_ceiling_points": None, "flag": False, "flag_sure": False}
    gap = 100.0 * (ceiling_p - cell["value"])
    hi = cell["ci95"][1] if cell.get("ci95") else cell["value"]
    return out | {
        "below_ceiling_points": round(gap, 1),
        "flag": gap > CEILING_POINTS,
        "flag_sure": 100.0 * (ceiling_p - hi) > CEILING_POINTS,
    }


def clock_class(tag: Any) -> str:
    """A tag's clock as the clock figures group it: store-and-forward first (its fixes arrive
    minutes late whatever its clock), then slow (stamps behind the true time: negative offset),
    fast, or in time."""
    if tag.store_forward:
        return "store_forward"
    if tag.clock_offset_s < 0:
        return "slow"
    if tag.clock_offset_s > 0:
        return "fast"
    return "in_time"


NOISE_LOOKBACK_S = 120.0
"""A false alarm is put down to an episode of the error that overlaps the 120 s before it"""


def noise_behind(day: ChildDay, a: RaisedAlert) -> str:
    """The error behind a false alarm, as the world drew it (ChildDay.noise): "canyon" (a bias of 20-60
    m at a 10-25 m reported accuracy), "lie" (a fix thrown 40-120 m at its usual accuracy),
    "multipath" (honest: a large reported accuracy), whichever overlaps the ``NOISE_LOOKBACK_S``
    before the alert first (in that order), else "none": the drifting normal error alone (times 1.5
    on the devices that under-report it), indoor fixes included."""
    t1 = max(a.raised_at, a.opened_at)
    t0 = min(a.raised_at, a.opened_at) - NOISE_LOOKBACK_S
    kinds = {kind for kind, s, e in day.noise if s <= t1 and e >= t0}
    return next((k for k in ("canyon", "lie", "multipath") if k in kinds), "none")


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
    fa_rule: Counter[str] = Counter()
    fa_noise: Counter[str] = Counter()
    fa_rule_noise: Counter[str] = Counter()
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
        device = ", 1.5x device" if day is not None and day.tag.error_factor > 1.0 else ""
        window = ", in a window" if day is not None and _in_window(day, a.raised_at) else ""
        fa_rule[f"{a.kind} by {a.rule or '?'} | {where}{window}{device}"] += 1
        noise = noise_behind(day, a) if day is not None else "none"
        fa_noise[noise] += 1
        fa_rule_noise[f"{a.kind} by {a.rule or '?'} | {noise}"] += 1
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
    exempt: list[bool] = []
    for n, (d, i) in enumerate(incidents):
        if i["kind"] != "enter_zone" or i.get("acc_median") is None:
            continue
        if _in_window(d, i["start"]) and i.get("route_m", math.inf) <= CORRIDOR_M:
            # in a commute window and still inside its own route's corridor: the zone minus the
            # corridor is what counts (issue 15.3), so the rules raise nothing by design
            exempt.append(n in hit)
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
        grid[f"{dep} m | {st} s | acc {ac} m"] = below_ceiling(
            proportion(k, len(rows)), sum(c for _, c in rows) / len(rows)
        )
    # sos
    sos = [(n, d, i) for n, (d, i) in enumerate(incidents) if i["kind"] == "sos"]
    sos_delay = [
        hit[n].raised_at - out.sos_received[(d.child, i["start"])]
        for n, d, i in sos
        if n in hit and (d.child, i["start"]) in out.sos_received
    ]
    tag_of = {d.child: d.tag for d in out.days}
    by_clock: dict[str, dict[str, Any]] = {}
    for cls in ("in_time", "slow", "fast", "store_forward"):
        mine = [(n, d, i) for n, d, i in sos if clock_class(d.tag) == cls]
        delays = [
            hit[n].raised_at - out.sos_received[(d.child, i["start"])]
            for n, d, i in mine
            if n in hit and (d.child, i["start"]) in out.sos_received
        ]
        lost = sum(v for (c, _), v in signal_lost_days.items() if clock_class(tag_of[c]) == cls)
        by_clock[cls] = {
            "child_days": sum(1 for d in out.days if clock_class(d.tag) == cls),
            "signal_lost": lost,
            "sos": proportion(len(delays), len(mine)),
            "sos_delay_after_receipt_max_s": round(max(delays), 2) if delays else None,
            "sos_within_5_s": proportion(sum(x <= SOS_WITHIN_S for x in delays), len(mine)),
        }
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
            "in_own_corridor_in_a_window": proportion(sum(exempt), len(exempt)),
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
            "by_rule_and_place": dict(fa_rule.most_common()),
            "by_noise": dict(fa_noise.most_common()),
            "by_rule_and_noise": dict(fa_rule_noise.most_common()),
        },
        "unregistered_rides": proportion(sum(n in hit for n in rides_unreg), len(rides_unreg)),
        "clocks": {
            "signal_lost_not_underground": fa["signal_lost"],
            "child_days_with_repeated_signal_lost": keeps,
            "skewed_tags": sum(1 for d in out.days if d.tag.clock_offset_s != 0.0),
            "sos": proportion(len(sos_delay), len(sos)),
            "sos_delay_after_receipt_max_s": round(max(sos_delay), 2) if sos_delay else None,
            "sos_delay_after_receipt_median_s": quantile_interval(sos_delay, 0.5),
            "sos_within_5_s": proportion(sum(x <= SOS_WITHIN_S for x in sos_delay), len(sos)),
            "by_clock": by_clock,
        },
    }
