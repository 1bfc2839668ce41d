"""Matching alerts to the ground truth, and the figures: recall, false alarms, detection delay.

Pure: incidents and alerts in, figures out (the unit test feeds it hand-made lists).

* An **incident** is something a parent should hear about: a departure from the route, a danger-zone
  entry, an SOS, a tag gone silent. ``start`` is when it began (the child crossed the corridor's edge
  or the zone's boundary, pressed the button, sent its last fix), ``end`` when it was over.
  ``match_from`` (default ``start``) lets an alert count from the moment the child set off on the
  walk that became the incident (GPS noise can make a fix look outside a little before the child is).
  ``target`` marks the incidents the issue's recall target is about (a departure of >= 60 m beyond the
  corridor lasting >= 30 s, any zone entry lasting >= 10 s; never an SOS or a silence, which the
  target does not name); ``in_scope`` False marks an incident the
  run does not judge (it began outside a commute window): alerts it explains are neither hits nor
  false alarms, and it counts nowhere.
* An **alert** of the right kind for the right child (and the right zone, for zone alerts) whose time
  falls in ``[match_from, end + grace]`` is a **hit** of that incident; a second alert for an incident
  already hit is a **duplicate** (one incident, one alert: counted, not a false alarm); an alert that
  matches no incident is a **false alarm**. ``not_arrived`` is explained by any incident of the
  child in ``[match_from, end + not_arrived_grace]`` (an excursion or a silence makes a child late).
* **Delay** is alert time minus ``start`` for each hit (the first alert), in seconds. A departure
  also has ``qualified_at``: when the child was first 60 m beyond the corridor, the moment the
  departure the recall target speaks of exists (a child cannot be told from GPS drift before it is
  far enough out: 60 m beyond is 40 s of walking past the edge). The delay target is judged from
  there (``delay_s["target_qualified"]``); the delay from the edge is reported beside it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALERT_FOR: Mapping[str, str] = {
    "leave_route": "left_route",
    "zone_walk_departure": "left_route",  # an enter_zone walk leaves the route on its way
    "enter_zone": "entered_zone",
    "crossed_zone": "entered_zone",  # a zone the walk passes through on its way
    "sos": "sos",
    "go_silent": "signal_lost",
}
"""incident kind -> the alert kind that reports it"""
INCIDENT_KINDS = tuple(ALERT_FOR)
ALERT_KINDS = ("left_route", "entered_zone", "sos", "signal_lost", "not_arrived")
"""what is sent to a parent as an alert (warning or critical); the rest are resolutions and notices"""
DEPARTURES = ("leave_route", "zone_walk_departure")
ZONE_ENTRIES = ("enter_zone", "crossed_zone")
DELAY_KINDS = DEPARTURES + ZONE_ENTRIES
"""the delay target is about these (an SOS is immediate by construction, a silence by its timeout)"""


@dataclass(frozen=True)
class Incident:
    kind: str
    child: int
    start: float
    end: float
    zone_id: int | None = None
    match_from: float | None = None
    target: bool = True
    in_scope: bool = True
    qualified_at: float | None = None
    """when a departure first reached 60 m beyond the corridor (None: use ``start``)"""
    facts: Mapping[str, Any] = field(default_factory=dict, compare=False)
    evidence: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    """the child's fixes around it, as the bench saw them (for explaining a miss)"""

    @property
    def opens(self) -> float:
        return self.start if self.match_from is None else min(self.match_from, self.start)


@dataclass(frozen=True)
class Alert:
    child: int
    kind: str
    ts: float
    zone_id: int | None = None
    detail: str | None = None
    evidence: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    """the child's last fixes when it was raised (for explaining a false alarm)"""


@dataclass
class Matching:
    hit_by: dict[int, Alert] = field(default_factory=dict)
    """incident index -> its first alert"""
    duplicates: list[tuple[int, Alert]] = field(default_factory=list)
    false_alarms: list[Alert] = field(default_factory=list)
    explained: list[tuple[int, Alert]] = field(default_factory=list)
    """not_arrived alerts explained by an incident (index)"""
    ignored: list[Alert] = field(default_factory=list)
    """alerts of incidents outside the run's scope"""


def _fits(inc: Incident, alert: Alert, grace_s: float) -> bool:
    if ALERT_FOR[inc.kind] != alert.kind:
        return False
    if alert.kind == "entered_zone" and inc.zone_id != alert.zone_id:
        return False
    return inc.opens <= alert.ts <= inc.end + grace_s


def match(
    incidents: Sequence[Incident],
    alerts: Iterable[Alert],
    *,
    grace_s: float = 60.0,
    not_arrived_grace_s: float = 1800.0,
) -> Matching:
    """Each alert, in time order, to the earliest-starting incident it fits (see the module doc)."""
    by_child: dict[int, list[int]] = defaultdict(list)
    for i, inc in enumerate(incidents):
        by_child[inc.child].append(i)
    for idx in by_child.values():
        idx.sort(key=lambda i: (incidents[i].start, i))
    m = Matching()
    for alert in sorted(alerts, key=lambda a: (a.ts, a.child, a.kind)):
        candidates = by_child.get(alert.child, [])
        if alert.kind == "not_arrived":
            near = [
                i
                for i in candidates
                if incidents[i].opens <= alert.ts <= incidents[i].end + not_arrived_grace_s
            ]
            if near:
                m.explained.append((near[0], alert))
            else:
                m.false_alarms.append(alert)
            continue
        fits = [i for i in candidates if _fits(incidents[i], alert, grace_s)]
        scoped = [i for i in fits if incidents[i].in_scope]
        if not fits:
            m.false_alarms.append(alert)
        elif not scoped:
            m.ignored.append(alert)
        else:
            fresh = [i for i in scoped if i not in m.hit_by]
            if fresh:
                m.hit_by[fresh[0]] = alert
            else:
                m.duplicates.append((scoped[0], alert))
    return m


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (linear interpolation, like numpy's default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ratio(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def summarize(
    incidents: Sequence[Incident], alerts: Sequence[Alert], m: Matching, *, child_days: float
) -> dict[str, Any]:
    """The figures of one rule: alerts by kind, recall (overall, target, per kind), false alarms,
    duplicates, delay (median and p95 of the target departures and zone entries, and per kind)."""
    scoped = [i for i, inc in enumerate(incidents) if inc.in_scope]
    recall: dict[str, Any] = {}
    for kind in INCIDENT_KINDS:
        mine = [i for i in scoped if incidents[i].kind == kind]
        target = [i for i in mine if incidents[i].target]
        if mine:
            recall[kind] = {
                "all": _r(_ratio(sum(i in m.hit_by for i in mine), len(mine))),
                "target": _r(_ratio(sum(i in m.hit_by for i in target), len(target))),
            }
    target_all = [i for i in scoped if incidents[i].target]
    recall["overall"] = _r(_ratio(sum(i in m.hit_by for i in scoped), len(scoped)))
    recall["target"] = _r(_ratio(sum(i in m.hit_by for i in target_all), len(target_all)))
    for group, kinds in (("departures_target", DEPARTURES), ("zone_entries_target", ZONE_ENTRIES)):
        idx = [i for i in target_all if incidents[i].kind in kinds]
        recall[group] = _r(_ratio(sum(i in m.hit_by for i in idx), len(idx)))

    delays: dict[str, list[float]] = defaultdict(list)
    for i, alert in m.hit_by.items():
        inc = incidents[i]
        delays[inc.kind].append(alert.ts - inc.start)
        if inc.target and inc.kind in DELAY_KINDS:
            delays["target"].append(alert.ts - inc.start)
            since = inc.qualified_at if inc.qualified_at is not None else inc.start
            delays["target_qualified"].append(alert.ts - since)
            group = "departures_qualified" if inc.kind in DEPARTURES else "zone_entries"
            delays[group].append(alert.ts - since)
    delay = {
        k: {"median": _r(quantile(v, 0.5), 1), "p95": _r(quantile(v, 0.95), 1), "n": len(v)}
        for k, v in sorted(delays.items())
    }
    fa = Counter(a.kind for a in m.false_alarms)
    return {
        "alerts": dict(sorted(Counter(a.kind for a in alerts).items())),
        "hits": len(m.hit_by),
        "recall": recall,
        "false_alarms": {"total": len(m.false_alarms), **dict(sorted(fa.items()))},
        "false_alarms_per_1000_child_days": _r(1000.0 * len(m.false_alarms) / child_days, 3)
        if child_days
        else None,
        "duplicates": len(m.duplicates),
        "not_arrived_explained": len(m.explained),
        "delay_s": delay,
    }


def incident_counts(incidents: Sequence[Incident]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for kind in INCIDENT_KINDS:
        mine = [inc for inc in incidents if inc.kind == kind]
        if mine:
            out[kind] = {
                "all": sum(inc.in_scope for inc in mine),
                "target": sum(inc.in_scope and inc.target for inc in mine),
                "out_of_scope": sum(not inc.in_scope for inc in mine),
            }
    return out


def targets(monitor: Mapping[str, Any], naive: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's targets, each met or not.

    "False alarms >= 100x fewer than the naive rule": with no monitor false alarm at all, the run must
    have shown at least 100 naive ones for the ratio to be established.
    """
    rec = monitor["recall"]
    med = monitor["delay_s"].get("target_qualified", {}).get("median")
    m_fa = monitor["false_alarms"]["total"]
    n_fa = naive["false_alarms"]["total"]
    per_k = monitor["false_alarms_per_1000_child_days"]
    out = {
        "recall_departures_100": rec.get("departures_target") == 1.0,
        "recall_zone_entries_100": rec.get("zone_entries_target") == 1.0,
        "median_delay_le_20s": med is not None and med <= 20.0,
        "false_alarms_100x_fewer": n_fa >= 100 * max(m_fa, 1),
        "false_alarms_below_1_per_1000_child_days": per_k is not None and per_k < 1.0,
    }
    out["all"] = all(out.values())
    return out


# --- 95 % confidence intervals ---------------------------------------------------------------------
# Exact intervals by bisection on the distributions' own CDFs (no scipy in the environment): what a
# run of this size can and cannot tell apart.


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _poisson_cdf(k: int, mu: float) -> float:
    """P(X <= k) for X ~ Poisson(mu)."""
    if k < 0:
        return 0.0
    if mu <= 0.0:
        return 1.0
    terms = [-mu + i * math.log(mu) - math.lgamma(i + 1) for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _solve(f: Any, target: float, lo: float, hi: float, iters: int = 80) -> float:
    """x in [lo, hi] with f(x) = target, f decreasing."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """The exact (Clopper-Pearson) interval of a proportion k of n; None for n = 0."""
    if n <= 0:
        return None
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else _solve(lambda p: _binom_cdf(k - 1, n, p), 1.0 - a, 0.0, 1.0)
    hi = 1.0 if k == n else _solve(lambda p: _binom_cdf(k, n, p), a, 0.0, 1.0)
    return lo, hi


def poisson_interval(k: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Garwood) interval of a Poisson mean from k events."""
    a = (1.0 - level) / 2.0
    hi_bound = 10.0 + 3.0 * k + 10.0 * math.sqrt(k + 1)
    lo = 0.0 if k == 0 else _solve(lambda mu: _poisson_cdf(k - 1, mu), 1.0 - a, 0.0, hi_bound)
    hi = _solve(lambda mu: _poisson_cdf(k, mu), a, 0.0, hi_bound)
    return lo, hi


def proportion(k: int, n: int) -> dict[str, Any]:
    """k of n with its 95 % Clopper-Pearson interval (None where there is nothing to count)."""
    ci = clopper_pearson(k, n)
    return {
        "k": k,
        "n": n,
        "value": _r(k / n) if n else None,
        "ci95": None if ci is None else [_r(ci[0]), _r(ci[1])],
    }


def rate(k: int, exposure: float, per: float) -> dict[str, Any]:
    """k events in ``exposure`` units, as a rate per ``per`` units with its exact 95 % interval."""
    lo, hi = poisson_interval(k)
    scale = per / exposure if exposure > 0 else None
    return {
        "k": k,
        "exposure": round(exposure, 2),
        "value": None if scale is None else _r(k * scale, 4),
        "ci95": None if scale is None else [_r(lo * scale, 4), _r(hi * scale, 4)],
    }


def quantile_interval(values: Sequence[float], q: float, level: float = 0.95) -> dict[str, Any]:
    """The q-quantile with its distribution-free interval (order statistics whose ranks the binomial
    (n, q) puts round it); the bounds are None where the sample is too small to give one."""
    xs = sorted(values)
    n = len(xs)
    if not n:
        return {"value": None, "n": 0, "ci95": None}
    a = (1.0 - level) / 2.0
    lo_rank = next((j for j in range(n, -1, -1) if _binom_cdf(j - 1, n, q) <= a), 0)  # P(X < j) <= a
    hi_rank = next((j for j in range(n + 1) if _binom_cdf(j - 1, n, q) >= 1.0 - a), n + 1)
    lo = xs[lo_rank - 1] if lo_rank >= 1 else None
    hi = xs[hi_rank - 1] if hi_rank <= n else None
    return {"value": _r(quantile(xs, q), 1), "n": n, "ci95": [lo and round(lo, 1), hi and round(hi, 1)]}
