"""The registry as the pipeline sees it: tag -> child, child -> route slot and schedule, the geofence
index. Built off the hot path (in a worker thread) and swapped in as one object, so a batch that took
a view keeps it whole even while the next one is being built.

Built from the database's rows (``build_view``), or from a world document exported from it
(``view_from_world``: what ``tracker replay`` judges past fixes with, the same view the service had).

The children's lookups (child -> route slot and context) are arrays, not dicts (``ChildLookup``):
children of one school on one route share their context and slot, so a child is an id and the
number of its (school, route) group. A worker that owns only some children (a cluster's worker,
tracker.cluster.partitions) builds its view with ``owned``: the lookups, the routes in the index
and the schedules are then its children's alone (and so are the states the clock loads: those of
the view's children), while ``rows`` stays the whole registry (the API, the schools' pages and the
front stage read every child and tag).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely.errors
import shapely.geometry

from tracker.geofence import (
    GeofenceIndex,
    GeometryRefused,
    RouteSpec,
    ZoneSpec,
    build_index_from,
    prepare,
)
from tracker.importers.features import WorldFeatures
from tracker.importers.models import RouteProps, ZoneProps
from tracker.monitor import ChildContext, Hours, Place, RouteSchedule
from tracker.store.alert_rules import SCHOOL_FENCE_M, AlertRuleRows, ReaderRow, SchoolRules
from tracker.store.registry_rows import ChildRow, RegistryRows, RouteRow, SchoolRow, ZoneRow
from tracker.store.registry_tables import ChildTable, Ids, find_id, find_ids

log = logging.getLogger(__name__)
_versions = itertools.count(1)
I64 = npt.NDArray[np.int64]


class ChildLookup:
    """The view's children: ids ascending, each with the number of its group; a group (the children
    of one school on one route) has one route slot and one context."""

    __slots__ = ("contexts", "group", "ids", "slots")

    def __init__(
        self, ids: Ids, group: npt.NDArray[np.int32], slots: list[int], contexts: list[ChildContext]
    ):
        self.ids = ids
        self.group = group
        self.slots = np.array(slots, dtype=np.int32)
        self.contexts = contexts
        for a in (self.ids, self.group, self.slots):
            a.flags.writeable = False

    def position(self, child_id: object) -> int:
        return find_id(self.ids, child_id)

    def positions(self, child_ids: npt.ArrayLike) -> I64:
        return find_ids(self.ids, child_ids)

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.group.nbytes + self.slots.nbytes


class _ByChild(Mapping[int, Any]):
    """child id -> its group's slot or context (the view's ``route_slot_of_child`` and ``contexts``)."""

    __slots__ = ("_lookup", "_values")

    def __init__(self, lookup: ChildLookup, values: Any) -> None:
        self._lookup = lookup
        self._values = values

    def __getitem__(self, child_id: int) -> Any:
        i = self._lookup.position(child_id)
        if i < 0:
            raise KeyError(child_id)
        value = self._values[int(self._lookup.group[i])]
        return int(value) if isinstance(value, np.integer) else value

    def __contains__(self, child_id: object) -> bool:
        return self._lookup.position(child_id) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self._lookup.ids.tolist())

    def __len__(self) -> int:
        return int(self._lookup.ids.size)


@dataclass(frozen=True)
class RegistryView:
    rows: RegistryRows
    index: GeofenceIndex
    schedules: dict[int, RouteSchedule]  # route id -> schedule (the routes of the view's children)
    children: ChildLookup  # the view's children (all, or those the worker owns): route slot, context
    school_rules: dict[int, SchoolRules] = field(default_factory=dict)
    readers: dict[str, ReaderRow] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # "route 7" -> why its geometry was left out
    version: int = 0

    @property
    def route_slot_of_child(self) -> Mapping[int, int]:
        """child id -> route slot in the index (-1: none), for the view's children."""
        return _ByChild(self.children, self.children.slots)

    @property
    def contexts(self) -> Mapping[int, ChildContext]:
        """child id -> what the monitor needs, for the view's children."""
        return _ByChild(self.children, self.children.contexts)

    def context_of_child(self, child_id: int) -> ChildContext:
        i = self.children.position(child_id)
        return _NO_CONTEXT if i < 0 else self.children.contexts[int(self.children.group[i])]

    def contexts_of(self, child_ids: npt.ArrayLike) -> list[ChildContext]:
        """``context_of_child`` of each child, in one search for them all (a batch's fixes: one
        search per fix cost more than the monitor's rules)."""
        c = self.children
        pos = c.positions(child_ids)
        if not pos.size:
            return []
        groups = np.where(pos >= 0, c.group[np.maximum(pos, 0)], -1).tolist()
        contexts = c.contexts
        return [_NO_CONTEXT if g < 0 else contexts[g] for g in groups]

    def route_slots(self, child_ids: np.ndarray) -> np.ndarray:
        """The route slot of each child (-1: none, or not a child of this view)."""
        pos = self.children.positions(child_ids)
        slots = self.children.slots[self.children.group[np.maximum(pos, 0)]] if pos.size else pos
        return np.where(pos >= 0, slots, -1).astype(np.int32)

    @functools.cached_property
    def context_groups(self) -> list[tuple[ChildContext, Ids]]:
        """Each distinct context with its children's ids (ascending); worked out once per view."""
        c = self.children
        order = np.argsort(c.group, kind="stable")
        bounds = np.searchsorted(c.group[order], np.arange(len(c.contexts) + 1))
        return [(ctx, c.ids[order[bounds[g] : bounds[g + 1]]]) for g, ctx in enumerate(c.contexts)]


def _shape(geojson: dict[str, Any]) -> Any:
    """The shapely geometry of a GeoJSON geometry, as ``shapely.geometry.shape`` makes it. A route's
    (Multi)LineString is given to the same constructor with its coordinates as a float array: shape()
    passes them as lists, which shapely converts a coordinate at a time in Python (``float(c)`` for
    each), then makes the same array: 1.3 s of a city's build of 40,000 routes (py-spy of a starting
    tracker), the same doubles. Coordinates that make no (n, 2|3) float array go through shape()."""
    kind = geojson.get("type") if isinstance(geojson, dict) else None
    if kind in ("LineString", "MultiLineString"):
        try:
            coords = geojson["coordinates"]
            if kind == "LineString":
                return shapely.geometry.LineString(_coordinates(coords))
            return shapely.geometry.MultiLineString([_coordinates(part) for part in coords])
        except (ValueError, TypeError, KeyError):
            pass  # as shape() would refuse it (or make it), with its own words
    return shapely.geometry.shape(geojson)


def _coordinates(line: Any) -> npt.NDArray[np.float64]:
    xy = np.asarray(line, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] not in (2, 3) or xy.shape[0] < 2 or np.isnan(xy).any():
        raise ValueError("not a line's coordinates")  # (None becomes nan here, where float() refuses it)
    return xy


def _warm_up(index: GeofenceIndex) -> None:
    """Run the kernels once here, off the hot path: the first call JIT-compiles them (or loads them
    from numba's cache), which would otherwise stall the first batch of fixes for seconds."""
    p = index.projection
    slot = np.array([0 if len(index.route_ids) else -1], dtype=np.int32)
    index.check(np.array([p.lon0]), np.array([p.lat0]), np.array([10.0]), slot)


_NO_CONTEXT = ChildContext()


def _home(geometry: dict[str, Any], radius_m: float) -> Place | None:
    """A route starts at the child's home: its first point."""
    try:
        coords = geometry["coordinates"]
        first = coords[0][0] if geometry["type"] == "MultiLineString" else coords[0]
        return Place(float(first[0]), float(first[1]), radius_m)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def build_view(
    rows: RegistryRows,
    *,
    default_timezone: str,
    all_day: bool = False,
    rules: AlertRuleRows | None = None,
    home_fence_m: float = 50.0,
    owned: Callable[[Ids], npt.NDArray[np.bool_]] | None = None,
    take_geometry: bool = False,
) -> RegistryView:
    """Build a view from registry rows. A stored geometry the index refuses is left out and logged
    (the API refuses such geometry before it is stored; this guards against rows written by hand).

    ``owned``: which children this worker owns (child ids -> a mask, e.g. tracker.cluster.partitions'
    ``Share.owned_mask``); the view then holds those children and their routes alone. ``None``: all.

    ``take_geometry``: the rows are the caller's to give up (read anew for this view, as the service
    does): each route's and zone's geometry is let go from ``rows`` itself as soon as it is shaped
    (the row objects are changed in place) and the view keeps ``rows``. Otherwise
    ``rows`` is left alone and the view keeps a copy without the geometry. At 400,000 children the
    routes' GeoJSON text is 41 MiB, which a caller's rows held through the index's build: the start's
    peak (bench/worker_memory.py)."""
    if any(r.geometry is None for r in rows.routes.values()) or any(
        z.geometry is None for z in rows.zones.values()
    ):
        raise ValueError("build_view: these rows are a view's, without their geometry: read them anew")
    refused: dict[str, str] = {}
    ids, school_of, route_of = _children_arrays(rows.children)
    if owned is not None:
        mine = np.asarray(owned(ids), dtype=bool)
        ids, school_of, route_of = ids[mine], school_of[mine], route_of[mine]
        wanted = set(np.unique(route_of[route_of >= 0]).tolist())
        view_routes = [r for r in rows.routes.values() if r.id in wanted]
    else:
        view_routes = list(rows.routes.values())
    routes: list[RouteSpec] = []
    homes: dict[int, Place | None] = {}
    for r in view_routes:
        try:
            geojson = r.geojson
            homes[r.id] = _home(geojson, home_fence_m)
            routes.append(RouteSpec(r.id, _shape(geojson), r.corridor_m))
        except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError) as e:
            refused[f"route {r.id}"] = str(e)
        if take_geometry:  # (the route's text is garbage now: no other reference to it is left)
            _let_go(r)
    zones: list[ZoneSpec] = []
    for z in rows.zones.values():
        try:
            zones.append(ZoneSpec(z.id, _shape(z.geojson)))
        except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError) as e:
            refused[f"zone {z.id}"] = str(e)
        if take_geometry:
            _let_go(z)
    while True:
        try:
            prepared = prepare(routes, zones)  # (validated and flattened: refuses what build_index refuses)
            break
        except GeometryRefused as e:
            refused[f"{e.kind} {e.feature_id}"] = str(e)
            if e.kind == "route":
                routes = [r for r in routes if r.route_id != e.feature_id]
            else:
                zones = [z for z in zones if z.zone_id != e.feature_id]
    for what, why in refused.items():
        log.error("registry: %s left out of the geofence index: %s", what, why)
    # the specs and their shapely geometry let go once flattened, before the index is packed (at 40,000
    # routes their GEOS geometry is ~30 MiB, held through the packing it was the start's peak) and before
    # what the view keeps (contexts, places, rows) is made: made after, the kept objects fill the specs'
    # freed blocks where they would otherwise sit beside them in Python's small-object heap
    # (bench/worker_memory.py)
    del routes, zones
    index = build_index_from(prepared)
    del prepared
    _warm_up(index)

    rules = rules or AlertRuleRows({}, {}, {})
    school_rules = rules.schools
    schedules: dict[int, RouteSchedule] = {}
    # equal schedules are one object (a school's routes share its windows): a schedule remembers its
    # last answers, and the clock asks every child's at the same moment
    distinct: dict[RouteSchedule, RouteSchedule] = {}
    for r in view_routes:
        school = rows.schools.get(r.school_id)
        tz = school.timezone if school else default_timezone
        of_school = school_rules.get(r.school_id, SchoolRules())
        try:
            schedule = RouteSchedule.from_registry(
                tz,
                r.windows or of_school.windows,
                arrivals=rules.route_arrivals.get(r.id, []),
                closed_days=of_school.closed_days,
                always=all_day,
            )
            schedules[r.id] = distinct.setdefault(schedule, schedule)
        except (ValueError, KeyError) as e:
            refused[f"route {r.id} schedule"] = str(e)
            log.error("registry: route %s has an unusable schedule (never watched): %s", r.id, e)
            schedules[r.id] = RouteSchedule.from_registry(tz, [], always=False)
    hours: dict[int, Hours] = {}
    for zone_id, raw in rules.zone_hours.items():
        try:
            hours[zone_id] = Hours.from_registry(default_timezone, raw)
        except (ValueError, KeyError, TypeError) as e:
            refused[f"zone {zone_id} hours"] = str(e)
            log.error("registry: zone %s has unusable hours (always on): %s", zone_id, e)
    # children of one school on one route share their context (and their route slot): one object per
    # (school, route), not per child, which was most of the view's memory at city scale
    width = int(route_of.max(initial=-1)) + 2  # (school, route or -1) as one integer key (int64: the
    # ids may be int32, their product not)
    keys, group = np.unique(
        school_of.astype(np.int64) * width + (route_of.astype(np.int64) + 1), return_inverse=True
    )
    group_routes = keys % width - 1
    group_slots = index.route_slots(group_routes).tolist()
    slots: list[int] = []
    contexts: list[ChildContext] = []
    school_places: dict[int, Place | None] = {}  # one per school, not per group (the same value)
    for key, route, slot in zip(keys.tolist(), group_routes.tolist(), group_slots, strict=True):
        school_id = key // width
        route_id = route if route >= 0 else None
        if school_id not in school_places:
            s = rows.schools.get(school_id)
            fence = school_rules[school_id].fence_m if school_id in school_rules else SCHOOL_FENCE_M
            school_places[school_id] = Place(s.lon, s.lat, fence) if s is not None else None
        slots.append(slot if route_id is not None else -1)
        contexts.append(
            ChildContext(
                schedule=schedules.get(route_id) if route_id is not None else None,
                school=school_places[school_id],
                home=homes.get(route_id) if route_id is not None else None,
                zone_hours=hours,
                mode=route_row.mode if (route_row := rows.routes.get(route or -1)) is not None else "walk",
            )
        )
    lookup = ChildLookup(ids, group.reshape(-1).astype(np.int32), slots, contexts)
    return RegistryView(
        _without_geometry_in(rows) if take_geometry else _without_geometry(rows),
        index,
        schedules,
        lookup,
        school_rules,
        rules.readers,
        refused,
        next(_versions),
    )


def _let_go(row: RouteRow | ZoneRow) -> None:
    """The row itself loses its geometry (``build_view``'s ``take_geometry``: the rows are the caller's
    to give up). In place rather than a copy of each row: no 40,000 new rows made while the specs
    live, and rows in any mapping (not only a dict) can give theirs."""
    object.__setattr__(row, "geometry", None)  # (a frozen dataclass: set as its __init__ does)


def _without_geometry_in(rows: RegistryRows) -> RegistryRows:
    """``rows`` itself, made a view's: the geometry its routes and zones still hold (the routes of
    children a worker does not own) let go in place (``build_view``'s ``take_geometry``)."""
    for route in rows.routes.values():
        if route.geometry is not None:
            _let_go(route)
    for zone in rows.zones.values():
        if zone.geometry is not None:
            _let_go(zone)
    return rows


def _without_geometry(rows: RegistryRows) -> RegistryRows:
    """The rows a view keeps: the routes' and zones' geometry let go once the index holds them. At city
    scale the routes' GeoJSON text was the largest part of the rows (41 MiB of a worker's RSS at
    400,000 children and 40,000 routes, bench/worker_memory.py), and nothing reads it from a view:
    every view is built from rows read anew (``load_registry``, a world document), and the world the
    API exports is read from PostgreSQL. (``RouteRow.geojson`` says so if something asks.)"""
    return dataclasses.replace(
        rows,
        routes={i: dataclasses.replace(r, geometry=None) for i, r in rows.routes.items()},
        zones={i: dataclasses.replace(z, geometry=None) for i, z in rows.zones.items()},
    )


def _children_arrays(children: Mapping[int, ChildRow]) -> tuple[Ids, Ids, Ids]:
    """(child ids ascending, their schools, their routes or -1) from the registry's children."""
    if isinstance(children, ChildTable):
        return children.ids, children.school_ids, children.route_ids
    rows = sorted(children.values(), key=lambda c: c.id)
    return (
        np.array([c.id for c in rows], dtype=np.int64),
        np.array([c.school_id for c in rows], dtype=np.int64),
        np.array([-1 if c.route_id is None else c.route_id for c in rows], dtype=np.int64),
    )


def rows_from_world(world: WorldFeatures, *, default_timezone: str) -> tuple[RegistryRows, AlertRuleRows]:
    """The registry rows and alert rules a world document (``GET /api/v1/world``, read by
    ``tracker.importers.read_world``) stands for: what ``load_registry`` and ``load_alert_rules`` read
    from the database it was exported from, less the guardians, devices and RFID readers a world does
    not carry. A school that names no time zone is in ``default_timezone``; a zone switched off
    (``active: false``) is left out, as the database's reading leaves it."""
    schools = {
        s.id: SchoolRow(s.id, s.name, s.timezone or default_timezone, s.lon, s.lat) for s in world.schools
    }
    school_rules = {
        s.id: SchoolRules(
            closed_days=frozenset(s.closed_days),
            fence_m=s.fence_m if s.fence_m is not None else SCHOOL_FENCE_M,
            windows=[w.model_dump() for w in s.windows],
        )
        for s in world.schools
    }
    routes: dict[int, RouteRow] = {}
    arrivals: dict[int, list[dict[str, Any]]] = {}
    children: dict[int, ChildRow] = {}
    tags: dict[str, int] = {}
    for d in world.routes:
        assert d.id is not None and isinstance(d.props, RouteProps)  # read_world names every feature
        p = d.props
        school_id = p.school_id or 0
        routes[d.id] = RouteRow(
            d.id, school_id, p.name, d.geometry, p.corridor_m, [w.model_dump() for w in p.windows], p.mode
        )
        if p.arrivals:
            arrivals[d.id] = [a.model_dump() for a in p.arrivals]
        for c in world.children.get(d.id, []):
            children[c.id] = ChildRow(c.id, school_id, d.id, c.name or f"child {c.id}")
            if c.tag:
                tags[c.tag] = c.id
    for s in world.schools:
        for c in s.children:
            children.setdefault(c.id, ChildRow(c.id, s.id, None, c.name or f"child {c.id}"))
            if c.tag:
                tags.setdefault(c.tag, c.id)
    zones: dict[int, ZoneRow] = {}
    hours: dict[int, list[dict[str, Any]]] = {}
    for d in world.zones:
        assert d.id is not None and isinstance(d.props, ZoneProps)
        if not d.props.active:
            continue
        zones[d.id] = ZoneRow(d.id, d.props.name, d.props.kind, d.props.severity, d.geometry)
        if d.props.hours is not None:
            hours[d.id] = [w.model_dump() for w in d.props.hours]
    rows = RegistryRows(schools=schools, routes=routes, zones=zones, children=children, tags=tags)
    return rows, AlertRuleRows(school_rules, arrivals, hours)


def view_from_world(
    world: WorldFeatures, *, default_timezone: str, all_day: bool = False, home_fence_m: float = 50.0
) -> RegistryView:
    """The registry view the pipeline would build from the database a world document was exported
    from (see :func:`rows_from_world`): the same index, routes' schedules (windows, arrivals, school
    days, holidays), school and home fences and zone hours. ``tracker replay`` and the tests judge
    fixes with it."""
    rows, rules = rows_from_world(world, default_timezone=default_timezone)
    return build_view(
        rows, default_timezone=default_timezone, all_day=all_day, rules=rules, home_fence_m=home_fence_m
    )
