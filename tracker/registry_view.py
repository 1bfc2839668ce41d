"""The registry as the pipeline sees it: tag -> child, child -> route slot and schedule, the geofence
index. Built off the hot path (in a worker thread) and swapped in as one object, so a batch that took
a view keeps it whole even while the next one is being built.

Built from the database's rows (``build_view``), or from a world document exported from it
(``view_from_world``: what ``tracker replay`` judges past fixes with, the same view the service had).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely.errors
import shapely.geometry

from tracker.geofence import GeofenceIndex, GeometryRefused, RouteSpec, ZoneSpec, build_index
from tracker.importers.features import WorldFeatures
from tracker.importers.models import RouteProps, ZoneProps
from tracker.monitor import ChildContext, Hours, Place, RouteSchedule
from tracker.store.alert_rules import SCHOOL_FENCE_M, AlertRuleRows, ReaderRow, SchoolRules
from tracker.store.registry_rows import ChildRow, RegistryRows, RouteRow, SchoolRow, ZoneRow

log = logging.getLogger(__name__)
_versions = itertools.count(1)


@dataclass(frozen=True)
class RegistryView:
    rows: RegistryRows
    index: GeofenceIndex
    schedules: dict[int, RouteSchedule]  # route id -> schedule
    route_slot_of_child: dict[int, int]  # child id -> route slot in the index (-1: none)
    contexts: dict[int, ChildContext] = field(default_factory=dict)  # child id -> what the monitor needs
    school_rules: dict[int, SchoolRules] = field(default_factory=dict)
    readers: dict[str, ReaderRow] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # "route 7" -> why its geometry was left out
    version: int = 0

    def context_of_child(self, child_id: int) -> ChildContext:
        return self.contexts.get(child_id) or _NO_CONTEXT

    def route_slots(self, child_ids: np.ndarray) -> np.ndarray:
        get = self.route_slot_of_child.get
        return np.fromiter((get(int(c), -1) for c in child_ids), dtype=np.int32, count=len(child_ids))


def _shape(geojson: dict[str, Any]) -> Any:
    return shapely.geometry.shape(geojson)


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
) -> RegistryView:
    """Build a view from registry rows. A stored geometry the index refuses is left out and logged
    (the API refuses such geometry before it is stored; this guards against rows written by hand)."""
    refused: dict[str, str] = {}
    routes: list[RouteSpec] = []
    homes: dict[int, Place | None] = {}
    for r in rows.routes.values():
        try:
            geojson = r.geojson
            homes[r.id] = _home(geojson, home_fence_m)
            routes.append(RouteSpec(r.id, _shape(geojson), r.corridor_m))
        except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError) as e:
            refused[f"route {r.id}"] = str(e)
    zones: list[ZoneSpec] = []
    for z in rows.zones.values():
        try:
            zones.append(ZoneSpec(z.id, _shape(z.geometry)))
        except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError) as e:
            refused[f"zone {z.id}"] = str(e)
    while True:
        try:
            index = build_index(routes, zones)
            break
        except GeometryRefused as e:
            refused[f"{e.kind} {e.feature_id}"] = str(e)
            if e.kind == "route":
                routes = [r for r in routes if r.route_id != e.feature_id]
            else:
                zones = [z for z in zones if z.zone_id != e.feature_id]
    for what, why in refused.items():
        log.error("registry: %s left out of the geofence index: %s", what, why)
    _warm_up(index)

    rules = rules or AlertRuleRows({}, {}, {})
    school_rules = rules.schools
    schedules: dict[int, RouteSchedule] = {}
    # equal schedules are one object (a school's routes share its windows): a schedule remembers its
    # last answers, and the clock asks every child's at the same moment
    distinct: dict[RouteSchedule, RouteSchedule] = {}
    for r in rows.routes.values():
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
    slots: dict[int, int] = {}
    contexts: dict[int, ChildContext] = {}
    # children of one school on one route share their context (and their route slot): one object per
    # (school, route), not per child, which is most of the view's memory at city scale
    shared: dict[tuple[int, int | None], tuple[int, ChildContext]] = {}
    for c in rows.children.values():
        key = (c.school_id, c.route_id)
        if key not in shared:
            s = rows.schools.get(c.school_id)
            fence = school_rules[c.school_id].fence_m if c.school_id in school_rules else SCHOOL_FENCE_M
            shared[key] = (
                index.route_slot(c.route_id) if c.route_id is not None else -1,
                ChildContext(
                    schedule=schedules.get(c.route_id) if c.route_id is not None else None,
                    school=Place(s.lon, s.lat, fence) if s is not None else None,
                    home=homes.get(c.route_id) if c.route_id is not None else None,
                    zone_hours=hours,
                    mode=route.mode if (route := rows.routes.get(c.route_id or -1)) is not None else "walk",
                ),
            )
        slots[c.id], contexts[c.id] = shared[key]
    return RegistryView(
        rows, index, schedules, slots, contexts, school_rules, rules.readers, refused, next(_versions)
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
