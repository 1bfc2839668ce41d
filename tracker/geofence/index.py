"""Geofence index: validated routes and zones, projected to metres and flattened into numpy arrays.

Shapely is used only here, at build time: it validates, repairs and decomposes the geometry. The
checks themselves run in :mod:`tracker.geofence.kernels` over a whole batch of fixes.

Verdict semantics (all distances in metres in the index's local projection; ``acc`` is the fix's
accuracy radius, ``R`` the index's ``search_radius_m``):

* **route distance**: the minimum Euclidean distance from the fix to any segment of any part of its
  route's polyline (parts are not joined to each other); nan when the fix has no known route
  (slot -1) or non-finite coordinates.
* **zone membership**: let ``d`` be the distance from the fix to the zone's boundary (every ring of
  every part: exteriors and holes) and ``inside`` the point-in-polygon answer (even-odd over the rings
  of one polygon, so a hole is outside; a multipolygon holds the fix when any part does).

  - ``certain  = inside and d > acc``: the whole accuracy circle lies in the zone's interior. This is
    the direction chosen for *entering a danger zone*: no alert on GPS jitter near the edge.
  - ``possible = inside or d <= min(acc, R)``: the fix may be in the zone. ``acc`` is capped at ``R``
    here because only zones within ``R`` are looked at.

  A fix exactly on a boundary has ``d = 0``: possible, never certain (for every ``acc >= 0``).
  ``acc = 0`` is allowed. A nan or negative ``acc`` means "unknown": never certain, and possible
  within ``R``.
* **nearest_zone_m**: 0 when inside (or on the boundary of) a zone, otherwise the distance to the
  closest zone that is within ``R``, otherwise inf.

An index is immutable once built; the service swaps whole registry views (tracker.registry_view).
Route slots belong to one index: resolve them with the same index that checks the batch.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from tracker.geofence import kernels
from tracker.geofence.projection import LocalProjection

__all__ = [
    "GeofenceIndex",
    "GeometryRefused",
    "RouteSpec",
    "Verdicts",
    "ZoneSpec",
    "build_index",
    "zone_polygons",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

# Grid sizing: at most this many cells and this many (cell, zone) entries.
_MAX_CELLS = 1 << 22
_MAX_GRID_ENTRIES = 1 << 24


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
class Verdicts:
    """Answers for one batch of n fixes; zone ids per fix are CSR slices, ascending.

    See the module docstring for the exact semantics of each field.
    """

    route_distance_m: F64
    """float64 [n]: distance to the fix's route (all parts); nan when the route slot is -1."""
    corridor_m: F64
    """float64 [n]: corridor half-width of that route; nan when the route slot is -1."""
    certain_offsets: I64
    """int64 [n+1]: fix i's certain zones are ``certain_zone_ids[certain_offsets[i]:certain_offsets[i + 1]]``.
    """
    certain_zone_ids: I64
    """Zones whose interior certainly holds the accuracy circle (inside and boundary distance > acc)."""
    possible_offsets: I64
    """int64 [n+1]: CSR offsets into ``possible_zone_ids``."""
    possible_zone_ids: I64
    """Zones that may hold the fix (inside, or boundary within min(acc, search radius))."""
    nearest_zone_m: F64
    """float64 [n]: 0 inside a zone, else distance to the nearest zone within the search radius, else inf."""

    def certain(self, i: int) -> tuple[int, ...]:
        """Zone ids certainly holding fix i (ascending)."""
        return tuple(self.certain_zone_ids[self.certain_offsets[i] : self.certain_offsets[i + 1]].tolist())

    def possible(self, i: int) -> tuple[int, ...]:
        """Zone ids possibly holding fix i (ascending)."""
        return tuple(self.possible_zone_ids[self.possible_offsets[i] : self.possible_offsets[i + 1]].tolist())

    def __len__(self) -> int:
        return int(self.route_distance_m.shape[0])


@dataclass(frozen=True, eq=False)
class _Routes:
    corridor_m: F64  # [n_routes]
    part_off: I64  # [n_routes + 1] -> parts (polylines)
    chunk_off: I64  # [n_parts + 1] -> chunks
    chunk_vert: I64  # [n_chunks, 2] vertex range
    chunk_box: F64  # [n_chunks, 4]
    x: F64
    y: F64


@dataclass(frozen=True, eq=False)
class _Zones:
    box: F64  # [n_zones, 4] minx, miny, maxx, maxy
    part_off: I64  # [n_zones + 1] -> parts
    part_box: F64  # [n_parts, 4]
    ring_off: I64  # [n_parts + 1] -> rings
    ring_box: F64  # [n_rings, 4]
    chunk_off: I64  # [n_rings + 1] -> chunks (closed rings)
    chunk_vert: I64  # [n_chunks, 2] vertex range
    chunk_box: F64  # [n_chunks, 4]
    x: F64
    y: F64


@dataclass(frozen=True, eq=False)
class _Grid:
    x0: float
    y0: float
    cell: float
    nx: int
    ny: int
    off: I64  # [nx * ny + 1]
    items: I32  # zone slots, ascending within a cell


_version_lock = threading.Lock()
_versions = itertools.count(1)


def _next_version() -> int:
    with _version_lock:
        return next(_versions)


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


class GeofenceIndex:
    """Immutable flat index of routes and zones; build it with :func:`build_index`.

    ``route_ids`` and ``zone_ids`` map slot → id and are sorted ascending. ``version`` increases with
    every index built in this process.
    """

    __slots__ = (
        "_grid",
        "_routes",
        "_zones",
        "projection",
        "route_ids",
        "search_radius_m",
        "version",
        "zone_ids",
    )

    projection: LocalProjection
    version: int
    search_radius_m: float
    route_ids: I64
    zone_ids: I64

    def __init__(
        self,
        *,
        projection: LocalProjection,
        search_radius_m: float,
        route_ids: I64,
        zone_ids: I64,
        routes: _Routes,
        zones: _Zones,
        grid: _Grid,
    ) -> None:
        self.projection = projection
        self.search_radius_m = float(search_radius_m)
        self.route_ids = route_ids
        self.zone_ids = zone_ids
        self._routes = routes
        self._zones = zones
        self._grid = grid
        for part in (routes, zones, grid):
            _readonly(*(v for v in vars(part).values() if isinstance(v, np.ndarray)))
        _readonly(route_ids, zone_ids)
        self.version = _next_version()

    def __repr__(self) -> str:
        return (
            f"GeofenceIndex(version={self.version}, routes={self.route_ids.size}, "
            f"zones={self.zone_ids.size}, grid={self._grid.nx}x{self._grid.ny}@{self._grid.cell:.0f}m, "
            f"projection={self.projection})"
        )

    @property
    def route_corridor_m(self) -> F64:
        """float64 [n_routes]: corridor half-width per route slot."""
        return self._routes.corridor_m

    def route_slot(self, route_id: int) -> int:
        """Slot of a route id in this index, -1 when unknown."""
        return int(self.route_slots(np.array([route_id], dtype=np.int64))[0])

    def route_slots(self, route_ids: npt.ArrayLike) -> I32:
        """Vectorised :meth:`route_slot`: int32 slots, -1 for unknown or negative ids."""
        ids = np.asarray(route_ids, dtype=np.int64)
        known = self.route_ids
        if known.size == 0:
            return np.full(ids.shape, -1, dtype=np.int32)
        pos = np.minimum(np.searchsorted(known, ids), known.size - 1)
        found = (known[pos] == ids) & (ids >= 0)
        return np.where(found, pos, -1).astype(np.int32)

    def check(
        self, lon: npt.ArrayLike, lat: npt.ArrayLike, acc: npt.ArrayLike, route_slot: npt.ArrayLike
    ) -> Verdicts:
        """Verdicts for a batch of n fixes (lon/lat degrees, accuracy metres, route slot or -1).

        One call per batch: the numba kernels run over all fixes; no Python per fix. Slots come from
        this index's :meth:`route_slots`; a slot outside the index counts as -1. Semantics: see the
        module docstring (nan/negative ``acc`` = unknown; non-finite lon/lat = no answer: nan route
        distance, no zones, nearest inf).
        """
        lon_a = np.ascontiguousarray(lon, dtype=np.float64).reshape(-1)
        lat_a = np.ascontiguousarray(lat, dtype=np.float64).reshape(-1)
        acc_a = np.ascontiguousarray(acc, dtype=np.float64).reshape(-1)
        slot_a = np.ascontiguousarray(route_slot, dtype=np.int64).reshape(-1)
        n = lon_a.shape[0]
        if not (lat_a.shape[0] == acc_a.shape[0] == slot_a.shape[0] == n):
            raise ValueError(
                f"check: lon, lat, acc and route_slot must have one length; got "
                f"{n}, {lat_a.shape[0]}, {acc_a.shape[0]}, {slot_a.shape[0]}"
            )
        x, y = self.projection.to_xy(lon_a, lat_a)
        r = self._routes
        route_d = kernels.route_distances(
            x, y, slot_a, r.part_off, r.chunk_off, r.chunk_vert, r.chunk_box, r.x, r.y
        )
        valid = (slot_a >= 0) & (slot_a < r.corridor_m.shape[0])
        corridor = np.full(n, np.nan, dtype=np.float64)
        corridor[valid] = r.corridor_m[slot_a[valid]]
        z = self._zones
        g = self._grid
        c_off, c_ids, p_off, p_ids, nearest = kernels.zone_verdicts(
            x,
            y,
            acc_a,
            self.search_radius_m,
            g.x0,
            g.y0,
            g.cell,
            g.nx,
            g.ny,
            g.off,
            g.items,
            self.zone_ids,
            z.box,
            z.part_off,
            z.part_box,
            z.ring_off,
            z.ring_box,
            z.chunk_off,
            z.chunk_vert,
            z.chunk_box,
            z.x,
            z.y,
        )
        return Verdicts(
            route_distance_m=route_d,
            corridor_m=corridor,
            certain_offsets=c_off,
            certain_zone_ids=c_ids,
            possible_offsets=p_off,
            possible_zone_ids=p_ids,
            nearest_zone_m=nearest,
        )


# ---------------------------------------------------------------------------------------------------
# validation


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
    parts, part_route = shapely.get_parts(geoms, return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, part_route = parts[keep], part_route[keep]
    n_coords = shapely.get_num_coordinates(parts)
    short = n_coords < 2
    if short.any():
        k = int(np.argmax(short))
        raise GeometryRefused(
            int(ids[part_route[k]]), f"too few points: a line needs at least 2, got {n_coords[k]}", "route"
        )
    coords, coord_part = shapely.get_coordinates(parts, return_index=True)
    bad = ~np.isfinite(coords).all(axis=1) | (np.abs(coords[:, 0]) > 180.0) | (np.abs(coords[:, 1]) > 90.0)
    if bad.any():
        part = coord_part[int(np.argmax(bad))]
        _check_lonlat(coords[coord_part == part], int(ids[part_route[part]]), "route")
    flat_line = np.bincount(part_route, weights=shapely.length(parts), minlength=ids.size) == 0.0
    if flat_line.any():
        raise GeometryRefused(
            int(ids[np.argmax(flat_line)]), "too few points: all points of the line are identical", "route"
        )
    flat = _Flat(
        ids=ids,
        part_off=_offsets(np.bincount(part_route, minlength=ids.size)),
        sub_off=_offsets(np.bincount(coord_part, minlength=parts.size)),
        vert_off=None,
        coords=coords,
    )
    return flat, corridor


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


def _reduce_boxes(x: F64, y: F64, off: I64) -> F64:
    box = np.empty((off.shape[0] - 1, 4), dtype=np.float64)
    if box.shape[0]:
        start = off[:-1]
        box[:, 0] = np.minimum.reduceat(x, start)
        box[:, 1] = np.minimum.reduceat(y, start)
        box[:, 2] = np.maximum.reduceat(x, start)
        box[:, 3] = np.maximum.reduceat(y, start)
    return box


def _merge_boxes(box: F64, off: I64) -> F64:
    out = np.empty((off.shape[0] - 1, 4), dtype=np.float64)
    if out.shape[0]:
        start = off[:-1]
        out[:, 0] = np.minimum.reduceat(box[:, 0], start)
        out[:, 1] = np.minimum.reduceat(box[:, 1], start)
        out[:, 2] = np.maximum.reduceat(box[:, 2], start)
        out[:, 3] = np.maximum.reduceat(box[:, 3], start)
    return out


def _zone_arrays(flat: _Flat, projection: LocalProjection) -> _Zones:
    assert flat.vert_off is not None
    x, y = projection.to_xy(flat.coords[:, 0], flat.coords[:, 1])
    ring_box = _reduce_boxes(x, y, flat.vert_off)
    part_box = _merge_boxes(ring_box, flat.sub_off)
    box = _merge_boxes(part_box, flat.part_off)
    chunk_off, chunk_vert, chunk_box = kernels.build_chunks(flat.vert_off, x, y, kernels.CHUNK)
    return _Zones(
        box=box,
        part_off=flat.part_off,
        part_box=part_box,
        ring_off=flat.sub_off,
        ring_box=ring_box,
        chunk_off=chunk_off,
        chunk_vert=chunk_vert,
        chunk_box=chunk_box,
        x=x,
        y=y,
    )


def _build_grid(box: F64, radius: float) -> _Grid:
    """Uniform grid over the zone boxes expanded by the search radius (a little more, for rounding)."""
    if box.shape[0] == 0:
        return _Grid(0.0, 0.0, 1.0, 0, 0, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32))
    pad = radius * (1.0 + 1e-6) + 1e-6
    lo_x, lo_y = box[:, 0] - pad, box[:, 1] - pad
    hi_x, hi_y = box[:, 2] + pad, box[:, 3] + pad
    x0, y0 = float(lo_x.min()), float(lo_y.min())
    width, height = float(hi_x.max()) - x0, float(hi_y.max()) - y0
    w, h = hi_x - lo_x, hi_y - lo_y
    # cells about the size of a typical (expanded) zone: a fix sees few candidates, a zone few cells
    cell = max(float(np.median(np.maximum(w, h))), 1.0)
    while True:
        nx, ny = int(width / cell) + 1, int(height / cell) + 1
        entries = float(np.sum((np.floor(w / cell) + 2.0) * (np.floor(h / cell) + 2.0)))
        if nx * ny <= _MAX_CELLS and entries <= _MAX_GRID_ENTRIES:
            break
        cell *= 1.5
    # same arithmetic as the kernel's lookup: (v - x0) / cell, truncated (all values are >= 0)
    ix0 = ((lo_x - x0) / cell).astype(np.int64)
    iy0 = ((lo_y - y0) / cell).astype(np.int64)
    ix1 = np.minimum(((hi_x - x0) / cell).astype(np.int64), nx - 1)
    iy1 = np.minimum(((hi_y - y0) / cell).astype(np.int64), ny - 1)
    off, items = kernels.grid_fill(ix0, iy0, ix1, iy1, nx, ny)
    return _Grid(x0, y0, cell, nx, ny, off, items)


def build_index(
    routes: Sequence[RouteSpec],
    zones: Sequence[ZoneSpec],
    *,
    projection: LocalProjection | None = None,
    search_radius_m: float = 150.0,
) -> GeofenceIndex:
    """Validate, repair, project and flatten routes and zones into a :class:`GeofenceIndex`.

    Raises :class:`GeometryRefused` (naming the feature) for an empty geometry, a wrong geometry type,
    a line with fewer than 2 points, non-finite or out-of-range coordinates, a corridor that is not
    > 0, a duplicate id, a negative route id, or an invalid polygon that ``make_valid`` cannot turn
    into a polygonal area. ``projection`` defaults to :meth:`LocalProjection.around` the bounding box of
    all coordinates. ``search_radius_m`` (>= 0) bounds how far zones are looked for around a fix.
    """
    radius = float(search_radius_m)
    if not (math.isfinite(radius) and radius >= 0.0):
        raise ValueError(f"search_radius_m must be finite and >= 0, got {search_radius_m!r}")
    zone_flat = _prepare_zones(zones)
    route_flat, corridor = _prepare_routes(routes)
    if projection is None:
        every = np.concatenate([route_flat.coords, zone_flat.coords])
        projection = (
            LocalProjection.around(every[:, 0], every[:, 1]) if every.size else LocalProjection(0.0, 0.0)
        )
    rx, ry = projection.to_xy(route_flat.coords[:, 0], route_flat.coords[:, 1])
    chunk_off, chunk_vert, chunk_box = kernels.build_chunks(route_flat.sub_off, rx, ry, kernels.CHUNK)
    route_arrays = _Routes(
        corridor_m=corridor,
        part_off=route_flat.part_off,
        chunk_off=chunk_off,
        chunk_vert=chunk_vert,
        chunk_box=chunk_box,
        x=rx,
        y=ry,
    )
    zone_arrays = _zone_arrays(zone_flat, projection)
    return GeofenceIndex(
        projection=projection,
        search_radius_m=radius,
        route_ids=route_flat.ids,
        zone_ids=zone_flat.ids,
        routes=route_arrays,
        zones=zone_arrays,
        grid=_build_grid(zone_arrays.box, radius),
    )
