"""Hot swap (issue 3, point 3): the registry view is built off the hot path and swapped in as one
object; a batch that took a view answers entirely from it, never from a half-built index.

The service keeps one reference, replaced in one assignment after ``build_view`` ran in a worker
thread; the pipeline reads it once per batch. The swap itself, through the service while batches run,
is tested in tests/integration/test_registry_hot_swap.py. These tests hold what makes it safe, on real
views (registry rows built by hand, no database): a view cannot change once built, a route slot
means something only in the view that resolved it, and a view comes built whole (kernels warmed,
refused geometry left out).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from tracker.geofence import LocalProjection
from tracker.registry_view import RegistryView, build_view
from tracker.store.registry_rows import ChildRow, RegistryRows, RouteRow, SchoolRow, ZoneRow

PROJ = LocalProjection(127.0, 37.5)


def _ll(x: float, y: float) -> list[float]:
    lon, lat = PROJ.to_lonlat(np.array(x), np.array(y))
    return [float(lon), float(lat)]


def _square(x0: float, y0: float, size: float) -> dict[str, object]:
    ring = [_ll(x0, y0), _ll(x0 + size, y0), _ll(x0 + size, y0 + size), _ll(x0, y0 + size), _ll(x0, y0)]
    return {"type": "Polygon", "coordinates": [ring]}


def _rows(*, zone_x: float, route_ids: tuple[int, ...] = (10,)) -> RegistryRows:
    """One school, routes along y = 0 (the child walks route 10), one 100 m zone at x = zone_x."""
    routes = {
        rid: RouteRow(
            rid,
            1,
            f"route {rid}",
            {"type": "LineString", "coordinates": [_ll(0, 0), _ll(2000, 0)]},
            30.0 + rid,  # a corridor per route, to tell them apart
            [],
        )
        for rid in route_ids
    }
    return RegistryRows(
        schools={1: SchoolRow(1, "school", "Asia/Seoul", *_ll(2000, 0))},
        routes=routes,
        zones={7: ZoneRow(7, "works", "construction", "critical", _square(zone_x, -50, 100))},
        children={100: ChildRow(100, 1, 10, "child")},
        tags={"tag-100": 100},
    )


def _build(rows: RegistryRows) -> RegistryView:
    return build_view(rows, default_timezone="Asia/Seoul", all_day=True)


# fixes along the route: x = 0, 50, ..., 1950 m, on the route's line
XS = np.arange(0.0, 2000.0, 50.0)
LON, LAT = PROJ.to_lonlat(XS, np.zeros_like(XS))
ACC = np.full(XS.size, 5.0)
CHILDREN = np.full(XS.size, 100, dtype=np.int64)


def _answers(view: RegistryView) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
    """What one batch sees: zones certainly holding each fix, and the corridor of the child's route."""
    v = view.index.check(LON, LAT, ACC, view.route_slots(CHILDREN))
    return tuple(v.certain(i) for i in range(len(v))), tuple(v.corridor_m.tolist())


def test_a_view_cannot_be_changed_in_place() -> None:
    view = _build(_rows(zone_x=300))
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.index = view.index  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        view.index.zone_ids[0] = 8
    with pytest.raises(ValueError, match="read-only"):
        view.index.route_corridor_m[0] = 1.0


def test_the_route_slot_belongs_to_its_view() -> None:
    """Slots are positions in one index: a route added with a smaller id moves route 10's slot, so a
    batch resolves its children's slots through the view it took, never through another one."""
    a = _build(_rows(zone_x=300))
    b = _build(_rows(zone_x=300, route_ids=(5, 10)))
    slot_a = a.route_slots(CHILDREN[:1])
    slot_b = b.route_slots(CHILDREN[:1])
    assert slot_a.tolist() == [0] and slot_b.tolist() == [1]
    assert a.index.route_corridor_m[slot_a[0]] == b.index.route_corridor_m[slot_b[0]] == 40.0
    assert b.index.route_corridor_m[slot_a[0]] == 35.0  # a's slot read in b's index: the wrong route


def test_build_view_warms_the_kernels_and_leaves_out_refused_geometry() -> None:
    rows = _rows(zone_x=300)
    line = {"type": "LineString", "coordinates": [_ll(0, 0), _ll(10, 0)]}  # not a polygon: refused
    bad = ZoneRow(8, "broken", "construction", "critical", line)
    empty = ZoneRow(9, "null by hand", "construction", "critical", {})  # load_registry's JSON null
    view = _build(dataclasses.replace(rows, zones={**rows.zones, 8: bad, 9: empty}))
    assert view.index.zone_ids.tolist() == [7]
    assert "zone 8" in view.refused and "zone 9" in view.refused
    t0 = time.perf_counter()
    _answers(view)  # compiled (or loaded) by build_view: no stall here
    assert time.perf_counter() - t0 < 1.0
