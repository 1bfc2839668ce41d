"""Benchmark: the geofence core against shapely 2's best vectorised path, same data, same answers.

City scale (the default; ``--quick`` is a smaller run for a laptop or CI):

* zones: Seoul's 467 real neighbourhoods (``data/seoul``) and 10,000 synthetic danger zones of the
  shapes a city registers, over the 30 km × 30 km square around Seoul's centre: construction sites
  (rotated rectangles), parks with a pond (polygons with holes), arterial road stretches and river
  banks (buffered polylines, up to hundreds of vertices), multi-site works (multipolygons) and
  crossings (small squares);
* routes: 400,000 walking routes (one per pupil) from a home within 1.5 km to one of 600 schools
  (placed in Seoul) along a street grid, a vertex every ~50 m, a tenth in two parts; corridors
  20-60 m;
* fixes: 1,000,000, each from a child on its route with GPS noise matching its accuracy radius, some
  off the route, some anywhere, a few without a route; each with the fix 15 s before it.

Both sides start from lon/lat arrays (route slots resolved beforehand, as the service does per child)
and end with the same outputs: route distance and corridor, certain and possible zone CSR, nearest
zone distance. Shapely's side is STRtree.query(dwithin R) + prepared contains_xy + prepared dwithin of
the boundaries (certain, possible) + distance (nearest, route distance); its threads each take a
slice of the fixes (shapely releases the GIL). The kernel's crossings ("cross" between fixes) are
timed separately and checked against shapely on a sample (intersects and not touches).

Also timed: the kernel on the service's batch sizes (2,000 fixes per call, and one fix per call, on
one thread). Prints figures (medians of ``--runs``) and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from tracker.geofence import GeofenceIndex, LocalProjection, RouteSpec, ZoneSpec, build_index, kernels  # noqa: E402
from tracker.geofence.build import zone_polygons  # noqa: E402

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DATA = ROOT / "data" / "seoul"
SEOUL = LocalProjection(126.978, 37.5665)  # Seoul City Hall
HALF = 15_000.0  # the square is 2 × HALF metres wide


# ------------------------------------------------------------------------------------------------
# data


def seoul_neighbourhoods() -> list[ZoneSpec]:
    features = json.loads((DATA / "neighborhoods.geojson").read_text(encoding="utf-8"))["features"]
    return [ZoneSpec(int(f["properties"]["EMD_CD"]), shapely.geometry.shape(f["geometry"])) for f in features]


def _to_lonlat(geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    return shapely.transform(geoms, lambda c: np.column_stack(SEOUL.to_lonlat(c[:, 0], c[:, 1])))


def _star(rng: np.random.Generator, cx: float, cy: float, r0: float, r1: float, k: int) -> F64:
    ang = (np.arange(k) + rng.uniform(0.05, 0.95, k)) * (2 * np.pi / k)
    r = rng.uniform(r0, r1, k)
    ring = np.column_stack([cx + r * np.cos(ang), cy + r * np.sin(ang)])
    return np.vstack([ring, ring[:1]])


def _rect(cx: float, cy: float, w: float, h: float, angle: float) -> F64:
    c, s = np.cos(angle), np.sin(angle)
    pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h], [-w, -h]]) / 2
    return np.column_stack([cx + pts[:, 0] * c - pts[:, 1] * s, cy + pts[:, 0] * s + pts[:, 1] * c])


def _wander(rng: np.random.Generator, n: int, step: float, turn: float) -> F64:
    """A smooth random polyline of n vertices starting at the origin."""
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, turn, n - 1))
    steps = np.column_stack([np.cos(heading), np.sin(heading)]) * step
    return np.vstack([[0.0, 0.0], np.cumsum(steps, axis=0)])


def synthetic_zones(rng: np.random.Generator, n: int, first_id: int) -> list[ZoneSpec]:
    """Danger zones over the square, in metres around SEOUL, then in lon/lat."""
    kinds = rng.choice(6, n, p=[0.40, 0.18, 0.15, 0.04, 0.18, 0.05])
    centres = rng.uniform(-HALF, HALF, (n, 2))
    geoms: list[Any] = []
    lines: dict[int, Any] = {}  # index -> (line, half width): roads and rivers, buffered at once
    for i, (kind, (cx, cy)) in enumerate(zip(kinds.tolist(), centres.tolist(), strict=True)):
        if kind == 0:  # construction site
            shell = _rect(cx, cy, rng.uniform(20, 120), rng.uniform(20, 80), rng.uniform(0, np.pi))
            geoms.append(shapely.Polygon(shell))
        elif kind == 1:  # park with a pond
            r = rng.uniform(60, 300)
            shell = _star(rng, cx, cy, 0.7 * r, r, int(rng.integers(8, 33)))
            holes = (
                [_star(rng, cx, cy, 0.1 * r, 0.4 * r, int(rng.integers(5, 13)))] if rng.random() < 0.3 else []
            )
            geoms.append(shapely.Polygon(shell, holes))
        elif kind == 2:  # arterial road stretch: a few long straight pieces
            k = int(rng.integers(2, 7))
            pts = _wander(rng, k, rng.uniform(150, 400), 0.4) + np.array([cx, cy])
            lines[i] = (shapely.LineString(pts), rng.uniform(10, 20))
            geoms.append(None)
        elif kind == 3:  # river bank: long and meandering, many vertices
            k = int(rng.integers(40, 160))
            pts = _wander(rng, k, 25.0, 0.15) + np.array([cx, cy])
            lines[i] = (shapely.LineString(pts), rng.uniform(20, 60))
            geoms.append(None)
        elif kind == 4:  # works on several sites: a multipolygon
            parts = []
            angle = rng.uniform(0, np.pi)
            for p in range(int(rng.integers(2, 5))):
                off = p * 140.0
                px, py = cx + off * np.cos(angle), cy + off * np.sin(angle)
                parts.append(shapely.Polygon(_rect(px, py, rng.uniform(20, 90), rng.uniform(20, 60), angle)))
            geoms.append(shapely.MultiPolygon(parts))
        else:  # crossing
            geoms.append(
                shapely.Polygon(_rect(cx, cy, rng.uniform(8, 15), rng.uniform(8, 15), rng.uniform(0, 1)))
            )
    if lines:
        idx = np.array(list(lines))
        buffered = shapely.buffer(
            np.array([lines[i][0] for i in idx], dtype=object),
            np.array([lines[i][1] for i in idx]),
            cap_style="flat",
            join_style="mitre",
            mitre_limit=3.0,
        )
        for i, g in zip(idx.tolist(), buffered, strict=True):
            geoms[i] = g
    ll = _to_lonlat(np.array(geoms, dtype=object))
    return [ZoneSpec(first_id + i, g) for i, g in enumerate(ll)]


def school_sites(rng: np.random.Generator, n: int, city: list[ZoneSpec]) -> F64:
    """n points (metres) inside the city's neighbourhoods and the square."""
    tree = shapely.STRtree([p for z in city for p in zone_polygons(z)])
    out = np.empty((0, 2))
    while len(out) < n:
        xy = rng.uniform(-HALF, HALF, (4 * n, 2))
        lon, lat = SEOUL.to_lonlat(xy[:, 0], xy[:, 1])
        inside = np.unique(tree.query(shapely.points(lon, lat), predicate="intersects")[0])
        out = np.vstack([out, xy[inside]])
    return out[:n]


def synthetic_routes(rng: np.random.Generator, n: int, school_xy: F64) -> tuple[list[RouteSpec], F64, I64]:
    """Home → school along a street grid (two or three legs), a vertex every ~50 m with 3 m of jitter,
    a tenth in two parts. Returns the routes and, for placing fixes, every vertex in metres with its
    route index (-1 for the last vertex of a part, where no segment starts)."""
    schools = school_xy.shape[0]
    school = rng.integers(0, schools, n)
    dist = rng.uniform(300, 1500, n)
    ang = rng.uniform(0, 2 * np.pi, n)
    home = school_xy[school] + np.column_stack([dist * np.cos(ang), dist * np.sin(ang)])
    target = school_xy[school]
    # waypoints home -> corner(s) -> school
    f = rng.uniform(0.2, 0.8, n)
    a = np.column_stack([home[:, 0] + f * (target[:, 0] - home[:, 0]), home[:, 1]])
    b = np.column_stack([a[:, 0], target[:, 1]])
    way = np.stack([home, a, b, target], axis=1)  # [n, 4, 2]
    leg = np.linalg.norm(np.diff(way, axis=1), axis=2)  # [n, 3]
    per_leg = np.maximum(np.ceil(leg / 50.0).astype(np.int64), 1)
    n_vert = per_leg.sum(axis=1) + 1
    route_of = np.repeat(np.arange(n), n_vert)
    start = np.concatenate([[0], np.cumsum(n_vert)[:-1]])
    k = np.arange(route_of.size) - start[route_of]  # vertex number within the route
    cum = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(per_leg, axis=1)], axis=1)  # [n, 4]
    li = np.minimum((k[:, None] >= cum[route_of][:, 1:]).sum(axis=1), 2)  # leg of each vertex
    t = (k - cum[route_of, li]) / per_leg[route_of, li]
    p0 = way[route_of, li]
    p1 = way[route_of, li + 1]
    xy = p0 + (p1 - p0) * t[:, None] + rng.normal(0, 3.0, (route_of.size, 2))
    # a tenth in two parts: the part boundary drops one segment in the middle
    two = (rng.random(n) < 0.1) & (n_vert >= 6)
    cut = start + n_vert // 2
    part_of = np.where(two[route_of] & (np.arange(route_of.size) >= cut[route_of]), 1, 0)
    part_key = route_of * 2 + part_of
    lon, lat = SEOUL.to_lonlat(xy[:, 0], xy[:, 1])
    new_line = np.concatenate([[True], part_key[1:] != part_key[:-1]])
    lines = shapely.linestrings(np.column_stack([lon, lat]), indices=np.cumsum(new_line) - 1)
    line_route = route_of[new_line]
    multi = shapely.multilinestrings(lines, indices=line_route)
    single = shapely.get_geometry(multi, 0)
    geoms = np.where(two, multi, single)
    corridor = rng.uniform(20, 60, n)
    routes = [
        RouteSpec(i, g, float(c)) for i, (g, c) in enumerate(zip(geoms, corridor.tolist(), strict=True))
    ]
    seg_route = np.where(part_key[:-1] == part_key[1:], route_of[:-1], -1)
    return routes, xy, np.append(seg_route, -1)


def synthetic_fixes(
    rng: np.random.Generator, n: int, route_xy: F64, seg_route: I64, n_routes: int
) -> dict[str, np.ndarray]:
    """85 % on a route segment with GPS noise of their accuracy, 7 % off the route by 50-400 m, 5 %
    anywhere, 3 % without a route; the previous fix 12-25 m back along the way (5 % without one)."""
    segs = np.flatnonzero(seg_route >= 0)
    pick = segs[rng.integers(0, segs.size, n)]
    t = rng.random(n)
    a, b = route_xy[pick], route_xy[pick + 1]
    on = a + (b - a) * t[:, None]
    heading = (b - a) / np.maximum(np.linalg.norm(b - a, axis=1), 1e-9)[:, None]
    acc = np.clip(rng.lognormal(np.log(10.0), 0.6, n), 3.0, 300.0)
    acc[rng.random(n) < 0.01] = 0.0
    sigma = np.maximum(acc, 1.0) / 2.0
    xy = on + rng.normal(0, 1, (n, 2)) * sigma[:, None]
    back = rng.uniform(12, 25, n)
    prev = on - heading * back[:, None] + rng.normal(0, 1, (n, 2)) * sigma[:, None]
    route = seg_route[pick].astype(np.int64)
    u = rng.random(n)
    off = (u >= 0.85) & (u < 0.92)
    shift = rng.uniform(50, 400, n)[:, None] * np.column_stack([-heading[:, 1], heading[:, 0]])
    xy[off] += shift[off]
    prev[off] += shift[off]
    anywhere = u >= 0.92
    xy[anywhere] = rng.uniform(-HALF, HALF, (int(anywhere.sum()), 2))
    prev[anywhere] = xy[anywhere] + rng.normal(0, 15, (int(anywhere.sum()), 2))
    route[u >= 0.97] = -1
    prev[rng.random(n) < 0.05] = np.nan
    lon, lat = SEOUL.to_lonlat(xy[:, 0], xy[:, 1])
    plon, plat = SEOUL.to_lonlat(prev[:, 0], prev[:, 1])
    assert route.max() < n_routes
    return {"lon": lon, "lat": lat, "acc": acc, "route_id": route, "prev_lon": plon, "prev_lat": plat}


# ------------------------------------------------------------------------------------------------
# the two sides

Answers = dict[str, np.ndarray]
KEYS = ("route", "corridor", "certain_off", "certain", "possible_off", "possible", "nearest")


def kernel_side(index: GeofenceIndex, parallel: bool) -> Callable[..., Answers]:
    def run(lon: F64, lat: F64, acc: F64, slots: npt.NDArray[np.int32], **prev: F64) -> Answers:
        v = index.check(lon, lat, acc, slots, parallel=parallel, **prev)
        return {
            "route": v.route_distance_m,
            "corridor": v.corridor_m,
            "certain_off": v.certain_offsets,
            "certain": v.certain_zone_ids,
            "possible_off": v.possible_offsets,
            "possible": v.possible_zone_ids,
            "nearest": v.nearest_zone_m,
            "crossed_off": v.crossed_offsets,
            "crossed": v.crossed_zone_ids,
        }

    return run


class ShapelySide:
    """The same semantics with shapely 2, in the index's projected metres (see the module docstring)."""

    def __init__(self, routes: list[RouteSpec], zones: list[ZoneSpec], index: GeofenceIndex) -> None:
        self.proj = index.projection
        self.radius = index.search_radius_m

        def to_m(g: Any) -> Any:
            return shapely.transform(g, lambda c: np.column_stack(self.proj.to_xy(c[:, 0], c[:, 1])))

        by_id = sorted(routes, key=lambda r: r.route_id)
        self.route_geoms = to_m(np.array([r.geometry for r in by_id], dtype=object))
        self.corridor = np.array([r.corridor_m for r in by_id])
        zs = sorted(zones, key=lambda z: z.zone_id)
        self.zone_ids = np.array([z.zone_id for z in zs], dtype=np.int64)
        self.zones = to_m(np.array([shapely.MultiPolygon(zone_polygons(z)) for z in zs], dtype=object))
        self.bounds = shapely.boundary(self.zones)
        shapely.prepare(self.zones)
        shapely.prepare(self.bounds)
        self.tree = shapely.STRtree(self.zones)

    def _run(self, lon: F64, lat: F64, acc: F64, slots: npt.NDArray[np.int32]) -> Answers:
        n = lon.size
        x, y = self.proj.to_xy(lon, lat)
        pts = shapely.points(x, y)
        has = slots >= 0
        route = np.full(n, np.nan)
        route[has] = shapely.distance(self.route_geoms[slots[has]], pts[has])
        corridor = np.full(n, np.nan)
        corridor[has] = self.corridor[slots[has]]
        pi, zi = self.tree.query(pts, predicate="dwithin", distance=self.radius)
        inside = shapely.contains_xy(self.zones[zi], x[pi], y[pi])
        a = np.where(acc >= 0, acc, np.inf)[pi]  # nan / negative: unknown
        certain = inside & ~shapely.dwithin(self.bounds[zi], pts[pi], np.where(inside, a, 0.0))
        possible = inside | shapely.dwithin(self.bounds[zi], pts[pi], np.minimum(a, self.radius))
        held = np.zeros(n, dtype=bool)
        held[pi[inside]] = True
        nearest = np.full(n, np.inf)
        nearest[held] = 0.0
        free = ~held[pi]  # distances only where no zone holds the fix
        d = shapely.distance(self.bounds[zi[free]], pts[pi[free]])
        np.minimum.at(nearest, pi[free], np.where(d <= self.radius, d, np.inf))
        order = np.lexsort((zi, pi))
        pi, zi, certain, possible = pi[order], zi[order], certain[order], possible[order]

        def csr(mask: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
            off = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(pi[mask], minlength=n), out=off[1:])
            return off, self.zone_ids[zi[mask]]

        c_off, c_ids = csr(certain)
        p_off, p_ids = csr(possible)
        return dict(zip(KEYS, (route, corridor, c_off, c_ids, p_off, p_ids, nearest), strict=True))

    def run(self, lon: F64, lat: F64, acc: F64, slots: npt.NDArray[np.int32], threads: int = 1) -> Answers:
        if threads <= 1:
            return self._run(lon, lat, acc, slots)
        cuts = np.linspace(0, lon.size, threads + 1).astype(int)
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            parts = list(
                pool.map(
                    lambda k: self._run(*(a[cuts[k] : cuts[k + 1]] for a in (lon, lat, acc, slots))),
                    range(threads),
                )
            )
        out: Answers = {}
        for key in ("route", "corridor", "certain", "possible", "nearest"):
            out[key] = np.concatenate([p[key] for p in parts])
        for key in ("certain_off", "possible_off"):
            offs = [parts[0][key]]
            for p in parts[1:]:
                offs.append(p[key][1:] + offs[-1][-1])
            out[key] = np.concatenate(offs)
        return out

    def crossed(
        self, lon: F64, lat: F64, acc: F64, plon: F64, plat: F64, certain: Answers
    ) -> tuple[I64, I64]:
        """Crossed zones (CSR) of the segments previous fix → fix: intersects and not touches (a zero
        length segment: the point in the interior), neither end certainly inside (the previous one as
        a point: strictly inside)."""
        n = lon.size
        x, y = self.proj.to_xy(lon, lat)
        qx, qy = self.proj.to_xy(plon, plat)
        ok = np.isfinite(qx) & np.isfinite(qy) & np.isfinite(x) & np.isfinite(y)
        idx = np.flatnonzero(ok)
        point = (qx[idx] == x[idx]) & (qy[idx] == y[idx])
        segs = shapely.linestrings(
            np.stack([np.column_stack([qx[idx], qy[idx]]), np.column_stack([x[idx], y[idx]])], axis=1)
        )
        segs[point] = shapely.points(x[idx][point], y[idx][point])
        si, zi = self.tree.query(segs, predicate="intersects")
        meets = ~shapely.touches(segs[si], self.zones[zi])
        si, zi = si[meets], zi[meets]
        fi = idx[si]
        q_in = shapely.contains_xy(self.zones[zi], qx[fi], qy[fi]) & (
            shapely.distance(self.bounds[zi], shapely.points(qx[fi], qy[fi])) > 0
        )
        keep = ~q_in
        c_off, c_ids = certain["certain_off"], certain["certain"]
        cert = {(int(i), int(z)) for i in np.unique(fi) for z in c_ids[c_off[i] : c_off[i + 1]]}
        zone_id = self.zone_ids[zi]
        keep &= np.array([(int(i), int(z)) not in cert for i, z in zip(fi, zone_id, strict=True)], dtype=bool)
        fi, zone_id = fi[keep], zone_id[keep]
        order = np.lexsort((zone_id, fi))
        off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(fi, minlength=n), out=off[1:])
        return off, zone_id[order]


def service_batches(index: GeofenceIndex, fix_args: tuple[np.ndarray, ...], size: int, runs: int) -> float:
    """Fixes per second when the fixes come in batches of ``size`` (the service's batches: each a
    separate call on one thread), median of ``runs`` passes over up to 200,000 fixes."""
    n = min(fix_args[0].size, 200_000) // size * size
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for i in range(0, n, size):
            index.check(*(a[i : i + size] for a in fix_args), parallel=False)
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def timed(fn: Callable[..., Answers], runs: int, *args: Any, **kw: Any) -> tuple[float, Answers]:
    times = []
    out: Answers = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def compare(a: Answers, b: Answers, keys: tuple[str, ...] = KEYS) -> dict[str, int]:
    """Number of fixes whose answers differ, per output (distances: 1e-9 relative)."""

    def close(u: F64, v: F64) -> npt.NDArray[np.bool_]:
        return np.isclose(u, v, rtol=1e-9, atol=1e-9, equal_nan=True) | ((u == v) & np.isinf(u))

    out: dict[str, int] = {}
    for key in ("route", "corridor", "nearest"):
        if key in keys:
            out[key] = int((~close(a[key], b[key])).sum())
    for key in ("certain", "possible", "crossed"):
        if key not in keys:
            continue
        ao, bo = a[f"{key}_off"], b[f"{key}_off"]
        bad = np.diff(ao) != np.diff(bo)
        if not bad.any():
            bad_at = np.flatnonzero(a[key] != b[key])
            bad[np.unique(np.searchsorted(ao, bad_at, side="right") - 1)] = True
        out[key] = int(bad.sum())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20,000 routes, 2,000 zones, 200,000 fixes")
    parser.add_argument("--fixes", type=int, help="default 1,000,000 (quick: 200,000)")
    parser.add_argument("--routes", type=int, help="default 400,000 (quick: 20,000)")
    parser.add_argument("--zones", type=int, help="synthetic zones besides Seoul's 467; default 10,000")
    parser.add_argument("--schools", type=int, default=600)
    parser.add_argument("--runs", type=int, default=5, help="runs of the kernel per figure (median)")
    parser.add_argument("--shapely-runs", type=int, default=3, help="runs of shapely per figure (median)")
    parser.add_argument(
        "--cross-sample", type=int, default=100_000, help="fixes whose crossings shapely checks"
    )
    parser.add_argument("--search-radius", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n_fixes = args.fixes or (200_000 if args.quick else 1_000_000)
    n_routes = args.routes or (20_000 if args.quick else 400_000)
    n_zones = args.zones if args.zones is not None else (2_000 if args.quick else 10_000)
    import numba  # here, not at the top: bench.load.city imports this module into workers measured without it

    threads = numba.get_num_threads()

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    neighbourhoods = seoul_neighbourhoods()
    zones = neighbourhoods + synthetic_zones(rng, n_zones, first_id=1)
    routes, route_xy, seg_route = synthetic_routes(
        rng, n_routes, school_sites(rng, args.schools, neighbourhoods)
    )
    fixes = synthetic_fixes(rng, n_fixes, route_xy, seg_route, n_routes)
    t_data = time.perf_counter() - t0
    lon, lat, acc = fixes["lon"], fixes["lat"], fixes["acc"]
    prev = {"prev_lon": fixes["prev_lon"], "prev_lat": fixes["prev_lat"]}

    t0 = time.perf_counter()
    build_index(routes[:1], zones[:1])  # load (or compile) the kernels outside the build's timing
    t_jit = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = build_index(routes, zones, projection=SEOUL, search_radius_m=args.search_radius)
    t_build = time.perf_counter() - t0
    slots = index.route_slots(fixes["route_id"])
    t0 = time.perf_counter()
    for parallel in (False, True):  # compile (or load) outside the timing
        index.check(lon[:10], lat[:10], acc[:10], slots[:10], parallel=parallel)
        index.check(
            lon[:10], lat[:10], acc[:10], slots[:10], parallel=parallel, prev_lon=lon[:10], prev_lat=lat[:10]
        )
    t_jit += time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = ShapelySide(routes, zones, index)
    t_tree = time.perf_counter() - t0

    fix_args = (lon, lat, acc, slots)
    t_k1, a = timed(kernel_side(index, False), args.runs, *fix_args)
    t_kn, a_n = timed(kernel_side(index, True), args.runs, *fix_args)
    t_x1, ax = timed(kernel_side(index, False), args.runs, *fix_args, **prev)
    t_xn, ax_n = timed(kernel_side(index, True), args.runs, *fix_args, **prev)
    rate_2000 = service_batches(index, fix_args, 2000, args.runs)
    rate_1 = service_batches(index, tuple(a[:20_000] for a in fix_args), 1, 3)
    t_s1, b = timed(theirs.run, args.shapely_runs, *fix_args, threads=1)
    t_sn, b_n = timed(theirs.run, args.shapely_runs, *fix_args, threads=threads)

    diff = compare(a, b)
    diff_threads = {
        "kernel": sum(compare(a, a_n).values())
        + sum(compare(a, ax).values())
        + sum(compare(ax, ax_n, ("crossed",)).values()),
        "shapely": sum(compare(b, b_n).values()),
    }
    m = min(args.cross_sample, n_fixes)
    sample = {k: v[:m] for k, v in ax.items() if not k.endswith("_off")}
    c_off, c_ids = theirs.crossed(lon[:m], lat[:m], acc[:m], prev["prev_lon"][:m], prev["prev_lat"][:m], b)
    cross_diff = compare(
        {"crossed_off": ax["crossed_off"][: m + 1], "crossed": ax["crossed"][: ax["crossed_off"][m]]},
        {"crossed_off": c_off, "crossed": c_ids},
        ("crossed",),
    )["crossed"]
    del sample
    identical = not any(diff.values()) and not any(diff_threads.values()) and cross_diff == 0
    rate = {
        k: n_fixes / t
        for k, t in {"k1": t_k1, "kn": t_kn, "x1": t_x1, "xn": t_xn, "s1": t_s1, "sn": t_sn}.items()
    }

    print(
        f"data: {len(zones)} zones ({len(neighbourhoods)} Seoul neighbourhoods), {len(routes)} routes, "
        f"{n_fixes} fixes; generated in {t_data:.1f} s; {os.cpu_count()} CPUs, {threads} numba threads"
    )
    print(f"index: {index!r}")
    print(f"kernels: {kernels.IN_USE}")
    print(f"build: {t_build:.2f} s (kernels loaded/compiled in {t_jit:.2f} s); shapely tree {t_tree:.2f} s")
    print(
        f"answers per fix: {a['possible'].size / n_fixes:.2f} possible zones, "
        f"{a['certain'].size / n_fixes:.2f} certain, {ax['crossed'].size / n_fixes:.4f} crossed; "
        f"{np.isfinite(a['route']).mean():.1%} with a route"
    )
    print(f"kernel, 1 thread     : {rate['k1']:14,.0f} fixes/s   (+ crossings: {rate['x1']:14,.0f})")
    print(f"kernel, {threads} threads    : {rate['kn']:14,.0f} fixes/s   (+ crossings: {rate['xn']:14,.0f})")
    print(
        f"kernel, service batches of 2,000 fixes: {rate_2000:14,.0f} fixes/s; "
        f"one fix per call: {1e6 / rate_1:.1f} µs per call"
    )
    print(f"shapely, 1 thread    : {rate['s1']:14,.0f} fixes/s")
    print(f"shapely, {threads} threads   : {rate['sn']:14,.0f} fixes/s")
    print(
        f"ratio: {rate['kn'] / rate['sn']:.1f}x (all threads each), "
        f"{rate['k1'] / rate['s1']:.1f}x (1 thread each); "
        f"identical: {identical} (vs shapely: {diff}; threads/crossing passes: {diff_threads}; "
        f"crossings vs shapely on {m} fixes: {cross_diff} differ)"
    )
    result = {
        "bench": "geofence",
        "fixes": n_fixes,
        "routes": len(routes),
        "zones": len(zones),
        "threads": threads,
        "kernels": kernels.IN_USE,
        "runs": args.runs,
        "shapely_runs": args.shapely_runs,
        "kernel_fixes_per_s_1_thread": round(rate["k1"]),
        "kernel_fixes_per_s_all_threads": round(rate["kn"]),
        "kernel_with_crossings_fixes_per_s_1_thread": round(rate["x1"]),
        "kernel_with_crossings_fixes_per_s_all_threads": round(rate["xn"]),
        "kernel_fixes_per_s_batches_of_2000": round(rate_2000),
        "kernel_us_per_call_of_1_fix": round(1e6 / rate_1, 1),
        "shapely_fixes_per_s_1_thread": round(rate["s1"]),
        "shapely_fixes_per_s_all_threads": round(rate["sn"]),
        "ratio_all_threads": round(rate["kn"] / rate["sn"], 1),
        "ratio_1_thread": round(rate["k1"] / rate["s1"], 1),
        "index_build_s": round(t_build, 2),
        "index_memory_mb": round(index.nbytes / 1e6, 1),
        "identical": identical,
        "mismatching_fixes": {
            **diff,
            "crossed_sample": cross_diff,
            **{f"{k}_threads": v for k, v in diff_threads.items()},
        },
    }
    print(json.dumps(result))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
