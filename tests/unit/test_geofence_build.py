"""The index's build with fewer temporaries (tracker.geofence.build): a line is its own part where
shapely's get_parts gives a copy, and an index built in two steps (``prepare``, then
``build_index_from``, the specs let go in between) is the index ``build_index`` builds."""

from __future__ import annotations

import random

import numpy as np
import pytest
import shapely

from tracker.geofence import GeometryRefused, RouteSpec, ZoneSpec, build_index, build_index_from, prepare
from tracker.geofence.build import _line_parts
from tracker.geofence.index import GeofenceIndex, _arrays


def _line(rng: random.Random, n: int) -> shapely.LineString:
    return shapely.LineString([(127 + rng.random() / 10, 37.5 + rng.random() / 10) for _ in range(n)])


def _geometries(rng: random.Random) -> list[shapely.Geometry]:
    out: list[shapely.Geometry] = []
    for _ in range(rng.randrange(0, 12)):
        kind = rng.random()
        if kind < 0.5:
            out.append(_line(rng, rng.randrange(2, 6)))
        elif kind < 0.6:
            out.append(shapely.LinearRing([(127, 37.5), (127.01, 37.5), (127.01, 37.51)]))
        elif kind < 0.7:
            out.append(shapely.MultiLineString([]))
        else:
            out.append(
                shapely.MultiLineString([_line(rng, rng.randrange(2, 5)) for _ in range(rng.randrange(1, 4))])
            )
    return out


@pytest.mark.parametrize("seed", range(40))
def test_the_parts_of_lines_are_get_parts(seed: int) -> None:
    found = _geometries(random.Random(seed))
    geoms = np.empty(len(found), dtype=object)
    geoms[:] = found
    parts, of = _line_parts(geoms)
    want, want_of = shapely.get_parts(geoms, return_index=True)
    assert of.dtype == want_of.dtype and of.tolist() == want_of.tolist()
    assert [p.geom_type for p in parts] == [p.geom_type for p in want]
    for p, w in zip(parts, want, strict=True):
        assert np.array_equal(shapely.get_coordinates(p), shapely.get_coordinates(w))


def _index_arrays(ix: GeofenceIndex) -> list[np.ndarray]:
    return [ix.route_ids, ix.zone_ids, *_arrays(ix._routes, ix._zones, ix._grid)]


@pytest.mark.parametrize("seed", range(10))
def test_an_index_built_in_two_steps_is_the_same_index(seed: int) -> None:
    rng = random.Random(seed)
    lines = [g for g in _geometries(rng) if not g.is_empty]
    routes = [RouteSpec(i * 3 + 1, g, 20.0 + i) for i, g in enumerate(lines)]
    zones = [
        ZoneSpec(z, shapely.Point(127 + rng.random() / 10, 37.5 + rng.random() / 10).buffer(0.002))
        for z in range(rng.randrange(0, 4))
    ]
    a, b = build_index(routes, zones), build_index_from(prepare(routes, zones))
    assert a.projection == b.projection
    for x, y in zip(_index_arrays(a), _index_arrays(b), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def test_a_vertex_out_of_range_in_a_later_part_names_its_route() -> None:
    ok = shapely.LineString([(127, 37.5), (127.01, 37.5)])
    bad = shapely.MultiLineString([[(127, 37.5), (127.01, 37.5)], [(127, 37.5), (190, 37.6)]])
    with pytest.raises(
        GeometryRefused, match=r"route 8 refused: coordinates out of range: lon \S*190\.0\S*, lat \S*37\.6"
    ):
        build_index([RouteSpec(7, ok, 30.0), RouteSpec(8, bad, 30.0), RouteSpec(9, ok, 30.0)], [])
