"""The demo city: a few Seoul elementary schools on the real neighbourhood boundaries (data/seoul,
whose SOURCE.md names their origin), each with walking routes from children's homes, danger zones
beside them (a construction site, a two-parcel rebuilding site, a pond bank with its water as a hole,
an arterial road), children with tags, and their guardians.

Loading is idempotent: a second `make run` finds the city in the kept database and reuses it.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon, mapping, shape

from tracker.store import seeding

# The checkout's data/seoul, or ./data/seoul where the package is installed (the Docker image).
DATA_DIRS = [Path(__file__).resolve().parents[2] / "data" / "seoul", Path.cwd() / "data" / "seoul"]
DEMO_GUARDIAN = "Demo Parent"
SCHOOL_DAY_WINDOWS = [
    {"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:10"},
    {"days": [0, 1, 2, 3, 4], "start": "12:30", "end": "16:30"},
]
# (neighbourhood code, school name): Daechi-dong, Mangwon-dong, Heukseok-dong, Hoegi-dong
SCHOOLS = [
    ("11680106", "Daechi Elementary School (대치초등학교)"),
    ("11440123", "Mangwon Elementary School (망원초등학교)"),
    ("11590105", "Heukseok Elementary School (흑석초등학교)"),
    ("11230108", "Hoegi Elementary School (회기초등학교)"),
]
SURNAMES = "김이박최정강조윤장임한오서신권황안송류홍"
GIVEN = [
    "민준",
    "서연",
    "도윤",
    "하은",
    "시우",
    "지우",
    "서준",
    "하윤",
    "예준",
    "수아",
    "주원",
    "지아",
    "유준",
    "채원",
    "은우",
]


@dataclass(frozen=True)
class DemoCity:
    schools: int
    routes: int
    zones: int
    children: int
    demo_guardian_id: int
    created: bool


class _Frame:
    """Metres east/north around a point (equirectangular; exact enough over a neighbourhood)."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        self.mx = 111_320.0 * math.cos(math.radians(lat0))
        self.my = 110_574.0

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        return (round(self.lon0 + x / self.mx, 7), round(self.lat0 + y / self.my, 7))

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        return ((lon - self.lon0) * self.mx, (lat - self.lat0) * self.my)

    def geom_to_lonlat(self, g: Any) -> Any:
        return shapely.transform(g, lambda xy: [self.to_lonlat(x, y) for x, y in xy])

    def geom_to_xy(self, g: Any) -> Any:
        return shapely.transform(g, lambda xy: [self.to_xy(x, y) for x, y in xy])


def _neighbourhoods() -> dict[str, Any]:
    found = [d / "neighborhoods.geojson" for d in DATA_DIRS if (d / "neighborhoods.geojson").exists()]
    if not found:
        raise FileNotFoundError(f"Seoul neighbourhoods not found in {', '.join(map(str, DATA_DIRS))}")
    raw = json.loads(found[0].read_text(encoding="utf-8"))
    return {f["properties"]["EMD_CD"]: shape(f["geometry"]) for f in raw["features"]}


def _route(rng: random.Random, area_xy: Any) -> LineString:
    """An L-shaped walk with a jog, from a home inside the neighbourhood to the school at (0, 0)."""
    for _ in range(200):
        length = rng.uniform(400, 1100)
        angle = rng.uniform(0, 2 * math.pi)
        hx, hy = length * math.cos(angle), length * math.sin(angle)
        jog = rng.uniform(-60, 60)
        pts = [(hx, hy), (hx, hy / 2), (hx / 2 + jog, hy / 2), (hx / 2 + jog, 0), (0, 0)]
        line = LineString(pts)
        if area_xy.buffer(50).contains(line):
            return line
    return LineString([(300, 200), (300, 0), (0, 0)])


def _clear_of(zone: Any, routes: list[tuple[LineString, float]], margin: float) -> bool:
    return all(zone.distance(line) >= corridor + margin for line, corridor in routes)


def _zones(rng: random.Random, routes: list[tuple[LineString, float]]) -> list[tuple[str, str, Any]]:
    """Danger zones near (but clear of) the routes, in metres around the school."""

    def rect(cx: float, cy: float, w: float, h: float) -> Polygon:
        return Polygon(
            [
                (cx - w / 2, cy - h / 2),
                (cx + w / 2, cy - h / 2),
                (cx + w / 2, cy + h / 2),
                (cx - w / 2, cy + h / 2),
            ]
        )

    def beside_a_route(distance: float) -> tuple[float, float]:
        line, corridor = rng.choice(routes)
        at = line.interpolate(rng.uniform(0.2, 0.8), normalized=True)
        a = line.interpolate(max(line.project(at) - 5, 0))
        b = line.interpolate(min(line.project(at) + 5, line.length))
        dx, dy = b.x - a.x, b.y - a.y
        n = math.hypot(dx, dy) or 1.0
        side = rng.choice((-1, 1))
        return at.x - side * dy / n * (corridor + distance), at.y + side * dx / n * (corridor + distance)

    out: list[tuple[str, str, Any]] = []
    wanted: list[tuple[str, str, Any]] = []
    for _ in range(300):
        if len(out) >= 4:
            break
        kinds_done = {k for _, k, _ in out}
        if "construction" not in kinds_done:
            cx, cy = beside_a_route(rng.uniform(70, 110))
            wanted = [("Construction site (공사장)", "construction", rect(cx, cy, 80, 60))]
        elif "rebuilding" not in kinds_done:
            (ax, ay), (bx, by) = beside_a_route(rng.uniform(80, 130)), beside_a_route(rng.uniform(80, 130))
            wanted = [
                (
                    "Apartment rebuilding site (재건축 현장)",
                    "rebuilding",
                    MultiPolygon([rect(ax, ay, 60, 50), rect(bx, by, 50, 70)]),
                )
            ]
        elif "water" not in kinds_done:
            cx, cy = beside_a_route(rng.uniform(110, 200))
            bank = Polygon(rect(cx, cy, 170, 130).exterior.coords, [rect(cx, cy, 110, 70).exterior.coords])
            wanted = [("Pond bank (저수지 둑)", "water", bank)]
        else:
            y = rng.choice((-1, 1)) * rng.uniform(1150, 1300)
            wanted = [
                (
                    "Arterial road (간선도로)",
                    "arterial_road",
                    LineString([(-700, y), (700, y)]).buffer(12, cap_style="flat"),
                )
            ]
        for name, kind, geom in wanted:
            if (
                geom.is_valid
                and _clear_of(geom, routes, 25)
                and all(geom.distance(z) > 30 for _, _, z in out)
            ):
                out.append((name, kind, geom))
    return out


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


async def load_demo_city(conn: asyncpg.Connection, *, children: int = 300, seed: int = 7) -> DemoCity:
    """Create the demo city unless it is there already; returns what it holds."""
    existing = await conn.fetchval(
        "SELECT id FROM guardians WHERE name = $1 ORDER BY id LIMIT 1", DEMO_GUARDIAN
    )
    if existing is not None:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM schools) s, (SELECT count(*) FROM routes) r,"
            " (SELECT count(*) FROM danger_zones) z, (SELECT count(*) FROM children) c"
        )
        return DemoCity(counts["s"], counts["r"], counts["z"], counts["c"], existing, created=False)

    rng = random.Random(seed)
    areas = _neighbourhoods()
    n_routes = n_zones = 0
    async with conn.transaction():
        demo_guardian = await seeding.add_guardian(
            conn, name=DEMO_GUARDIAN, phone="+821000000000", language="en", channels=("websocket", "sms")
        )
        per_school = [
            children // len(SCHOOLS) + (1 if i < children % len(SCHOOLS) else 0) for i in range(len(SCHOOLS))
        ]
        for s_no, ((code, school_name), n_children) in enumerate(zip(SCHOOLS, per_school, strict=True)):
            area = areas[code]
            site = area.representative_point()
            frame = _Frame(site.x, site.y)
            area_xy = frame.geom_to_xy(area)
            school_id = await seeding.add_school(conn, name=school_name, lon=site.x, lat=site.y)
            lines = [(_route(rng, area_xy), rng.choice((30.0, 30.0, 40.0))) for _ in range(6)]
            route_ids = []
            for r_no, (line, corridor) in enumerate(lines, start=1):
                route_ids.append(
                    await seeding.add_route(
                        conn,
                        school_id=school_id,
                        name=f"Route {r_no}",
                        geometry=mapping(frame.geom_to_lonlat(line)),
                        corridor_m=corridor,
                        windows=SCHOOL_DAY_WINDOWS,
                    )
                )
            for zone_name, kind, geom in _zones(rng, lines):
                await seeding.add_zone(
                    conn, name=zone_name, kind=kind, geometry=mapping(frame.geom_to_lonlat(geom))
                )
                n_zones += 1
            n_routes += len(route_ids)
            for c_no in range(n_children):
                child_id = await seeding.add_child(
                    conn, school_id=school_id, route_id=route_ids[c_no % len(route_ids)], name=_name(rng)
                )
                await seeding.add_tag(conn, tag_id=f"tag-{s_no + 1}-{c_no + 1:04d}", child_id=child_id)
                english = rng.random() < 0.1
                guardian = await seeding.add_guardian(
                    conn,
                    name=f"Guardian {s_no + 1}-{c_no + 1}" if english else f"보호자 {s_no + 1}-{c_no + 1}",
                    phone=f"+8210{rng.randrange(10**7, 10**8)}",
                    language="en" if english else "ko",
                )
                await seeding.link_guardian(conn, child_id=child_id, guardian_id=guardian, priority=1)
                if s_no == 0:  # the demo guardian watches every child of the first school
                    await seeding.link_guardian(
                        conn, child_id=child_id, guardian_id=demo_guardian, priority=2
                    )
    return DemoCity(len(SCHOOLS), n_routes, n_zones, children, demo_guardian, created=True)
