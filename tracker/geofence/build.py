"""The build side of the geofence: routes and zones validated, repaired, projected and packed.

Shapely is used only here: it validates, repairs and decomposes the geometry (:func:`zone_polygons`,
:class:`GeometryRefused` naming the feature it refuses). The features are then flattened into numpy
arrays in slot order (ids ascending), projected to metres, and packed by the build-time kernels
(:mod:`tracker.geofence.kernels.records` and :mod:`tracker.geofence.kernels.cells`) into the records
the queries read: a :class:`PackedIndex`, which :func:`tracker.geofence.index.build_index` wraps as a
:class:`~tracker.geofence.index.GeofenceIndex`. Nothing here checks fixes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from tracker.geofence import kernels
from tracker.geofence.projection import LocalProjection

__all__ = [
    "MIN_EXACT_M",
    "NEAR_M",
    "GeometryRefused",
    "PackedGrid",
    "PackedIndex",
    "PackedRoutes",
    "PackedZones",
    "Prepared",
    "RouteSpec",
    "ZoneSpec",
    "choose_cell",
    "pack",
    "pack_prepared",
    "prepare",
    "zone_polygons",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

MIN_EXACT_M = 100.0
"""Edges are listed up to this far from a cell even when the search radius is smaller: a fix whose
accuracy radius is larger than the exact range needs a scan of its zone's whole boundary (the service
never lets fixes less accurate than 100 m decide anything)."""

NEAR_M = 40.0
"""Edges up to this far from a cell are kept in the cell's record, farther ones (needed for a fix whose
accuracy radius is larger, or for the nearest zone of a fix that no zone holds) in a second array:
what a typical fix reads stays within a few cache lines."""


@dataclass(frozen=True)
class RouteSpec:
    """A walking route: a polyline in lon/lat and the half-width of its corridor in metres (> 0)."""

    route_id: int
    geometry: shapely.LineString | shapely.MultiLineString
    corridor_m: float


@dataclass(frozen=True)
class ZoneSpec:
    """A (danger) zone: a polygon or multipolygon in lon/lat; holes allowed."""

    zone_id: int
    geometry: shapely.Polygon | shapely.MultiPolygon


class GeometryRefused(ValueError):
    """A route or zone that cannot be indexed; ``feature_id`` names it, the message says why."""

    def __init__(self, feature_id: int, reason: str, kind: str = "zone") -> None:
        self.feature_id = int(feature_id)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{kind} {self.feature_id} refused: {reason}")

    def __reduce__(self) -> tuple[type[GeometryRefused], tuple[int, str, str]]:
        return (type(self), (self.feature_id, self.reason, self.kind))


@dataclass(frozen=True, eq=False)
class PackedRoutes:
    """Every route's record, by slot (the kernels' ``R``)."""

    corridor_m: F64  # [n_routes]
    start: I64  # [n_routes + 1]: where each route's record begins in ``records``
    records: F64  # chunk boxes and vertices (layout: tracker.geofence.kernels.layout)

    def kernel_args(self) -> tuple[F64, I64, F64]:
        return (self.corridor_m, self.start, self.records)


@dataclass(frozen=True, eq=False)
class PackedZones:
    """Every zone's rings, cut into chunks (the kernels' ``Z``: exact geometry for scans and crossings)."""

    box: F64  # [n_zones, 4] minx, miny, maxx, maxy
    ring_off: I64  # [n_zones + 1] -> rings (every part's shell and holes)
    vert_off: I64  # [n_rings + 1] -> vertices (closed rings)
    chunk_off: I64  # [n_rings + 1] -> chunks
    chunk_v: I64  # [n_chunks, 2] vertex range
    chunk_box: F64  # [n_chunks, 4]
    xy: F64  # [n_vertices, 2]

    def kernel_args(self) -> tuple[F64, I64, I64, I64, F64, F64]:
        return (self.box, self.ring_off, self.chunk_off, self.chunk_v, self.chunk_box, self.xy)


@dataclass(frozen=True, eq=False)
class PackedGrid:
    """The cell index over the zones (the kernels' ``G``, and the grid's place and size)."""

    x0: float
    y0: float
    cell: float
    nx: int
    ny: int
    exact_m: float
    cell_off: I64  # [nx * ny + 1] -> entries
    e_zone: I32  # zone slot per entry, ascending within a cell
    start: I64  # [nx * ny + 1]: where each cell's records begin in ``records``
    records: F64  # entry headers and near edges (layout: tracker.geofence.kernels.layout)
    far: F64  # the entries' far edges

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        return (self.cell_off, self.e_zone, self.start, self.records, self.far)


@dataclass(frozen=True, eq=False)
class PackedIndex:
    """Everything a :class:`~tracker.geofence.index.GeofenceIndex` queries: ids in slot order and the
    packed routes, zones and cell grid, in the local metres of ``projection``."""

    projection: LocalProjection
    search_radius_m: float
    route_ids: I64  # slot -> route id, ascending
    zone_ids: I64  # slot -> zone id, ascending
    routes: PackedRoutes
    zones: PackedZones
    grid: PackedGrid


# ---------------------------------------------------------------------------------------------------
# validation and flattening (shapely)


def _check_lonlat(coords: F64, feature_id: int, kind: str) -> None:
    if coords.size == 0:
        return
    if not np.isfinite(coords).all():
        raise GeometryRefused(feature_id, "coordinates are not finite", kind)
    lon, lat = coords[:, 0], coords[:, 1]
    bad = (np.abs(lon) > 180.0) | (np.abs(lat) > 90.0)
    if bad.any():
        k = int(np.argmax(bad))
        raise GeometryRefused(
            feature_id,
            f"coordinates out of range: lon {lon[k]!r}, lat {lat[k]!r} (lon/lat order, degrees)",
            kind,
        )


def _polygonal_parts(geom: shapely.Geometry) -> list[shapely.Polygon]:
    """Non-empty polygons of a geometry, collections flattened recursively."""
    if isinstance(geom, shapely.Polygon):
        return [] if geom.is_empty else [geom]
    if isinstance(geom, shapely.MultiPolygon | shapely.GeometryCollection):
        out: list[shapely.Polygon] = []
        for part in geom.geoms:
            out.extend(_polygonal_parts(part))
        return out
    return []


def zone_polygons(spec: ZoneSpec) -> list[shapely.Polygon]:
    """The polygons (lon/lat) a zone is indexed as, or :class:`GeometryRefused`.

    Invalid polygons are repaired with ``shapely.make_valid(method="structure")``, which keeps the area
    enclosed by the rings (overlapping parts are unioned, a bow-tie becomes two triangles); only the
    polygonal part of the result is kept.
    """
    zid = int(spec.zone_id)
    geom = spec.geometry
    if not isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
        raise GeometryRefused(
            zid, f"wrong geometry type {type(geom).__name__}: expected Polygon or MultiPolygon"
        )
    if geom.is_empty:
        raise GeometryRefused(zid, "empty geometry")
    _check_lonlat(shapely.get_coordinates(geom), zid, "zone")
    if geom.is_valid:
        return _polygonal_parts(geom)
    why = shapely.is_valid_reason(geom)
    fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    polys = [p for p in _polygonal_parts(fixed) if p.area > 0.0]
    if not polys:
        raise GeometryRefused(zid, f"invalid ({why}) and not repairable: make_valid leaves nothing polygonal")
    return polys


def _object_array(items: Sequence[object]) -> npt.NDArray[np.object_]:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _offsets(counts: npt.NDArray[np.integer]) -> I64:
    off = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    return off


def _sorted_ids(ids_in: Sequence[int], kind: str) -> tuple[I64, I64]:
    ids = np.array([int(i) for i in ids_in], dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if ids.size > 1:
        dup = np.flatnonzero(ids[1:] == ids[:-1])
        if dup.size:
            raise GeometryRefused(int(ids[dup[0]]), f"duplicate {kind} id", kind)
    return ids, order.astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Flat:
    """Validated features in slot order, still in lon/lat."""

    ids: I64
    part_off: I64  # feature -> parts
    sub_off: I64  # part -> vertices (routes) or part -> rings (zones)
    vert_off: I64 | None  # ring -> vertices (zones only)
    coords: F64  # [n_vertices, 2] lon, lat


def _prepare_routes(routes: Sequence[RouteSpec]) -> tuple[_Flat, F64]:
    for spec in routes:
        geom = spec.geometry
        if not isinstance(geom, shapely.LineString | shapely.MultiLineString):
            raise GeometryRefused(
                spec.route_id,
                f"wrong geometry type {type(geom).__name__}: expected LineString or MultiLineString",
                "route",
            )
        c = float(spec.corridor_m)
        if not (math.isfinite(c) and c > 0.0):
            raise GeometryRefused(
                spec.route_id, f"corridor_m must be finite and > 0, got {spec.corridor_m!r}", "route"
            )
        if int(spec.route_id) < 0:
            raise GeometryRefused(spec.route_id, "route id must be >= 0", "route")
    ids, order = _sorted_ids([s.route_id for s in routes], "route")
    geoms = _object_array([routes[i].geometry for i in order])
    corridor = np.array([float(routes[i].corridor_m) for i in order], dtype=np.float64)
    empty = shapely.is_empty(geoms)
    if empty.any():
        raise GeometryRefused(int(ids[np.argmax(empty)]), "empty geometry", "route")
    parts, part_route = _line_parts(geoms)
    keep = ~shapely.is_empty(parts)
    parts, part_route = parts[keep], part_route[keep]
    n_coords = shapely.get_num_coordinates(parts)
    short = n_coords < 2
    if short.any():
        k = int(np.argmax(short))
        raise GeometryRefused(
            int(ids[part_route[k]]), f"too few points: a line needs at least 2, got {n_coords[k]}", "route"
        )
    coords = shapely.get_coordinates(parts)  # (a part's vertices: n_coords of them, in order)
    sub_off = _offsets(n_coords)
    bad = _out_of_range(coords)
    if bad.any():
        part = int(np.searchsorted(sub_off, np.argmax(bad), side="right")) - 1
        _check_lonlat(coords[sub_off[part] : sub_off[part + 1]], int(ids[part_route[part]]), "route")
    flat_line = np.bincount(part_route, weights=shapely.length(parts), minlength=ids.size) == 0.0
    if flat_line.any():
        raise GeometryRefused(
            int(ids[np.argmax(flat_line)]), "too few points: all points of the line are identical", "route"
        )
    flat = _Flat(
        ids=ids,
        part_off=_offsets(np.bincount(part_route, minlength=ids.size)),
        sub_off=sub_off,
        vert_off=None,
        coords=coords,
    )
    return flat, corridor


def _out_of_range(coords: F64) -> npt.NDArray[np.bool_]:
    """Which vertices are not finite or not a longitude and latitude in degrees (a slice at a time:
    no float temporaries of every vertex)."""
    bad = np.zeros(coords.shape[0], dtype=bool)
    step = 1 << 16
    for at in range(0, coords.shape[0], step):
        c = coords[at : at + step]
        bad[at : at + step] = (
            ~np.isfinite(c).all(axis=1) | (np.abs(c[:, 0]) > 180.0) | (np.abs(c[:, 1]) > 90.0)
        )
    return bad


def _line_parts(geoms: npt.NDArray[np.object_]) -> tuple[npt.NDArray[np.object_], I64]:
    """``shapely.get_parts(geoms, return_index=True)`` of lines, a (single) line given as itself where
    get_parts gives a copy: at 40,000 routes the copies were ~30 MiB of the start's peak
    (bench/worker_memory.py). The same parts in the same order: a MultiLineString's by get_parts."""
    multi = shapely.get_type_id(geoms) == shapely.GeometryType.MULTILINESTRING
    if not multi.any():
        return geoms, np.arange(geoms.size, dtype=np.int64)
    sub, sub_of = shapely.get_parts(geoms[multi], return_index=True)
    counts = np.ones(geoms.size, dtype=np.int64)
    counts[multi] = np.bincount(sub_of, minlength=int(multi.sum()))
    part_route = np.repeat(np.arange(geoms.size, dtype=np.int64), counts)
    part_multi = np.repeat(multi, counts)
    parts = np.empty(part_route.size, dtype=object)
    parts[~part_multi] = geoms[~multi]
    parts[part_multi] = sub
    return parts, part_route


def _prepare_zones(zones: Sequence[ZoneSpec]) -> _Flat:
    polys_by_input = [zone_polygons(z) for z in zones]
    ids, order = _sorted_ids([z.zone_id for z in zones], "zone")
    polys = [polys_by_input[i] for i in order]
    parts = _object_array([p for ps in polys for p in ps])
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    return _Flat(
        ids=ids,
        part_off=_offsets(np.array([len(ps) for ps in polys], dtype=np.int64)),
        sub_off=_offsets(np.bincount(ring_part, minlength=parts.size)),
        vert_off=_offsets(np.bincount(coord_ring, minlength=rings.size)),
        coords=coords,
    )


# ---------------------------------------------------------------------------------------------------
# projection and packing (the build-time kernels)


def _boxes(xy: F64, off: I64) -> F64:
    """Bounding box of each run ``off[k] .. off[k + 1]`` of points (runs are not empty)."""
    box = np.empty((off.shape[0] - 1, 4), dtype=np.float64)
    if box.shape[0]:
        start = off[:-1]
        box[:, 0] = np.minimum.reduceat(xy[:, 0], start)
        box[:, 1] = np.minimum.reduceat(xy[:, 1], start)
        box[:, 2] = np.maximum.reduceat(xy[:, 0], start)
        box[:, 3] = np.maximum.reduceat(xy[:, 1], start)
    return box


def _project(coords: F64, projection: LocalProjection, *, in_place: bool = False) -> F64:
    """The coordinates in the projection's metres; ``in_place``: written over ``coords`` a slice at a
    time (the same doubles, without a second array of every vertex and its temporaries)."""
    if not in_place:
        xy = np.empty_like(coords)
        xy[:, 0], xy[:, 1] = projection.to_xy(coords[:, 0], coords[:, 1])
        return xy
    step = 1 << 16
    for at in range(0, coords.shape[0], step):
        part = coords[at : at + step]
        part[:, 0], part[:, 1] = projection.to_xy(part[:, 0], part[:, 1])
    return coords


def _route_arrays(flat: _Flat, corridor: F64, projection: LocalProjection) -> PackedRoutes:
    """The routes' records; ``flat``'s coordinates are projected in place (they are not read after)."""
    xy = _project(flat.coords, projection, in_place=True)
    part_chunk_off, chunk_v, chunk_box = kernels.build_chunks(flat.sub_off, xy, kernels.CHUNK)
    route_chunk_off = np.ascontiguousarray(part_chunk_off[flat.part_off])
    start = kernels.route_record_sizes(route_chunk_off, chunk_v)
    records = np.empty(int(start[-1]), dtype=np.float64)  # numpy's allocator: huge pages where allowed
    kernels.pack_routes(route_chunk_off, chunk_v, chunk_box, xy, start, records)
    return PackedRoutes(corridor_m=corridor, start=start, records=records)


def _zone_arrays(flat: _Flat, projection: LocalProjection) -> PackedZones:
    assert flat.vert_off is not None
    xy = _project(flat.coords, projection)
    ring_off = np.ascontiguousarray(flat.sub_off[flat.part_off])  # zone -> rings of all its parts
    vert_off = flat.vert_off
    box = _boxes(xy, vert_off[ring_off]) if ring_off.shape[0] > 1 else np.zeros((0, 4))
    chunk_off, chunk_v, chunk_box = kernels.build_chunks(vert_off, xy, kernels.CHUNK)
    return PackedZones(
        box=box,
        ring_off=ring_off,
        vert_off=vert_off,
        chunk_off=chunk_off,
        chunk_v=chunk_v,
        chunk_box=chunk_box,
        xy=xy,
    )


def choose_cell(zone_box: np.ndarray, exact_m: float, *, max_cells: int = 1 << 22) -> float:
    """Cell size in metres: small enough that most fixes are far (relative to their accuracy) from
    every boundary in their cell, large enough that a cell lists few zones and the grid stays small."""
    if zone_box.shape[0] == 0:
        return 1.0
    w = zone_box[:, 2] - zone_box[:, 0]
    h = zone_box[:, 3] - zone_box[:, 1]
    typical = float(np.median(np.maximum(w, h)))
    cell = min(max(typical / 2.0, 0.25 * exact_m, 25.0), 400.0)
    width = float(zone_box[:, 2].max() - zone_box[:, 0].min()) + 2 * exact_m
    height = float(zone_box[:, 3].max() - zone_box[:, 1].min()) + 2 * exact_m
    while (width / cell + 1) * (height / cell + 1) > max_cells:
        cell *= 1.5
    return cell


def _grid_arrays(zones: PackedZones, radius: float) -> PackedGrid:
    """The cell index (tracker.geofence.kernels.cells) over the zones' boxes grown by the exact range."""
    exact = max(radius, MIN_EXACT_M)
    box = zones.box
    if box.shape[0] == 0:
        zero = np.zeros(1, dtype=np.int64)
        return PackedGrid(
            0.0, 0.0, 1.0, 0, 0, exact, zero, np.zeros(0, np.int32), zero.copy(), np.zeros(0), np.zeros(0)
        )
    cell = choose_cell(box, exact)
    pad = exact + 4 * kernels.MARGIN
    x0 = float(box[:, 0].min()) - pad
    y0 = float(box[:, 1].min()) - pad
    nx = int((float(box[:, 2].max()) + pad - x0) / cell) + 1
    ny = int((float(box[:, 3].max()) + pad - y0) / cell) + 1
    cell_off, e_zone, e_flags, e_L, e_doff, d_edge, d_lb, e_poff, p_edge = kernels.build_cells(
        box, zones.ring_off, zones.vert_off, zones.xy, x0, y0, cell, nx, ny, exact
    )
    start, n_far = kernels.cell_record_sizes(cell_off, e_doff, d_lb, e_poff, NEAR_M)
    records = np.empty(int(start[-1]), dtype=np.float64)  # numpy's allocator: huge pages where allowed
    # the far edges (a bound and a vertex number each), then the zones' xy they point into: zf[0] says where
    base = 1 + int(n_far)
    far = np.empty(base + zones.xy.size, dtype=np.float64)
    far[0] = base
    far[base:] = zones.xy.reshape(-1)
    kernels.pack_cells(
        cell_off, e_zone, e_flags, e_L, e_doff, d_edge, d_lb, e_poff, p_edge, zones.xy, NEAR_M, records, far
    )
    return PackedGrid(x0, y0, cell, nx, ny, exact, cell_off, e_zone, start, records, far)


@dataclass(frozen=True, eq=False)
class Prepared:
    """Routes and zones validated, repaired and flattened (:func:`prepare`), in lon/lat: what
    :func:`pack_prepared` packs, without the shapely geometry (which the caller may let go before the
    packing: at 40,000 routes their GEOS copies are ~30 MiB). Packed once: the packing projects the
    routes' coordinates in place."""

    routes: _Flat
    corridor_m: F64
    zones: _Flat


def prepare(routes: Sequence[RouteSpec], zones: Sequence[ZoneSpec]) -> Prepared:
    """Validate, repair and flatten routes and zones; raises :class:`GeometryRefused` as :func:`pack`."""
    zone_flat = _prepare_zones(zones)
    route_flat, corridor = _prepare_routes(routes)
    return Prepared(route_flat, corridor, zone_flat)


def _radius(search_radius_m: float) -> float:
    radius = float(search_radius_m)
    if not (math.isfinite(radius) and radius >= 0.0):
        raise ValueError(f"search_radius_m must be finite and >= 0, got {search_radius_m!r}")
    return radius


def pack(
    routes: Sequence[RouteSpec],
    zones: Sequence[ZoneSpec],
    *,
    projection: LocalProjection | None = None,
    search_radius_m: float = 150.0,
) -> PackedIndex:
    """Validate, repair, project and pack routes and zones (see :func:`tracker.geofence.index.build_index`).

    Raises :class:`GeometryRefused` (naming the feature) for an empty geometry, a wrong geometry type,
    a line with fewer than 2 points, non-finite or out-of-range coordinates, a corridor that is not
    > 0, a duplicate id, a negative route id, or an invalid polygon that ``make_valid`` cannot turn
    into a polygonal area. ``projection`` defaults to :meth:`LocalProjection.around` the bounding box of
    all coordinates. ``search_radius_m`` (>= 0) bounds how far zones are looked for around a fix.
    """
    _radius(search_radius_m)
    return pack_prepared(prepare(routes, zones), projection=projection, search_radius_m=search_radius_m)


def pack_prepared(
    prepared: Prepared, *, projection: LocalProjection | None = None, search_radius_m: float = 150.0
) -> PackedIndex:
    """Project and pack what :func:`prepare` made (see :func:`pack`)."""
    radius = _radius(search_radius_m)
    zone_flat, route_flat, corridor = prepared.zones, prepared.routes, prepared.corridor_m
    if projection is None:
        # the routes' bounding box stands for their vertices (their coordinates are finite: checked
        # by prepare), not a copy of every vertex: around() takes the bounding box of what it is given
        routes_box = route_flat.coords
        if routes_box.size:
            routes_box = np.stack([routes_box.min(axis=0), routes_box.max(axis=0)])
        every = np.concatenate([routes_box, zone_flat.coords])
        projection = (
            LocalProjection.around(every[:, 0], every[:, 1]) if every.size else LocalProjection(0.0, 0.0)
        )
    zone_arrays = _zone_arrays(zone_flat, projection)
    return PackedIndex(
        projection=projection,
        search_radius_m=radius,
        route_ids=route_flat.ids,
        zone_ids=zone_flat.ids,
        routes=_route_arrays(route_flat, corridor, projection),
        zones=zone_arrays,
        grid=_grid_arrays(zone_arrays, radius),
    )


# ---------------------------------------------------------------------------------------------------
# where a route meets a zone (shapely, at registration: the school page shows it)


@dataclass(frozen=True)
class ZoneMeeting:
    """Where a route's corridor overlaps a danger zone. ``how``: "across" when the route's line enters
    the zone (a crosswalk over a road, a path through a park drawn as a zone), ``length_m`` the line's
    length inside it; "beside" when only the corridor reaches in (a sidewalk by a road zone, a
    hoarding by a building site), ``length_m`` the line's length within the corridor of the zone.
    There, for the route's children in its commute windows, the zone minus the corridor is what
    counts (tracker.monitor.machine)."""

    zone_id: int
    how: str
    length_m: float

    def as_json(self) -> dict[str, object]:
        return {"zone_id": self.zone_id, "how": self.how, "length_m": round(self.length_m, 1)}


def route_meets_zones(route: RouteSpec, zones: Sequence[ZoneSpec]) -> list[ZoneMeeting]:
    """The zones whose interior the route's corridor overlaps, by zone id (see :class:`ZoneMeeting`):
    across it, beside it, or both (a sidewalk along a road, then its crosswalk). A zone the index
    would refuse is left out."""
    coords = shapely.get_coordinates(route.geometry)
    if coords.size == 0:
        return []
    projection = LocalProjection.around(coords[:, 0], coords[:, 1])

    def metric(geom: shapely.Geometry) -> shapely.Geometry:
        return shapely.transform(geom, lambda xy: np.column_stack(projection.to_xy(xy[:, 0], xy[:, 1])))

    line = metric(route.geometry)
    corridor_m = float(route.corridor_m)
    corridor = line.buffer(corridor_m)
    polygons: list[shapely.Geometry] = []
    ids: list[int] = []
    for spec in zones:
        try:
            parts = zone_polygons(spec)
        except GeometryRefused:
            continue
        polygons.append(metric(shapely.union_all(parts)))
        ids.append(int(spec.zone_id))
    if not polygons:
        return []
    tree = shapely.STRtree(polygons)
    out = []
    for k in sorted(tree.query(corridor, predicate="intersects").tolist(), key=lambda k: ids[k]):
        zone = polygons[k]
        if shapely.intersection(corridor, zone).area <= 0.0:
            continue  # touching is not overlapping
        inside = shapely.intersection(line, zone).length
        if inside > 0.0:
            out.append(ZoneMeeting(ids[k], "across", float(inside)))
        beside = shapely.intersection(shapely.difference(line, zone), zone.buffer(corridor_m)).length
        if beside > 0.0:
            out.append(ZoneMeeting(ids[k], "beside", float(beside)))
    return out
