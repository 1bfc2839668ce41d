"""Scenario tables for the geofence semantics (see tracker/geofence/index.py's docstring).

Geometry is written in metres east/north of a fixed origin and turned into lon/lat with the same
projection the index uses; a fix on an edge reuses the edge's own longitude or latitude, so it lies
exactly on it (d == 0) after projection.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import shapely

from tracker.geofence import (
    GeofenceAnswers,
    GeofenceIndex,
    GeometryRefused,
    LocalProjection,
    RouteSpec,
    ZoneSpec,
    build_index,
)

PROJ = LocalProjection(127.0, 37.5)
RADIUS = 50.0
NAN = math.nan
INF = math.inf


def ll(x: float, y: float) -> tuple[float, float]:
    lon, lat = PROJ.to_lonlat(np.array(x), np.array(y))
    return float(lon), float(lat)


def box(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [ll(x0, y0), ll(x1, y0), ll(x1, y1), ll(x0, y1), ll(x0, y0)]


# zone 10: plain square; zone 20: square with a 40 m hole; zone 30: two squares 200 m apart
ZONES = [
    ZoneSpec(10, shapely.Polygon(box(0, 0, 100, 100))),
    ZoneSpec(20, shapely.Polygon(box(300, 0, 400, 100), [box(330, 30, 370, 70)])),
    ZoneSpec(
        30,
        shapely.MultiPolygon(
            [shapely.Polygon(box(600, 0, 700, 100)), shapely.Polygon(box(900, 0, 1000, 100))]
        ),
    ),
]
# route 5: two parts that must not be joined; route 6: a plain line
ROUTES = [
    RouteSpec(
        5, shapely.MultiLineString([[ll(0, -200), ll(100, -200)], [ll(600, -200), ll(600, -300)]]), 25.0
    ),
    RouteSpec(6, shapely.LineString([ll(0, 500), ll(1000, 500)]), 40.0),
]


@pytest.fixture(scope="module")
def index() -> GeofenceIndex:
    return build_index(ROUTES, ZONES, projection=PROJ, search_radius_m=RADIUS)


def check_one(
    index: GeofenceIndex, lon: float, lat: float, acc: float, route_id: int = -1
) -> GeofenceAnswers:
    v = index.check(
        np.array([lon]), np.array([lat]), np.array([acc]), index.route_slots(np.array([route_id]))
    )
    assert len(v) == 1
    return v


ZONE_CASES = [
    # name, (x, y), acc, certain, possible, nearest
    ("square centre", (50, 50), 5.0, (10,), (10,), 0.0),
    ("square centre, acc 0", (50, 50), 0.0, (10,), (10,), 0.0),
    ("square centre, acc bigger than the edge distance", (50, 50), 60.0, (), (10,), 0.0),
    ("inside near edge, acc < d", (3, 50), 2.0, (10,), (10,), 0.0),
    ("inside near edge, acc > d", (3, 50), 5.0, (), (10,), 0.0),
    ("outside near edge, acc > d", (-3, 50), 5.0, (), (10,), 3.0),
    ("outside near edge, acc < d", (-3, 50), 2.0, (), (), 3.0),
    ("outside, 30 m off, acc 0", (130, 50), 0.0, (), (), 30.0),
    ("outside, 30 m off, acc 40", (130, 50), 40.0, (), (10,), 30.0),
    ("outside, acc beyond the search radius is capped", (-60, 50), 100.0, (), (), INF),
    ("far away", (5000, 5000), 10.0, (), (), INF),
    ("in the hole", (350, 50), 5.0, (), (), 20.0),
    ("in the hole, acc reaches the hole's edge", (350, 50), 25.0, (), (20,), 20.0),
    ("in the ring around the hole", (310, 50), 5.0, (20,), (20,), 0.0),
    ("in the ring, acc reaches the hole", (320, 50), 15.0, (), (20,), 0.0),
    ("multipolygon first part", (650, 50), 5.0, (30,), (30,), 0.0),
    ("multipolygon second part", (950, 50), 5.0, (30,), (30,), 0.0),
    ("between the multipolygon's parts", (800, 50), 5.0, (), (), INF),
    ("between the parts, near the second", (880, 50), 25.0, (), (30,), 20.0),
    ("unknown accuracy (nan): never certain", (50, 50), NAN, (), (10,), 0.0),
    ("negative accuracy is unknown too", (-3, 50), -1.0, (), (10,), 3.0),
]


@pytest.mark.parametrize(
    "xy, acc, certain, possible, nearest", [c[1:] for c in ZONE_CASES], ids=[c[0] for c in ZONE_CASES]
)
def test_zone_scenarios(
    index: GeofenceIndex,
    xy: tuple[float, float],
    acc: float,
    certain: tuple[int, ...],
    possible: tuple[int, ...],
    nearest: float,
) -> None:
    v = check_one(index, *ll(*xy), acc)
    assert v.certain(0) == certain
    assert v.possible(0) == possible
    assert v.nearest_zone_m[0] == pytest.approx(nearest, rel=1e-9, abs=1e-9)


# Points exactly on a boundary: the longitude (or latitude) is the edge's own value.
EDGE_LON = ll(0, 0)[0]  # west edge of zone 10 (and its south-west vertex)
EDGE_LAT = ll(0, 0)[1]  # south edge of zone 10
HOLE_LON = ll(330, 0)[0]  # west edge of zone 20's hole
MID_LAT = ll(0, 50)[1]
MID_LON = ll(50, 0)[0]
ON_BOUNDARY = [
    ("west edge", (EDGE_LON, MID_LAT), (10,)),
    ("south edge", (MID_LON, EDGE_LAT), (10,)),
    ("south-west vertex", (EDGE_LON, EDGE_LAT), (10,)),
    ("hole edge", (HOLE_LON, MID_LAT), (20,)),
]


@pytest.mark.parametrize("acc", [0.0, 5.0])
@pytest.mark.parametrize("lonlat, possible", [c[1:] for c in ON_BOUNDARY], ids=[c[0] for c in ON_BOUNDARY])
def test_on_boundary_is_possible_never_certain(
    index: GeofenceIndex, lonlat: tuple[float, float], possible: tuple[int, ...], acc: float
) -> None:
    v = check_one(index, *lonlat, acc)
    assert v.certain(0) == ()
    assert v.possible(0) == possible
    assert v.nearest_zone_m[0] == 0.0


ROUTE_CASES = [
    # name, (x, y), route id, distance, corridor
    ("beside the first part", (50, -190), 5, 10.0, 25.0),
    ("on the first part", (50, -200), 5, 0.0, 25.0),
    ("beyond the second part's end", (600, -310), 5, 10.0, 25.0),
    ("beside the second part", (610, -250), 5, 10.0, 25.0),
    ("the gap between parts is not a segment", (350, -200), 5, 250.0, 25.0),
    ("a plain line", (500, 530), 6, 30.0, 40.0),
    ("unknown route id", (50, -190), 99, NAN, NAN),
    ("no route (-1)", (50, -190), -1, NAN, NAN),
]


@pytest.mark.parametrize(
    "xy, route_id, distance, corridor", [c[1:] for c in ROUTE_CASES], ids=[c[0] for c in ROUTE_CASES]
)
def test_route_scenarios(
    index: GeofenceIndex, xy: tuple[float, float], route_id: int, distance: float, corridor: float
) -> None:
    v = check_one(index, *ll(*xy), 5.0, route_id)
    if math.isnan(distance):
        assert math.isnan(v.route_distance_m[0]) and math.isnan(v.corridor_m[0])
    else:
        assert v.route_distance_m[0] == pytest.approx(distance, rel=1e-9, abs=1e-6)
        assert v.corridor_m[0] == corridor


def test_slot_out_of_range_is_nan(index: GeofenceIndex) -> None:
    lon, lat = ll(50, -190)
    v = index.check(np.full(3, lon), np.full(3, lat), np.zeros(3), np.array([0, 2, -7]))
    assert not math.isnan(v.route_distance_m[0])
    assert np.isnan(v.route_distance_m[1:]).all() and np.isnan(v.corridor_m[1:]).all()


def test_route_slots(index: GeofenceIndex) -> None:
    assert index.route_ids.tolist() == [5, 6] and index.zone_ids.tolist() == [10, 20, 30]
    slots = index.route_slots(np.array([6, 5, 7, -1, -5, 2**40]))
    assert slots.dtype == np.int32
    assert slots.tolist() == [1, 0, -1, -1, -1, -1]
    assert index.route_slot(6) == 1 and index.route_slot(123) == -1


def test_batch_shapes_and_csr(index: GeofenceIndex) -> None:
    xs = [(50, 50), (5000, 5000), (950, 50), (350, 50), (-3, 50)]
    lon, lat = PROJ.to_lonlat(np.array([p[0] for p in xs], float), np.array([p[1] for p in xs], float))
    v = index.check(lon, lat, np.full(5, 5.0), np.array([0, 1, -1, 0, 1]))
    assert len(v) == 5
    assert v.certain_offsets.dtype == np.int64 and v.certain_offsets.shape == (6,)
    assert v.possible_offsets.dtype == np.int64 and v.possible_offsets.shape == (6,)
    assert v.certain_zone_ids.dtype == np.int64 and v.possible_zone_ids.dtype == np.int64
    assert [v.certain(i) for i in range(5)] == [(10,), (), (30,), (), ()]
    assert [v.possible(i) for i in range(5)] == [(10,), (), (30,), (), (10,)]
    assert v.route_distance_m.dtype == np.float64 and v.nearest_zone_m.dtype == np.float64


def test_overlapping_zones_both_reported() -> None:
    zones = [
        ZoneSpec(2, shapely.Polygon(box(0, 0, 100, 100))),
        ZoneSpec(1, shapely.Polygon(box(50, 0, 150, 100))),
    ]
    idx = build_index([], zones, projection=PROJ)
    v = check_one(idx, *ll(75, 50), 5.0)
    assert v.certain(0) == (1, 2) and v.possible(0) == (1, 2)


def test_empty_batch_and_empty_index(index: GeofenceIndex) -> None:
    v = index.check(np.array([]), np.array([]), np.array([]), np.array([], dtype=np.int32))
    assert len(v) == 0 and v.certain_offsets.tolist() == [0] and v.possible_offsets.tolist() == [0]
    empty = build_index([], [])
    v = check_one(empty, 127.0, 37.5, 5.0, 3)
    assert v.possible(0) == () and v.nearest_zone_m[0] == INF and math.isnan(v.route_distance_m[0])


def test_non_finite_fix(index: GeofenceIndex) -> None:
    v = index.check(np.array([NAN, 127.0]), np.array([37.5, np.inf]), np.zeros(2), np.array([0, 0]))
    assert np.isnan(v.route_distance_m).all()
    assert v.possible(0) == () and v.possible(1) == ()
    assert (v.nearest_zone_m == INF).all()


def test_mismatched_lengths_refused(index: GeofenceIndex) -> None:
    with pytest.raises(ValueError, match="one length"):
        index.check(np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2, dtype=np.int32))


def test_index_is_immutable_and_versioned(index: GeofenceIndex) -> None:
    with pytest.raises(ValueError):
        index.zone_ids[0] = 99
    a = build_index(ROUTES, ZONES, projection=PROJ)
    b = build_index(ROUTES, ZONES, projection=PROJ)
    assert index.version < a.version < b.version


def test_default_projection_is_bbox_centre() -> None:
    idx = build_index(ROUTES, ZONES)
    lon0 = 0.5 * (ll(0, 0)[0] + ll(1000, 0)[0])
    lat0 = 0.5 * (ll(0, -300)[1] + ll(0, 500)[1])
    assert idx.projection.lon0 == pytest.approx(lon0, abs=1e-12)
    assert idx.projection.lat0 == pytest.approx(lat0, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# invalid geometry


def test_bow_tie_is_repaired() -> None:
    # a bow-tie: two triangles meeting at (50, 50)
    bow = shapely.Polygon([ll(0, 0), ll(100, 100), ll(100, 0), ll(0, 100), ll(0, 0)])
    assert not bow.is_valid
    idx = build_index([], [ZoneSpec(4, bow)], projection=PROJ, search_radius_m=RADIUS)
    assert check_one(idx, *ll(10, 50), 1.0).certain(0) == (4,)  # in the left triangle
    assert check_one(idx, *ll(90, 50), 1.0).certain(0) == (4,)  # in the right triangle
    v = check_one(idx, *ll(50, 90), 1.0)  # between the triangles' tips, outside both
    assert v.possible(0) == () and v.nearest_zone_m[0] == pytest.approx(40 / math.sqrt(2), rel=1e-9)


def test_overlapping_multipolygon_is_unioned() -> None:
    over = shapely.MultiPolygon([shapely.Polygon(box(0, 0, 100, 100)), shapely.Polygon(box(50, 0, 150, 100))])
    assert not over.is_valid
    idx = build_index([], [ZoneSpec(8, over)], projection=PROJ)
    # the overlap stays inside (make_valid's "structure" method), the internal edges are gone
    v = check_one(idx, *ll(75, 50), 20.0)
    assert v.certain(0) == (8,)


REFUSED = [
    ("empty polygon", lambda: build_index([], [ZoneSpec(41, shapely.Polygon())]), 41, "empty"),
    ("empty multipolygon", lambda: build_index([], [ZoneSpec(42, shapely.MultiPolygon())]), 42, "empty"),
    (
        "a LineString as a zone",
        lambda: build_index([], [ZoneSpec(43, shapely.LineString(box(0, 0, 1, 1)))]),
        43,
        "wrong geometry type",
    ),
    ("None as a zone", lambda: build_index([], [ZoneSpec(44, None)]), 44, "wrong geometry type"),
    (
        "latitude 95",
        lambda: build_index(
            [], [ZoneSpec(45, shapely.Polygon([(127, 37), (127.1, 37), (127.1, 95), (127, 37)]))]
        ),
        45,
        "out of range",
    ),
    (
        "longitude 190 in a route",
        lambda: build_index([RouteSpec(46, shapely.LineString([(127, 37), (190, 37)]), 30.0)], []),
        46,
        "out of range",
    ),
    (
        "nan coordinate",
        lambda: build_index([RouteSpec(47, shapely.LineString([(127, 37), (127, math.nan)]), 30.0)], []),
        47,
        "not finite",
    ),
    (
        "collapsed polygon (not repairable)",
        lambda: build_index(
            [], [ZoneSpec(48, shapely.Polygon([(127, 37), (127.25, 37.25), (127.5, 37.5), (127, 37)]))]
        ),
        48,
        "not repairable",
    ),
    (
        "a Polygon as a route",
        lambda: build_index([RouteSpec(49, shapely.Polygon(box(0, 0, 1, 1)), 30.0)], []),
        49,
        "wrong geometry type",
    ),
    (
        "route of identical points",
        lambda: build_index([RouteSpec(50, shapely.LineString([(127, 37), (127, 37)]), 30.0)], []),
        50,
        "too few points",
    ),
    ("empty route", lambda: build_index([RouteSpec(51, shapely.LineString(), 30.0)], []), 51, "empty"),
    (
        "zero corridor",
        lambda: build_index([RouteSpec(52, shapely.LineString([(127, 37), (127.1, 37)]), 0.0)], []),
        52,
        "corridor_m",
    ),
    (
        "duplicate zone id",
        lambda: build_index([], [ZoneSpec(53, shapely.Polygon(box(0, 0, 1, 1)))] * 2),
        53,
        "duplicate",
    ),
    (
        "negative route id",
        lambda: build_index([RouteSpec(-54, shapely.LineString([(127, 37), (127.1, 37)]), 10.0)], []),
        -54,
        "route id",
    ),
]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("build, feature_id, why", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused(build: object, feature_id: int, why: str) -> None:
    assert callable(build)
    with pytest.raises(GeometryRefused, match=why) as info:
        build()
    assert info.value.feature_id == feature_id
    assert str(feature_id) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_refused_names_the_feature_among_good_ones() -> None:
    good = ZoneSpec(1, shapely.Polygon(box(0, 0, 100, 100)))
    with pytest.raises(GeometryRefused, match=r"zone 2 refused: wrong geometry type LineString") as info:
        build_index([], [good, ZoneSpec(2, shapely.LineString([(127, 37), (127.1, 37)]))])
    assert info.value.feature_id == 2 and info.value.kind == "zone"


def test_bad_search_radius() -> None:
    with pytest.raises(ValueError):
        build_index([], [], search_radius_m=-1.0)


# ------------------------------------------------------------------------------------------------
# crossings between fixes (the segment from the previous fix)


def check_segment(
    index: GeofenceIndex,
    prev: tuple[float, float] | None,
    cur: tuple[float, float],
    acc: float,
    prev_acc: float | None = None,
    *,
    parallel: bool = False,
) -> GeofenceAnswers:
    qlon, qlat = ll(*prev) if prev is not None else (NAN, NAN)
    lon, lat = ll(*cur)
    extra = {} if prev_acc is None else {"prev_acc": np.array([prev_acc])}
    return index.check(
        np.array([lon]),
        np.array([lat]),
        np.array([acc]),
        np.array([-1]),
        prev_lon=np.array([qlon]),
        prev_lat=np.array([qlat]),
        parallel=parallel,
        **extra,
    )


CROSS_CASES = [
    # name, previous (x, y), current (x, y), acc, prev_acc (None: not given), crossed
    ("through the square", (-50, 50), (150, 50), 5.0, None, (10,)),
    ("along the bottom edge (boundary only)", (-50, 0), (150, 0), 5.0, None, ()),
    ("into a corner from outside", (-50, -50), (0, 0), 5.0, None, ()),
    ("in low, just above the bottom edge", (-50, 0), (50, 0.5), 5.0, None, (10,)),
    ("ends inside, not certainly (acc > distance to the edge)", (-50, 50), (3, 50), 5.0, None, (10,)),
    ("ends certainly inside: that is 'certain', not a crossing", (-50, 50), (50, 50), 5.0, None, ()),
    ("starts inside (a point, prev_acc not given)", (50, 50), (150, 50), 5.0, None, ()),
    ("starts inside, but with a large prev_acc", (97, 50), (150, 50), 5.0, 10.0, (10,)),
    ("starts inside, prev_acc unknown (nan)", (50, 50), (150, 50), 5.0, NAN, (10,)),
    ("no previous fix (nan)", None, (50, 50), 70.0, None, ()),
    ("within the hole only", (340, 50), (360, 50), 1.0, None, ()),
    ("from outside into the hole, through the ring", (250, 50), (350, 50), 1.0, None, (20,)),
    ("across both parts of a multipolygon", (550, 50), (1050, 50), 5.0, None, (30,)),
    ("through the gap between the parts", (800, -50), (800, 150), 5.0, None, ()),
    ("long: through every zone", (-100, 50), (1100, 50), 5.0, None, (10, 20, 30)),
    ("a point (no move) inside, not certainly: the previous point is", (3, 50), (3, 50), 5.0, None, ()),
    ("a point inside, the previous accuracy unknown", (3, 50), (3, 50), 5.0, NAN, (10,)),
    ("far from everything", (5000, 5000), (5100, 5000), 5.0, None, ()),
    ("from far outside the grid into a zone", (-100000, 50), (50, 50), 70.0, None, (10,)),
]


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize(
    "prev, cur, acc, prev_acc, crossed", [c[1:] for c in CROSS_CASES], ids=[c[0] for c in CROSS_CASES]
)
def test_crossing_scenarios(
    index: GeofenceIndex,
    prev: tuple[float, float] | None,
    cur: tuple[float, float],
    acc: float,
    prev_acc: float | None,
    crossed: tuple[int, ...],
    parallel: bool,
) -> None:
    v = check_segment(index, prev, cur, acc, prev_acc, parallel=parallel)
    assert v.crossed(0) == crossed
    assert v.crossed_offsets.tolist() == [0, len(crossed)]


def test_no_previous_fixes_no_crossings(index: GeofenceIndex) -> None:
    lon, lat = PROJ.to_lonlat(np.array([-50.0, 150.0]), np.array([50.0, 50.0]))
    v = index.check(lon, lat, np.full(2, 5.0), np.array([-1, -1]))
    assert v.crossed_offsets.tolist() == [0, 0, 0] and v.crossed_zone_ids.size == 0
    assert v.crossed(1) == ()


def test_previous_fix_arguments_are_checked(index: GeofenceIndex) -> None:
    one = np.zeros(1)
    with pytest.raises(ValueError, match="together"):
        index.check(one, one, one, np.array([-1]), prev_lon=one)
    with pytest.raises(ValueError, match="prev_acc without"):
        index.check(one, one, one, np.array([-1]), prev_acc=one)
    with pytest.raises(ValueError, match="length 1"):
        index.check(one, one, one, np.array([-1]), prev_lon=np.zeros(2), prev_lat=np.zeros(2))


# ------------------------------------------------------------------------------------------------
# the execution paths give the same answers


def _random_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-200, 1200, n)
    y = rng.uniform(-400, 600, n)
    lon, lat = PROJ.to_lonlat(x, y)
    qlon, qlat = PROJ.to_lonlat(x + rng.normal(0, 60, n), y + rng.normal(0, 60, n))
    qlon[rng.random(n) < 0.1] = NAN
    acc = rng.uniform(0, 80, n)
    acc[rng.random(n) < 0.05] = NAN
    return {"lon": lon, "lat": lat, "acc": acc, "slot": rng.integers(-1, 3, n), "qlon": qlon, "qlat": qlat}


def _all_fields(v: GeofenceAnswers) -> list[np.ndarray]:
    return [getattr(v, f.name) for f in dataclasses.fields(v)]


def test_serial_big_batch_and_parallel_paths_agree(
    index: GeofenceIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracker.geofence import index as index_module

    b = _random_batch(5000, 3)
    args = (b["lon"], b["lat"], b["acc"], b["slot"])
    prev = {"prev_lon": b["qlon"], "prev_lat": b["qlat"]}
    small = index.check(*args, parallel=False, **prev)
    assert small.crossed_zone_ids.size > 0 and small.certain_zone_ids.size > 0
    parallel = index.check(*args, parallel=True, **prev)
    monkeypatch.setattr(index_module, "_BIG_BATCH", 0)
    big = index.check(*args, parallel=False, **prev)
    for a, p, g in zip(_all_fields(small), _all_fields(parallel), _all_fields(big), strict=True):
        np.testing.assert_array_equal(a, p)
        np.testing.assert_array_equal(a, g)
    np.testing.assert_array_equal(index.check(*args).possible_zone_ids, small.possible_zone_ids)


def test_accuracy_beyond_the_exact_range_scans_the_whole_boundary() -> None:
    """The cell index lists edges up to max(search radius, 100 m) away; a fix whose accuracy radius is
    larger is decided by a scan of the zone's whole boundary."""
    big = ZoneSpec(1, shapely.Polygon(box(-1000, -1000, 1000, 1000)))
    idx = build_index([], [big], projection=PROJ, search_radius_m=50.0)
    assert check_one(idx, *ll(0, 0), 900.0).certain(0) == (1,)  # 1000 m from every edge
    assert check_one(idx, *ll(0, 0), 1000.5).certain(0) == ()
    assert check_one(idx, *ll(700, 0), 250.0).certain(0) == (1,)  # 300 m from the east edge
    assert check_one(idx, *ll(700, 0), 300.5).certain(0) == ()
    assert check_one(idx, *ll(700, 0), 300.5).possible(0) == (1,)


@pytest.mark.parametrize("distance", [5.0, 39.0, 41.0, 99.0, 149.0, 151.0])
def test_nearest_zone_near_and_far(distance: float) -> None:
    """Distances up to the search radius are exact whether the edge is kept in the cell's record (up
    to 40 m from the cell) or in the far list."""
    zone = ZoneSpec(3, shapely.Polygon(box(0, 0, 100, 100)))
    idx = build_index([], [zone], projection=PROJ, search_radius_m=150.0)
    v = check_one(idx, *ll(100 + distance, 50), 1.0)
    expected = distance if distance <= 150.0 else INF
    assert v.nearest_zone_m[0] == pytest.approx(expected, rel=1e-9)
    v = check_one(idx, *ll(100 + distance, 50), distance + 0.5)  # accuracy reaches it: possible
    assert v.possible(0) == ((3,) if distance <= 150.0 else ())


def test_index_memory_is_reported(index: GeofenceIndex) -> None:
    assert index.nbytes > 0
    assert f"{index.nbytes / 2**20:.0f} MiB" in repr(index)
