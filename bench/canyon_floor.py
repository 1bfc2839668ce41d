"""The false-alarm floor of the city-like world: what its canyon bias forces on any rule that meets
the stay targets (issue 15.5), per fix interval, from the world's own generator.

The world (``bench/quality/city_sim.py``, ``fixes_of_day``) adds to a child's outdoor fixes urban-
canyon episodes: at a uniform moment the error gains a constant bias b (20-60 m, any direction) for
60-300 s, as a step (on at the episode's start, off at its end), while the reported accuracy is one
constant c of 10-25 m; the drifting error underneath goes on as before (the same AR(1) series, the
device's own sigma). So during an episode the fixes are exactly those a child standing at (true
position + b) would give with the device's ordinary error: nothing in them says "bias" but the
moments the bias comes and goes.

**The argument.** Take an episode (or a cluster of overlapping ones) while the child is outside
every zone, and its *twin*: a child on the same path, with the same device and the same error, who
moves over to (path + b) around the episode's start and back around its end at a speed ``v`` (its
speed relative to the episode child's own path), each ramp centred between the two fixes on either
side of the jump. Outside the ramps the twin's fixes and the episode's have the same distribution
(the same error, the same reported accuracies: the twin's device reports what the episode's did),
so the only evidence that tells them apart is in the fixes during the ramps (a jump of 20-60 m
between two fixes is faster than a child when the fixes are 1-5 s apart, not when they are 30-60 s
apart), plus the fixes multipath replaced (an honest multipath fix carries no canyon bias). The two
hypotheses are Gaussian with the same covariance, differing in their mean by delta = twin - episode;
the best test between them (Neyman-Pearson, the likelihood ratio) that catches 99 % of the twins
raises on the episode with probability ``Phi(z99 - sqrt(Q))`` (``bench/zone_rule_mc.py``'s
``np_false_alarm``), Q delta's Mahalanobis distance under the drifting error (``ar1_mahalanobis``).
Whenever the twin is a stay of a target cell as ``city_score.py`` counts them (its deepest point
>= 40 m inside a zone, >= 120 s inside, median reported accuracy <= 20 m; or 20 m / 300 s / <= 15 m;
or 20 m / 60 s / <= 10 m; not a stay of a commute window inside the child's own corridor), a rule
that catches every such stay with probability >= 99 % (the targets' lower bound) raises in the
episode's matching window with at least that probability, and the raise is a false alarm. The sum
of those probabilities over the world's episodes is a floor on the expected false alarms of any
such rule; per 1,000 child-days it is the table this prints.

What is counted as telling them apart, so that the figure is a lower bound and not an estimate:
- the onset and offset (the ramps; Q grows without limit as the fixes get denser: at 1 s the jump
  is 20-60 m in a second, hundreds of sigmas of the error's one-second change);
- the fixes before and after (the whole day's fixes enter Q; only the ramps differ);
- fixes whose error the generator's drift does not explain (multipath, honest or lying, indoor ones
  above 50 m): each is given to the test twice, as a drifting fix of the smallest sigma any fix has
  (5 m / 1.51) and as an independent one at its reported accuracy, carrying the twin's whole shift
  (more evidence than the data hold: a lower floor);
- the device class: the 1.5x devices' error is the same under both hypotheses (the twin has the
  same device), so it tells nothing apart;
- the route, its windows and the zones' hours: a twin stay of a commute window whose deepest point is
  inside the child's own corridor is not a target stay (``city_score``'s rule) and is not counted;
  the world's zones have no hours; an episode while the child is truly in a zone (crossing, a
  shuttle, a stay), or overlapping the matching window of a real stay or unregistered ride, is not
  counted (an alert there may be a hit); nor are store-and-forward tags (a twin's alert comes too
  late to be matched anyway) or episodes with an SOS fix in their window.

What it assumes (the doubts, said in docs/alert-quality.md): the recall target holds for every stay
of a cell, whatever the path into it and the moment (a rule that meets it only on average over the
generator's stays, which all start from home, school or the academy, could give up the stays that
begin mid-walk: no floor follows for such a rule); the reported accuracy is not evidence (in the
generator it is exactly constant during an episode, a simulator artefact a real device does not
give); the twin's ramp speed ``v`` (1.5 m/s walking, 3.5 m/s running: relative to the child's own
1.1-1.5 m/s walk, at most 5 m/s, the fastest entry the world's own stays draw).

The children, days, seeds, tags, groups and noise are the bench's (``run_group``'s, without the
tracker): the same fixes the bench judges. The episodes are read from ``fixes_of_day``'s own draws
(a recording wrapper round its random generator), never re-drawn here.

Run: ``nice -n 19 python bench/canyon_floor.py --intervals 30 --child-days 40000 --workers 2`` (about
5 minutes on this machine, loaded; ``--child-days`` takes one number per interval of ``--intervals``;
docs/alert-quality.md, "The false-alarm floor of the city-like world", has the runs and what they
mean). Prints the Neyman-Pearson Monte-Carlo check, the table, and a JSON last line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from bench.quality.city import CORRIDOR_M, Block, RouteGeom, build_blocks  # noqa: E402
from bench.quality.city_score import TARGET_CELLS, WINDOWS  # noqa: E402
from bench.quality.city_sim import (  # noqa: E402
    FIXES_PER_GROUP_DAY,
    R68,
    TAU_S,
    CityParams,
    Day,
    DayFixes,
    _poisson,
    child_route,
    fixes_of_day,
    make_tag,
    plan_day,
    school_days,
    unit_noise,
)
from bench.quality.score import poisson_interval  # noqa: E402
from bench.zone_rule_mc import ar1_mahalanobis, np_false_alarm  # noqa: E402

DETECT = 0.99
"""the recall every target cell's stays are caught with at least (the targets' lower bound)"""
SPEEDS = (1.5, 3.5)
"""the twin's speed relative to the child's own path, m/s: walking, running"""
TWINS = {"walking": (1.5,), "running": (1.5, 3.5)}
"""the twins a reading of the target admits: a walking child (1.5 m/s), or a walking or running one
(either speed: the one whose best test raises more on the episode counts)"""
MIN_SIGMA = 5.0 / R68
"""the smallest error sigma any fix of the world has (accuracy 5 m): what a fix whose error the
drift does not explain is given (more evidence than it holds)"""
CANYON_DRAWS = ((60.0, 300.0), (0.0, 2 * math.pi), (20.0, 60.0), (10.0, 25.0))
"""the ranges of fixes_of_day's draws after an episode's start: length, direction, bias, accuracy"""
CELL_NAMES = tuple(name for name, *_ in TARGET_CELLS)
ERROR_CLASSES = 1.5
"""the largest true error over reported accuracy the world's device classes have outside canyons"""


# --- the episodes, as fixes_of_day drew them --------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One canyon episode: a bias (bx, by) from ``a`` to ``c`` (local seconds), accuracy ``acc``."""

    a: float
    c: float
    bx: float
    by: float
    acc: float

    @property
    def bias_m(self) -> float:
        return math.hypot(self.bx, self.by)


class RecordingRng:
    """A numpy Generator that notes every draw made through it (name, arguments, result), so the
    canyon episodes ``fixes_of_day`` drew can be read back without drawing them again."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self.calls: list[tuple[str, tuple[Any, ...], Any]] = []

    def __getattr__(self, name: str) -> Any:
        f = getattr(self._rng, name)

        def call(*args: Any, **kw: Any) -> Any:
            out = f(*args, **kw)
            self.calls.append((name, args, out))
            return out

        return call


def read_episodes(calls: list[tuple[str, tuple[Any, ...], Any]]) -> tuple[float, list[Episode]]:
    """The fix grid's phase (the first draw) and the canyon episodes (each outdoor interval's Poisson
    count, then per episode its start, length, direction, bias and accuracy). Raises if the draws are
    not in that shape: ``fixes_of_day`` changed, and this must be read again."""
    name, args, phase = calls[0]
    if name != "uniform" or len(args) != 2 or args[0] != 0:
        raise RuntimeError("fixes_of_day's first draw is no longer the grid's phase")
    episodes: list[Episode] = []
    i = 1
    while i < len(calls):
        name, args, out = calls[i]
        if name == "poisson" and np.ndim(out) == 0:
            n = int(out)
            draws = calls[i + 1 : i + 1 + 5 * n]
            for j in range(n):
                five = draws[5 * j : 5 * j + 5]
                if any(d[0] != "uniform" or len(d[1]) != 2 for d in five) or any(
                    tuple(float(x) for x in d[1]) != want
                    for d, want in zip(five[1:], CANYON_DRAWS, strict=True)
                ):
                    raise RuntimeError("fixes_of_day's canyon draws changed: read them again")
                a, length, ang, m, acc = (float(d[2]) for d in five)
                episodes.append(Episode(a, a + length, m * math.cos(ang), m * math.sin(ang), acc))
            i += 1 + 5 * n
        else:
            i += 1
    return float(phase), episodes


def child_day(
    p: CityParams, k: int, day_no: int, b: Block, r: RouteGeom, tag: Any, noise: np.ndarray
) -> tuple[Day, DayFixes, float, list[Episode]]:
    """Child k's day ``day_no`` as ``run_group`` makes it (the plan, its SOS presses, the fixes),
    with the canyon episodes its fixes were drawn with."""
    rng = random.Random(hash((p.seed, k, day_no)) & 0xFFFFFFFF)
    d = plan_day(b, r, rng, p)
    for _ in range(_poisson(rng, p.sos_per_day)):
        d.incidents.append({"kind": "sos", "start": rng.uniform(0, 86000), "end": 0.0})
    rec = RecordingRng(np.random.default_rng([p.seed, k, day_no]))
    f = fixes_of_day(d, tag, p, rec, noise)  # type: ignore[arg-type]
    phase, episodes = read_episodes(rec.calls)
    return d, f, phase, episodes


# --- the twin ---------------------------------------------------------------------------------------


def bias_at(episodes: Sequence[Episode], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The canyon bias at times t (the generator's step: on at ``a``, off at ``c``)."""
    bx, by = np.zeros(len(t)), np.zeros(len(t))
    for e in episodes:
        w = (t >= e.a) & (t < e.c)
        bx[w] += e.bx
        by[w] += e.by
    return bx, by


def _gap_middle(fix_t: np.ndarray, at: float) -> float:
    """The middle between the last fix before ``at`` and the first at or after it."""
    i = int(np.searchsorted(fix_t, at))
    before = fix_t[i - 1] if i > 0 else at
    after = fix_t[i] if i < len(fix_t) else at
    return 0.5 * (float(before) + float(after))


def twin_shift(
    episodes: Sequence[Episode], t: np.ndarray, fix_t: np.ndarray, v: float
) -> tuple[np.ndarray, np.ndarray]:
    """Where the twin is, relative to the child's path, at times t: each episode's bias reached by a
    ramp at speed v centred between the fixes round its start, left by one centred round its end."""
    dx, dy = np.zeros(len(t)), np.zeros(len(t))
    for e in episodes:
        ramp = max(e.bias_m / v, 1e-9)
        on = _gap_middle(fix_t, e.a) - ramp / 2
        off = _gap_middle(fix_t, e.c) - ramp / 2
        s = np.clip((t - on) / ramp, 0.0, 1.0) - np.clip((t - off) / ramp, 0.0, 1.0)
        dx += s * e.bx
        dy += s * e.by
    return dx, dy


def path_at(d: Day, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The child's true position at times t (the generator's interpolation of its waypoints)."""
    ts = [q[0] for q in d.pts]
    return np.interp(t, ts, [q[1] for q in d.pts]), np.interp(t, ts, [q[2] for q in d.pts])


def depths(b: Block, x: np.ndarray, y: np.ndarray) -> dict[int, np.ndarray]:
    """Per zone of the block, the depth inside it at each point (metres from its edge; 0 outside)."""
    pts = shapely.points(x, y)
    out = {}
    for zid, poly in b.zones().items():
        inside = shapely.contains_xy(poly, x, y)
        out[zid] = np.where(inside, shapely.distance(pts, poly.exterior), 0.0)
    return out


def in_window(t_local: float) -> bool:
    return any(a <= t_local < c for a, c in WINDOWS)


@dataclass
class TwinStay:
    zone: int
    start: float
    end: float
    depth_m: float
    held: dict[float, float]
    """for each target depth: the longest time the twin was at least that deep"""
    acc_median: float | None
    exempt: bool
    """a commute window's stay whose deepest point is inside the child's own corridor"""

    def cells(self, *, held: bool = False) -> list[str]:
        """The target cells this stay is counted in (``held``: at the depth for the whole time)."""
        if self.exempt or self.acc_median is None:
            return []
        inside = self.end - self.start
        return [
            name
            for name, dmin, smin, amax in TARGET_CELLS
            if self.acc_median <= amax
            and (self.held.get(dmin, 0.0) >= smin if held else self.depth_m >= dmin and inside >= smin)
        ]


def twin_stays(
    b: Block,
    r: RouteGeom,
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fix_t: np.ndarray,
    fix_acc: np.ndarray,
) -> list[TwinStay]:
    """The zone stays of a path sampled every second (t, x, y): each run of seconds inside one zone,
    with what city_score reads of a stay (deepest point, time inside, median reported accuracy of the
    fixes taken inside, whether it is a commute window's stay inside the child's own corridor)."""
    out = []
    line = shapely.linestrings(r.line)
    for zid, dep in depths(b, x, y).items():
        inside = dep > 0
        if not inside.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(int), [0]])))
        for s, e in zip(edges[::2], edges[1::2], strict=True):
            t0, t1 = float(t[s]), float(t[e - 1]) + float(t[1] - t[0])
            seg = dep[s:e]
            k = int(np.argmax(seg))
            held = {}
            for dmin in {dm for _, dm, _, _ in TARGET_CELLS}:
                deep = np.concatenate([[0], (seg >= dmin).astype(int), [0]])
                runs = np.flatnonzero(np.diff(deep))
                held[dmin] = float((runs[1::2] - runs[::2]).max()) if len(runs) else 0.0
            w = (fix_t >= t0) & (fix_t <= t1)
            route_m = float(shapely.distance(line, shapely.points(x[s + k], y[s + k])))
            out.append(
                TwinStay(
                    zid,
                    t0,
                    t1,
                    float(seg[k]),
                    held,
                    float(np.median(fix_acc[w])) if w.any() else None,
                    in_window(t0) and route_m <= CORRIDOR_M,
                )
            )
    return out


# --- what tells them apart ------------------------------------------------------------------------


def drift_sigma(
    f: DayFixes, bx: np.ndarray, by: np.ndarray, phase: float, dt: float, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each fix's error sigma and whether the drift explains its error: (fix - truth - bias) is
    sigma times the fix's row of the unit noise on both axes (the generator's construction); where it
    is not (multipath, honest or lying), sigma is the smallest any fix has and the fix is flagged."""
    grid = phase + np.arange(0.0, 86400.0 - dt, dt)
    g = np.clip(np.searchsorted(grid, f.t - 1e-6), 0, len(grid) - 1)
    ux, uy = noise[1][g], noise[2][g]
    rx, ry = f.x - f.tx - bx, f.y - f.ty - by
    sig = (rx * ux + ry * uy) / np.maximum(ux * ux + uy * uy, 1e-300)
    resid = np.hypot(rx - sig * ux, ry - sig * uy)
    ok = (sig > 0) & (resid <= 1e-6 * (1.0 + np.hypot(rx, ry)))
    return np.where(ok, sig, MIN_SIGMA), ok


def separation(
    t: np.ndarray,
    ddx: np.ndarray,
    ddy: np.ndarray,
    sigma: np.ndarray,
    drift_ok: np.ndarray,
    acc: np.ndarray,
    twin_x: np.ndarray,
    twin_y: np.ndarray,
) -> float:
    """Q between the twin and the episode on these fixes: the drifting fixes' Mahalanobis distance
    of delta (twin - episode, both axes; ``ar1_mahalanobis``), plus, for each fix the drift does not
    explain, its independent error at the reported accuracy against the twin's whole shift (an
    honest multipath fix carries no canyon bias)."""
    tl = t.tolist()
    q = ar1_mahalanobis(tl, (ddx / sigma).tolist(), TAU_S) + ar1_mahalanobis(
        tl, (ddy / sigma).tolist(), TAU_S
    )
    loose = ~drift_ok | (acc > 50.0)
    q += float(np.sum((np.hypot(twin_x, twin_y)[loose] / (acc[loose] / R68)) ** 2))
    return q


# --- one group of children ------------------------------------------------------------------------


@dataclass
class Found:
    """What one group's child-days hold."""

    child_days: int = 0
    episodes: int = 0
    clusters: int = 0
    outdoor_h: float = 0.0
    excluded: Counter[str] = field(default_factory=Counter)
    counted: list[dict[str, Any]] = field(default_factory=list)
    """one row per cluster whose twin is a target stay at some speed"""
    drift_checked: int = 0
    drift_explained: int = 0

    def merge(self, o: Found) -> None:
        self.child_days += o.child_days
        self.episodes += o.episodes
        self.clusters += o.clusters
        self.outdoor_h += o.outdoor_h
        self.excluded.update(o.excluded)
        self.counted += o.counted
        self.drift_checked += o.drift_checked
        self.drift_explained += o.drift_explained


ACT_ORDER = (
    "crossing",
    "kerb_wait",
    "board_wait",
    "ride_registered",
    "ride_unregistered",
    "stand_near",
    "stay_trip",
    "subway",
    "walk",
    "home",
    "school",
    "academy",
)


def doing(d: Day, t: float) -> str:
    kinds = {k for k, a, c, _ in d.acts if a <= t < c}
    return next((k for k in ACT_ORDER if k in kinds), "other")


def clusters_of(episodes: list[Episode], pad: float) -> list[list[Episode]]:
    """Episodes whose spans (each padded by ``pad``) overlap, together: one apparent stay each."""
    out: list[list[Episode]] = []
    for e in sorted(episodes, key=lambda e: e.a):
        if out and e.a - pad <= max(x.c for x in out[-1]) + pad:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def judge_cluster(
    b: Block,
    r: RouteGeom,
    d: Day,
    f: DayFixes,
    tag: Any,
    cluster: list[Episode],
    sigma: np.ndarray,
    drift_ok: np.ndarray,
    speeds: Sequence[float] = SPEEDS,
) -> tuple[str | None, dict[str, Any] | None]:
    """(why it is not counted, None) or (None, its row: per speed the target cells its twin's stays
    fall in, Q and the false-alarm probability the best 99 %-recall test has on it)."""
    lo = min(e.a for e in cluster) - max(e.bias_m for e in cluster) / min(speeds) - 60.0
    hi = max(e.c for e in cluster) + max(e.bias_m for e in cluster) / min(speeds) + 60.0
    if tag.store_forward:
        return "store_forward", None
    grid = np.arange(max(0.0, lo), min(86400.0, hi), 1.0)
    x, y = path_at(d, grid)
    if any(dep.max() > 0 for dep in depths(b, x, y).values()):
        return "child_in_a_zone", None
    for inc in d.incidents:
        near = inc["start"] - 30.0 <= hi and lo <= inc["end"] + 60.0
        if near and inc["kind"] in ("enter_zone", "unregistered_ride", "leave_route"):
            return "beside_an_incident", None
    w = np.flatnonzero((f.t >= lo) & (f.t <= hi))
    if len(w) == 0:
        return "no_fixes", None
    i0, i1 = max(0, int(w[0]) - 1), min(len(f.t), int(w[-1]) + 2)
    if f.sos[i0:i1].any():
        return "sos_fix", None
    t = f.t[i0:i1]
    bx, by = bias_at(cluster, t)
    during = ((bx != 0) | (by != 0)) & drift_ok[i0:i1]
    # the device's true error over what the episode reports (the twin's device reports the same)
    ratio = sigma[i0:i1][during] / (f.acc[i0:i1][during] / R68)
    row: dict[str, Any] = {
        "bias_m": round(max(e.bias_m for e in cluster), 1),
        "length_s": round(max(e.c for e in cluster) - min(e.a for e in cluster), 1),
        "acc": round(cluster[0].acc, 1),
        "episodes": len(cluster),
        "doing": doing(d, 0.5 * (cluster[0].a + cluster[0].c)),
        "route": r.kind,
        "big_error_device": tag.error_factor > 1.0,
        "error_over_reported": round(float(np.median(ratio)), 3) if len(ratio) else None,
        "by_speed": {},
    }
    any_cell = False
    for v in speeds:
        sx, sy = twin_shift(cluster, grid, f.t, v)
        stays = twin_stays(b, r, grid, x + sx, y + sy, f.t, f.acc)
        cells = sorted({c for s in stays for c in s.cells()})
        held = sorted({c for s in stays for c in s.cells(held=True)})
        if not cells:
            row["by_speed"][str(v)] = {"cells": [], "held_cells": [], "q": None, "false_alarm": 0.0}
            continue
        any_cell = True
        tx, ty = twin_shift(cluster, t, f.t, v)
        q = separation(t, tx - bx, ty - by, sigma[i0:i1], drift_ok[i0:i1], f.acc[i0:i1], tx, ty)
        row["by_speed"][str(v)] = {
            "cells": cells,
            "held_cells": held,
            "q": round(q, 3),
            "false_alarm": np_false_alarm(q, DETECT),
        }
    if not any_cell:
        return "no_target_stay", None
    row["by_twin"] = {
        name: max((row["by_speed"][str(v)] for v in vs), key=lambda e: (bool(e["cells"]), e["false_alarm"]))
        for name, vs in TWINS.items()
    }
    return None, row


def run_group(args: tuple[CityParams, list[int], tuple[float, ...]]) -> Found:
    """Children ``children`` through every day, as ``city_sim.run_group`` draws them (no tracker)."""
    p, children, speeds = args
    blocks = build_blocks(p.schools)
    assign = {k: child_route(p, k, blocks) for k in children}
    tags = {k: make_tag(random.Random(p.seed * 7_000_003 + k), p) for k in children}
    out = Found()
    for day_no, _ in enumerate(school_days(p.days)):
        noise = unit_noise(len(children), p, np.random.default_rng([p.seed, day_no, children[0]]))
        for j, k in enumerate(children):
            b, r = assign[k]
            d, f, phase, episodes = child_day(p, k, day_no, b, r, tags[k], noise[:, j, :])
            out.child_days += 1
            out.episodes += len(episodes)
            out.outdoor_h += sum(c - a for a, c in _outdoor(d)) / 3600.0
            if not episodes:
                continue
            bx, by = bias_at(episodes, f.t)
            sigma, ok = drift_sigma(f, bx, by, phase, p.interval_s, noise[:, j, :])
            out.drift_checked += len(ok)
            out.drift_explained += int(ok.sum())
            pad = 60.0 / min(speeds) + 90.0
            for cluster in clusters_of(episodes, pad):
                out.clusters += 1
                why, row = judge_cluster(b, r, d, f, tags[k], cluster, sigma, ok, speeds)
                if row is None:
                    out.excluded[why or "?"] += 1
                else:
                    row.update(child=k, day=day_no, at=round(cluster[0].a, 1))
                    out.counted.append(row)
    return out


def _outdoor(d: Day) -> list[tuple[float, float]]:
    from bench.quality.city_sim import _outdoors

    return _outdoors(d)


def groups(p: CityParams) -> list[list[int]]:
    """The bench's groups of children (``simulate_city``'s: each group draws its own unit noise)."""
    children = list(range(1, p.children + 1))
    per_day = 86400.0 / p.interval_s
    size = max(1, min(len(children), int(FIXES_PER_GROUP_DAY / per_day)))
    workers = max(1, min(p.workers or os.cpu_count() or 1, len(children)))
    size = min(size, math.ceil(len(children) / workers))
    return [children[i : i + size] for i in range(0, len(children), size)]


def find(p: CityParams, speeds: tuple[float, ...] = SPEEDS) -> Found:
    out = Found()
    jobs = [(p, g, speeds) for g in groups(p)]
    workers = max(1, min(p.workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        for job in jobs:
            out.merge(run_group(job))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for part in pool.map(run_group, jobs):
                out.merge(part)
    return out


# --- the figures ----------------------------------------------------------------------------------


def floor_rate(
    rows: list[dict[str, Any]], key: str, child_days: int, cell: str | None = None
) -> dict[str, Any]:
    """Sum of the forced false-alarm probabilities per 1,000 child-days, with the Garwood interval of
    the count of counted episodes scaled by their mean probability (the episodes are a Poisson count;
    their probabilities, mostly near 0 or 0.99, are taken as known)."""
    probs = [
        r["by_twin"][key]["false_alarm"]
        for r in rows
        if r["by_twin"][key]["cells"] and (cell is None or cell in r["by_twin"][key]["cells"])
    ]
    k, total = len(probs), float(sum(probs))
    lo, hi = poisson_interval(k)
    mean = total / k if k else DETECT  # none counted: the upper end as if each were indistinguishable
    per = 1000.0 / child_days
    return {
        "episodes": k,
        "expected_false_alarms": round(total, 2),
        "per_1000_child_days": round(total * per, 3),
        "ci95": [round(lo * mean * per, 3), round(hi * mean * per, 3)],
        "episodes_per_1000_child_days": round(k * per, 3),
        "episodes_ci95": [round(lo * per, 3), round(hi * per, 3)],
    }


def _bias_bin(row: dict[str, Any]) -> str:
    m = row["bias_m"]
    return "20-40 m" if m < 40 else "40-45 m" if m < 45 else "45-50 m" if m < 50 else "50-60 m"


def _per_1000(rows: list[dict[str, Any]], key: str, by: Any, child_days: int) -> dict[str, float]:
    """The floor's sum per 1,000 child-days, split by ``by(row)``."""
    out: Counter[str] = Counter()
    for r in rows:
        out[by(r)] += r["by_twin"][key]["false_alarm"]
    return {k: round(1000.0 * v / child_days, 3) for k, v in sorted(out.items())}


def np_check(intervals: Sequence[float], trials: int, seed: int) -> list[dict[str, Any]]:
    """Monte-Carlo of the core claim in one dimension across the site's edge: a child standing g = 5 m
    outside with a canyon episode of bias b (30 or 50 m) into the zone for 150 s at accuracy 15 m
    (25 or 45 m deep), against its twin (a stay that deep, entered and left by ramps at v). The
    likelihood-ratio statistic on the fixes (the generator's drifting error: AR(1), tau 45 s), its
    threshold set where 99 % of the twins are caught: the share of episodes above it, beside the
    formula's Phi(z99 - sqrt(Q)) that the floor sums."""
    rng = np.random.default_rng(seed)
    g, length, acc = 5.0, 150.0, 15.0
    sigma = acc / R68
    rows = []
    for dt in intervals:
        rho = math.exp(-dt / TAU_S)
        k = math.sqrt(1 - rho * rho)

        def white(z: np.ndarray, rho: float = rho, k: float = k) -> np.ndarray:
            w = z.copy()
            w[..., 1:] = (z[..., 1:] - rho * z[..., :-1]) / k
            return w

        for bias in (30.0, 50.0):
            for v in SPEEDS:
                t = np.arange(-300.0, length + 300.0, dt) + rng.uniform(0, dt)
                ep = Episode(0.0, length, 0.0, bias, acc)
                mu0 = -g + bias_at([ep], t)[1]
                mu1 = -g + twin_shift([ep], t, t, v)[1]
                delta = (mu1 - mu0) / sigma
                wd = white(delta)
                q = float(wd @ wd)
                u = np.empty((trials, len(t)))
                u[:, 0] = rng.standard_normal(trials)
                for i in range(1, len(t)):
                    u[:, i] = rho * u[:, i - 1] + k * rng.standard_normal(trials)
                # delta' R^-1 (y - mu0): under the episode y - mu0 is the error, under the twin + delta
                stat0 = white(u) @ wd
                stat1 = white(u + delta) @ wd
                share = float(np.mean(stat0 >= np.quantile(stat1, 1 - DETECT))) if q > 0 else DETECT
                rows.append(
                    {
                        "interval_s": dt,
                        "bias_m": bias,
                        "speed": v,
                        "q": round(q, 3),
                        "formula": round(np_false_alarm(q, DETECT), 4),
                        "monte_carlo": round(share, 4),
                    }
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--intervals", default="1,5,15,30,60")
    ap.add_argument("--child-days", default="2000", help="one number, or one per interval (comma-separated)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument(
        "--canyon-per-hour", type=float, default=None, help="the world's canyon rate (default 1.0)"
    )
    ap.add_argument("--check-trials", type=int, default=20_000)
    ap.add_argument("--rows-out", default=None, help="write each counted episode as a JSON line here")
    args = ap.parse_args()
    intervals = [float(x) for x in args.intervals.split(",")]
    cds = [int(x) for x in args.child_days.split(",")]
    cds = cds * len(intervals) if len(cds) == 1 else cds
    z = NormalDist().inv_cdf(DETECT)
    print(f"the core claim, one dimension (Monte-Carlo of {args.check_trials:,} episodes and twins each):")
    print(
        "  5 m outside, a bias of b m into the zone for 150 s at 15 m; the best test catching 99 % of twins"
    )
    check = np_check(intervals, args.check_trials, args.seed)
    for c in check:
        print(
            f"  {c['interval_s']:4.0f} s fixes, b {c['bias_m']:.0f} m, twin {c['speed']} m/s: Q {c['q']:8.2f}"
            f"  false alarms: formula {c['formula']:6.1%}  Monte-Carlo {c['monte_carlo']:6.1%}"
        )
    results = []
    for dt, n in zip(intervals, cds, strict=True):
        extra = {} if args.canyon_per_hour is None else {"canyon_per_hour": args.canyon_per_hour}
        p = CityParams(
            child_days=n,
            days=min(10, max(1, n // 20)),
            interval_s=dt,
            seed=args.seed,
            workers=args.workers,
            **extra,
        )
        started = time.perf_counter()
        found = find(p)
        elapsed = time.perf_counter() - started
        res: dict[str, Any] = {
            "interval_s": dt,
            "child_days": found.child_days,
            "canyon_per_hour": p.canyon_per_hour,
            "episodes": found.episodes,
            "episodes_per_child_day": round(found.episodes / max(1, found.child_days), 3),
            "outdoor_h_per_child_day": round(found.outdoor_h / max(1, found.child_days), 3),
            "clusters": found.clusters,
            "not_counted": dict(found.excluded),
            "drift_explained_share": round(found.drift_explained / max(1, found.drift_checked), 5),
            "elapsed_s": round(elapsed, 1),
            "by_twin": {},
        }
        for key in TWINS:
            mine = [r for r in found.counted if r["by_twin"][key]["cells"]]
            res["by_twin"][key] = {
                "floor": floor_rate(found.counted, key, found.child_days),
                "floor_error_within_classes": floor_rate(
                    [r for r in found.counted if (r["error_over_reported"] or 9.0) <= ERROR_CLASSES],
                    key,
                    found.child_days,
                ),
                "by_cell": {c: floor_rate(found.counted, key, found.child_days, c) for c in CELL_NAMES},
                "held_episodes": sum(1 for r in mine if r["by_twin"][key]["held_cells"]),
                "indistinguishable": sum(1 for r in mine if r["by_twin"][key]["false_alarm"] >= 0.9),
                "by_doing": dict(Counter(r["doing"] for r in mine)),
                "floor_by_doing": _per_1000(mine, key, lambda r: r["doing"], found.child_days),
                "floor_by_bias": _per_1000(mine, key, _bias_bin, found.child_days),
                "by_route": dict(Counter(r["route"] for r in mine)),
                "big_error_device": sum(1 for r in mine if r["big_error_device"]),
            }
        res["rows"] = found.counted
        results.append(res)
        print(
            f"{dt:4.0f} s: {found.child_days:,} child-days, {found.episodes:,} canyon episodes"
            f" ({res['episodes_per_child_day']} a child-day, {res['outdoor_h_per_child_day']} h outdoors),"
            f" {elapsed:.0f} s; not counted: {dict(found.excluded)}; drift explains"
            f" {res['drift_explained_share']:.2%} of the episode days' fixes"
        )
    print()
    print(f"floor: false alarms per 1,000 child-days any rule catching >= {DETECT:.0%} of each target")
    print("cell's stays must raise in the city-like world (95 % interval); episodes: those whose twin is")
    print("a target stay; indistinguishable: the best test raises on them with probability >= 0.9")
    print(
        "| interval | child-days | twin | episodes counted (per 1,000 child-days) | indistinguishable"
        " | floor per 1,000 child-days | 40 m/120 s/<=20 m | 20 m/300 s/<=15 m | 20 m/60 s/<=10 m |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for res in results:
        for key in TWINS:
            s = res["by_twin"][key]
            fl = s["floor"]
            cells = [s["by_cell"][c] for c in (CELL_NAMES[1], CELL_NAMES[2], CELL_NAMES[0])]
            print(
                f"| {res['interval_s']:.0f} s | {res['child_days']:,} | {key} | {fl['episodes']}"
                f" ({fl['episodes_per_1000_child_days']}) | {s['indistinguishable']} |"
                f" **{fl['per_1000_child_days']}** ({fl['ci95'][0]}-{fl['ci95'][1]}) | "
                + " | ".join(f"{c['per_1000_child_days']} ({c['ci95'][0]}-{c['ci95'][1]})" for c in cells)
                + " |"
            )
    print(f"(z99 = {z:.3f}; the target: <= 1 per 1,000 child-days, upper bound <= 2)")
    if args.rows_out:
        with open(args.rows_out, "w") as fh:
            for res in results:
                for row in res["rows"]:
                    fh.write(json.dumps({"interval_s": res["interval_s"], **row}) + "\n")
    summary = [{k: v for k, v in r.items() if k != "rows"} for r in results]
    print(json.dumps({"bench": "canyon_floor", "seed": args.seed, "np_check": check, "intervals": summary}))


if __name__ == "__main__":
    main()
