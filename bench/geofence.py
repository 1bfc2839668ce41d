"""Benchmark: the geofence kernels against shapely 2's vectorised predicates, same data, same answers.

Index: Seoul's neighbourhoods plus synthetic small zones (some with holes) as zones, synthetic walking
routes (some in two parts) over the Seoul bounding box. Fixes: mostly near their child's route, some
anywhere, a few without a route. Both sides start from lon/lat arrays and end with the same outputs
(route distance, corridor, certain/possible zone CSR, nearest zone distance); index building (ours)
and STRtree building + projection of the geometry (shapely's) are outside the timing.

Prints per-side fixes/s (median of --runs), the ratio and whether the answers were identical; the last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
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

from tracker.geofence import GeofenceIndex, LocalProjection, RouteSpec, ZoneSpec, build_index  # noqa: E402

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DATA = ROOT / "data" / "seoul"


# ------------------------------------------------------------------------------------------------
# data


def seoul_neighbourhoods() -> list[ZoneSpec]:
    features = json.loads((DATA / "neighborhoods.geojson").read_text(encoding="utf-8"))["features"]
    return [ZoneSpec(int(f["properties"]["EMD_CD"]), shapely.geometry.shape(f["geometry"])) for f in features]


def star_ring(rng: np.random.Generator, cx: float, cy: float, r0: float, r1: float, k: int) -> F64:
    ang = (np.arange(k) + rng.uniform(0.05, 0.95, k)) * (2 * np.pi / k)
    r = rng.uniform(r0, r1, k)
    ring = np.column_stack([cx + r * np.cos(ang), cy + r * np.sin(ang)])
    return np.vstack([ring, ring[:1]])


def small_zones(
    rng: np.random.Generator, proj: LocalProjection, box: F64, n: int, first_id: int
) -> list[ZoneSpec]:
    """Construction sites, river-bank stretches, crossings: 30-200 m stars, a fifth with a hole."""
    x0, y0 = proj.to_xy(box[0], box[1])
    x1, y1 = proj.to_xy(box[2], box[3])
    zones = []
    for i in range(n):
        cx, cy = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
        r_out = float(rng.uniform(30, 200))
        shell = star_ring(rng, cx, cy, 0.6 * r_out, r_out, int(rng.integers(4, 24)))
        holes = [star_ring(rng, cx, cy, 0.1 * r_out, 0.4 * r_out, 6)] if rng.random() < 0.2 else []
        to_ll = [np.column_stack(proj.to_lonlat(r[:, 0], r[:, 1])) for r in [shell, *holes]]
        zones.append(ZoneSpec(first_id + i, shapely.Polygon(to_ll[0], to_ll[1:])))
    return zones


def synthetic_routes(
    rng: np.random.Generator, proj: LocalProjection, box: F64, n: int
) -> tuple[list[RouteSpec], F64, I64]:
    """Random walks of 10-40 vertices (~60 m steps), a tenth in two parts; corridors 20-60 m.
    Returns the routes and, for placing fixes, every vertex in metres with its route index."""
    x0, y0 = proj.to_xy(box[0], box[1])
    x1, y1 = proj.to_xy(box[2], box[3])
    n_parts = np.where(rng.random(n) < 0.1, 2, 1)
    part_route = np.repeat(np.arange(n), n_parts)
    n_verts = rng.integers(10, 41, part_route.size)
    vert_part = np.repeat(np.arange(part_route.size), n_verts)
    steps = rng.normal(0, 60, (vert_part.size, 2))
    starts = np.column_stack([rng.uniform(x0, x1, part_route.size), rng.uniform(y0, y1, part_route.size)])
    first = np.concatenate([[0], np.cumsum(n_verts)[:-1]])
    steps[first] = starts
    xy = np.empty_like(steps)
    for d in range(2):  # cumulative sum restarted at each part's first vertex
        c = np.cumsum(steps[:, d])
        xy[:, d] = c - np.repeat(c[first] - steps[first, d], n_verts)
    lon, lat = proj.to_lonlat(xy[:, 0], xy[:, 1])
    lines = shapely.linestrings(np.column_stack([lon, lat]), indices=vert_part)
    geoms = shapely.multilinestrings(lines, indices=part_route)
    corridor = rng.uniform(20, 60, n)
    routes = []
    for i in range(n):
        g = geoms[i]
        routes.append(RouteSpec(i, g.geoms[0] if n_parts[i] == 1 else g, float(corridor[i])))
    return routes, xy, part_route[vert_part]


def synthetic_fixes(
    rng: np.random.Generator, proj: LocalProjection, box: F64, n: int, route_xy: F64, vert_route: I64
) -> tuple[F64, F64, F64, I64]:
    """85 % near a vertex of their own route (40 m noise), 10 % anywhere with a route, 5 % no route."""
    pick = rng.integers(0, vert_route.size, n)
    xy = route_xy[pick] + rng.normal(0, 40, (n, 2))
    route_ids = vert_route[pick].astype(np.int64)
    x0, y0 = proj.to_xy(box[0], box[1])
    x1, y1 = proj.to_xy(box[2], box[3])
    anywhere = rng.random(n) < 0.15
    xy[anywhere] = np.column_stack([rng.uniform(x0, x1, anywhere.sum()), rng.uniform(y0, y1, anywhere.sum())])
    route_ids[anywhere & (rng.random(n) < 1 / 3)] = -1
    lon, lat = proj.to_lonlat(xy[:, 0], xy[:, 1])
    acc = np.minimum(rng.lognormal(np.log(12), 0.6, n), 300.0)
    acc[rng.random(n) < 0.02] = 0.0
    return lon, lat, acc, route_ids


# ------------------------------------------------------------------------------------------------
# the two sides


Answers = dict[str, np.ndarray]


def kernel_side(index: GeofenceIndex) -> Callable[[F64, F64, F64, I64], Answers]:
    def run(lon: F64, lat: F64, acc: F64, route_ids: I64) -> Answers:
        v = index.check(lon, lat, acc, index.route_slots(route_ids))
        return {
            "route": v.route_distance_m,
            "corridor": v.corridor_m,
            "certain_off": v.certain_offsets,
            "certain": v.certain_zone_ids,
            "possible_off": v.possible_offsets,
            "possible": v.possible_zone_ids,
            "nearest": v.nearest_zone_m,
        }

    return run


def shapely_side(
    routes: list[RouteSpec], zones: list[ZoneSpec], proj: LocalProjection, radius: float
) -> Callable[[F64, F64, F64, I64], Answers]:
    """Same semantics with shapely 2: STRtree dwithin query, contains_xy, distance to the boundary."""
    from tracker.geofence.index import zone_polygons

    def to_m(g: Any) -> Any:
        return shapely.transform(g, lambda c: np.column_stack(proj.to_xy(c[:, 0], c[:, 1])))

    route_sorted = sorted(routes, key=lambda r: r.route_id)
    route_ids_sorted = np.array([r.route_id for r in route_sorted], dtype=np.int64)
    route_geoms = to_m(np.array([r.geometry for r in route_sorted], dtype=object))
    route_corridor = np.array([r.corridor_m for r in route_sorted])
    zone_sorted = sorted(zones, key=lambda z: z.zone_id)
    zone_ids = np.array([z.zone_id for z in zone_sorted], dtype=np.int64)
    zone_geoms = to_m(np.array([shapely.MultiPolygon(zone_polygons(z)) for z in zone_sorted], dtype=object))
    zone_bounds = shapely.boundary(zone_geoms)
    shapely.prepare(zone_geoms)
    shapely.prepare(route_geoms)
    tree = shapely.STRtree(zone_geoms)

    def run(lon: F64, lat: F64, acc: F64, route_ids: I64) -> Answers:
        n = lon.size
        x, y = proj.to_xy(lon, lat)
        pts = shapely.points(x, y)
        pos = np.minimum(np.searchsorted(route_ids_sorted, route_ids), route_ids_sorted.size - 1)
        has = (route_ids_sorted[pos] == route_ids) & (route_ids >= 0)
        route = np.full(n, np.nan)
        route[has] = shapely.distance(route_geoms[pos[has]], pts[has])
        corridor = np.full(n, np.nan)
        corridor[has] = route_corridor[pos[has]]
        pi, zi = tree.query(pts, predicate="dwithin", distance=radius)
        inside = shapely.contains_xy(zone_geoms[zi], x[pi], y[pi])
        d = shapely.distance(zone_bounds[zi], pts[pi])
        a = np.where(acc >= 0, acc, np.inf)[pi]
        certain = inside & (d > a)
        possible = inside | (d <= np.minimum(a, radius))
        nearest = np.full(n, np.inf)
        np.minimum.at(nearest, pi, np.where(inside, 0.0, d))
        order = np.lexsort((zi, pi))
        pi, zi, certain, possible = pi[order], zi[order], certain[order], possible[order]

        def csr(mask: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
            off = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(pi[mask], minlength=n), out=off[1:])
            return off, zone_ids[zi[mask]]

        c_off, c_ids = csr(certain)
        p_off, p_ids = csr(possible)
        return {
            "route": route,
            "corridor": corridor,
            "certain_off": c_off,
            "certain": c_ids,
            "possible_off": p_off,
            "possible": p_ids,
            "nearest": nearest,
        }

    return run


def timed(fn: Callable[..., Answers], args: tuple[Any, ...], runs: int) -> tuple[float, Answers]:
    times = []
    out: Answers = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def compare(a: Answers, b: Answers) -> dict[str, int]:
    """Number of fixes that differ, per output (distances: 1e-9 relative)."""
    n = a["route"].size

    def close(u: F64, v: F64) -> npt.NDArray[np.bool_]:
        return np.isclose(u, v, rtol=1e-9, atol=1e-9, equal_nan=True) | ((u == v) & np.isinf(u))

    out = {
        "route": int((~close(a["route"], b["route"])).sum()),
        "corridor": int((~close(a["corridor"], b["corridor"])).sum()),
        "nearest": int((~close(a["nearest"], b["nearest"])).sum()),
    }
    for key in ("certain", "possible"):
        ao, bo = a[f"{key}_off"], b[f"{key}_off"]
        counts_differ = np.diff(ao) != np.diff(bo)
        bad = int(counts_differ.sum())
        if ao[-1] == bo[-1] and bad == 0:
            bad = int(np.unique(np.searchsorted(ao, np.flatnonzero(a[key] != b[key]), side="right") - 1).size)
        out[key] = bad
    assert all(v <= n for v in out.values())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fixes", type=int, default=200_000)
    parser.add_argument("--routes", type=int, default=20_000)
    parser.add_argument("--small-zones", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--search-radius", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    neighbourhoods = seoul_neighbourhoods()
    box = np.array(shapely.total_bounds([z.geometry for z in neighbourhoods]))
    gen_proj = LocalProjection((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    zones = neighbourhoods + small_zones(rng, gen_proj, box, args.small_zones, first_id=1)
    routes, route_xy, vert_route = synthetic_routes(rng, gen_proj, box, args.routes)
    lon, lat, acc, route_ids = synthetic_fixes(rng, gen_proj, box, args.fixes, route_xy, vert_route)
    t_data = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = build_index(routes, zones, search_radius_m=args.search_radius)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = kernel_side(index)
    ours(lon[:10], lat[:10], acc[:10], route_ids[:10])  # JIT (or load the cache) outside the timing
    t_jit = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = shapely_side(routes, zones, index.projection, args.search_radius)
    t_tree = time.perf_counter() - t0

    fix_args = (lon, lat, acc, route_ids)
    t_ours, a = timed(ours, fix_args, args.runs)
    t_theirs, b = timed(theirs, fix_args, args.runs)
    diff = compare(a, b)
    identical = not any(diff.values())
    ours_rate, theirs_rate = args.fixes / t_ours, args.fixes / t_theirs

    print(
        f"data: {len(zones)} zones ({len(neighbourhoods)} Seoul neighbourhoods), {len(routes)} routes, "
        f"{args.fixes} fixes; generated in {t_data:.1f} s"
    )
    print(f"index: {index!r}")
    print(
        f"build: kernel index {t_build:.2f} s (+ jit/cache load {t_jit:.2f} s); "
        f"shapely STRtree {t_tree:.2f} s"
    )
    print(
        f"answers per fix: {a['possible'].size / args.fixes:.2f} possible zones, "
        f"{a['certain'].size / args.fixes:.2f} certain, {np.isfinite(a['route']).mean():.1%} with a route"
    )
    print(f"kernel : {ours_rate:12,.0f} fixes/s  (median of {args.runs}: {t_ours * 1e3:.1f} ms)")
    print(f"shapely: {theirs_rate:12,.0f} fixes/s  (median of {args.runs}: {t_theirs * 1e3:.1f} ms)")
    print(f"ratio  : {ours_rate / theirs_rate:.1f}x   identical: {identical}  mismatching fixes: {diff}")
    result = {
        "bench": "geofence",
        "fixes": args.fixes,
        "routes": len(routes),
        "zones": len(zones),
        "runs": args.runs,
        "kernel_fixes_per_s": round(ours_rate),
        "shapely_fixes_per_s": round(theirs_rate),
        "ratio": round(ours_rate / theirs_rate, 2),
        "identical": identical,
        "mismatches": diff,
        "build_s": round(t_build, 3),
    }
    print(json.dumps(result))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
