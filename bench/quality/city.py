"""The city-like world (issue 15.2): schools on arterial roads, routes on the sidewalk beside them.

Where ``world.py`` keeps every danger zone 25 m clear of every corridor, this world is built round
what a Seoul child meets. Each school is one **block**, drawn in its own metric frame (x east, y
north, metres; blocks 8 km apart round central Seoul):

* an **arterial road** drawn as a danger zone to the kerb: a strip 30-50 m wide (``|y| < W/2``)
  and 2 km long; the school 50 m south of it;
* **walk routes** on the sidewalk 3-8 m from the kerb for hundreds of metres, crossing the road at
  a signalised **crosswalk** (a segment of the route's line) where the child waits 30-90 s at the
  kerb; two homes west of the school, two east of it, 20-40 m from the road;
* a **redevelopment site** (a danger zone 180-260 m by 120-160 m) 5-15 m from the north sidewalk
  that the east routes pass;
* an **academy** 20-40 m north of the road, which is also where the shuttle riders live;
* a registered afternoon **shuttle route** (``mode: "shuttle"``): from the school gate into the
  road's lanes, along them for 400-600 m, across the road to the academy; driven at 8-15 m/s. Its
  riders walk to school in the morning (from the academy over the road's crosswalk there, along the
  south sidewalk, within the route's corridor): its morning window says ``"mode": "walk"``, as a
  school registers a child who walks to school and rides the academy's shuttle home;
* a **subway route**: from a home 2-6 km north down a station, underground to a station 40 m from
  the road, across the crosswalk to the school; underground the tag has no fix (5-20 minute gaps)
  and the fixes of the last minute or two before it went down arrive when it comes up.

Every route carries ``mode`` (walk, bicycle, shuttle or bus; the subway route is walked at both
ends: ``walk``) and its crosswalks as part of its line, so the registry's rules for where a route
meets a zone can be measured on this world when they exist.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry import LineString, Point, Polygon, mapping

from simulator import LocalProjection

CITY_SEED = 15
SEOUL = (126.98, 37.55)
BLOCK_SPACING_M = 8000.0
ROAD_HALF_LENGTH_M = 1000.0
SCHOOL_FROM_KERB_M = 50.0
CORRIDOR_M = 30.0
STAND_IN_BASE = 2_000_000
WALK_ROUTES = (1, 2, 3, 4)
"""route numbers 1-2 start west of the school, 3-4 east (past the redevelopment site)"""
SHUTTLE_ROUTE = 5
SUBWAY_ROUTE = 6
ROUTES_PER_BLOCK = 6
AFTERNOON = {"days": [0, 1, 2, 3, 4], "start": "12:30", "end": "16:30"}
MORNING = {"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:10"}


@dataclass(frozen=True)
class RouteGeom:
    """One route of a block, metric, drawn home -> school (the registry's order)."""

    id: int
    number: int
    line: list[tuple[float, float]]
    mode: str
    windows: tuple[dict[str, Any], ...]
    crosswalk: tuple[tuple[float, float], tuple[float, float]] | None
    """the crosswalk segment (north kerb point, south kerb point), on the line"""
    home: tuple[float, float]
    kind: str
    """walk_west, walk_east, shuttle, subway: which children ride it and how"""
    underground: tuple[int, int] | None = None
    """for the subway route: the indices of the line's underground segment (station to station)"""


@dataclass(frozen=True)
class Block:
    """One school and what surrounds it, in its own metric frame."""

    number: int
    origin: tuple[float, float]
    """lon, lat of the frame's origin"""
    road_w: float
    sidewalk: float
    """the sidewalk's line, metres from the kerb"""
    site: tuple[float, float, float, float]
    """the redevelopment site: x0, x1, y0, y1"""
    academy: tuple[float, float]
    routes: list[RouteGeom] = field(default_factory=list)

    @property
    def school_id(self) -> int:
        return self.number

    @property
    def road_id(self) -> int:
        return 100 * self.number + 1

    @property
    def site_id(self) -> int:
        return 100 * self.number + 2

    @property
    def y_north(self) -> float:
        return self.road_w / 2 + self.sidewalk

    @property
    def school(self) -> tuple[float, float]:
        return (0.0, -(self.road_w / 2 + SCHOOL_FROM_KERB_M))

    def road(self) -> Polygon:
        h = self.road_w / 2
        return Polygon(
            [
                (-ROAD_HALF_LENGTH_M, -h),
                (ROAD_HALF_LENGTH_M, -h),
                (ROAD_HALF_LENGTH_M, h),
                (-ROAD_HALF_LENGTH_M, h),
            ]
        )

    def site_polygon(self) -> Polygon:
        x0, x1, y0, y1 = self.site
        return Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def zones(self) -> dict[int, Polygon]:
        return {self.road_id: self.road(), self.site_id: self.site_polygon()}

    def zone_distance(self, x: float, y: float) -> float:
        """Metres from (x, y) to the nearest zone of the block (0 inside)."""
        p = Point(x, y)
        return min(z.distance(p) for z in self.zones().values())

    def projection(self) -> LocalProjection:
        return LocalProjection(*self.origin)

    def to_lonlat(self, xy: list[tuple[float, float]]) -> list[list[float]]:
        proj = self.projection()
        lon, lat = proj.to_lonlat_arrays([p[0] for p in xy], [p[1] for p in xy])
        return [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]


def _origin(number: int) -> tuple[float, float]:
    """Blocks on a grid 8 km apart round central Seoul (lon, lat of the frame's origin)."""
    cols = 5
    i, j = (number - 1) % cols, (number - 1) // cols
    dx, dy = (i - 2) * BLOCK_SPACING_M, (j - 1) * BLOCK_SPACING_M
    lat = SEOUL[1] + dy / 111_320.0
    lon = SEOUL[0] + dx / (111_320.0 * math.cos(math.radians(SEOUL[1])))
    return (lon, lat)


def build_block(number: int, seed: int = CITY_SEED) -> Block:
    """Block ``number`` (1-based): its road, site, academy and six routes."""
    rng = random.Random(seed * 1000 + number)
    w = rng.uniform(30.0, 50.0)
    s = rng.uniform(3.0, 8.0)
    h = w / 2
    yn, ys = h + s, -(h + s)
    g = rng.uniform(5.0, 15.0)
    x0 = rng.uniform(100.0, 140.0)
    site = (x0, x0 + rng.uniform(180.0, 260.0), yn + g, yn + g + rng.uniform(120.0, 160.0))
    academy = (rng.uniform(-600.0, -400.0), h + rng.uniform(20.0, 40.0))
    block = Block(number, _origin(number), w, s, site, academy)
    school = block.school
    gate = (0.0, ys)
    routes: list[RouteGeom] = []
    for n in WALK_ROUTES:
        west = n <= 2
        xh = rng.uniform(-950.0, -700.0) if west else rng.uniform(site[1] + 60.0, 950.0)
        home = (xh, h + rng.uniform(20.0, 40.0))
        xc = rng.uniform(-300.0, -150.0) if west else rng.uniform(40.0, site[0] - 30.0)
        line = [home, (xh, yn), (xc, yn), (xc, ys), gate, school]
        routes.append(
            RouteGeom(
                100 * number + n,
                n,
                line,
                "walk",
                (MORNING, AFTERNOON),
                ((xc, h), (xc, -h)),
                home,
                "walk_west" if west else "walk_east",
            )
        )
    ax = academy[0]
    lane = -w / 4
    routes.append(
        RouteGeom(
            100 * number + SHUTTLE_ROUTE,
            SHUTTLE_ROUTE,
            [academy, (ax, yn), (ax, lane), (0.0, lane), gate, school],
            "shuttle",
            ({**MORNING, "mode": "walk"}, AFTERNOON),
            ((ax, h), (ax, -h)),
            academy,
            "shuttle",
        )
    )
    xs = rng.uniform(-120.0, -60.0)
    station = (xs, yn + 40.0)
    far = (xs + rng.uniform(-300.0, 300.0), station[1] + rng.uniform(2000.0, 6000.0))
    home = (far[0] + 120.0, far[1] + 60.0)
    routes.append(
        RouteGeom(
            100 * number + SUBWAY_ROUTE,
            SUBWAY_ROUTE,
            [home, far, station, (xs, yn), (xs, ys), gate, school],
            "walk",
            (MORNING, AFTERNOON),
            ((xs, h), (xs, -h)),
            home,
            "subway",
            underground=(1, 2),
        )
    )
    return Block(number, block.origin, w, s, site, academy, routes)


def build_blocks(schools: int, seed: int = CITY_SEED) -> list[Block]:
    return [build_block(n, seed) for n in range(1, schools + 1)]


def route_mode_accepted() -> bool:
    """Whether the registry reads a route's ``mode`` yet (the importer refuses unknown properties):
    the world carries it from the day it does."""
    from tracker.importers.models import RouteProps

    return "mode" in RouteProps.model_fields


def world_doc(blocks: list[Block], children: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """world.v1 (``GET /api/v1/world``) of the blocks, ``children[route id]`` on each route."""
    with_mode = route_mode_accepted()
    features: list[dict[str, Any]] = []
    for b in blocks:
        features.append(
            _feature(
                {"type": "Point", "coordinates": b.to_lonlat([b.school])[0]},
                kind="school",
                id=b.school_id,
                name=f"Arterial school {b.number}",
                timezone="Asia/Seoul",
            )
        )
        for r in b.routes:
            props: dict[str, Any] = {
                "kind": "route",
                "id": r.id,
                "school_id": b.school_id,
                "name": f"Route {r.number} ({r.kind})",
                "corridor_m": CORRIDOR_M,
                "windows": [dict(w) for w in r.windows],
                "children": children.get(r.id, []),
            }
            if with_mode:
                props["mode"] = r.mode
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "LineString", "coordinates": b.to_lonlat(r.line)},
                    "properties": props,
                }
            )
        for zid, (name, kind, poly) in {
            b.road_id: ("Arterial road", "road", b.road()),
            b.site_id: ("Redevelopment site", "construction", b.site_polygon()),
        }.items():
            ring = b.to_lonlat(list(poly.exterior.coords))
            features.append(
                _feature(
                    {"type": "Polygon", "coordinates": [ring]},
                    kind="zone",
                    id=zid,
                    name=name,
                    zone_kind=kind,
                    severity="critical",
                )
            )
    return {"type": "FeatureCollection", "features": features}


def route_modes(blocks: list[Block]) -> dict[int, str]:
    return {r.id: r.mode for b in blocks for r in b.routes}


def sidewalk_distances(block: Block) -> dict[int, float]:
    """For each walk route: the smallest distance of its sidewalk legs (all but the crosswalk and the
    legs to home and school) from the road zone, metres (what the unit test checks: 3-8 m)."""
    road = block.road()
    out = {}
    for r in block.routes:
        if r.kind.startswith("walk"):
            leg = LineString(r.line[1:3])
            out[r.id] = float(road.distance(leg))
    return out


def _feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def lonlat_geometry(block: Block, geom: Any) -> dict[str, Any]:
    """A metric shapely geometry of the block as GeoJSON in lon/lat."""
    proj = block.projection()
    import numpy as np

    return mapping(
        shapely.transform(geom, lambda xy: np.column_stack(proj.to_lonlat_arrays(xy[:, 0], xy[:, 1])))
    )
