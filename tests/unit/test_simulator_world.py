"""Reading a world.v1 document (file and HTTP), the local projection, choosing children."""

from __future__ import annotations

import http.server
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.core import build_route_geometry, select_children
from simulator.projection import LocalProjection
from simulator.world import WorldError, load_world, parse_world

PROJ = LocalProjection(127.0, 37.5)


def ll(x: float, y: float) -> list[float]:
    lon, lat = PROJ.to_lonlat(x, y)
    return [lon, lat]


def feature(geometry_type: str, coordinates: Any, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": geometry_type, "coordinates": coordinates},
        "properties": props,
    }


def tiny_world(children: int = 2) -> dict[str, Any]:
    """A school at the end of a 1 km L-shaped route, and a construction site 100 m beside it."""
    kids = [{"id": 100 + i, "name": f"Kid {i}", "tag": f"tag-{i}"} for i in range(children)]
    return {
        "type": "FeatureCollection",
        "features": [
            feature("Point", ll(600, 410), kind="school", id=1, name="School"),
            feature(
                "LineString",
                [ll(0, 0), ll(600, 0), ll(600, 400)],
                kind="route",
                id=10,
                school_id=1,
                corridor_m=40.0,
                children=kids,
            ),
            feature(
                "Polygon",
                [[ll(200, -100), ll(400, -100), ll(400, -300), ll(200, -300), ll(200, -100)]],
                kind="zone",
                id=20,
                name="Site",
                zone_kind="construction",
                severity="critical",
            ),
        ],
    }


def test_projection_round_trips_and_measures_metres() -> None:
    proj = LocalProjection(127.0, 37.5)
    lon, lat = proj.to_lonlat(1234.5, -987.6)
    x, y = proj.to_xy(lon, lat)
    assert x == pytest.approx(1234.5, abs=1e-6) and y == pytest.approx(-987.6, abs=1e-6)
    # 0.01° of latitude is 1111.95 m on the mean-radius sphere
    assert proj.to_xy(127.0, 37.51)[1] == pytest.approx(1111.95, abs=0.01)
    # east-west: shrinks with cos(latitude)
    assert proj.to_xy(127.01, 37.5)[0] == pytest.approx(1111.95 * math.cos(math.radians(37.5)), abs=0.01)


def test_load_world_from_file(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text(json.dumps(tiny_world()))
    world = load_world(str(path))
    assert [s.id for s in world.schools] == [1]
    (route,) = world.routes
    assert (route.id, route.school_id, route.corridor_m) == (10, 1, 40.0)
    assert [c.tag for c in route.children] == ["tag-0", "tag-1"]
    assert len(route.parts) == 1 and len(route.parts[0]) == 3
    (zone,) = world.zones
    assert (zone.id, zone.name, zone.zone_kind, zone.severity) == (20, "Site", "construction", "critical")
    assert zone.polygon.is_valid and zone.polygon.area > 0
    assert world.children_count == 2
    # the projection is centred on the world's bounding box
    x, y = world.projection.to_xy(*ll(300, 55))
    assert abs(x) < 1.0 and abs(y) < 1.0


@pytest.fixture
def world_server() -> Iterator[str]:
    body = json.dumps(tiny_world()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != "Bearer s3cret":
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/geo+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/world"
    server.shutdown()
    server.server_close()


def test_load_world_from_url_sends_the_bearer_token(world_server: str) -> None:
    world = load_world(world_server, token="s3cret")
    assert [r.id for r in world.routes] == [10]
    with pytest.raises(WorldError, match="401"):
        load_world(world_server, token="wrong")
    with pytest.raises(WorldError, match="401"):
        load_world(world_server)


def test_multilinestring_route_and_invalid_zone_are_accepted() -> None:
    doc = tiny_world()
    route = doc["features"][1]
    route["geometry"] = {
        "type": "MultiLineString",
        "coordinates": [[ll(0, 0), ll(600, 0)], [ll(600, 0), ll(600, 400)]],
    }
    bow_tie = [[ll(0, 500), ll(100, 600), ll(100, 500), ll(0, 600), ll(0, 500)]]
    doc["features"].append(
        feature("Polygon", bow_tie, kind="zone", id=21, zone_kind="river", severity="warning")
    )
    world = parse_world(doc)
    assert len(world.routes[0].parts) == 2
    assert all(z.polygon.is_valid and z.polygon.area > 0 for z in world.zones)
    geometry = build_route_geometry(world, world.routes[0])
    assert geometry.path.length == pytest.approx(1000.0, abs=0.5)


def test_route_drawn_from_the_school_is_walked_from_home() -> None:
    doc = tiny_world()
    doc["features"][1]["geometry"]["coordinates"].reverse()  # drawn school → home
    world = parse_world(doc)
    path = build_route_geometry(world, world.routes[0]).path
    home = world.projection.to_xy(*ll(0, 0))
    assert math.dist(path.point_at(0.0), home) < 0.01


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"type": "Feature"}, "FeatureCollection"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature"}]}, "feature #0"),
        (
            {"type": "FeatureCollection", "features": [feature("Point", [200, 0], kind="school", id=1)]},
            "range",
        ),
        (
            {"type": "FeatureCollection", "features": [feature("Point", [0, 0], kind="route", id=1)]},
            "LineString",
        ),
        ({"type": "FeatureCollection", "features": [feature("Point", [0, 0], kind="lake", id=1)]}, "kind"),
    ],
)
def test_off_contract_worlds_are_refused(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(WorldError, match=message):
        parse_world(doc)


def test_missing_file_is_a_world_error(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="cannot read"):
        load_world(str(tmp_path / "nope.json"))


def test_children_are_taken_in_order_then_replicated_with_suffixed_tags() -> None:
    world = parse_world(tiny_world(children=2))
    assert [c.tag for c in select_children(world, None)] == ["tag-0", "tag-1"]
    assert [c.tag for c in select_children(world, 1)] == ["tag-0"]
    five = select_children(world, 5)
    assert [c.tag for c in five] == ["tag-0", "tag-1", "tag-0-r1", "tag-1-r1", "tag-0-r2"]
    assert [c.spec.id for c in five] == [100, 101, 100, 101, 100]
    assert len({c.tag for c in five}) == 5


def test_a_world_without_children_gets_invented_ones_when_asked() -> None:
    world = parse_world(tiny_world(children=0))
    assert select_children(world, None) == []
    assert [c.tag for c in select_children(world, 3)] == ["sim-route10", "sim-route10-r1", "sim-route10-r2"]
