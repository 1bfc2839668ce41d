"""GPX in and out, pure: tracks and routes become routes, typed tracks become danger zones whose holes
are found by nesting, extensions carry what GPX cannot say, and an export reads back the same."""

from __future__ import annotations

import json

import pytest
import shapely
from shapely.geometry import shape

from tracker.importers import GpxError, ImportDefaults, read_gpx, read_import, write_gpx


def square(lon: float, lat: float, d: float) -> list[list[float]]:
    return [
        [lon - d, lat - d],
        [lon + d, lat - d],
        [lon + d, lat + d],
        [lon - d, lat + d],
        [lon - d, lat - d],
    ]


ROUTE = {
    "type": "Feature",
    "id": 7,
    "geometry": {
        "type": "MultiLineString",
        "coordinates": [[[127.05, 37.5], [127.06, 37.5]], [[127.06, 37.5], [127.06, 37.51]]],
    },
    "properties": {
        "kind": "route",
        "id": 7,
        "name": "Morning walk",
        "school_id": 3,
        "corridor_m": 35.0,
        "windows": [{"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00"}],
        "arrivals": [{"days": [0, 1, 2, 3, 4], "time": "08:40", "to": "school"}],
        "mode": "bicycle",
    },
}
# two islands, the first with a hole that has an island of its own (depth 0, 1, 2)
ZONE = {
    "type": "Feature",
    "id": 9,
    "geometry": {
        "type": "MultiPolygon",
        "coordinates": [
            [square(127.0, 37.5, 0.01), square(127.0, 37.5, 0.005)[::-1]],
            [square(127.0, 37.5, 0.002)],
            [square(127.1, 37.5, 0.01)],
        ],
    },
    "properties": {
        "kind": "zone",
        "id": 9,
        "name": "Pond",
        "zone_kind": "river",
        "severity": "warning",
        "hours": None,
        "active": True,
    },
}


def test_an_export_reads_back_the_same_routes_and_zones() -> None:
    text = write_gpx([ROUTE, ZONE])
    drafts, problems = read_import(text.encode(), "application/gpx+xml")
    assert problems == []
    route, zone = drafts
    assert route.kind == "route" and route.id == 7 and route.loc == ("body", "trk", 0)
    assert route.geometry == ROUTE["geometry"]
    assert route.props.model_dump() == {
        k: v for k, v in ROUTE["properties"].items() if k not in ("kind", "id")
    }
    assert (
        zone.kind == "zone"
        and zone.id == 9
        and zone.props.kind == "river"
        and zone.props.severity == "warning"
    )
    assert shapely.equals(shape(zone.geometry), shape(ZONE["geometry"]))
    assert len(shape(zone.geometry).geoms) == 3  # the island in the hole is a polygon of its own


def test_plain_gpx_from_a_phone_app_needs_the_defaults_it_cannot_say() -> None:
    doc = b"""<?xml version="1.0"?>
<gpx version="1.1" creator="some app" xmlns="http://www.topografix.com/GPX/1/1">
  <wpt lat="37.5" lon="127.05"><name>Home</name></wpt>
  <rte><name>Planned</name><rtept lat="37.5" lon="127.05"/><rtept lat="37.51" lon="127.06"/></rte>
  <trk><name>Recorded</name><type>Walking</type><trkseg>
    <trkpt lat="37.5" lon="127.05"/><trkpt lat="37.505" lon="127.055"/>
  </trkseg></trk>
  <trk><name>Works</name><type>zone:construction</type><trkseg>
    <trkpt lat="37.5" lon="127.05"/><trkpt lat="37.5" lon="127.051"/><trkpt lat="37.501" lon="127.051"/>
  </trkseg></trk>
</gpx>"""
    drafts, problems = read_import(doc, None)  # sniffed as GPX
    assert {p.loc[:3] for p in problems} == {("body", "trk", 0), ("body", "rte", 0)}
    assert all("corridor_m" in p.loc for p in problems)
    drafts, problems = read_import(doc, None, ImportDefaults(school_id=1, corridor_m=25))
    assert problems == []
    assert [(d.kind, d.props.name) for d in drafts] == [
        ("route", "Recorded"),
        ("zone", "Works"),
        ("route", "Planned"),
    ]
    works = drafts[1]
    assert works.geometry["coordinates"][0][0] == works.geometry["coordinates"][0][-1]  # the ring was closed


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (b"<gpx><trk>", "not well-formed XML"),
        (b'<!DOCTYPE gpx [<!ENTITY a "x">]><gpx/>', "DOCTYPE"),
        (b"\xff\xfe<gpx/>", "not UTF-8"),
        (b'<gpx><trk><trkseg><trkpt lat="north" lon="1"/></trkseg></trk></gpx>', "not readable as GPX"),
    ],
)
def test_unreadable_documents_are_refused_with_the_reason(doc: bytes, says: str) -> None:
    with pytest.raises(GpxError) as refused:
        read_gpx(doc)
    assert says in refused.value.msg


def test_bad_extensions_and_empty_tracks_are_named() -> None:
    doc = b"""<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1" xmlns:t="urn:tracker:gpx:1">
  <trk><name>A</name><extensions><t:corridor_m>wide</t:corridor_m></extensions>
    <trkseg><trkpt lat="37.5" lon="127.05"/><trkpt lat="37.51" lon="127.05"/></trkseg></trk>
  <trk><name>B</name></trk>
</gpx>"""
    raw = read_gpx(doc)
    assert raw[0].problem is not None and "tracker:corridor_m 'wide'" in raw[0].problem
    assert raw[1].problem == "has no points"


def test_a_geojson_file_with_a_single_feature_and_foreign_members_is_read() -> None:
    doc = {
        "type": "Feature",
        "bbox": [127, 37, 128, 38],
        "geometry": {"type": "Polygon", "coordinates": [square(127.0, 37.5, 0.01)]},
        "properties": {"name": "Site", "kind": "construction", "fid": 12, "layer": "zones"},
    }
    drafts, problems = read_import(json.dumps(doc).encode(), "application/geo+json")
    assert problems == [] and drafts[0].kind == "zone" and drafts[0].props.kind == "construction"
    assert read_import(b"   ", None)[1][0].msg == "the file is empty"
    assert "not JSON" in read_import(b"{nope", "application/json")[1][0].msg
    assert read_import(b'{"type": "FeatureCollection", "features": []}', None)[1][0].msg.startswith(
        "the file holds no"
    )
