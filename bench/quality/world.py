"""The bench's world: the demo city's generator (tracker.demo.city) run in memory, as world.v1.

``tracker.demo.city`` builds its city into PostgreSQL; the bench needs no database, so it calls the
same geometry functions (``_route``, ``_zones``, ``_Frame``, ``_neighbourhoods``) and writes a world.v1
FeatureCollection (``schemas/world.v1.json``) itself. The demo's four schools come first; more
schools, on other Seoul neighbourhoods picked with the world's own seed, make the city bigger (a
zone that comes too near another school's route is left out).
Each school gets six L-shaped routes of 400-1100 m (corridors 30 or 40 m) and the demo's danger
zones: a construction site, a two-parcel rebuilding site (a multipolygon), a pond bank whose water
is a hole, and an arterial road, all clear of the corridors by at least 25 m.

The afternoon world (``reverse=True``) is the same world whose routes are walked from the school to
home: each route points at a stand-in school at its home end (the simulator walks a route towards
its school). Route ids, geometry, zones, children and the projection are unchanged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, mapping, shape

from simulator import LocalProjection
from tracker.demo import city

WORLD_SEED = 7
"""the world does not change with the run's --seed: runs with different seeds compare"""
ROUTES_PER_SCHOOL = 6
CLEARANCE_M = 25.0
"""every zone is at least this far from every corridor (the demo's rule, city-wide)"""
STAND_IN_SCHOOL_BASE = 1_000_000
"""the afternoon world's stand-in schools (one at each route's home end) have ids above this"""


@dataclass(frozen=True)
class CitySpec:
    """The geometry of the bench's city in lon/lat, before children are put on it."""

    schools: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    zones: list[dict[str, Any]]

    @property
    def route_ids(self) -> list[int]:
        return [r["properties"]["id"] for r in self.routes]


def build_city(schools: int, *, seed: int = WORLD_SEED) -> CitySpec:
    """``schools`` schools (the demo's four first), their routes and danger zones, as features."""
    rng = random.Random(seed)
    areas = city._neighbourhoods()
    codes = [code for code, _ in city.SCHOOLS]
    names = dict(city.SCHOOLS)
    others = sorted(c for c, a in areas.items() if c not in names and a.area > 5e-5)  # not a sliver
    for code in random.Random(seed).sample(others, max(0, min(schools - len(codes), len(others)))):
        codes.append(code)
        names[code] = f"School {len(codes)} ({code})"
    school_features: list[dict[str, Any]] = []
    route_features: list[dict[str, Any]] = []
    zone_features: list[dict[str, Any]] = []
    for s_no, code in enumerate(codes[:schools], start=1):
        area = areas[code]
        site = area.representative_point()
        frame = city._Frame(site.x, site.y)
        area_xy = frame.geom_to_xy(area)
        school_features.append(_feature(mapping(site), kind="school", id=s_no, name=names[code]))
        lines = [
            (city._route(rng, area_xy), rng.choice((30.0, 30.0, 40.0))) for _ in range(ROUTES_PER_SCHOOL)
        ]
        for r_no, (line, corridor) in enumerate(lines, start=1):
            route_features.append(
                _feature(
                    mapping(frame.geom_to_lonlat(line)),
                    kind="route",
                    id=100 * s_no + r_no,
                    school_id=s_no,
                    name=f"Route {r_no}",
                    corridor_m=corridor,
                )
            )
        for z_no, (zone_name, zone_kind, geom) in enumerate(city._zones(rng, lines), start=1):
            zone_features.append(
                _feature(
                    mapping(frame.geom_to_lonlat(geom)),
                    kind="zone",
                    id=100 * s_no + z_no,
                    name=zone_name,
                    zone_kind=zone_kind,
                    severity="critical",
                )
            )
    return CitySpec(school_features, route_features, _clear_of_every_route(zone_features, route_features))


def _clear_of_every_route(zones: list[dict[str, Any]], routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The zones clear of every corridor by CLEARANCE_M. The demo's generator keeps a school's zones
    clear of that school's routes only; in a bigger city a neighbour's arterial road may cross a
    route, and a child walking its route every day across a danger zone is a registry mistake, not
    an incident the bench could score."""
    if not zones:
        return zones
    c = shapely.union_all([shape(r["geometry"]) for r in routes]).centroid
    proj = LocalProjection(c.x, c.y)

    def metres(geometry: dict[str, Any]) -> Any:
        return shapely.transform(
            shape(geometry), lambda xy: np.column_stack(proj.to_xy_arrays(xy[:, 0], xy[:, 1]))
        )

    lines = [(metres(r["geometry"]), r["properties"]["corridor_m"]) for r in routes]
    return [
        z
        for z in zones
        if all(
            shapely.distance(metres(z["geometry"]), line) >= corridor + CLEARANCE_M
            for line, corridor in lines
        )
    ]


def world_doc(
    spec: CitySpec, children: list[list[dict[str, Any]]], *, reverse: bool = False
) -> dict[str, Any]:
    """world.v1 with ``children[k]`` on the k-th route. ``reverse``: routes walked school -> home."""
    schools = list(spec.schools)
    routes: list[dict[str, Any]] = []
    for k, route in enumerate(spec.routes):
        props = dict(route["properties"], children=children[k])
        if reverse:
            home = LineString(route["geometry"]["coordinates"]).coords[0]
            stand_in = STAND_IN_SCHOOL_BASE + props["id"]
            schools.append(_feature({"type": "Point", "coordinates": list(home)}, kind="school", id=stand_in))
            props["school_id"] = stand_in
        routes.append({**route, "properties": props})
    return {"type": "FeatureCollection", "features": [*schools, *routes, *spec.zones]}


def _feature(geometry: Any, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": dict(geometry), "properties": props}
