"""Virtual children walking their route: on the route, at walking speed, and reproducible by seed."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from typing import Any

import msgspec
import pytest
from shapely.geometry import LineString

from simulator.core import FixGenerator, SimConfig
from simulator.gps import GpsConfig
from simulator.incidents import IncidentConfig
from simulator.messages import Fix
from simulator.projection import LocalProjection
from simulator.walker import Leg, Path, WalkConfig, Walker
from simulator.world import World, parse_world

PROJ = LocalProjection(127.0, 37.5)
T0 = 1_750_000_000.0


def ll(x: float, y: float) -> list[float]:
    lon, lat = PROJ.to_lonlat(x, y)
    return [lon, lat]


def tiny_world(children: int = 4) -> World:
    """A school at the end of a 1 km L-shaped route, and a construction site 100 m beside it."""
    kids = [{"id": 100 + i, "name": f"Kid {i}", "tag": f"tag-{i}"} for i in range(children)]
    route = {"type": "LineString", "coordinates": [ll(0, 0), ll(600, 0), ll(600, 400)]}
    zone = {"type": "Polygon", "coordinates": [[ll(200, -100), ll(400, -100), ll(400, -300), ll(200, -300)]]}
    zone["coordinates"][0].append(zone["coordinates"][0][0])
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": ll(600, 410)},
            "properties": {"kind": "school", "id": 1},
        },
        {
            "type": "Feature",
            "geometry": route,
            "properties": {"kind": "route", "id": 10, "school_id": 1, "corridor_m": 40.0, "children": kids},
        },
        {
            "type": "Feature",
            "geometry": zone,
            "properties": {"kind": "zone", "id": 20, "zone_kind": "construction", "severity": "critical"},
        },
    ]
    return parse_world({"type": "FeatureCollection", "features": features})


def route_line_m(world: World) -> LineString:
    (part,) = world.routes[0].parts
    return LineString([world.projection.to_xy(lon, lat) for lon, lat in part])


def true_xy(world: World, fix: Fix) -> tuple[float, float]:
    return world.projection.to_xy(fix.true_lon, fix.true_lat)


def by_tag(fixes: list[Fix]) -> dict[str, list[Fix]]:
    out: dict[str, list[Fix]] = defaultdict(list)
    for fix in fixes:
        out[fix.tag].append(fix)
    return out


def run(world: World, config: SimConfig, seconds: float, step_s: float = 10.0) -> tuple[list[Fix], list[Any]]:
    generator = FixGenerator(world, config, T0)
    fixes: list[Fix] = []
    truth: list[Any] = []
    for step in generator.steps(step_s, seconds):
        fixes += step.fixes
        truth += step.truth
    truth += generator.finish()
    return fixes, truth


QUIET = SimConfig(seed=7, children=40, incidents=IncidentConfig(per_child_per_hour=0.0))


def test_without_incidents_every_true_position_lies_on_the_route() -> None:
    world = tiny_world()
    line = route_line_m(world)
    fixes, truth = run(world, QUIET, 3 * 3600)
    assert truth == []
    assert len(fixes) > 40 * 3 * 3600 / 15 * 0.9
    assert max(line.distance(shapely_point(true_xy(world, f))) for f in fixes) < 0.01


def shapely_point(xy: tuple[float, float]) -> Any:
    from shapely.geometry import Point

    return Point(xy)


def test_children_walk_at_walking_speed_home_to_school_and_back() -> None:
    world = tiny_world()
    line = route_line_m(world)
    fixes, _ = run(world, QUIET, 3 * 3600)
    for tag, mine in by_tag(fixes).items():
        s = [line.project(shapely_point(true_xy(world, f))) for f in mine]
        ts = [f.ts for f in mine]
        speeds = [abs(s[i + 1] - s[i]) / (ts[i + 1] - ts[i]) for i in range(len(s) - 1)]
        assert max(speeds) <= 1.5 + 1e-6, tag
        moving = [v for v in speeds if v > 0.01]
        # between two fixes the child walks at one speed in [1.0, 1.5] unless it starts or stops
        assert 1.0 - 1e-6 <= sorted(moving)[len(moving) // 2] <= 1.5 + 1e-6, tag
        assert s[0] <= 1.5 * (ts[0] - T0) + 1e-6, "set off from home"
        arrival = next(i for i, v in enumerate(s) if v >= 1000.0 - 0.01)
        assert ts[arrival] - T0 <= 600 + 1000 / 1.0 + 20, "at school after the spread start and one walk"
        # then idles at school for a while, and later walks home again
        assert s[arrival + 1] == pytest.approx(1000.0, abs=0.01)
        assert any(v <= 0.01 for v in s[arrival:]), "walked back home within three hours"


def test_start_times_are_spread() -> None:
    world = tiny_world()
    line = route_line_m(world)
    fixes, _ = run(world, QUIET, 1200)
    departures = []
    for mine in by_tag(fixes).values():
        departures.append(next(f.ts for f in mine if line.project(shapely_point(true_xy(world, f))) > 1.0))
    assert max(departures) - min(departures) > 300
    assert len(set(departures)) == len(departures)


def test_fix_interval_is_jittered_around_the_setting() -> None:
    world = tiny_world()
    fixes, _ = run(world, QUIET, 1800)
    gaps = [b.ts - a.ts for mine in by_tag(fixes).values() for a, b in itertools.pairwise(mine)]
    assert min(gaps) >= 12.0 - 0.01 and max(gaps) <= 18.0 + 0.01
    assert sum(gaps) / len(gaps) == pytest.approx(15.0, abs=0.2)
    # fixes come out in time order, seq counts up per tag from 0
    assert [f.ts for f in fixes] == sorted(f.ts for f in fixes)
    for mine in by_tag(fixes).values():
        assert [f.position.seq for f in mine] == list(range(len(mine)))


def test_walker_detour_resumes_where_it_left() -> None:
    path = Path([(0.0, 0.0), (100.0, 0.0)])
    walker = Walker(path, random.Random(1), WalkConfig(start_spread_s=0.0), 0.0)
    t_half = 50.0 / walker.speed
    x, y = walker.position(t_half)
    assert (x, y) == pytest.approx((50.0, 0.0))
    walker.detour(
        t_half, [Leg(10.0, line=((50.0, 0.0), (50.0, 20.0))), Leg(10.0, line=((50.0, 20.0), (50.0, 0.0)))]
    )
    assert walker.position(t_half + 10.0) == pytest.approx((50.0, 20.0))
    assert walker.route_s(t_half + 15.0) is None
    assert walker.position(t_half + 20.0) == pytest.approx((50.0, 0.0))
    assert walker.position(t_half + 20.0 + 25.0 / walker.speed) == pytest.approx((75.0, 0.0))


def encoded(fixes: list[Fix]) -> list[bytes]:
    return [msgspec.json.encode(f) for f in fixes]


def test_a_seed_reproduces_a_run_exactly_whatever_the_step() -> None:
    world = tiny_world()
    config = SimConfig(seed=42, children=30, incidents=IncidentConfig(per_child_per_hour=2.0))
    fixes_a, truth_a = run(world, config, 3600, step_s=10.0)
    fixes_b, truth_b = run(world, config, 3600, step_s=0.7)
    assert len(truth_a) > 10
    assert encoded(fixes_a) == encoded(fixes_b)
    assert sorted(msgspec.json.encode(r) for r in truth_a) == sorted(msgspec.json.encode(r) for r in truth_b)
    other, other_truth = run(world, SimConfig(seed=43, children=30, incidents=config.incidents), 3600)
    assert encoded(other) != encoded(fixes_a)
    assert other_truth != truth_a


def test_gps_noise_is_present_and_can_be_switched_off() -> None:
    world = tiny_world()
    noisy, _ = run(world, QUIET, 600)
    errors = [
        math.dist(true_xy(world, f), world.projection.to_xy(f.position.lon, f.position.lat)) for f in noisy
    ]
    assert sum(errors) / len(errors) > 3.0
    exact = SimConfig(seed=7, children=40, gps=GpsConfig(enabled=False), incidents=QUIET.incidents)
    clean, _ = run(world, exact, 600)
    errors = [
        math.dist(true_xy(world, f), world.projection.to_xy(f.position.lon, f.position.lat)) for f in clean
    ]
    assert max(errors) < 0.05  # rounding of lat/lon to 7 decimals only
    assert all(5.0 <= f.position.acc <= 50.0 for f in clean)
