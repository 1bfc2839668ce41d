"""IndexHolder: hot swap under concurrent readers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import shapely

from tracker.geofence import GeofenceIndex, IndexHolder, LocalProjection, RouteSpec, ZoneSpec, build_index

PROJ = LocalProjection(127.0, 37.5)


def generation(k: int) -> GeofenceIndex:
    """Index k: zone 1000 + k over the test area, route 1 with corridor k + 1 — a reader can tell which
    index answered, and whether one batch's answers came from two indexes."""
    lon0, lat0 = PROJ.to_lonlat(np.array(-500.0), np.array(-500.0))
    lon1, lat1 = PROJ.to_lonlat(np.array(500.0), np.array(500.0))
    zone = ZoneSpec(1000 + k, shapely.box(float(lon0), float(lat0), float(lon1), float(lat1)))
    route = RouteSpec(1, shapely.LineString([(float(lon0), 37.5), (float(lon1), 37.5)]), float(k + 1))
    return build_index([route], [zone], projection=PROJ)


def test_swap_under_concurrent_readers() -> None:
    generations = [generation(k) for k in range(40)]
    holder = IndexHolder(generations[0])
    rng = np.random.default_rng(3)
    n = 2000
    lon, lat = PROJ.to_lonlat(rng.uniform(-400, 400, n), rng.uniform(-400, 400, n))
    acc = np.full(n, 5.0)
    route_ids = np.ones(n, dtype=np.int64)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[list[int]] = [[] for _ in range(3)]

    def reader(me: int) -> None:
        try:
            while not stop.is_set():
                index = holder.current  # one reference for the whole batch
                v = index.check(lon, lat, acc, index.route_slots(route_ids))
                k = int(index.zone_ids[0]) - 1000
                assert (v.corridor_m == k + 1).all()
                assert (v.possible_zone_ids == 1000 + k).all() and v.possible_zone_ids.size == n
                seen[me].append(index.version)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for index in generations[1:]:
            holder.swap(index)
            stop.wait(0.002)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    assert holder.current is generations[-1]
    for versions in seen:
        assert versions, "a reader never ran"
        assert versions == sorted(versions)  # never goes back to an older index
    assert len({v for versions in seen for v in versions}) > 1  # readers did see swaps


def test_stale_swap_refused_and_same_is_noop() -> None:
    old, new = generation(1), generation(2)
    holder = IndexHolder(new)
    with pytest.raises(ValueError, match="refusing"):
        holder.swap(old)
    assert holder.current is new
    holder.swap(new)
    assert holder.current is new
    with pytest.raises(TypeError):
        holder.swap("not an index")  # type: ignore[arg-type]
