"""The benchmark's city, registered in bulk (COPY): schools, shared walking routes, danger zones clear
of the routes, children with tags and a guardian each.

Generated like bench/geofence.py's city (600 schools in Seoul, street-grid routes home → school, a
vertex every ~50 m, corridors 20-60 m, the danger zones a city registers), at a registry's proportions:
by default ten children share a route (siblings and neighbours walk the same way; schools register a
few dozen safe routes each), so 400,000 children walk 40,000 routes. A zone that comes within its
nearest route's corridor + 10 m is left out: a route through a danger zone would alert every child on
it at every fix, which a city would not register.

The children the benchmark drives are the first ones (ids 1..n); their alerts go to a few "watch"
guardians (priority 1) on whose websockets the benchmark listens; every other child has a guardian of
its own. The same city is returned as a simulator world (``simulator.World``) holding only the
driven children, so the simulator does not build 400,000 walkers it does not need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import shapely

from bench.geofence import SEOUL, school_sites, seoul_neighbourhoods, synthetic_routes, synthetic_zones
from simulator import World, parse_world


@dataclass(frozen=True)
class City:
    schools: int
    routes: int
    zones: int
    children: int
    watch_guardians: list[int]
    """guardian ids whose websockets the benchmark listens on (priority 1 of the driven children)"""
    world: World
    """the simulator's world: every school and zone, and the routes of the driven children"""
    driven: int


def tag_of(child_id: int) -> str:
    return f"b{child_id:07d}"


def _xy(geom: Any) -> Any:
    return shapely.transform(geom, lambda c: np.column_stack(SEOUL.to_xy(c[:, 0], c[:, 1])))


def generate(
    *, children: int, routes: int, zones: int, schools: int, seed: int
) -> tuple[np.ndarray, list[Any], np.ndarray, np.ndarray, list[Any]]:
    """(school lon/lat [n, 2], route geometries (lon/lat), route corridors, route school index, zones)."""
    rng = np.random.default_rng(seed)
    neighbourhoods = seoul_neighbourhoods()
    school_xy = school_sites(rng, schools, neighbourhoods)
    specs, _, _ = synthetic_routes(rng, routes, school_xy)
    geoms = [s.geometry for s in specs]
    corridors = np.array([s.corridor_m for s in specs])
    # the route ends at its school (3 m of jitter): the nearest school to its last point
    ends = np.array(
        [
            _xy(shapely.get_geometry(g, -1) if g.geom_type == "MultiLineString" else g).coords[-1]
            for g in geoms
        ]
    )
    tree = shapely.STRtree(shapely.points(school_xy))
    school_of = tree.query_nearest(shapely.points(ends), return_distance=False)[1]
    candidates = synthetic_zones(rng, zones * 4, first_id=1)  # many fall on a route: keep those clear
    route_xy = shapely.STRtree([_xy(g) for g in geoms])
    kept: list[Any] = []
    for z in candidates:
        zxy = _xy(z.geometry)
        near = route_xy.query(zxy, predicate="dwithin", distance=70.0)
        if not any(shapely.distance(route_xy.geometries[i], zxy) < corridors[i] + 10.0 for i in near):
            kept.append(z.geometry)
        if len(kept) >= zones:
            break
    lon, lat = SEOUL.to_lonlat(school_xy[:, 0], school_xy[:, 1])
    return np.column_stack([lon, lat]), geoms, corridors, school_of, kept


async def register(
    conn: asyncpg.Connection,
    *,
    children: int,
    routes: int,
    zones: int = 2000,
    schools: int = 600,
    driven: int,
    watch_guardians: int = 16,
    seed: int = 1,
) -> City:
    """Register the city in an empty, migrated database; ids start at 1."""
    routes = max(1, min(routes, children))
    school_ll, geoms, corridors, school_of, zone_geoms = generate(
        children=children, routes=routes, zones=zones, schools=schools, seed=seed
    )
    route_json = [json.dumps(shapely.geometry.mapping(g)) for g in geoms]
    zone_json = [json.dumps(shapely.geometry.mapping(g)) for g in zone_geoms]
    route_of_child = np.arange(children) % routes  # child i+1 walks route (i mod routes) + 1
    n_watch = min(watch_guardians, max(driven, 1))
    async with conn.transaction():
        await conn.copy_records_to_table(
            "schools",
            records=[
                (i + 1, f"School {i + 1}", "Asia/Seoul", float(x), float(y))
                for i, (x, y) in enumerate(school_ll)
            ],
            columns=("id", "name", "timezone", "lon", "lat"),
        )
        await conn.copy_records_to_table(
            "routes",
            records=[
                (i + 1, int(school_of[i]) + 1, f"Route {i + 1}", route_json[i], float(corridors[i]), "[]")
                for i in range(routes)
            ],
            columns=("id", "school_id", "name", "geometry", "corridor_m", "windows"),
        )
        await conn.copy_records_to_table(
            "danger_zones",
            records=[
                (i + 1, f"Zone {i + 1}", "construction", "critical", zone_json[i])
                for i in range(len(zone_json))
            ],
            columns=("id", "name", "kind", "severity", "geometry"),
        )
        await conn.copy_records_to_table(
            "children",
            records=[
                (c + 1, int(school_of[route_of_child[c]]) + 1, int(route_of_child[c]) + 1, f"Child {c + 1}")
                for c in range(children)
            ],
            columns=("id", "school_id", "route_id", "name"),
        )
        await conn.copy_records_to_table(
            "tags",
            records=[(tag_of(c + 1), c + 1, "gps") for c in range(children)],
            columns=("id", "child_id", "kind"),
        )
        # guardians 1..n_watch watch the driven children; guardian n_watch + k is child k's own
        await conn.copy_records_to_table(
            "guardians",
            records=[(g + 1, f"Watch {g + 1}", None, "en", ["websocket"]) for g in range(n_watch)]
            + [
                (n_watch + c + 1, f"Guardian {c + 1}", f"+8210{c + 1:08d}", "ko", ["websocket", "sms"])
                for c in range(children)
            ],
            columns=("id", "name", "phone", "language", "channels"),
        )
        await conn.copy_records_to_table(
            "child_guardians",
            records=[
                (c + 1, (c % n_watch) + 1 if c < driven else n_watch + c + 1, 1) for c in range(children)
            ],
            columns=("child_id", "guardian_id", "priority"),
        )
        for table in ("schools", "routes", "danger_zones", "children", "guardians"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
    world = _world(school_ll, geoms, corridors, school_of, zone_geoms, route_of_child, driven)
    return City(len(school_ll), routes, len(zone_geoms), children, list(range(1, n_watch + 1)), world, driven)


def _world(
    school_ll: np.ndarray,
    geoms: list[Any],
    corridors: np.ndarray,
    school_of: np.ndarray,
    zone_geoms: list[Any],
    route_of_child: np.ndarray,
    driven: int,
) -> World:
    kids: dict[int, list[dict[str, Any]]] = {}
    for c in range(driven):
        kids.setdefault(int(route_of_child[c]), []).append({"id": c + 1, "tag": tag_of(c + 1)})
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
            "properties": {"kind": "school", "id": i + 1},
        }
        for i, (x, y) in enumerate(school_ll)
    ]
    features += [
        {
            "type": "Feature",
            "geometry": shapely.geometry.mapping(geoms[r]),
            "properties": {
                "kind": "route",
                "id": r + 1,
                "school_id": int(school_of[r]) + 1,
                "corridor_m": float(corridors[r]),
                "children": kids[r],
            },
        }
        for r in sorted(kids)
    ]
    features += [
        {
            "type": "Feature",
            "geometry": shapely.geometry.mapping(g),
            "properties": {"kind": "zone", "id": i + 1},
        }
        for i, g in enumerate(zone_geoms)
    ]
    return parse_world({"type": "FeatureCollection", "features": features})
