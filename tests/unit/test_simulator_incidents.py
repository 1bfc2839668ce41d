"""Scripted incidents really happen as their ground truth says (judged on the true positions)."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from typing import Any

import pytest
from shapely.geometry import LineString, Point, Polygon

from simulator.core import FixGenerator, SimConfig
from simulator.incidents import IncidentConfig, TruthRecord
from simulator.messages import Fix
from simulator.projection import LocalProjection
from simulator.world import World, parse_world

PROJ = LocalProjection(127.0, 37.5)
T0 = 1_750_000_000.0
CORRIDOR = 40.0


def ll(x: float, y: float) -> list[float]:
    lon, lat = PROJ.to_lonlat(x, y)
    return [lon, lat]


def ring(*xy: tuple[float, float]) -> list[list[float]]:
    return [ll(x, y) for x, y in (*xy, xy[0])]


SITE = [ring((200, -100), (400, -100), (400, -300), (200, -300))]
"""a 200 m square construction site 100 m south of the route's first leg"""
MOAT = [
    ring((100, -60), (500, -60), (500, -500), (100, -500)),
    ring((150, -110), (450, -110), (450, -450), (150, -450)),
]
"""a 50 m wide ring of a zone around a hole (the hole is not the zone)"""


def tiny_world(zone: list[list[list[float]]] = SITE, children: int = 40) -> World:
    """A school at the end of a 1 km L-shaped route, and a danger zone near it."""
    kids = [{"id": 100 + i, "name": f"Kid {i}", "tag": f"tag-{i}"} for i in range(children)]
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": ll(600, 410)},
            "properties": {"kind": "school", "id": 1},
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [ll(0, 0), ll(600, 0), ll(600, 400)]},
            "properties": {
                "kind": "route",
                "id": 10,
                "school_id": 1,
                "corridor_m": CORRIDOR,
                "children": kids,
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": zone},
            "properties": {"kind": "zone", "id": 20, "zone_kind": "construction", "severity": "critical"},
        },
    ]
    return parse_world({"type": "FeatureCollection", "features": features})


def run(
    world: World, incidents: IncidentConfig, seconds: float = 3600.0
) -> tuple[list[Fix], list[TruthRecord]]:
    generator = FixGenerator(world, SimConfig(seed=5, incidents=incidents), T0)
    fixes: list[Fix] = []
    truth: list[TruthRecord] = []
    for step in generator.steps(30.0, seconds):
        fixes += step.fixes
        truth += step.truth
    return fixes, truth + generator.finish()


def one_each(kind: str, **overrides: Any) -> IncidentConfig:
    """Every child has exactly one incident of ``kind`` in the first half hour."""
    return IncidentConfig(fraction=1.0, fraction_window_s=1800.0, kind_weights={kind: 1.0}, **overrides)


def by_tag(fixes: list[Fix]) -> dict[str, list[Fix]]:
    out: dict[str, list[Fix]] = defaultdict(list)
    for fix in fixes:
        out[fix.tag].append(fix)
    return out


def route_distance(world: World, lon: float, lat: float) -> float:
    (part,) = world.routes[0].parts
    line = LineString([world.projection.to_xy(*p) for p in part])
    return float(line.distance(Point(world.projection.to_xy(lon, lat))))


def test_leave_route_goes_80_to_200_m_beyond_the_corridor_and_comes_back() -> None:
    world = tiny_world()
    fixes, truth = run(world, one_each("leave_route"))
    assert len(truth) == 40 and {r.kind for r in truth} == {"leave_route"}
    tags = by_tag(fixes)
    for r in truth:
        assert r.end_ts is not None and r.excursion_start_ts is not None and r.excursion_end_ts is not None
        assert r.excursion_start_ts <= r.start_ts < r.end_ts <= r.excursion_end_ts
        assert r.end_ts - r.start_ts >= 120.0, "stays out a few minutes"
        assert CORRIDOR + 80 <= (r.peak_distance_m or 0) <= CORRIDOR + 200 + 2
        assert r.lon is not None and r.lat is not None
        assert route_distance(world, r.lon, r.lat) > CORRIDOR + 80
        out, near, on = [], [], []
        for f in tags[r.tag]:
            d = route_distance(world, f.true_lon, f.true_lat)
            if r.start_ts < f.ts < r.end_ts:
                out.append(d)
            elif r.excursion_start_ts <= f.ts <= r.excursion_end_ts:
                near.append(d)
            else:
                on.append(d)
        assert len(out) >= 5 and min(out) > CORRIDOR
        assert max(out) > CORRIDOR + 80, "really goes more than 80 m beyond the corridor"
        assert all(d <= CORRIDOR + 1e-6 for d in near)
        assert max(on) < 0.01, "on the route before and after"


@pytest.mark.parametrize("zone", [SITE, MOAT], ids=["square", "ring-with-hole"])
def test_enter_zone_walks_well_inside_the_zone_and_out(zone: list[list[list[float]]]) -> None:
    world = tiny_world(zone)
    polygon = Polygon(zone[0], zone[1:])
    metric = Polygon(
        [world.projection.to_xy(*p) for p in zone[0]],
        [[world.projection.to_xy(*p) for p in h] for h in zone[1:]],
    )
    fixes, truth = run(world, one_each("enter_zone"))
    assert len(truth) == 40 and {r.kind for r in truth} == {"enter_zone"}
    tags = by_tag(fixes)
    for r in truth:
        assert r.zone_id == 20 and r.end_ts is not None
        assert r.end_ts - r.start_ts >= 120.0
        assert r.lon is not None and r.lat is not None
        target = Point(world.projection.to_xy(r.lon, r.lat))
        assert metric.contains(target)
        assert metric.exterior.distance(target) >= 19.0 and all(
            h.distance(target) >= 19.0 for h in metric.interiors
        ), "well inside, holes respected"
        inside = [
            polygon.contains(Point(f.true_lon, f.true_lat))
            for f in tags[r.tag]
            if r.start_ts < f.ts < r.end_ts
        ]
        assert len(inside) >= 5 and all(inside)
        before_after = [
            polygon.contains(Point(f.true_lon, f.true_lat))
            for f in tags[r.tag]
            if f.ts < r.start_ts - 1e-3 or f.ts > r.end_ts + 1e-3
        ]
        assert not any(before_after)
        # the zone lies beyond the corridor: the walk leaves the route too, and the truth says when
        assert r.off_route_start_ts is not None and r.off_route_end_ts is not None
        assert r.off_route_start_ts <= r.start_ts and r.end_ts <= r.off_route_end_ts


def test_enter_zone_without_a_zone_in_reach_becomes_leave_route() -> None:
    _, truth = run(tiny_world(children=5), one_each("enter_zone", zone_reach_m=10.0))
    assert [r.kind for r in truth] == ["leave_route"] * 5


def test_sos_is_one_fix_with_sos_true() -> None:
    fixes, truth = run(tiny_world(), one_each("sos"))
    assert len(truth) == 40
    sos = [f for f in fixes if f.position.sos]
    assert sorted((f.tag, f.ts) for f in sos) == sorted((r.tag, r.start_ts) for r in truth)
    assert all(r.start_ts == r.end_ts for r in truth)


def test_go_silent_sends_nothing_for_minutes() -> None:
    fixes, truth = run(tiny_world(), one_each("go_silent"))
    tags = by_tag(fixes)
    assert len(truth) == 40
    for r in truth:
        assert r.end_ts is not None and 180.0 <= r.end_ts - r.start_ts <= 600.0
        times = [f.ts for f in tags[r.tag]]
        assert not [t for t in times if r.start_ts <= t < r.end_ts]
        assert r.end_ts in times, "the first fix after the silence comes at end_ts"
        assert r.last_fix_ts == max(t for t in times if t < r.start_ts)


def test_rate_per_child_per_hour_and_kind_weights() -> None:
    world = tiny_world(children=100)
    incidents = IncidentConfig(per_child_per_hour=1.0, warmup_s=0.0)
    generator = FixGenerator(world, SimConfig(seed=9, incidents=incidents), T0)
    for _ in generator.steps(60.0, 2 * 3600.0):
        pass
    started = generator.incidents_started
    total = sum(started.values())
    assert 150 <= total <= 230, started  # 200 expected, a little less as incidents never overlap
    share = {k: n / total for k, n in started.items()}
    assert share["leave_route"] == pytest.approx(0.35, abs=0.1)
    assert share["sos"] == pytest.approx(0.15, abs=0.08)


def test_incidents_open_at_the_end_have_no_end_ts() -> None:
    incidents = IncidentConfig(fraction=1.0, fraction_window_s=200.0, kind_weights={"go_silent": 1.0})
    _, truth = run(tiny_world(children=10), incidents, seconds=300.0)
    assert len(truth) == 10
    open_ = [r for r in truth if r.end_ts is None]
    assert open_ and all(r.planned_end_ts is not None and r.planned_end_ts > T0 + 300.0 for r in open_)


def test_no_incidents_overlap_for_a_child() -> None:
    _, truth = run(tiny_world(children=20), IncidentConfig(per_child_per_hour=6.0), seconds=3 * 3600)
    per_tag: dict[str, list[TruthRecord]] = defaultdict(list)
    for r in truth:
        per_tag[r.tag].append(r)
    for records in per_tag.values():
        spans = sorted(
            (r.excursion_start_ts or r.start_ts, r.excursion_end_ts or r.end_ts or r.planned_end_ts or 0.0)
            for r in records
        )
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert Counter(r.kind for r in truth).keys() == {"leave_route", "enter_zone", "sos", "go_silent"}


def test_unknown_incident_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown incident kinds"):
        IncidentConfig(kind_weights={"fall_in_river": 1.0})
