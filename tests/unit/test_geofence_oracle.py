"""The kernels agree with shapely (the oracle, run in the same projected metres).

certain  = contains_xy(zone) and distance(zone.boundary) > acc
possible = contains_xy(zone) or distance(zone.boundary) <= min(acc, R)
nearest  = min over zones of distance(zone) (0 inside), when <= R; else inf
depth    = per possible zone, clip(+-distance(zone.boundary), -min(acc, R), min(acc, R)) (+ inside)
route    = distance(route polyline)
crossed  = intersects(segment, zone) and not touches(segment, zone) (the segment from the previous
           fix meets the interior), and neither end certain (the previous one with prev_acc)

Points whose answer hinges on floating-point rounding (a boundary distance within 1e-7 m of 0, of acc
or of R, but not exactly 0; a segment passing within 1e-7 m of a boundary without meeting it, or
grazing it: within 1e-7 m of it over more than 0.1 mm) are left out of the exact comparison: there,
which side of the line a point is on is a matter of the last bit, for shapely as much as for the
kernels. Every comparison runs the three execution paths (one call, the big-batch passes, the
parallel passes), and the one call both compiled ahead of time and by numba's JIT, which must agree
bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker.geofence import GeofenceAnswers, GeofenceIndex, LocalProjection, RouteSpec, ZoneSpec, build_index
from tracker.geofence.index import zone_polygons

DATA = Path(__file__).resolve().parents[2] / "data" / "seoul"
TOL = 1e-7  # metres: closer than this to a decision threshold is "on the line"
SEOUL = LocalProjection(126.98, 37.56)


def to_metres(geom: shapely.Geometry, proj: LocalProjection) -> shapely.Geometry:
    return shapely.transform(geom, lambda c: np.column_stack(proj.to_xy(c[:, 0], c[:, 1])))


def to_lonlat(geom: shapely.Geometry, proj: LocalProjection) -> shapely.Geometry:
    return shapely.transform(geom, lambda c: np.column_stack(proj.to_lonlat(c[:, 0], c[:, 1])))


def check_every_way(
    index: GeofenceIndex, *args: np.ndarray, monkeypatch: pytest.MonkeyPatch | None = None, **kw: np.ndarray
) -> GeofenceAnswers:
    """index.check on the one-call path, the big-batch passes and the parallel passes: the same bits;
    the one call both as compiled ahead of time (when the module is built) and by numba's JIT."""
    from unittest import mock

    from tracker.geofence import index as index_module
    from tracker.geofence import kernels
    from tracker.geofence.kernels import compiled

    v = index.check(*args, parallel=False, **kw)
    others = [index.check(*args, parallel=True, **kw)]
    one_calls = [compiled.jit_entry_points()["check_batch_in_one_call"]]
    with contextlib.suppress(ImportError):  # tests/unit/test_geofence_compiled.py says when it is missing
        one_calls.append(compiled.ahead_of_time().check_batch_in_one_call)
    for one_call in one_calls:
        with mock.patch.object(kernels, "check_batch_in_one_call", one_call):
            others.append(index.check(*args, parallel=False, **kw))
    if monkeypatch is not None:
        with monkeypatch.context() as m:
            m.setattr(index_module, "_BIG_BATCH", 0)
            others.append(index.check(*args, parallel=False, **kw))
    for other in others:
        for f in dataclasses.fields(v):
            np.testing.assert_array_equal(getattr(other, f.name), getattr(v, f.name), err_msg=f.name)
    return v


def assert_agrees(
    index: GeofenceIndex,
    routes: Sequence[RouteSpec],
    zones: Sequence[ZoneSpec],
    lon: npt.NDArray[np.float64],
    lat: npt.NDArray[np.float64],
    acc: npt.NDArray[np.float64],
    route_ids: npt.NDArray[np.int64],
    prev: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64] | None]
    | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> int:
    """Compare index.check with shapely; returns how many fixes were compared exactly. ``prev``:
    (prev_lon, prev_lat, prev_acc or None) for the crossings."""
    proj = index.projection
    radius = index.search_radius_m
    slots = index.route_slots(route_ids)
    kw = {}
    if prev is not None:
        kw = {"prev_lon": prev[0], "prev_lat": prev[1]}
        if prev[2] is not None:
            kw["prev_acc"] = prev[2]
    v = check_every_way(index, lon, lat, acc, slots, monkeypatch=monkeypatch, **kw)
    x, y = proj.to_xy(lon, lat)
    pts = shapely.points(x, y)
    n = lon.size

    # routes
    route_geom = {r.route_id: to_metres(r.geometry, proj) for r in routes}
    expected_route = np.full(n, np.nan)
    expected_corridor = np.full(n, np.nan)
    corridor = {r.route_id: r.corridor_m for r in routes}
    for rid, geom in route_geom.items():
        sel = route_ids == rid
        expected_route[sel] = shapely.distance(geom, pts[sel])
        expected_corridor[sel] = corridor[rid]
    np.testing.assert_allclose(v.route_distance_m, expected_route, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(v.corridor_m, expected_corridor)

    # zones, in slot (= ascending id) order
    specs = sorted(zones, key=lambda z: z.zone_id)
    ids = np.array([z.zone_id for z in specs], dtype=np.int64)
    geoms = [to_metres(shapely.MultiPolygon(zone_polygons(z)), proj) for z in specs]
    m = len(geoms)
    inside = np.zeros((m, n), dtype=bool)
    d = np.empty((m, n))
    for j, g in enumerate(geoms):
        shapely.prepare(g)
        inside[j] = shapely.contains_xy(g, x, y)
        d[j] = shapely.distance(g.boundary, pts)
    acc_m = np.fmin(acc, radius)  # nan acc -> R
    certain = inside & (d > acc)
    possible = inside | (d <= acc_m)
    dist = np.where(inside, 0.0, d)
    nearest = np.where(dist <= radius, dist, np.inf).min(axis=0) if m else np.full(n, np.inf)
    # d == 0 exactly (a fix on a vertex) is well defined: possible, never certain
    near_threshold = (
        (d < TOL) | (np.abs(d - acc) < TOL) | (np.abs(d - acc_m) < TOL) | (np.abs(d - radius) < TOL)
    )
    ambiguous = (near_threshold & (d != 0.0)).any(axis=0)
    if prev is not None:
        crossed, unsure = expected_crossings(geoms, x, y, acc, certain, prev, proj)
        ambiguous |= unsure
    ok = ~ambiguous
    got_certain = [set(v.certain(i)) for i in range(n)]
    got_possible = [set(v.possible(i)) for i in range(n)]
    depth = np.clip(np.where(inside, d, -d), -acc_m, acc_m)
    slot_of = {int(z): j for j, z in enumerate(ids)}
    for i in np.flatnonzero(ok):
        assert got_certain[i] == set(ids[certain[:, i]].tolist()), (i, lon[i], lat[i], acc[i])
        assert got_possible[i] == set(ids[possible[:, i]].tolist()), (i, lon[i], lat[i], acc[i])
        got_depth = v.depths(i)
        assert list(got_depth) == list(v.possible(i))  # beside the ids, in their order
        for z, dep in got_depth.items():
            assert dep == pytest.approx(depth[slot_of[z], i], rel=1e-9, abs=1e-9), (i, z, acc[i])
    np.testing.assert_allclose(v.nearest_zone_m[ok], nearest[ok], rtol=1e-9, atol=1e-9)
    if prev is not None:
        for i in np.flatnonzero(ok):
            assert set(v.crossed(i)) == set(ids[crossed[:, i]].tolist()), (i, lon[i], lat[i], acc[i])
            assert list(v.crossed(i)) == sorted(v.crossed(i))
    else:
        assert v.crossed_zone_ids.size == 0
    return int(ok.sum())


def expected_crossings(
    geoms: list[shapely.Geometry],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    acc: npt.NDArray[np.float64],
    certain: npt.NDArray[np.bool_],
    prev: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64] | None],
    proj: LocalProjection,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(crossed [zones, fixes], ambiguous [fixes]) by shapely: the segment meets the interior
    (intersects and not touches; a zero-length one: the point in the interior) and neither end is
    certainly inside."""
    qx, qy = proj.to_xy(prev[0], prev[1])
    qa = np.zeros_like(qx) if prev[2] is None else prev[2]
    n = x.size
    has = np.isfinite(qx) & np.isfinite(qy)
    point = has & (qx == x) & (qy == y)
    segs = np.empty(n, dtype=object)
    segs[:] = None
    line = has & ~point
    segs[line] = shapely.linestrings(
        np.stack([np.column_stack([qx[line], qy[line]]), np.column_stack([x[line], y[line]])], axis=1)
    )
    segs[point] = shapely.points(x[point], y[point])
    q_pts = shapely.points(np.where(has, qx, 0.0), np.where(has, qy, 0.0))
    crossed = np.zeros((len(geoms), n), dtype=bool)
    unsure = np.zeros(n, dtype=bool)
    for j, g in enumerate(geoms):
        idx = np.flatnonzero(has)
        s = segs[idx]
        meets = shapely.intersects(g, s) & ~shapely.touches(s, g)
        dq = shapely.distance(g.boundary, q_pts[idx])
        q_certain = shapely.contains_xy(g, qx[idx], qy[idx]) & (dq > qa[idx])
        crossed[j, idx] = meets & ~certain[j, idx] & ~q_certain
        dseg = shapely.distance(g.boundary, s)
        # a previous fix exactly on the boundary (a vertex) is well defined, as this fix is: never
        # certain, whatever its acc; only a distance just off 0, or just at its acc, is rounding
        unsure[idx] |= (
            ((dseg > 0) & (dseg < TOL)) | ((dq > 0) & (dq < TOL)) | ((dq > 0) & (np.abs(dq - qa[idx]) < TOL))
        )
        # a segment that grazes the boundary (runs within TOL of it for longer than a crossing at a
        # fair angle would: nearly along an edge, through a vertex) is a matter of rounding too
        close = np.flatnonzero((dseg < TOL) & ~point[idx])
        if close.size:
            band = shapely.buffer(g.boundary, TOL, quad_segs=2)
            graze = shapely.length(shapely.intersection(s[close], band)) > 1000 * TOL
            unsure[idx[close]] |= graze
    return crossed, unsure


# ------------------------------------------------------------------------------------------------
# hypothesis: random star-shaped polygons with holes, multipolygons, multi-part routes


def star(
    rng: np.random.Generator, cx: float, cy: float, r_min: float, r_max: float, k: int
) -> list[tuple[float, float]]:
    """A simple polygon ring: k vertices at increasing angles around (cx, cy), radii in [r_min, r_max]."""
    ang = (np.arange(k) + rng.uniform(0.05, 0.95, k)) * (2 * np.pi / k)
    r = rng.uniform(r_min, r_max, ang.size)
    xs, ys = cx + r * np.cos(ang), cy + r * np.sin(ang)
    ring = list(zip(xs.tolist(), ys.tolist(), strict=True))
    return [*ring, ring[0]]


def random_polygon(rng: np.random.Generator, cx: float, cy: float, n_holes: int, k: int) -> shapely.Polygon:
    r_out = float(rng.uniform(40.0, 400.0))
    r_in = r_out * float(rng.uniform(0.3, 0.9))
    shell = star(rng, cx, cy, r_in, r_out, k)
    holes = []
    for h in range(n_holes):  # holes on opposite sides of the centre, inside the shell's inner disc
        hx = cx + (r_in / 2 if h == 0 else -r_in / 2)
        holes.append(star(rng, hx, cy, r_in * 0.1, r_in * 0.45, max(3, k // 2)))
    return shapely.Polygon(shell, holes)


def rectilinear_polygon(rng: np.random.Generator, cx: float, cy: float) -> shapely.Polygon:
    """An axis-parallel box with collinear extra vertices on its edges and a box hole: fixes can lie
    exactly on its edges (an edge's own latitude or longitude)."""
    w, h = rng.uniform(100, 600, 2)
    xs = np.sort(rng.uniform(cx - w / 2, cx + w / 2, 3))
    ys = np.sort(rng.uniform(cy - h / 2, cy + h / 2, 3))
    x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    shell = [(x0, y0), *((x, y0) for x in xs), (x1, y0), *((x1, y) for y in ys), (x1, y1), (x0, y1), (x0, y0)]
    hole = [
        (cx - w / 8, cy - h / 8),
        (cx - w / 8, cy + h / 8),
        (cx + w / 8, cy + h / 8),
        (cx + w / 8, cy - h / 8),
    ]
    return shapely.Polygon(shell, [hole] if rng.random() < 0.5 else [])


def on_axis_edges(rng: np.random.Generator, geoms: list[shapely.Geometry], n: int) -> np.ndarray:
    """n points exactly on axis-parallel edges (sharing the edge's y, or x, bit for bit)."""
    edges = []
    for g in geoms:
        for ring in shapely.get_rings(shapely.get_parts(g)):
            c = shapely.get_coordinates(ring)
            for a, b in itertools.pairwise(c):
                if a[0] == b[0] or a[1] == b[1]:
                    edges.append((a, b))
    if not edges:
        return np.empty((0, 2))
    out = np.empty((n, 2))
    for k in range(n):
        a, b = edges[int(rng.integers(0, len(edges)))]
        t = rng.random()
        out[k] = (a[0], a[1] + t * (b[1] - a[1])) if a[0] == b[0] else (a[0] + t * (b[0] - a[0]), a[1])
    return out


Scene = tuple[list[RouteSpec], list[ZoneSpec], dict[str, np.ndarray]]


def make_scene(seed: int, n_zones: int, max_parts: int, max_holes: int, max_k: int, noise: float) -> Scene:
    """Zones (star polygons with spikes and holes, rectilinear ones with collinear vertices,
    multipolygons, some overlapping), multi-part routes and fixes: uniform, near zone vertices
    (Gaussian ``noise`` metres), exactly on vertices and exactly on axis-parallel edges."""
    rng = np.random.default_rng(seed)
    zones_m = []
    for _ in range(n_zones):
        parts = [
            random_polygon(
                rng,
                float(rng.uniform(-1500, 1500)),
                float(rng.uniform(-1500, 1500)),
                int(rng.integers(0, max_holes + 1)),
                int(rng.integers(3, max_k + 1)),
            )
            if rng.random() < 0.75
            else rectilinear_polygon(rng, float(rng.uniform(-1500, 1500)), float(rng.uniform(-1500, 1500)))
            for _ in range(int(rng.integers(1, max_parts + 1)))
        ]
        zones_m.append(parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts))
    routes_m = []
    for _ in range(int(rng.integers(1, 4))):
        lines = [
            rng.uniform(-2000, 2000, 2) + np.cumsum(rng.normal(0, 150, (int(rng.integers(2, 30)), 2)), axis=0)
            for _ in range(int(rng.integers(1, 4)))
        ]
        routes_m.append(shapely.MultiLineString(lines) if len(lines) > 1 else shapely.LineString(lines[0]))
    verts = np.concatenate([shapely.get_coordinates(g) for g in zones_m])
    n_uniform, n_near, n_on = 300, 300, 20
    near = verts[rng.integers(0, len(verts), n_near)] + rng.normal(0, noise, (n_near, 2))
    on = verts[rng.integers(0, len(verts), n_on)]
    on_edges = on_axis_edges(rng, zones_m, n_on)
    xy = np.concatenate([rng.uniform(-2500, 2500, (n_uniform, 2)), near, on, on_edges])
    n = len(xy)
    acc = rng.uniform(0, 100, n)
    acc[rng.random(n) < 0.2] = 0.0
    acc[rng.random(n) < 0.05] = np.nan

    proj = LocalProjection(127.0, 37.55)
    routes = [
        RouteSpec(3 * i + 1, to_lonlat(g, proj), float(rng.uniform(10, 60))) for i, g in enumerate(routes_m)
    ]
    zones = [ZoneSpec(100 - 7 * i, to_lonlat(g, proj)) for i, g in enumerate(zones_m)]
    lon, lat = proj.to_lonlat(xy[:, 0], xy[:, 1])
    route_ids = rng.choice(np.array([r.route_id for r in routes] + [-1, 999]), n).astype(np.int64)
    # previous fixes: near (a few metres to a few hundred), far (across zones and cells), on a vertex,
    # the same point, none
    q = xy + rng.normal(0, 1, (n, 2)) * rng.choice([3.0, 30.0, 300.0], (n, 1))
    u = rng.random(n)
    q[u < 0.1] = rng.uniform(-2500, 2500, (int((u < 0.1).sum()), 2))
    on_vertex = (u >= 0.1) & (u < 0.15)
    q[on_vertex] = verts[rng.integers(0, len(verts), int(on_vertex.sum()))]
    q[(u >= 0.15) & (u < 0.2)] = xy[(u >= 0.15) & (u < 0.2)]
    q[u >= 0.95] = np.nan
    qlon, qlat = proj.to_lonlat(q[:, 0], q[:, 1])
    qacc = rng.uniform(0, 40, n)
    qacc[rng.random(n) < 0.3] = 0.0
    qacc[rng.random(n) < 0.05] = np.nan
    return routes, zones, {
        "lon": lon, "lat": lat, "acc": acc, "route_ids": route_ids, "qlon": qlon, "qlat": qlat, "qacc": qacc,
    }  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_zones=st.integers(1, 6),
    max_parts=st.integers(1, 3),
    max_holes=st.integers(0, 2),
    max_k=st.integers(3, 120),
    noise=st.sampled_from([0.5, 5.0, 50.0]),
    radius=st.sampled_from([0.0, 30.0, 150.0]),
)
def test_agrees_with_shapely_on_random_polygons(
    seed: int, n_zones: int, max_parts: int, max_holes: int, max_k: int, noise: float, radius: float
) -> None:
    routes, zones, fixes = make_scene(seed, n_zones, max_parts, max_holes, max_k, noise)
    index = build_index(routes, zones, search_radius_m=radius)
    prev_acc = fixes["qacc"] if seed % 2 else None  # given, or not (the previous fix as a point)
    compared = assert_agrees(
        index,
        routes,
        zones,
        fixes["lon"],
        fixes["lat"],
        fixes["acc"],
        fixes["route_ids"].astype(np.int64),
        prev=(fixes["qlon"], fixes["qlat"], prev_acc),
    )
    assert compared > 0.9 * fixes["lon"].size


@pytest.mark.parametrize("prev_acc", ["not given", "zero", "some metres"])
def test_previous_fixes_exactly_on_a_vertex_are_compared(prev_acc: str) -> None:
    """A previous fix exactly on a zone's vertex has d = 0: never certain, whatever its acc (index.py's
    semantics), so whether the segment from it crossed a zone has one right answer, shapely's. These
    fixes are compared, never left out as a matter of rounding."""
    routes, zones, fixes = make_scene(7, n_zones=4, max_parts=2, max_holes=1, max_k=40, noise=5.0)
    n = fixes["lon"].size
    rng = np.random.default_rng(7)
    vertices = np.concatenate([shapely.get_coordinates(z.geometry) for z in zones])  # lon/lat, as stored
    q = vertices[rng.integers(0, len(vertices), n)]
    qacc = {"not given": None, "zero": np.zeros(n), "some metres": rng.uniform(0, 40, n)}[prev_acc]
    index = build_index(routes, zones)
    compared = assert_agrees(
        index,
        routes,
        zones,
        fixes["lon"],
        fixes["lat"],
        fixes["acc"],
        fixes["route_ids"].astype(np.int64),
        prev=(q[:, 0], q[:, 1], qacc),
    )
    assert compared > 0.95 * n
    kw = {} if qacc is None else {"prev_acc": qacc}
    slots = index.route_slots(fixes["route_ids"])
    v = index.check(fixes["lon"], fixes["lat"], fixes["acc"], slots, prev_lon=q[:, 0], prev_lat=q[:, 1], **kw)
    assert v.crossed_zone_ids.size > 0  # some segments from a vertex do cross a zone


# ------------------------------------------------------------------------------------------------
# the real Seoul boundaries


def load_zones(name: str, id_key: str) -> list[ZoneSpec]:
    features = json.loads((DATA / f"{name}.geojson").read_text(encoding="utf-8"))["features"]
    return [ZoneSpec(int(f["properties"][id_key]), shapely.geometry.shape(f["geometry"])) for f in features]


@pytest.mark.parametrize("name, id_key", [("districts", "SIG_CD"), ("neighborhoods", "EMD_CD")])
def test_agrees_with_shapely_on_seoul(name: str, id_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    zones = load_zones(name, id_key)
    rng = np.random.default_rng(2024)
    # routes: some zone outlines as lines, and random multi-part walks
    routes = [
        RouteSpec(i, shapely.LineString(zone_polygons(z)[0].exterior.coords), 30.0)
        for i, z in enumerate(zones[:10])
    ]
    for i in range(20):
        start = rng.uniform([126.8, 37.45], [127.15, 37.68])
        parts = [start + np.cumsum(rng.normal(0, 0.002, (rng.integers(2, 40), 2)), axis=0) for _ in range(2)]
        routes.append(RouteSpec(1000 + i, shapely.MultiLineString(parts), 50.0))
    index = build_index(routes, zones, projection=SEOUL, search_radius_m=150.0)

    coords = np.concatenate([shapely.get_coordinates(g) for z in zones for g in zone_polygons(z)])
    x0, y0, x1, y1 = coords[:, 0].min(), coords[:, 1].min(), coords[:, 0].max(), coords[:, 1].max()
    n_uniform, n_near = 2000, 2000
    near = coords[rng.integers(0, len(coords), n_near)] + rng.normal(0, 0.0005, (n_near, 2))  # ~50 m
    lon = np.concatenate([rng.uniform(x0 - 0.01, x1 + 0.01, n_uniform), near[:, 0]])
    lat = np.concatenate([rng.uniform(y0 - 0.01, y1 + 0.01, n_uniform), near[:, 1]])
    acc = rng.uniform(0, 100, lon.size)
    acc[rng.random(lon.size) < 0.1] = 0.0
    route_ids = rng.choice(np.array([r.route_id for r in routes] + [-1]), lon.size).astype(np.int64)
    # previous fixes ~20 m away (a walk), some ~1 km away (a gap: across neighbourhoods)
    step = rng.normal(0, 0.0002, (lon.size, 2)) * np.where(rng.random(lon.size) < 0.1, 50.0, 1.0)[:, None]
    prev = (lon + step[:, 0], lat + step[:, 1], rng.uniform(0, 30, lon.size))
    compared = assert_agrees(
        index, routes, zones, lon, lat, acc, route_ids, prev=prev, monkeypatch=monkeypatch
    )
    assert compared > 0.99 * lon.size


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunk_size_does_not_change_answers(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks only prune work: tiny chunks give the same answers as the default."""
    from tracker.geofence import kernels

    zones = load_zones("districts", "SIG_CD")[:8]
    routes = [
        RouteSpec(i, shapely.LineString(zone_polygons(z)[0].exterior.coords), 30.0)
        for i, z in enumerate(zones)
    ]
    coords = np.concatenate([shapely.get_coordinates(z.geometry) for z in zones])
    rng = np.random.default_rng(chunk)
    pick = coords[rng.integers(0, len(coords), 3000)] + rng.normal(0, 0.001, (3000, 2))
    acc = rng.uniform(0, 120, 3000)
    slots = rng.integers(-1, len(routes), 3000)
    default = build_index(routes, zones, projection=SEOUL).check(pick[:, 0], pick[:, 1], acc, slots)
    monkeypatch.setattr(kernels, "CHUNK", chunk)
    small = build_index(routes, zones, projection=SEOUL).check(pick[:, 0], pick[:, 1], acc, slots)
    for field in ("certain_offsets", "certain_zone_ids", "possible_offsets", "possible_zone_ids"):
        np.testing.assert_array_equal(getattr(small, field), getattr(default, field))
    np.testing.assert_allclose(small.possible_depth_m, default.possible_depth_m, rtol=1e-12, atol=0)
    np.testing.assert_allclose(small.route_distance_m, default.route_distance_m, rtol=1e-12, atol=0)
    np.testing.assert_allclose(small.nearest_zone_m, default.nearest_zone_m, rtol=1e-12, atol=0)
