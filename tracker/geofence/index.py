"""Geofence index: validated routes and zones, projected to metres and flattened into numpy arrays.

Shapely is used only here, at build time: it validates, repairs and decomposes the geometry. The
checks themselves run in :mod:`tracker.geofence.kernels` over a whole batch of fixes, one call per
batch (a numba call from Python costs microseconds; a batch amortises it).

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
* **crossed** (only when the previous fix's position is given): the zones whose *interior* the
  straight segment from the previous fix to this one meets, while neither end is certainly inside
  (this fix with its ``acc``; the previous one with ``prev_acc``, 0 when not given: as a point).
  Touching the boundary only (running along an edge, through a vertex from outside to outside) is not
  a crossing. This is Tile38's "cross" with accuracy: it catches a child who ran through a zone
  smaller than the distance between two fixes. It says nothing about how deep the segment went: an
  end just inside the edge with a large ``acc`` makes the zone "crossed" too, so a caller that must
  not cry wolf on jitter should weigh it with ``possible`` of both ends.

An index is immutable once built (its arrays are read-only); the service swaps whole registry views
(tracker.registry_view). Route slots belong to one index: resolve them with the same index that
checks the batch.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt
import shapely

from tracker.geofence import kernels
from tracker.geofence.cells import (
    MIN_EXACT_M,
    NEAR_M,
    build_cells,
    cell_record_sizes,
    choose_cell,
    pack_cells,
)
from tracker.geofence.projection import LocalProjection

__all__ = [
    "PARALLEL_MIN_FIXES",
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

_BIG_BATCH = 20_000  # from here on, a check is a few calls with numpy-allocated outputs (see _check_big)

PARALLEL_MIN_FIXES = 50_000
"""``check(parallel=None)`` uses every numba thread from this batch size on (the service's batches,
up to a few thousand fixes, stay on the calling thread: a parallel launch costs more than they do)."""

# Only one parallel kernel runs at a time: numba's fallback threading layer (workqueue, when neither
# TBB nor OpenMP is installed) must not be entered from two threads at once.
_parallel_lock = threading.Lock()


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


def _csr(offsets: I64, ids: I64, i: int) -> tuple[int, ...]:
    return tuple(ids[offsets[i] : offsets[i + 1]].tolist())


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
    crossed_offsets: I64
    """int64 [n+1]: CSR offsets into ``crossed_zone_ids`` (all 0 when no previous fixes were given)."""
    crossed_zone_ids: I64
    """Zones whose interior the segment from the previous fix meets, neither end certainly inside."""

    def certain(self, i: int) -> tuple[int, ...]:
        """Zone ids certainly holding fix i (ascending)."""
        return _csr(self.certain_offsets, self.certain_zone_ids, i)

    def possible(self, i: int) -> tuple[int, ...]:
        """Zone ids possibly holding fix i (ascending)."""
        return _csr(self.possible_offsets, self.possible_zone_ids, i)

    def crossed(self, i: int) -> tuple[int, ...]:
        """Zone ids crossed between fix i's previous fix and fix i (ascending)."""
        return _csr(self.crossed_offsets, self.crossed_zone_ids, i)

    def __len__(self) -> int:
        return int(self.route_distance_m.shape[0])


@dataclass(frozen=True, eq=False)
class _Routes:
    corridor_m: F64  # [n_routes]
    start: I64  # [n_routes + 1]: where each route's record begins in ``records``
    records: F64  # chunk boxes and vertices (layout: tracker.geofence.kernels)

    def kernel_args(self) -> tuple[F64, I64, F64]:
        return (self.corridor_m, self.start, self.records)


@dataclass(frozen=True, eq=False)
class _Zones:
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
class _Grid:
    x0: float
    y0: float
    cell: float
    nx: int
    ny: int
    exact_m: float
    cell_off: I64  # [nx * ny + 1] -> entries
    e_zone: I32  # zone slot per entry, ascending within a cell
    start: I64  # [nx * ny + 1]: where each cell's records begin in ``records``
    records: F64  # entry headers and near edges (layout: tracker.geofence.kernels)
    far: F64  # the entries' far edges

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        return (self.cell_off, self.e_zone, self.start, self.records, self.far)


_version_lock = threading.Lock()
_versions = itertools.count(1)


def _next_version() -> int:
    with _version_lock:
        return next(_versions)


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


def _arrays(*parts: object) -> list[np.ndarray]:
    return [v for p in parts for v in vars(p).values() if isinstance(v, np.ndarray)]


class GeofenceIndex:
    """Immutable flat index of routes and zones; build it with :func:`build_index`.

    ``route_ids`` and ``zone_ids`` map slot → id and are sorted ascending. ``version`` increases with
    every index built in this process.
    """

    __slots__ = (
        "_grid",
        "_kernel_args",
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
        _readonly(route_ids, zone_ids, *_arrays(routes, zones, grid))
        params = np.zeros(kernels.P_SIZE, dtype=np.float64)
        params[kernels.P_LON0] = projection.lon0
        params[kernels.P_LAT0] = projection.lat0
        params[kernels.P_KX] = projection.kx
        params[kernels.P_KY] = projection.ky
        params[kernels.P_GX0] = grid.x0
        params[kernels.P_GY0] = grid.y0
        params[kernels.P_CELL] = grid.cell
        params[kernels.P_NX] = grid.nx
        params[kernels.P_NY] = grid.ny
        params[kernels.P_RADIUS] = self.search_radius_m
        params[kernels.P_EXACT] = grid.exact_m
        _readonly(params)
        self._kernel_args = (params, routes.kernel_args(), zones.kernel_args(), grid.kernel_args(), zone_ids)
        self.version = _next_version()

    def __repr__(self) -> str:
        g = self._grid
        return (
            f"GeofenceIndex(version={self.version}, routes={self.route_ids.size}, "
            f"zones={self.zone_ids.size}, grid={g.nx}x{g.ny}@{g.cell:.0f}m with {g.e_zone.size} entries, "
            f"{self.nbytes / 2**20:.0f} MiB, projection={self.projection})"
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (its whole memory but for a few small Python objects)."""
        arrays = [self.route_ids, self.zone_ids, *_arrays(self._routes, self._zones, self._grid)]
        return int(sum(a.nbytes for a in arrays))

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
        self,
        lon: npt.ArrayLike,
        lat: npt.ArrayLike,
        acc: npt.ArrayLike,
        route_slot: npt.ArrayLike,
        *,
        prev_lon: npt.ArrayLike | None = None,
        prev_lat: npt.ArrayLike | None = None,
        prev_acc: npt.ArrayLike | None = None,
        parallel: bool | None = None,
    ) -> Verdicts:
        """Verdicts for a batch of n fixes (lon/lat degrees, accuracy metres, route slot or -1).

        One call per batch: the numba kernel runs over all fixes; no Python per fix. Slots come from
        this index's :meth:`route_slots`; a slot outside the index counts as -1. Semantics: see the
        module docstring (nan/negative ``acc`` = unknown; non-finite lon/lat = no answer: nan route
        distance, no zones, nearest inf).

        ``prev_lon``/``prev_lat`` (both or neither; nan where a fix has no previous fix) ask for the
        crossed zones of the segment from each fix's previous position; ``prev_acc`` is the previous
        fix's accuracy (default 0: the previous position as a point). Without them the crossed CSR is
        empty. ``parallel``: True runs over every numba thread, False on the calling thread, None
        (default) chooses by batch size (:data:`PARALLEL_MIN_FIXES`); the answers are the same.
        """
        lon_a = _floats(lon)
        lat_a = _floats(lat)
        acc_a = _floats(acc)
        slot_a = _slots(route_slot)
        n = lon_a.shape[0]
        if not (lat_a.shape[0] == acc_a.shape[0] == slot_a.shape[0] == n):
            raise ValueError(
                f"check: lon, lat, acc and route_slot must have one length; got "
                f"{n}, {lat_a.shape[0]}, {acc_a.shape[0]}, {slot_a.shape[0]}"
            )
        if (prev_lon is None) != (prev_lat is None):
            raise ValueError("check: give prev_lon and prev_lat together")
        if prev_lon is None:
            if prev_acc is not None:
                raise ValueError("check: prev_acc without prev_lon and prev_lat")
            q_lon = q_lat = q_acc = _EMPTY
        else:
            assert prev_lat is not None  # given together with prev_lon (checked above)
            q_lon = _floats(prev_lon)
            q_lat = _floats(prev_lat)
            q_acc = np.zeros(n, dtype=np.float64) if prev_acc is None else _floats(prev_acc)
            if not (q_lon.shape[0] == q_lat.shape[0] == q_acc.shape[0] == n):
                raise ValueError(
                    f"check: prev_lon, prev_lat and prev_acc must have the fixes' length {n}; got "
                    f"{q_lon.shape[0]}, {q_lat.shape[0]}, {q_acc.shape[0]}"
                )
        if parallel is None:
            parallel = n >= PARALLEL_MIN_FIXES and numba.get_num_threads() > 1
        args = (lon_a, lat_a, acc_a, slot_a, q_lon, q_lat, q_acc, *self._kernel_args)
        if parallel:
            with _parallel_lock:
                return Verdicts(*_check_big(*args, parallel=True))
        if n >= _BIG_BATCH:
            return Verdicts(*_check_big(*args, parallel=False))
        return Verdicts(*kernels.check_serial(*args))


def _check_big(
    lon: F64,
    lat: F64,
    acc: F64,
    slot: I32,
    q_lon: F64,
    q_lat: F64,
    q_acc: F64,
    params: F64,
    routes: tuple[np.ndarray, ...],
    zones: tuple[np.ndarray, ...],
    grid: tuple[np.ndarray, ...],
    zone_ids: I64,
    *,
    parallel: bool,
) -> tuple[np.ndarray, ...]:
    """kernels.check_serial's passes called one by one, on every numba thread or on this one, with
    arrays from numpy's allocator (huge pages for big ones: fewer page faults than numba's)."""
    n = lon.shape[0]
    k = kernels
    cand_off = np.zeros(n + 1, dtype=np.int64)
    route_d = np.empty(n)
    corridor = np.empty(n)
    nearest = np.empty(n)
    certain_off = np.zeros(n + 1, dtype=np.int64)
    possible_off = np.zeros(n + 1, dtype=np.int64)
    crossed_off = np.zeros(n + 1, dtype=np.int64)
    no_ids = np.empty(0, dtype=np.int64)
    if parallel:
        k.par_locate(lon, lat, params, grid[0], cand_off)
    else:
        k._locate(0, n, lon, lat, params, grid[0], cand_off)
    np.cumsum(cand_off, out=cand_off)
    flags = np.empty(int(cand_off[-1]), dtype=np.uint8)
    main_args = (
        lon,
        lat,
        acc,
        slot,
        cand_off,
        flags,
        params,
        routes,
        zones,
        grid,
        route_d,
        corridor,
        nearest,
    )
    if parallel:
        k.par_main(*main_args, certain_off, possible_off)
    else:
        k._main(0, n, *main_args, certain_off, possible_off, np.empty(k.SCRATCH * k.SUB + 1))
    np.cumsum(certain_off, out=certain_off)
    np.cumsum(possible_off, out=possible_off)
    certain_ids = np.empty(int(certain_off[-1]), dtype=np.int64)
    possible_ids = np.empty(int(possible_off[-1]), dtype=np.int64)
    fill_args = (
        lon,
        lat,
        params,
        cand_off,
        flags,
        grid,
        zone_ids,
        certain_off,
        certain_ids,
        possible_off,
        possible_ids,
    )
    if parallel:
        k.par_fill(*fill_args)
    else:
        k._fill(0, n, *fill_args)
    crossed_ids = no_ids
    if q_lon.shape[0] == n and n > 0:
        cross_args = (
            lon,
            lat,
            q_lon,
            q_lat,
            q_acc,
            cand_off,
            flags,
            params,
            grid,
            zones,
            zone_ids,
            crossed_off,
        )
        seen = np.full(zone_ids.shape[0], -1, dtype=np.int64)
        buf = np.empty(zone_ids.shape[0], dtype=np.int64)
        for ids in (no_ids, None):  # count, then write
            if ids is None:
                np.cumsum(crossed_off, out=crossed_off)
                if not crossed_off[-1]:
                    break
                ids = crossed_ids = np.empty(int(crossed_off[-1]), dtype=np.int64)
            if parallel:
                k.par_crossed(*cross_args, ids)
            else:
                k._crossed(0, n, *cross_args, ids, seen, buf)
    return (
        route_d,
        corridor,
        certain_off,
        certain_ids,
        possible_off,
        possible_ids,
        nearest,
        crossed_off,
        crossed_ids,
    )


def _floats(a: npt.ArrayLike) -> F64:
    """A flat, contiguous, writable float64 array (numba compiles read-only arrays as another type)."""
    out = np.ascontiguousarray(a, dtype=np.float64).reshape(-1)
    return out if out.flags.writeable else out.copy()


def _slots(a: npt.ArrayLike) -> I32:
    """Route slots as a flat, contiguous, writable int32 array (beyond int32: -1, no route)."""
    out = np.asarray(a).reshape(-1)
    if out.dtype != np.int32:
        wide = out.astype(np.int64)
        out = np.where((wide >= 0) & (wide <= np.iinfo(np.int32).max), wide, -1).astype(np.int32)
    out = np.ascontiguousarray(out)
    return out if out.flags.writeable else out.copy()


_EMPTY = np.zeros(0, dtype=np.float64)  # writable: numba compiles read-only arrays as another type


# ---------------------------------------------------------------------------------------------------
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


def _project(coords: F64, projection: LocalProjection) -> F64:
    xy = np.empty_like(coords)
    xy[:, 0], xy[:, 1] = projection.to_xy(coords[:, 0], coords[:, 1])
    return xy


def _route_arrays(flat: _Flat, corridor: F64, projection: LocalProjection) -> _Routes:
    xy = _project(flat.coords, projection)
    part_chunk_off, chunk_v, chunk_box = kernels.build_chunks(flat.sub_off, xy, kernels.CHUNK)
    route_chunk_off = np.ascontiguousarray(part_chunk_off[flat.part_off])
    start = kernels.route_record_sizes(route_chunk_off, chunk_v)
    records = np.empty(int(start[-1]), dtype=np.float64)  # numpy's allocator: huge pages where allowed
    kernels.pack_routes(route_chunk_off, chunk_v, chunk_box, xy, start, records)
    return _Routes(corridor_m=corridor, start=start, records=records)


def _zone_arrays(flat: _Flat, projection: LocalProjection) -> _Zones:
    assert flat.vert_off is not None
    xy = _project(flat.coords, projection)
    ring_off = np.ascontiguousarray(flat.sub_off[flat.part_off])  # zone -> rings of all its parts
    vert_off = flat.vert_off
    box = _boxes(xy, vert_off[ring_off]) if ring_off.shape[0] > 1 else np.zeros((0, 4))
    chunk_off, chunk_v, chunk_box = kernels.build_chunks(vert_off, xy, kernels.CHUNK)
    return _Zones(
        box=box,
        ring_off=ring_off,
        vert_off=vert_off,
        chunk_off=chunk_off,
        chunk_v=chunk_v,
        chunk_box=chunk_box,
        xy=xy,
    )


def _grid_arrays(zones: _Zones, radius: float) -> _Grid:
    """The cell index (tracker.geofence.cells) over the zones' boxes grown by the exact range."""
    exact = max(radius, MIN_EXACT_M)
    box = zones.box
    if box.shape[0] == 0:
        zero = np.zeros(1, dtype=np.int64)
        return _Grid(
            0.0, 0.0, 1.0, 0, 0, exact, zero, np.zeros(0, np.int32), zero.copy(), np.zeros(0), np.zeros(0)
        )
    cell = choose_cell(box, exact)
    pad = exact + 4 * kernels.MARGIN
    x0 = float(box[:, 0].min()) - pad
    y0 = float(box[:, 1].min()) - pad
    nx = int((float(box[:, 2].max()) + pad - x0) / cell) + 1
    ny = int((float(box[:, 3].max()) + pad - y0) / cell) + 1
    cell_off, e_zone, e_flags, e_L, e_doff, d_edge, d_lb, e_poff, p_edge = build_cells(
        box, zones.ring_off, zones.vert_off, zones.xy, x0, y0, cell, nx, ny, exact
    )
    start, n_far = cell_record_sizes(cell_off, e_doff, d_lb, e_poff, NEAR_M)
    records = np.empty(int(start[-1]), dtype=np.float64)  # numpy's allocator: huge pages where allowed
    far = np.empty(int(n_far), dtype=np.float64)
    pack_cells(
        cell_off, e_zone, e_flags, e_L, e_doff, d_edge, d_lb, e_poff, p_edge, zones.xy, NEAR_M, records, far
    )
    return _Grid(x0, y0, cell, nx, ny, exact, cell_off, e_zone, start, records, far)


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
    zone_arrays = _zone_arrays(zone_flat, projection)
    return GeofenceIndex(
        projection=projection,
        search_radius_m=radius,
        route_ids=route_flat.ids,
        zone_ids=zone_flat.ids,
        routes=_route_arrays(route_flat, corridor, projection),
        zones=zone_arrays,
        grid=_grid_arrays(zone_arrays, radius),
    )
