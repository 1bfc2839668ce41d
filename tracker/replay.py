"""``tracker replay``: run a file of past fixes against zones (and routes), one verdict row per fix.

Operators try new danger zones on past fixes before switching them on; tests use it to state what
the geofence core answers for a file of fixes. Nothing here talks to a server: the index is built
from the GeoJSON files given, the fixes are checked in one batch, the verdicts written as CSV.

Input fixes (CSV with a header; column order free, other columns ignored):

* ``tag`` or ``child`` (at least one): whose fix it is;
* ``ts``: unix seconds or an ISO 8601 time (with a zone, or UTC assumed);
* ``lon``, ``lat``: WGS84 degrees;
* ``acc``: accuracy radius in metres (empty: unknown, never "certainly" anything);
* ``route`` (optional): the id of the route this fix is checked against, overriding the routes
  file's children.

Zones: every Polygon / MultiPolygon feature of a GeoJSON FeatureCollection whose ``properties.kind``
is absent or ``"zone"``; its id is ``properties.id`` (else the feature's ``id``), an integer. Routes:
every LineString / MultiLineString feature whose ``kind`` is absent or ``"route"``, with ``id`` as
above, ``properties.corridor_m`` (the corridor's half-width, metres) and ``properties.children``, a
list of ``{"id": child id, "tag": tag id}`` (the world GeoJSON format of ``GET /api/v1/world``, so one
world file can be given as both ``--zones`` and ``--routes``).

Each fix is compared with the previous fix of the same tag (else child) in time, for the zones
crossed in between. Output columns: see :data:`COLUMNS`; zone lists are space-separated ids.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import shapely.errors
import shapely.geometry

from tracker.geofence import GeometryRefused, RouteSpec, ZoneSpec, build_index

__all__ = [
    "COLUMNS",
    "FixRow",
    "ReplayError",
    "VerdictRow",
    "add_arguments",
    "read_fixes",
    "replay",
    "replay_csv",
    "run",
    "write_verdicts",
]

COLUMNS = (
    "line",  # line of the fix in the input file (the header is line 1)
    "tag",
    "child",
    "ts",  # as given
    "lon",
    "lat",
    "acc",
    "route",  # route id the fix was checked against (empty: none)
    "route_distance_m",  # distance to that route (all its parts), metres
    "corridor_m",
    "in_corridor",  # the fix's position lies within the corridor: distance <= corridor_m
    "off_route",  # certainly outside the corridor: distance - acc > corridor_m (the monitor's rule)
    "certain_zones",  # zones whose interior holds the whole accuracy circle
    "possible_zones",  # zones that may hold the fix (within min(acc, search radius))
    "crossed_zones",  # zones whose interior the segment from the previous fix crosses
    "nearest_zone_m",  # 0 inside a zone, else distance to the nearest one within the search radius
)


class ReplayError(ValueError):
    """Bad input: the message names the file and, for a fix, its line."""


@dataclass(frozen=True)
class FixRow:
    line: int
    tag: str
    child: str
    ts_text: str
    ts: float
    lon: float
    lat: float
    acc: float  # nan: unknown
    route: int | None  # from the fix's own ``route`` column

    @property
    def key(self) -> str:
        return f"tag:{self.tag}" if self.tag else f"child:{self.child}"


@dataclass(frozen=True)
class VerdictRow:
    fix: FixRow
    route: int | None
    route_distance_m: float
    corridor_m: float
    certain: tuple[int, ...]
    possible: tuple[int, ...]
    crossed: tuple[int, ...]
    nearest_zone_m: float

    @property
    def in_corridor(self) -> bool | None:
        if self.route is None or math.isnan(self.route_distance_m):
            return None
        return self.route_distance_m <= self.corridor_m

    @property
    def off_route(self) -> bool | None:
        if self.route is None or math.isnan(self.route_distance_m):
            return None
        acc = 0.0 if math.isnan(self.fix.acc) else self.fix.acc
        return self.route_distance_m - acc > self.corridor_m

    def as_row(self) -> list[str]:
        f = self.fix
        return [
            str(f.line),
            f.tag,
            f.child,
            f.ts_text,
            repr(f.lon),
            repr(f.lat),
            "" if math.isnan(f.acc) else repr(f.acc),
            "" if self.route is None else str(self.route),
            _num(self.route_distance_m),
            _num(self.corridor_m),
            _flag(self.in_corridor),
            _flag(self.off_route),
            " ".join(map(str, self.certain)),
            " ".join(map(str, self.possible)),
            " ".join(map(str, self.crossed)),
            _num(self.nearest_zone_m),
        ]


def _num(v: float) -> str:
    if math.isnan(v):
        return ""
    if math.isinf(v):
        return "inf"
    return f"{v:.3f}"


def _flag(v: bool | None) -> str:
    return "" if v is None else ("yes" if v else "no")


# --- reading fixes -------------------------------------------------------------------------------


def _parse_ts(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def read_fixes(lines: Iterable[str], *, source: str = "fixes") -> list[FixRow]:
    """Parse a CSV of fixes (see the module docstring); :class:`ReplayError` names the bad line."""
    reader = csv.reader(lines)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ReplayError(
            f"{source}: empty file (a header line is needed: tag or child, ts, lon, lat, acc)"
        ) from None
    col = {name: i for i, name in enumerate(header) if name}
    missing = [c for c in ("ts", "lon", "lat", "acc") if c not in col]
    if "tag" not in col and "child" not in col:
        missing.insert(0, "tag or child")
    if missing:
        raise ReplayError(
            f"{source}: line 1: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
        )
    rows: list[FixRow] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue

        def cell(name: str, row: list[str] = row) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        rows.append(_fix_row(source, line, cell))
    return rows


def _fix_row(source: str, line: int, cell: Any) -> FixRow:
    where = f"{source}: line {line}"
    tag, child = cell("tag"), cell("child")
    if not tag and not child:
        raise ReplayError(f"{where}: neither tag nor child given")

    def number(name: str, lo: float, hi: float, *, empty_ok: bool = False) -> float:
        text = cell(name)
        if not text:
            if empty_ok:
                return math.nan
            raise ReplayError(f"{where}: {name} is empty")
        try:
            value = float(text)
        except ValueError:
            raise ReplayError(f"{where}: {name} {text!r} is not a number") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ReplayError(f"{where}: {name} {text!r} out of range [{lo:g}, {hi:g}]")
        return value

    lon = number("lon", -180.0, 180.0)
    lat = number("lat", -90.0, 90.0)
    acc = number("acc", 0.0, math.inf, empty_ok=True)
    ts_text = cell("ts")
    if not ts_text:
        raise ReplayError(f"{where}: ts is empty")
    try:
        ts = _parse_ts(ts_text)
    except ValueError:
        raise ReplayError(f"{where}: ts {ts_text!r} is neither unix seconds nor an ISO 8601 time") from None
    route_text = cell("route")
    route: int | None = None
    if route_text:
        try:
            route = int(route_text)
        except ValueError:
            raise ReplayError(f"{where}: route {route_text!r} is not an integer id") from None
    return FixRow(line, tag, child, ts_text, ts, lon, lat, acc, route)


# --- reading zones and routes --------------------------------------------------------------------


def _features(doc: Mapping[str, Any], source: str) -> list[Mapping[str, Any]]:
    if not isinstance(doc, Mapping) or doc.get("type") != "FeatureCollection":
        raise ReplayError(f"{source}: not a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise ReplayError(f"{source}: 'features' is not a list")
    return features


def _feature_id(feature: Mapping[str, Any], k: int, source: str) -> int:
    props = feature.get("properties") or {}
    raw = props.get("id", feature.get("id"))
    try:
        if isinstance(raw, bool):
            raise TypeError
        value = int(raw)  # type: ignore[arg-type]
        if value != raw and str(value) != str(raw).strip():
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise ReplayError(
            f"{source}: feature {k}: id {raw!r} is not an integer (properties.id or id)"
        ) from None


def _kind(feature: Mapping[str, Any]) -> str | None:
    props = feature.get("properties") or {}
    kind = props.get("kind")
    return kind if isinstance(kind, str) else None


def _shape(feature: Mapping[str, Any], k: int, source: str) -> Any:
    try:
        return shapely.geometry.shape(feature["geometry"])
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as e:
        raise ReplayError(f"{source}: feature {k}: unreadable geometry ({e})") from None


def load_zones(doc: Mapping[str, Any], *, source: str = "zones") -> list[ZoneSpec]:
    """The zones of a GeoJSON FeatureCollection (see the module docstring)."""
    zones: list[ZoneSpec] = []
    for k, feature in enumerate(_features(doc, source)):
        geometry = feature.get("geometry") or {}
        if geometry.get("type") not in ("Polygon", "MultiPolygon") or _kind(feature) not in (None, "zone"):
            continue
        zones.append(ZoneSpec(_feature_id(feature, k, source), _shape(feature, k, source)))
    return zones


def load_routes(doc: Mapping[str, Any], *, source: str = "routes") -> tuple[list[RouteSpec], dict[str, int]]:
    """(routes, {"tag:T" / "child:C": route id}) of a GeoJSON FeatureCollection."""
    routes: list[RouteSpec] = []
    walkers: dict[str, int] = {}
    for k, feature in enumerate(_features(doc, source)):
        geometry = feature.get("geometry") or {}
        if geometry.get("type") not in ("LineString", "MultiLineString") or _kind(feature) not in (
            None,
            "route",
        ):
            continue
        rid = _feature_id(feature, k, source)
        props = feature.get("properties") or {}
        corridor = props.get("corridor_m")
        if isinstance(corridor, bool) or not isinstance(corridor, int | float):
            raise ReplayError(f"{source}: route {rid}: properties.corridor_m {corridor!r} is not a number")
        routes.append(RouteSpec(rid, _shape(feature, k, source), float(corridor)))
        children = props.get("children") or []
        if not isinstance(children, list):
            raise ReplayError(f"{source}: route {rid}: properties.children is not a list")
        for child in children:
            if not isinstance(child, Mapping):
                raise ReplayError(f"{source}: route {rid}: a child is not an object with id and tag")
            if child.get("tag") not in (None, ""):
                walkers[f"tag:{child['tag']}"] = rid
            if child.get("id") is not None:
                walkers[f"child:{child['id']}"] = rid
    return routes, walkers


# --- the replay itself ---------------------------------------------------------------------------


def replay(
    fixes: Sequence[FixRow],
    zones: Mapping[str, Any],
    routes: Mapping[str, Any] | None = None,
    *,
    search_radius_m: float = 150.0,
) -> list[VerdictRow]:
    """Verdicts for fixes (in their order) against the zones and routes GeoJSON documents.

    Pure: no I/O. A fix's route is its own ``route`` column, else the route whose children list its
    tag (else its child id); an unknown route id counts as no route.
    """
    zone_specs = load_zones(zones)
    route_specs, walkers = load_routes(routes, source="routes") if routes is not None else ([], {})
    try:
        index = build_index(route_specs, zone_specs, search_radius_m=search_radius_m)
    except GeometryRefused as e:
        source = "zones" if e.kind == "zone" else "routes"
        raise ReplayError(f"{source}: {e}") from None
    n = len(fixes)
    lon = np.fromiter((f.lon for f in fixes), dtype=np.float64, count=n)
    lat = np.fromiter((f.lat for f in fixes), dtype=np.float64, count=n)
    acc = np.fromiter((f.acc for f in fixes), dtype=np.float64, count=n)
    route_of = [f.route if f.route is not None else _walker_route(walkers, f) for f in fixes]
    slots = index.route_slots(np.array([-1 if r is None else r for r in route_of], dtype=np.int64))
    prev = _previous(fixes)
    has_prev = prev >= 0
    prev_lon = np.where(has_prev, lon[prev], np.nan)
    prev_lat = np.where(has_prev, lat[prev], np.nan)
    prev_acc = np.where(has_prev, acc[prev], np.nan)
    v = index.check(lon, lat, acc, slots, prev_lon=prev_lon, prev_lat=prev_lat, prev_acc=prev_acc)
    out = []
    for i, f in enumerate(fixes):
        known = int(slots[i]) >= 0
        out.append(
            VerdictRow(
                fix=f,
                route=route_of[i] if known else None,
                route_distance_m=float(v.route_distance_m[i]),
                corridor_m=float(v.corridor_m[i]),
                certain=v.certain(i),
                possible=v.possible(i),
                crossed=v.crossed(i),
                nearest_zone_m=float(v.nearest_zone_m[i]),
            )
        )
    return out


def _walker_route(walkers: Mapping[str, int], f: FixRow) -> int | None:
    if f.tag and f"tag:{f.tag}" in walkers:
        return walkers[f"tag:{f.tag}"]
    if f.child and f"child:{f.child}" in walkers:
        return walkers[f"child:{f.child}"]
    return None


def _previous(fixes: Sequence[FixRow]) -> np.ndarray:
    """Index of each fix's previous fix of the same tag (else child) in time order, -1 for none.
    Fixes with the same time keep their file order."""
    order = sorted(range(len(fixes)), key=lambda i: (fixes[i].key, fixes[i].ts, i))
    prev = np.full(len(fixes), -1, dtype=np.int64)
    for a, b in itertools.pairwise(order):
        if fixes[a].key == fixes[b].key:
            prev[b] = a
    return prev


def write_verdicts(rows: Iterable[VerdictRow], out: TextIO) -> int:
    """Write the header and one line per verdict; returns how many verdicts."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for row in rows:
        writer.writerow(row.as_row())
        n += 1
    return n


def replay_csv(
    fixes_csv: str,
    zones: Mapping[str, Any],
    routes: Mapping[str, Any] | None = None,
    *,
    search_radius_m: float = 150.0,
) -> str:
    """The whole replay on text: a fixes CSV in, the verdicts CSV out (what ``tracker replay`` writes)."""
    import io

    rows = replay(read_fixes(fixes_csv.splitlines()), zones, routes, search_radius_m=search_radius_m)
    out = io.StringIO()
    write_verdicts(rows, out)
    return out.getvalue()


# --- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``tracker replay``."""
    parser.description = (
        "Run a CSV of past fixes against danger zones (and routes) given as GeoJSON and write one "
        "verdict row per fix, as the service's geofence core decides it. Nothing is stored."
    )
    parser.add_argument(
        "fixes",
        type=Path,
        help="CSV of fixes with a header: tag or child, ts (unix seconds or ISO 8601), lon, lat, acc "
        "(metres, empty = unknown), optional route (route id)",
    )
    parser.add_argument(
        "--zones",
        type=Path,
        required=True,
        help="GeoJSON FeatureCollection: its Polygon/MultiPolygon features are the zones; id from "
        "properties.id (else the feature's id); features with properties.kind other than 'zone' are "
        "skipped (a world file from GET /api/v1/world works)",
    )
    parser.add_argument(
        "--routes",
        type=Path,
        help="GeoJSON FeatureCollection: its LineString/MultiLineString features are the routes; reads "
        "properties.id (else id), properties.corridor_m (half-width, metres) and properties.children "
        "([{id, tag}]: whose fixes follow the route)",
    )
    parser.add_argument("-o", "--out", type=Path, help="verdicts CSV (default: standard output)")
    parser.add_argument(
        "--search-radius", type=float, default=150.0, help="how far around a fix zones are looked for (m)"
    )


def _read_json(path: Path, what: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ReplayError(f"{what} {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ReplayError(f"{what} {path}: not JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(doc, Mapping):
        raise ReplayError(f"{what} {path}: not a GeoJSON FeatureCollection")
    return doc


def run(args: argparse.Namespace) -> int:
    """``tracker replay``: 0 on success, 2 on bad input (the message on standard error)."""
    try:
        zones = _read_json(args.zones, "zones")
        routes = _read_json(args.routes, "routes") if args.routes is not None else None
        try:
            with args.fixes.open(encoding="utf-8", newline="") as f:
                fixes = read_fixes(f, source=str(args.fixes))
        except OSError as e:
            raise ReplayError(f"fixes {args.fixes}: {e.strerror or e}") from None
        rows = replay(fixes, zones, routes, search_radius_m=args.search_radius)
    except ReplayError as e:
        print(f"tracker replay: {e}", file=sys.stderr)
        return 2
    if args.out is None:
        n = write_verdicts(rows, sys.stdout)
    else:
        with args.out.open("w", encoding="utf-8", newline="") as out:
            n = write_verdicts(rows, out)
    print(f"tracker replay: {n} fixes", file=sys.stderr)
    return 0
