"""tracker replay: a CSV of fixes against zones (and routes) GeoJSON, one verdict row per fix."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tracker.geofence import LocalProjection
from tracker.monitor import Rules
from tracker.monitor.model import R68_PER_SIGMA
from tracker.replay import COLUMNS, ReplayError, add_arguments, read_fixes, replay, replay_csv, run

PROJ = LocalProjection(127.0, 37.5)


def ll(x: float, y: float) -> list[float]:
    lon, lat = PROJ.to_lonlat(np.array(x), np.array(y))
    return [float(lon), float(lat)]


def ring(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [ll(x0, y0), ll(x1, y0), ll(x1, y1), ll(x0, y1), ll(x0, y0)]


# a world-like file: zone 1 (a 100 m square with a 40 m hole), zone 2 (a 10 m wide strip a child can
# run through between two fixes), route 5 along y = -100 (walked by tag A / child 11) and a school
WORLD = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring(0, 0, 100, 100), ring(30, 30, 70, 70)]},
            "properties": {"kind": "zone", "id": 1, "name": "works"},
        },
        {
            "type": "Feature",
            "id": 2,
            "geometry": {"type": "Polygon", "coordinates": [ring(300, -200, 310, 200)]},
            "properties": {"name": "arterial road"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [ll(-500, -100), ll(800, -100)]},
            "properties": {"kind": "route", "id": 5, "corridor_m": 30, "children": [{"id": 11, "tag": "A"}]},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": ll(800, -100)},
            "properties": {"kind": "school", "id": 9},
        },
    ],
}


def fixes_csv(rows: list[tuple[object, ...]], header: str = "tag,child,ts,lon,lat,acc") -> str:
    out = [header]
    for tag, child, ts, x, y, acc in rows:
        lon, lat = ll(float(x), float(y))  # type: ignore[arg-type]
        out.append(f"{tag},{child},{ts},{lon!r},{lat!r},{acc}")
    return "\n".join(out) + "\n"


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_verdict_rows() -> None:
    text = fixes_csv(
        [
            ("A", "", 1000, 50, 10, 5),  # in zone 1, certainly; 110 m off route 5
            ("A", "", 1015, 200, -90, 5),  # near the route; coming from zone 1 (crosses nothing new)
            ("A", "", 1030, 350, -95, 5),  # ran through the strip (zone 2) since the last fix
            ("A", "", "2026-01-01T00:00:00Z", 50, 50, 5),  # in zone 1's hole: not in zone 1
            ("", "11", 1000, 0, -100, ""),  # child 11 (on route 5), unknown accuracy
            ("B", "", 1000, 305, 0, 20),  # unknown tag: no route; in the strip, not certainly
        ]
    )
    rows = parse(replay_csv(text, WORLD, WORLD))
    assert list(rows[0]) == list(COLUMNS)
    assert [r["line"] for r in rows] == ["2", "3", "4", "5", "6", "7"]
    r = rows[0]
    assert (r["certain_zones"], r["possible_zones"], r["nearest_zone_m"]) == ("1", "1", "0.000")
    assert (r["route"], r["route_distance_m"], r["corridor_m"]) == ("5", "110.000", "30.000")
    assert (r["in_corridor"], r["off_route"]) == ("no", "yes")
    assert rows[1]["crossed_zones"] == "" and rows[1]["in_corridor"] == "yes" and rows[1]["off_route"] == "no"
    assert rows[2]["crossed_zones"] == "2" and rows[2]["certain_zones"] == ""
    # the ISO time sorts after the unix times: its previous fix is the one at (350, -95); the segment
    # from there runs through the strip (zone 2) and enters zone 1 at (100, 25.8), below the hole,
    # before it ends in the hole (not in zone 1)
    hole = rows[3]
    assert (hole["certain_zones"], hole["possible_zones"], hole["nearest_zone_m"]) == ("", "", "20.000")
    assert hole["crossed_zones"] == "1 2"
    child = rows[4]
    assert (child["tag"], child["child"], child["route"], child["acc"]) == ("", "11", "5", "")
    assert (child["route_distance_m"], child["in_corridor"], child["off_route"]) == ("0.000", "yes", "no")
    stranger = rows[5]
    assert (stranger["route"], stranger["route_distance_m"], stranger["in_corridor"]) == ("", "", "")
    assert (stranger["certain_zones"], stranger["possible_zones"]) == ("", "2")


def test_route_column_and_zones_only() -> None:
    text = fixes_csv([("A", "", 1000, 200, -60, 5)], header="tag,child,ts,lon,lat,acc")
    rows = parse(replay_csv(text, WORLD))  # no routes file: no route for anyone
    assert rows[0]["route"] == "" and rows[0]["route_distance_m"] == ""
    with_route = text.replace("tag,child,ts,lon,lat,acc", "tag,child,ts,lon,lat,acc,route").replace(
        ",5\n", ",5,5\n"
    )
    rows = parse(replay_csv(with_route, WORLD, WORLD))
    assert rows[0]["route"] == "5" and rows[0]["route_distance_m"] == "40.000"
    assert rows[0]["off_route"] == "yes"  # 40 - 5 > 30


def test_previous_fix_is_per_tag_in_time_order() -> None:
    fixes = read_fixes(
        fixes_csv(
            [("A", "", 1030, 350, -95, 5), ("B", "", 1020, 0, 0, 5), ("A", "", 1000, 250, -95, 5)]
        ).splitlines()
    )
    rows = replay(fixes, WORLD, WORLD)
    # A's fixes in time order: line 4 (t=1000, x=250) then line 2 (t=1030, x=350): crossed the strip
    assert [r.crossed for r in rows] == [(2,), (), ()]


BAD = [
    ("missing column", "tag,ts,lon,lat\nA,1,127,37.5\n", "line 1: missing column(s) acc"),
    ("no tag or child column", "ts,lon,lat,acc\n1,127,37.5,5\n", "missing column(s) tag or child"),
    ("lon not a number", "tag,ts,lon,lat,acc\nA,1,127,37.5,5\nA,2,east,37.5,5\n", "line 3: lon 'east'"),
    ("lat out of range", "tag,ts,lon,lat,acc\nA,1,127,97.5,5\n", "line 2: lat '97.5' out of range"),
    ("negative accuracy", "tag,ts,lon,lat,acc\nA,1,127,37.5,-3\n", "line 2: acc '-3' out of range"),
    ("no tag nor child", "tag,child,ts,lon,lat,acc\n,,1,127,37.5,5\n", "line 2: neither tag nor child"),
    ("bad time", "tag,ts,lon,lat,acc\nA,yesterday,127,37.5,5\n", "line 2: ts 'yesterday'"),
    ("empty", "", "empty file"),
]


@pytest.mark.parametrize("text, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_fixes_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ReplayError, match=re.escape(message)):
        replay_csv(text, WORLD)


def test_bad_zones_and_routes_name_the_feature() -> None:
    fixes = "tag,ts,lon,lat,acc\nA,1,127,37.5,5\n"
    bowtie_free = {"type": "FeatureCollection", "features": [WORLD["features"][0]]}
    no_id = json.loads(json.dumps(bowtie_free))
    del no_id["features"][0]["properties"]["id"]
    with pytest.raises(ReplayError, match=re.escape("zones: features[0].id: zone 'works' has no id")):
        replay_csv(fixes, no_id)
    bad_id = json.loads(json.dumps(bowtie_free))
    bad_id["features"][0]["properties"]["id"] = "one"
    with pytest.raises(ReplayError, match=re.escape("zones: features[0].id: id 'one' is not a zone id")):
        replay_csv(fixes, bad_id)
    collapsed = json.loads(json.dumps(bowtie_free))
    collapsed["features"][0]["geometry"]["coordinates"] = [[ll(0, 0), ll(10, 0), ll(20, 0), ll(0, 0)]]
    with pytest.raises(ReplayError, match="zones: zone 1 refused: invalid"):
        replay_csv(fixes, collapsed)
    routes = json.loads(json.dumps(WORLD))
    routes["features"][2]["properties"]["corridor_m"] = "wide"
    with pytest.raises(ReplayError, match=re.escape("routes: features[2].properties.corridor_m: ")):
        replay_csv(fixes, WORLD, routes)
    walkers = json.loads(json.dumps(WORLD))
    walkers["features"][2]["properties"]["children"] = [{"tag": "A"}]
    with pytest.raises(ReplayError, match=re.escape("routes: features[2].properties.children[0].id: ")):
        replay_csv(fixes, WORLD, walkers)
    with pytest.raises(ReplayError, match="expected a GeoJSON FeatureCollection or Feature"):
        replay_csv(fixes, {"type": "Point"})
    with pytest.raises(ReplayError, match=re.escape("zones: the document: not JSON")):
        replay_csv(fixes, b"{not json")


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="tracker replay")
    add_arguments(parser)
    world = tmp_path / "world.geojson"
    world.write_text(json.dumps(WORLD), encoding="utf-8")
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(fixes_csv([("A", "", 1000, 50, 10, 5), ("A", "", 1030, 350, -95, 5)]), encoding="utf-8")
    out = tmp_path / "verdicts.csv"
    args = parser.parse_args([str(fixes), "--zones", str(world), "--routes", str(world), "-o", str(out)])
    assert run(args) == 0
    rows = parse(out.read_text(encoding="utf-8"))
    assert [r["certain_zones"] for r in rows] == ["1", ""] and rows[1]["crossed_zones"] == "2"
    assert "2 fixes" in capsys.readouterr().err

    fixes.write_text("tag,ts,lon,lat,acc\nA,1,127,37.5,5\nA,2,127,37.5,lots\n", encoding="utf-8")
    assert run(args) == 2
    assert f"{fixes}: line 3: acc 'lots' is not a number" in capsys.readouterr().err
    args = parser.parse_args([str(fixes), "--zones", str(tmp_path / "missing.geojson")])
    assert run(args) == 2
    assert "missing.geojson" in capsys.readouterr().err

    help_text = parser.format_help()
    for prop in ("properties.id", "corridor_m", "properties.children"):
        assert prop in help_text


def test_zones_are_judged_on_the_trackers_disc_not_the_raw_accuracy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(50, 10) is 10 m inside zone 1's edge. With an accuracy of 8 m its accuracy circle lies inside,
    but the tracker judges zones on a disc of Rules.zone_sigma (2.5 sigma: 13.2 m): not certain."""
    text = fixes_csv([("A", "", 1000, 50, 10, 8)])
    row = parse(replay_csv(text, WORLD))[0]
    assert (row["certain_zones"], row["possible_zones"]) == ("", "1")
    circle = Rules(zone_sigma=R68_PER_SIGMA)  # a disc as wide as the accuracy circle
    row = parse(replay_csv(text, WORLD, rules=circle))[0]
    assert (row["certain_zones"], row["possible_zones"]) == ("1", "1")
    # the command reads the tracker's own settings
    parser = argparse.ArgumentParser(prog="tracker replay")
    add_arguments(parser)
    (tmp_path / "world.geojson").write_text(json.dumps(WORLD), encoding="utf-8")
    (tmp_path / "fixes.csv").write_text(text, encoding="utf-8")
    args = [str(tmp_path / "fixes.csv"), "--zones", str(tmp_path / "world.geojson")]
    for sigma, certain in (("2.5", ""), (str(R68_PER_SIGMA), "1")):
        monkeypatch.setenv("TRACKER_ZONE_SIGMA", sigma)
        out = tmp_path / f"verdicts-{sigma}.csv"
        assert run(parser.parse_args([*args, "-o", str(out)])) == 0
        assert parse(out.read_text(encoding="utf-8"))[0]["certain_zones"] == certain, sigma
