"""``tracker replay``: run a file of past fixes through the tracker's decisions, storing nothing.

Two modes:

* **alerts** (``--world WORLD.geojson --alerts-out ALERTS.jsonl``): the whole monitor. The fixes go
  through the functions the service decides with (:mod:`tracker.offline`: admission, the geofence of
  a batch, the monitor's rules fix by fix, the clock's pass for signal lost and not arrived with the
  clock in the fixes' time, one open alert per child, kind and zone), on the registry view the
  service builds from the world's registry (:func:`tracker.registry_view.view_from_world`). One JSON
  line per alert the service would have raised, in the order opened. Operators try a new zone,
  hours or threshold on last week's fixes with it (docs/operations.md); the tests check it against
  the live pipeline (tests/integration/test_replay_matches_pipeline.py).
* **verdicts** (``--zones`` [``--routes``], or ``--world`` alone): one CSV row per fix, what the
  geofence answers for it (stage 3, :func:`tracker.stages.geofence.observe`: each fix judged on the
  disc of ``Rules.zone_sigma`` round it, with its previous fix for the crossings), so that what
  replay calls "certain" is what the tracker decides on.

Thresholds are the tracker's settings (``TRACKER_*`` in the environment).

An alert line (ISO 8601 UTC times)::

    {"child_id": 7, "tag": "tag-7", "kind": "danger_zone", "zone_id": 5, "route_id": null,
     "severity": "critical", "opened_at": "2027-01-15T08:00:10Z", "resolved_at": null,
     "event": "entered_zone", "resolved_by": null, "updates": 0,
     "fix": {"line": 3, "ts": "2027-01-15T08:00:10Z", "lon": 127.05, "lat": 37.50, "acc": 5.0}}

``kind`` is the alerts table's (``danger_zone``, ``left_route``, ``sos``, ``signal_lost``,
``not_arrived_school`` / ``_home``, and the info notices ``arrived_school`` / ``_home``,
``left_school``, ``low_battery``, resolved as they open); ``zone_id`` for a danger zone, else
``route_id``: the child's route (null: none); ``resolved_at`` null: still open at the end;
``resolved_by`` the event that resolved it; ``updates`` the events of the same incident while it was
open; ``fix`` the fix that decided it (``line`` in the CSV), null when the clock did.

Input fixes (CSV with a header; column order free, other columns ignored):

* ``tag`` or ``child`` (at least one): whose fix it is;
* ``ts``: unix seconds or an ISO 8601 time (with a zone, or UTC assumed);
* ``lon``, ``lat``: WGS84 degrees;
* ``acc``: accuracy radius in metres (empty: unknown, never "certainly" anything);
* ``route`` (optional, verdicts): the id of the route this fix is checked against, overriding the
  routes file's children;
* ``received`` (optional, alerts): when the tracker received it, unix seconds or ISO 8601 (empty or
  no column: at ``ts``); fixes are taken in this order, in batches by the second;
* ``sos`` (optional): true / false (also t / f, 1 / 0, yes / no); ``batt`` (optional): per cent.

In alerts mode a row that names only a child is sent by that child's first tag in the world; a tag
the world does not know is refused as the service refuses it (counted on standard error).

Zones and routes: a GeoJSON FeatureCollection read by ``tracker.importers.read_world``, exactly as an
import reads it (the world format of ``GET /api/v1/world``, so one world file can be given as both
``--zones`` and ``--routes``): Polygon / MultiPolygon features (or ``properties.kind`` ``"zone"``) are
zones, LineString / MultiLineString features (or ``kind`` ``"route"``) routes with
``properties.corridor_m`` (the corridor's half-width, metres) and ``properties.children``, a list of
``{"id": child id, "tag": tag id}``; every feature has an id (``properties.id``, else the feature's
``id``); a name or a zone kind may be left out. For alerts the world also gives the schools (Points:
``timezone``, ``windows``, ``closed_days``, ``fence_m``, their children without a route), the routes'
``windows`` and ``arrivals`` and the zones' ``hours`` and ``severity`` (schemas/world.v1.json).

In verdicts mode each fix is compared with the previous fix of the same tag (else child) in time,
for the zones crossed in between. Output columns: see :data:`COLUMNS`; zone lists are space-separated ids.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import shapely.geometry

from tracker.config import Settings, load_settings, rules_from
from tracker.geofence import GeometryRefused, RouteSpec, ZoneSpec, build_index
from tracker.importers.features import ImportDefaults, Loc, WorldFeatures, read_world, where
from tracker.importers.models import RouteProps
from tracker.ingest.decode import Fix
from tracker.monitor import Rules
from tracker.offline import OfflineTracker
from tracker.registry_view import RegistryView, view_from_world
from tracker.stages.geofence import observe

__all__ = [
    "COLUMNS",
    "FixRow",
    "ReplayError",
    "VerdictRow",
    "WorldRun",
    "add_arguments",
    "iso_utc",
    "read_fixes",
    "replay",
    "replay_alerts",
    "replay_csv",
    "run",
    "world_view",
    "write_alerts",
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
    "off_route",  # the accuracy circle is clear of the corridor: distance - acc > corridor_m
    "certain_zones",  # zones whose interior holds the fix's whole zone disc (Rules.zone_sigma round it)
    "possible_zones",  # zones the zone disc touches (within min(disc, search radius))
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
    batt: int | None = None  # battery level, per cent (``batt`` column)
    sos: bool = False  # the SOS button (``sos`` column)
    received: float | None = None  # when the tracker received it (``received`` column; None: at ``ts``)

    @property
    def key(self) -> str:
        return f"tag:{self.tag}" if self.tag else f"child:{self.child}"

    @property
    def received_at(self) -> float:
        return self.ts if self.received is None else self.received


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
    batt = None if not cell("batt") else int(number("batt", 0, 100))
    sos_text = cell("sos").lower()
    if sos_text not in ("", "0", "1", "t", "f", "true", "false", "yes", "no"):  # t, f: PostgreSQL's CSV
        raise ReplayError(f"{where}: sos {cell('sos')!r} is not one of true, false, t, f, 1, 0, yes, no")
    received_text = cell("received")
    received: float | None = None
    if received_text:
        try:
            received = _parse_ts(received_text)
        except ValueError:
            raise ReplayError(
                f"{where}: received {received_text!r} is neither unix seconds nor an ISO 8601 time"
            ) from None
    sos = sos_text in ("1", "t", "true", "yes")
    return FixRow(line, tag, child, ts_text, ts, lon, lat, acc, route, batt, sos, received)


# --- reading zones and routes --------------------------------------------------------------------

World = Mapping[str, Any] | bytes  # a parsed GeoJSON document, or its bytes
DEFAULT_RULES = Rules()


def _world(doc: World, source: str) -> WorldFeatures:
    """The routes and zones of a document, read by the importers; the first problem is the error."""
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    world, problems = read_world(data, ImportDefaults(name="replayed", zone_kind="replayed"))
    if problems:
        p = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ReplayError(f"{source}: {where(p.loc)}: {p.msg}{more}")
    return world


def _zone_specs(world: WorldFeatures) -> list[ZoneSpec]:
    return [ZoneSpec(d.id, shapely.geometry.shape(d.geometry)) for d in world.zones if d.id is not None]


def _route_specs(world: WorldFeatures) -> tuple[list[RouteSpec], dict[str, int]]:
    """(routes, {"tag:T" / "child:C": route id})."""
    routes: list[RouteSpec] = []
    walkers: dict[str, int] = {}
    for d in world.routes:
        assert d.id is not None and isinstance(d.props, RouteProps)  # read_world names every feature
        routes.append(RouteSpec(d.id, shapely.geometry.shape(d.geometry), d.props.corridor_m))
        for child in world.children.get(d.id, []):
            if child.tag:
                walkers[f"tag:{child.tag}"] = d.id
            walkers[f"child:{child.id}"] = d.id
    return routes, walkers


# --- the replay itself ---------------------------------------------------------------------------


def replay(
    fixes: Sequence[FixRow],
    zones: World,
    routes: World | None = None,
    *,
    rules: Rules = DEFAULT_RULES,
    search_radius_m: float = 150.0,
) -> list[VerdictRow]:
    """GeofenceAnswers for fixes (in their order) against the zones and routes GeoJSON documents, judged as
    the tracker's pipeline judges them under ``rules``.

    Pure: no I/O. A fix's route is its own ``route`` column, else the route whose children list its
    tag (else its child id); an unknown route id counts as no route.
    """
    zone_specs = _zone_specs(_world(zones, "zones"))
    route_specs, walkers = _route_specs(_world(routes, "routes")) if routes is not None else ([], {})
    try:
        index = build_index(route_specs, zone_specs, search_radius_m=search_radius_m)
    except GeometryRefused as e:
        source = "zones" if e.kind == "zone" else "routes"
        raise ReplayError(f"{source}: {e}") from None
    route_of = [f.route if f.route is not None else _walker_route(walkers, f) for f in fixes]
    # the stage wants each walker's fixes in time order, walkers numbered: sort, observe, put back
    order = sorted(range(len(fixes)), key=lambda i: (fixes[i].key, fixes[i].ts, i))
    walker_ids = {key: k for k, key in enumerate(dict.fromkeys(fixes[i].key for i in order))}
    slots = index.route_slots(np.array([-1 if route_of[i] is None else route_of[i] for i in order]))
    observed = observe(
        index, rules, [fixes[i] for i in order], [walker_ids[fixes[i].key] for i in order], slots, {}
    )
    out: list[VerdictRow | None] = [None] * len(fixes)
    for j, i in enumerate(order):
        obs = observed[j]
        known = int(slots[j]) >= 0
        out[i] = VerdictRow(
            fix=fixes[i],
            route=route_of[i] if known else None,
            route_distance_m=obs.route_distance_m,
            corridor_m=obs.corridor_m,
            certain=tuple(sorted(obs.certain_zones)),
            possible=tuple(sorted(obs.possible_zones)),
            crossed=tuple(sorted(obs.crossed_zones)),
            nearest_zone_m=obs.nearest_zone_m,
        )
    return [row for row in out if row is not None]


def _walker_route(walkers: Mapping[str, int], f: FixRow) -> int | None:
    if f.tag and f"tag:{f.tag}" in walkers:
        return walkers[f"tag:{f.tag}"]
    if f.child and f"child:{f.child}" in walkers:
        return walkers[f"child:{f.child}"]
    return None


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
    zones: World,
    routes: World | None = None,
    *,
    rules: Rules = DEFAULT_RULES,
    search_radius_m: float = 150.0,
) -> str:
    """The whole replay on text: a fixes CSV in, the verdicts CSV out (what ``tracker replay`` writes)."""
    import io

    fixes = read_fixes(fixes_csv.splitlines())
    rows = replay(fixes, zones, routes, rules=rules, search_radius_m=search_radius_m)
    out = io.StringIO()
    write_verdicts(rows, out)
    return out.getvalue()


# --- the whole monitor: alerts -------------------------------------------------------------------


@dataclass(frozen=True)
class WorldRun:
    """What ``replay_alerts`` made of a file of fixes: the alerts, and what the fixes came to."""

    alerts: list[dict[str, Any]]
    fixes: int
    refused: Counter[str]  # fixes the front refused, by reason (unknown_tag, rate_limited ...)
    verdicts: Counter[str]  # what the monitor made of the admitted fixes (decided, stale ...)


def world_view(doc: World, settings: Settings) -> RegistryView:
    """The registry view the service would build from the registry a world document was exported
    from (``GET /api/v1/world``); :class:`ReplayError` names the first feature that is wrong."""
    world = _world(doc, "world")
    view = view_from_world(
        world,
        default_timezone=settings.default_timezone,
        all_day=settings.watch_all_day,
        home_fence_m=settings.home_fence_m,
    )
    if view.refused:
        locs: dict[tuple[str, int | None], Loc] = {
            (d.kind, d.id): d.loc for d in [*world.routes, *world.zones]
        }
        what, why = next(iter(view.refused.items()))
        kind, _, rest = what.partition(" ")
        feature_id = rest.split(" ")[0]
        loc = locs.get((kind, int(feature_id))) if feature_id.isdigit() else None
        place = f"{where(loc)} ({what})" if loc is not None else what
        raise ReplayError(f"world: {place}: {why}")
    return view


def replay_alerts(
    fixes: Sequence[FixRow],
    world: World,
    *,
    settings: Settings,
    until: float | None = None,
    source: str = "fixes",
) -> WorldRun:
    """The alerts the service would have raised on these fixes with the world's registry and
    ``settings`` (thresholds, ``TRACKER_TICK_S``, admission): see :mod:`tracker.offline`.

    Pure: no I/O. Each alert as the JSON object ``tracker replay --alerts-out`` writes (see the
    module's docstring), in the order opened."""
    view = world_view(world, settings)
    tag_of_child: dict[int, str] = {}
    for tag, child in sorted(view.rows.tags.items(), reverse=True):
        tag_of_child[child] = tag  # the child's first tag, in the order of their ids
    line_of: dict[int, int] = {}
    decoded: list[Fix] = []
    for f in fixes:
        tag = f.tag
        if not tag:
            named = int(f.child) if f.child.isdigit() else None
            if named is None or named not in tag_of_child:
                raise ReplayError(f"{source}: line {f.line}: child {f.child!r} has no tag in the world")
            tag = tag_of_child[named]
        fix = Fix(
            tag,
            f.ts,
            f.lat,
            f.lon,
            f.acc,
            f.batt,
            None,
            f.sos,
            f.received_at,
            f"tracker/v1/tags/{tag}/position",
        )
        line_of[id(fix)] = f.line
        decoded.append(fix)
    offline = OfflineTracker(
        view,
        rules_from(settings),
        tick_s=settings.tick_s,
        max_future_s=settings.max_future_s,
        tag_rate_per_s=settings.tag_rate_per_s,
        tag_burst=settings.tag_burst,
    )
    alerts = offline.run(decoded, until=until)
    last_tag: dict[int, str] = {}
    for fix in sorted(decoded, key=lambda f: f.received_at):
        if (sender := view.rows.tags.get(fix.tag)) is not None:
            last_tag[sender] = fix.tag
    children = view.rows.children
    out = []
    for a in alerts:
        row = children.get(a.child_id)
        out.append(
            {
                "child_id": a.child_id,
                "tag": a.fix.tag
                if a.fix is not None
                else last_tag.get(a.child_id, tag_of_child.get(a.child_id)),
                "kind": a.kind,
                "zone_id": a.zone_id,
                "route_id": None if a.zone_id is not None or row is None else row.route_id,
                "severity": a.severity,
                "opened_at": iso_utc(a.opened_at),
                "resolved_at": None if a.resolved_at is None else iso_utc(a.resolved_at),
                "event": a.event,
                "resolved_by": a.resolved_by,
                "updates": a.updates,
                "fix": None
                if a.fix is None
                else {
                    "line": line_of.get(id(a.fix)),
                    "ts": iso_utc(a.fix.ts),
                    "lon": a.fix.lon,
                    "lat": a.fix.lat,
                    "acc": None if math.isnan(a.fix.acc) else a.fix.acc,
                },
            }
        )
    refused = Counter(r.reason.value for r in offline.refused)
    return WorldRun(out, len(decoded), refused, offline.verdicts)


def iso_utc(ts: float) -> str:
    """ISO 8601 in UTC, ``Z`` for the zone (the alert lines' times)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def write_alerts(alerts: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """One JSON object per line; returns how many."""
    n = 0
    for a in alerts:
        out.write(json.dumps(a, ensure_ascii=False) + "\n")
        n += 1
    return n


# --- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``tracker replay``."""
    parser.description = (
        "Run a CSV of past fixes through the tracker's decisions without storing anything. With "
        "--world and --alerts-out: the whole monitor (admission, geofence, the per-child rules, the "
        "clock's signal lost and not arrived in the fixes' time, one alert per incident) and one JSON "
        "line per alert the service would have raised. Otherwise: one verdict row per fix against "
        "danger zones (and routes), as the pipeline judges it (the zone disc of TRACKER_ZONE_SIGMA "
        "round each fix). Thresholds are the TRACKER_* settings of the environment."
    )
    parser.add_argument(
        "fixes",
        type=Path,
        help="CSV of fixes with a header: tag or child, ts (unix seconds or ISO 8601), lon, lat, acc "
        "(metres, empty = unknown); optional: received (when the tracker got it; default ts), sos "
        "(true/false), batt (per cent), route (route id, verdicts only)",
    )
    parser.add_argument(
        "--world",
        type=Path,
        help="world GeoJSON as GET /api/v1/world gives it (schemas/world.v1.json): schools, routes with "
        "their windows, arrivals and children's tags, zones with their hours; the registry to judge with. "
        "Without --zones it is also the verdicts' zones and routes",
    )
    parser.add_argument(
        "--alerts-out",
        type=Path,
        help="with --world: write the alerts here, one JSON object per line ('-': standard output)",
    )
    parser.add_argument(
        "--until",
        help="with --alerts-out: run the clock's rules on to this time (unix seconds or ISO 8601; "
        "default: the last fix received + TRACKER_SIGNAL_LOST_S + TRACKER_TICK_S)",
    )
    parser.add_argument(
        "--zones",
        type=Path,
        help="GeoJSON FeatureCollection: its Polygon/MultiPolygon features are the zones, read as an import "
        "reads them; id from properties.id (else the feature's id); routes and schools in it are passed "
        "over (a world file from GET /api/v1/world works)",
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


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ReplayError(f"{what} {path}: {e.strerror or e}") from None


def run(args: argparse.Namespace) -> int:
    """``tracker replay``: 0 on success, 2 on bad input (the message on standard error)."""
    try:
        if args.alerts_out is not None and args.world is None:
            raise ReplayError("--alerts-out needs --world (the registry to judge the fixes with)")
        if args.zones is None and args.world is None:
            raise ReplayError("give --world (the whole monitor, with --alerts-out) or --zones (verdicts)")
        if args.until is not None and args.alerts_out is None:
            raise ReplayError("--until is for --alerts-out (the clock's rules)")
        try:
            until = None if args.until is None else _parse_ts(args.until)
        except ValueError:
            raise ReplayError(
                f"--until {args.until!r} is neither unix seconds nor an ISO 8601 time"
            ) from None
        world = _read_file(args.world, "world") if args.world is not None else None
        if args.zones is not None:
            zones: bytes | None = _read_file(args.zones, "zones")
            routes = _read_file(args.routes, "routes") if args.routes is not None else None
        else:
            zones = routes = world
        try:
            with args.fixes.open(encoding="utf-8", newline="") as f:
                fixes = read_fixes(f, source=str(args.fixes))
        except OSError as e:
            raise ReplayError(f"fixes {args.fixes}: {e.strerror or e}") from None
        settings = load_settings()  # the running tracker's thresholds (TRACKER_ZONE_SIGMA ...)
        if world is not None and args.alerts_out is not None:
            result = replay_alerts(fixes, world, settings=settings, until=until, source=str(args.fixes))
            _write(args.alerts_out, lambda out: write_alerts(result.alerts, out))
            still_open = sum(a["resolved_at"] is None for a in result.alerts)
            refused = ", ".join(f"{n} {why}" for why, n in sorted(result.refused.items()))
            print(
                f"tracker replay: {result.fixes} fixes ({refused or 'none'} refused), "
                f"{len(result.alerts)} alerts ({still_open} open at the end)",
                file=sys.stderr,
            )
            if args.out is None:
                return 0
        assert zones is not None  # --zones, or --world
        rules = rules_from(settings)
        rows = replay(fixes, zones, routes, rules=rules, search_radius_m=args.search_radius)
    except ReplayError as e:
        print(f"tracker replay: {e}", file=sys.stderr)
        return 2
    n = _write(args.out, lambda out: write_verdicts(rows, out))
    print(f"tracker replay: {n} fixes", file=sys.stderr)
    return 0


def _write(path: Path | None, write: Callable[[TextIO], int]) -> int:
    """Write to ``path`` (None or '-': standard output)."""
    if path is None or str(path) == "-":
        return write(sys.stdout)
    with path.open("w", encoding="utf-8", newline="") as out:
        return write(out)
