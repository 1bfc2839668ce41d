"""The registry's rows in arrays (tracker.store.registry_tables) read as the dicts they replace, and a
registry view built for the children a worker owns holds those children, their routes and nothing
of the others (tracker.registry_view's ``owned``)."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from tests.unit.test_registry_view_swap import _ll, _square
from tracker.geofence import GeofenceIndex
from tracker.geofence.index import _arrays
from tracker.registry_view import build_view
from tracker.store.registry_rows import ChildRow, GuardianRow, RegistryRows, RouteRow, SchoolRow, ZoneRow
from tracker.store.registry_tables import ChildTable, GuardianTable, LinkTable, TagTable, children_at


def _registry(
    n: int, seed: int = 5
) -> tuple[dict[int, ChildRow], dict[str, int], dict[int, GuardianRow], list[tuple[int, int]]]:
    rng = random.Random(seed)
    ids = rng.sample(range(1, 10 * n), n)
    children = {
        c: ChildRow(c, rng.randrange(1, 4), rng.choice([None, 1, 2, 3, 0]), f"Kid {c} 한") for c in ids
    }
    tags = {f"t{c}-{k}": c for c in ids for k in range(rng.randrange(0, 3))}
    guardians = {
        g: GuardianRow(
            g,
            f"G {g}",
            rng.choice([None, f"+8210{g:08d}"]),
            rng.choice(["ko", "en"]),
            tuple(rng.sample(["websocket", "sms", "push"], rng.randrange(0, 3))),
        )
        for g in range(1, n + 1)
    }
    links = [(c, g) for c in ids for g in rng.sample(range(1, n + 1), rng.randrange(0, min(n, 2) + 1))]
    return children, tags, guardians, links


@pytest.mark.parametrize("n", [0, 1, 300])
def test_the_tables_answer_as_the_dicts(n: int) -> None:
    children, tags, guardians, links = _registry(n)
    ct = ChildTable(
        list(children),
        [r.school_id for r in children.values()],
        [r.route_id for r in children.values()],
        [r.name for r in children.values()],
    )
    tt = TagTable(tags.items())
    gt = GuardianTable([(g.id, g.name, g.phone, g.language, list(g.channels)) for g in guardians.values()])
    by_child: dict[int, tuple[int, ...]] = {}
    for c, g in links:
        by_child[c] = (*by_child.get(c, ()), g)
    lt = LinkTable(links)
    for table, d in ((ct, children), (tt, tags), (gt, guardians), (lt, by_child)):
        assert table == d and len(table) == len(d) and set(table) == set(d)
        assert dict(table.items()) == d
    for key in [*children, -1, 0, 2**70, "1", None, 1.0, True]:
        assert ct.get(key) == children.get(key)  # type: ignore[call-overload]
        assert (key in ct) == (key in children)
        assert lt.get(key, ()) == by_child.get(key, ())  # type: ignore[call-overload]
    for tag in [*tags, "", "nope", "t1-0\0", "x" * 100, 5]:
        assert tt.get(tag) == tags.get(tag) and (tag in tt) == (tag in tags)  # type: ignore[call-overload]
    asked = [*tags, "", "nope", "x" * 100]
    assert tt.children_of(asked).tolist() == [tags.get(t, -1) for t in asked]
    with pytest.raises(KeyError):
        ct[-5]
    with pytest.raises(KeyError):
        tt["nope"]
    assert list(ct) == sorted(children)


@pytest.mark.parametrize("n", [0, 1, 300])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_tables_made_of_parts_read_a_chunk_at_a_time_answer_as_the_dicts(n: int, chunk: int) -> None:
    """load_registry reads the per-child tables a chunk at a time (ids ascending, but a table made of
    parts sorts what is not)."""
    children, tags, guardians, links = _registry(n)

    def chunks(rows: list[tuple[object, ...]]) -> list[list[tuple[object, ...]]]:
        return [rows[i : i + chunk] for i in range(0, len(rows), chunk)]

    for ordered in (True, False):
        kids = sorted(children.values(), key=lambda r: r.id if ordered else -r.id)
        ct = ChildTable.from_parts(
            [ChildTable.part(c) for c in chunks([(r.id, r.school_id, r.route_id, r.name) for r in kids])]
        )
        grows = sorted(guardians.values(), key=lambda g: g.id if ordered else -g.id)
        gt = GuardianTable.from_parts(
            [
                GuardianTable.part(c)
                for c in chunks([(g.id, g.name, g.phone, g.language, list(g.channels)) for g in grows])
            ]
        )
        lt = LinkTable.from_parts([LinkTable.part(c) for c in chunks(list(links))])
        tag_rows = sorted(tags.items(), reverse=not ordered)
        tt = TagTable.from_parts([TagTable.part(c) for c in chunks(tag_rows)])  # type: ignore[arg-type]
        whole = TagTable(tags.items())  # the same arrays as the table made at once
        assert tt._tags.dtype == whole._tags.dtype and tt._tags.tolist() == whole._tags.tolist()
        assert tt._child.dtype == whole._child.dtype and tt._child.tolist() == whole._child.tolist()
        assert tt == tags and tt.children_of([*tags, "nope"]).tolist() == [*tags.values(), -1]
        by_child: dict[int, tuple[int, ...]] = {}
        for c, g in links:
            by_child[c] = (*by_child.get(c, ()), g)
        for table, d in ((ct, children), (gt, guardians), (lt, by_child)):
            assert table == d and len(table) == len(d) and list(table) == sorted(d)
        assert np.array_equal(ct.ids, sorted(children))


def _rows() -> RegistryRows:
    """Three routes, children on each (and some on none), at one school."""
    routes = {
        rid: RouteRow(
            rid,
            1,
            f"route {rid}",
            {"type": "LineString", "coordinates": [_ll(0, 100 * rid), _ll(2000, 100 * rid)]},
            30.0,
            [],
            "walk" if rid != 2 else "bicycle",
        )
        for rid in (1, 2, 3)
    }
    children = {c: ChildRow(c, 1, None if c % 7 == 0 else 1 + c % 3, f"kid {c}") for c in range(1, 61)}
    return RegistryRows(
        schools={1: SchoolRow(1, "school", "Asia/Seoul", *_ll(2000, 0))},
        routes=routes,
        children=children,
        tags={f"tag-{c}": c for c in children},
    )


def test_a_view_built_for_owned_children_holds_them_and_their_routes_alone() -> None:
    rows = _rows()
    whole = build_view(rows, default_timezone="Asia/Seoul", all_day=True)
    owned = build_view(
        rows, default_timezone="Asia/Seoul", all_day=True, owned=lambda ids: np.isin(ids % 3, [0, 1])
    )
    mine = [c for c in rows.children if c % 3 in (0, 1)]
    assert sorted(owned.contexts) == mine and sorted(whole.contexts) == sorted(rows.children)
    # children c % 3 == 0 or 1 walk routes 1 and 2 (route 1 + c % 3): route 3 is left out
    assert owned.index.route_ids.tolist() == [1, 2] and whole.index.route_ids.tolist() == [1, 2, 3]
    assert set(owned.schedules) == {1, 2}
    ids = np.array(sorted(rows.children))
    slots_whole, slots_owned = whole.route_slots(ids), owned.route_slots(ids)
    for c, sw, so in zip(ids.tolist(), slots_whole.tolist(), slots_owned.tolist(), strict=True):
        route = rows.children[c].route_id
        if c % 3 == 2:
            assert so == -1 and owned.context_of_child(c) == owned.context_of_child(-1)
            continue
        assert (route is None) == (so == -1) == (sw == -1)
        if route is not None:
            assert owned.index.route_ids[so] == whole.index.route_ids[sw] == route
        assert owned.context_of_child(c) == whole.context_of_child(c)
        assert owned.contexts[c].mode == ("bicycle" if route == 2 else "walk")
    # the API and the front stage read the whole registry; the routes' and zones' geometry is let go
    # (the index holds it: at city scale the routes' GeoJSON text was the rows' largest part)
    assert owned.rows.children is rows.children and owned.rows.tags is rows.tags
    assert owned.rows.routes.keys() == rows.routes.keys() == whole.rows.routes.keys()
    for r in (*owned.rows.routes.values(), *whole.rows.routes.values()):
        assert r.geometry is None and r == dataclasses.replace(rows.routes[r.id], geometry=None)
        with pytest.raises(ValueError, match="not kept"):
            r.geojson  # noqa: B018
    assert rows.routes[1].geometry is not None  # the rows the view was built from are left alone
    with pytest.raises(ValueError, match="read them anew"):  # not a view of no routes
        build_view(whole.rows, default_timezone="Asia/Seoul")


@pytest.mark.parametrize("owned", [None, lambda ids: np.isin(ids % 3, [0, 1])])
def test_a_view_that_takes_the_rows_geometry_is_the_view_of_a_copy(owned: object) -> None:
    """``take_geometry`` (the service's own rows): each route's and zone's geometry let go from the rows
    themselves as it is shaped, and the view keeps those rows; otherwise the same view."""
    kept, given = (
        dataclasses.replace(_rows(), zones={9: ZoneRow(9, "pond", "water", "high", _square(400, 250, 100))})
        for _ in range(2)
    )
    a = build_view(kept, default_timezone="Asia/Seoul", all_day=True, owned=owned)  # type: ignore[arg-type]
    b = build_view(given, default_timezone="Asia/Seoul", all_day=True, owned=owned, take_geometry=True)  # type: ignore[arg-type]
    assert b.rows is given and a.rows is not kept and kept.routes[1].geometry is not None
    assert all(r.geometry is None for r in (*given.routes.values(), *given.zones.values()))
    assert a.rows == b.rows
    assert a.index.route_ids.tolist() == b.index.route_ids.tolist() and b.index.zone_ids.tolist() == [9]
    for x, y in zip(_index_arrays(a.index), _index_arrays(b.index), strict=True):
        assert np.array_equal(x, y)
    assert np.array_equal(a.children.slots, b.children.slots) and a.children.contexts == b.children.contexts
    with pytest.raises(ValueError, match="read them anew"):  # they are a view's rows now
        build_view(given, default_timezone="Asia/Seoul", take_geometry=True)


def _index_arrays(ix: GeofenceIndex) -> list[np.ndarray]:
    return _arrays(ix._routes, ix._zones, ix._grid)


def test_the_children_of_schools_are_found_in_the_arrays_as_in_the_rows() -> None:
    children, _, _, _ = _registry(300)
    table = ChildTable(
        list(children),
        [r.school_id for r in children.values()],
        [r.route_id for r in children.values()],
        [r.name for r in children.values()],
    )
    for schools in ({1}, {2, 3}, set(), {9}):
        assert children_at(table, schools) == children_at(children, schools)
        assert children_at(children, schools) == {
            c: r.school_id for c, r in children.items() if r.school_id in schools
        }


# ids as a table holds them: int32 while every id of the table fits, int64 as soon as one does not
# (an id beyond int32 is never wrapped: it is found, and so is the id it would wrap to, apart)
INT32_MAX = 2**31 - 1


@pytest.mark.parametrize(
    ("ids", "held_as"),
    [
        ([1, 2, 3], np.int32),
        ([1, INT32_MAX], np.int32),
        ([-(2**31), 5], np.int32),
        ([1, INT32_MAX + 1], np.int64),  # would wrap to -2**31
        ([-(2**31) - 1, 7], np.int64),
        ([2**32 + 1, 1], np.int64),  # would wrap to 1, the other child's id
        ([2**40, 3], np.int64),
    ],
)
def test_ids_are_int32_where_they_fit_and_int64_where_one_does_not(ids: list[int], held_as: type) -> None:
    children = {c: ChildRow(c, c % 3, c % 5 or None, f"kid {c}") for c in ids}
    table = ChildTable.from_parts(
        [ChildTable.part([(r.id, r.school_id, r.route_id, r.name) for r in children.values()])]
    )
    by_child = {c: (c + 1,) for c in ids}
    links = LinkTable((c, g) for c, (g,) in by_child.items())
    tags = TagTable((f"t{c}", c) for c in ids)
    assert table.ids.dtype == held_as and links._ids.dtype == held_as
    assert table == children and links == by_child and dict(tags.items()) == {f"t{c}": c for c in ids}
    asked = [*ids, 0, -1, INT32_MAX, INT32_MAX + 1, -(2**31), -(2**31) - 1, 2**32 + 1, 2**40, 2**63 - 1]
    for key in asked:
        assert table.get(key) == children.get(key) and links.get(key) == by_child.get(key)
    expected = [sorted(ids).index(k) if k in ids else -1 for k in asked]
    assert table.positions(asked).tolist() == expected
    view = build_view(RegistryRows(children=table), default_timezone="Asia/Seoul", all_day=True)
    assert view.children.positions(asked).tolist() == expected
    assert [view.children.position(k) for k in asked] == expected
    assert sorted(view.contexts) == sorted(ids)


# a route's geometry as build_view makes it (its coordinates as a float array) is the geometry shapely's
# shape() makes, bit for bit; what shape() refuses, build_view refuses with shape()'s words
SHAPES = [
    {"type": "LineString", "coordinates": [[126.9780123456789, 37.566535], [126.98, 37.57]]},
    {"type": "LineString", "coordinates": [[1, 2], [3.5, 4], [True, 0.1 + 0.2]]},  # ints, a bool
    {"type": "LineString", "coordinates": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]},
    {"type": "LineString", "coordinates": [["1.5", "2"], ["3", "4e-3"]]},  # numbers as strings
    {"type": "LineString", "coordinates": [[2**53 + 1, 5], [1e-310, -0.0]]},
    {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3], [4, 5]]]},
    {"type": "MultiLineString", "coordinates": []},
    {"type": "LineString", "coordinates": []},
    {"type": "LineString", "coordinates": [[1.0, 2.0]]},  # one point
    {"type": "LineString", "coordinates": [[1.0, 2.0], [3.0, 4.0, 5.0]]},  # ragged
    {"type": "LineString", "coordinates": [[1.0, 2.0], [3.0, None]]},
    {"type": "LineString", "coordinates": [1.0, 2.0, 3.0]},  # flat
    {"type": "LineString", "coordinates": [[1.0, 2.0], ["a", 4.0]]},
    {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2]]]},
    {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], []]},
    {"type": "LineString"},
    {"type": "Point", "coordinates": [1.0, 2.0]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
]


@pytest.mark.parametrize("geojson", SHAPES)
def test_a_route_geometry_is_the_one_shape_makes(geojson: dict[str, object]) -> None:
    import shapely
    import shapely.geometry

    from tracker.registry_view import _shape

    def made(f: object) -> tuple[str, object]:
        try:
            g = f(geojson)  # type: ignore[operator]
        except Exception as e:  # (the error is the answer to compare)
            return "refused", (type(e), str(e))
        xyz = shapely.get_coordinates(g, include_z=True)
        return g.wkb_hex, (g.geom_type, g.has_z, xyz.shape, xyz.tobytes())

    assert made(_shape) == made(shapely.geometry.shape)
