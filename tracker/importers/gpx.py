"""GPX 1.1 in and out for routes and danger zones (gpxpy reads and writes the XML).

GPX has no polygons and no corridors, so the tracker reads it like this:

* every ``<trk>`` and ``<rte>`` is one feature; waypoints (``<wpt>``) are not imported;
* ``<type>`` says what it is: ``zone``, ``danger_zone`` or ``zone:<kind>`` (``zone:construction``)
  is a danger zone; anything else (or none) is a route;
* a route's track segments are the parts of a LineString (one segment) or a MultiLineString;
* a zone's track segments are rings: a ring inside an odd number of other rings is a hole, any other
  is an outer ring; rings are closed when their last point is not their first;
* what GPX cannot say is in ``<extensions>`` in the namespace ``urn:tracker:gpx:1`` (``corridor_m``,
  ``school_id``, ``id``, ``windows``, ``arrivals`` and ``hours`` as JSON, ``severity``, ``active``), or
  comes from the import's defaults (``corridor_m``, ``school_id``).

Export writes the same, so a GPX export imports back into the same routes and zones.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gpxpy
import gpxpy.gpx
from shapely.geometry import Polygon

__all__ = ["NS", "GpxError", "RawGpxFeature", "read_gpx", "write_gpx"]

NS = "urn:tracker:gpx:1"
_JSON_FIELDS = ("windows", "arrivals", "hours")
_INT_FIELDS = ("id", "school_id")
_FLOAT_FIELDS = ("corridor_m",)
_BOOL_FIELDS = ("active",)
_ZONE_TYPE = re.compile(r"^(danger_zone|zone)(:(?P<kind>.+))?$", re.IGNORECASE)


class GpxError(ValueError):
    """The document is not GPX the tracker can read; ``loc`` says where."""

    def __init__(self, msg: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(msg)
        self.msg = msg
        self.loc = loc


@dataclass(frozen=True)
class RawGpxFeature:
    loc: tuple[str | int, ...]  # ("trk", 2) or ("rte", 0)
    geometry: dict[str, Any] | None  # None: the element has no usable points (problem says why)
    properties: dict[str, Any]
    problem: str | None = None


def read_gpx(data: bytes) -> list[RawGpxFeature]:
    """Every track and route of a GPX document as a GeoJSON-like feature (see the module docstring)."""
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in head:
        raise GpxError("GPX with a DOCTYPE or entity declarations is not accepted")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise GpxError(f"not UTF-8 text: byte {e.start} cannot be decoded") from None
    try:
        doc = gpxpy.parse(text)
    except gpxpy.gpx.GPXXMLSyntaxException as e:
        raise GpxError(f"not well-formed XML: {getattr(e, 'original_exception', None) or e}") from None
    except gpxpy.gpx.GPXException as e:
        raise GpxError(f"not readable as GPX: {e}") from None
    out: list[RawGpxFeature] = []
    for i, trk in enumerate(doc.tracks):
        parts = [[[p.longitude, p.latitude] for p in seg.points] for seg in trk.segments]
        out.append(_feature(("trk", i), trk.name, trk.type, trk.extensions, parts))
    for i, rte in enumerate(doc.routes):
        parts = [[[p.longitude, p.latitude] for p in rte.points]]
        out.append(_feature(("rte", i), rte.name, rte.type, rte.extensions, parts))
    return out


def _extensions(elements: Iterable[ET.Element]) -> tuple[dict[str, Any], list[str]]:
    props: dict[str, Any] = {}
    problems: list[str] = []
    for el in elements:
        if not el.tag.startswith("{" + NS + "}"):
            continue
        key, text = el.tag.split("}", 1)[1], (el.text or "").strip()
        try:
            if key in _JSON_FIELDS:
                props[key] = json.loads(text) if text else None
            elif key in _INT_FIELDS:
                props[key] = int(text)
            elif key in _FLOAT_FIELDS:
                props[key] = float(text)
            elif key in _BOOL_FIELDS:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError("expected true or false")
                props[key] = text.lower() in ("true", "1")
            else:
                props[key] = text
        except ValueError as e:
            problems.append(f"extension tracker:{key} {text!r} cannot be read: {e}")
    return props, problems


def _feature(
    loc: tuple[str | int, ...],
    name: str | None,
    gpx_type: str | None,
    extensions: Iterable[ET.Element],
    parts: list[list[list[float]]],
) -> RawGpxFeature:
    props, problems = _extensions(extensions)
    if name:
        props["name"] = name.strip()
    zone = _ZONE_TYPE.match((gpx_type or "").strip())
    if zone:
        props["kind"] = "zone"
        if zone["kind"]:
            props["zone_kind"] = zone["kind"].strip().lower()
    else:
        props["kind"] = "route"
    parts = [p for p in parts if p]
    if problems:
        return RawGpxFeature(loc, None, props, "; ".join(problems))
    if not parts:
        return RawGpxFeature(loc, None, props, "has no points")
    if props["kind"] == "route":
        geometry: dict[str, Any] = (
            {"type": "LineString", "coordinates": parts[0]}
            if len(parts) == 1
            else {"type": "MultiLineString", "coordinates": parts}
        )
        return RawGpxFeature(loc, geometry, props)
    try:
        return RawGpxFeature(loc, _rings_to_geometry(parts), props)
    except ValueError as e:
        return RawGpxFeature(loc, None, props, str(e))


def _rings_to_geometry(rings: list[list[list[float]]]) -> dict[str, Any]:
    """Closed rings -> Polygon or MultiPolygon, holes found by nesting depth (even-odd)."""
    closed = []
    for k, ring in enumerate(rings):
        ring = ring if ring[0] == ring[-1] else [*ring, ring[0]]
        if len(ring) < 4:
            raise ValueError(
                f"segment {k} has {len(ring) - 1} distinct points; a zone's ring needs at least 3"
            )
        closed.append(ring)
    shells = [Polygon(r) for r in closed]
    depth = [sum(1 for j, o in enumerate(shells) if j != i and o.contains(s)) for i, s in enumerate(shells)]
    polygons: list[tuple[list[list[float]], list[list[list[float]]]]] = []
    index_of: dict[int, int] = {}
    for i in sorted(range(len(closed)), key=lambda i: depth[i]):
        if depth[i] % 2 == 0:
            index_of[i] = len(polygons)
            polygons.append((closed[i], []))
            continue
        parents = [j for j in index_of if depth[j] == depth[i] - 1 and shells[j].contains(shells[i])]
        polygons[index_of[parents[0]]][1].append(closed[i])
    if len(polygons) == 1:
        shell, holes = polygons[0]
        return {"type": "Polygon", "coordinates": [shell, *holes]}
    return {"type": "MultiPolygon", "coordinates": [[shell, *holes] for shell, holes in polygons]}


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    polys = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    return [[[p[0], p[1]] for p in ring] for poly in polys for ring in poly]


def _ext(key: str, value: Any) -> ET.Element:
    el = ET.Element(f"{{{NS}}}{key}")
    if isinstance(value, bool):
        el.text = "true" if value else "false"
    elif isinstance(value, list | dict):
        el.text = json.dumps(value, separators=(",", ":"))
    else:
        el.text = str(value)
    return el


def write_gpx(features: Iterable[dict[str, Any]]) -> str:
    """GeoJSON features of routes and zones (properties.kind 'route' or 'zone', as in an export) as GPX."""
    doc = gpxpy.gpx.GPX()
    doc.creator = "child-safety tracker"
    doc.nsmap["tracker"] = NS
    for f in features:
        p = f["properties"]
        trk = gpxpy.gpx.GPXTrack(name=p.get("name"))
        if p["kind"] == "zone":
            trk.type = f"zone:{p['zone_kind']}"  # type: ignore[assignment]
            keys: tuple[str, ...] = ("id", "severity", "hours", "active")
            lines = _rings(f["geometry"])  # the reader finds holes by nesting, not by winding
        else:
            trk.type = "route"  # type: ignore[assignment]
            keys = ("id", "school_id", "corridor_m", "windows", "arrivals", "mode")
            g = f["geometry"]
            lines = [g["coordinates"]] if g["type"] == "LineString" else g["coordinates"]
        for key in keys:
            if p.get(key) is not None:
                trk.extensions.append(_ext(key, p[key]))
        for line in lines:
            seg = gpxpy.gpx.GPXTrackSegment()
            seg.points = [gpxpy.gpx.GPXTrackPoint(latitude=pt[1], longitude=pt[0]) for pt in line]
            trk.segments.append(seg)
        doc.tracks.append(trk)
    return doc.to_xml(version="1.1")
