"""The query side of the geofence: :class:`GeofenceIndex` checks batches of fixes against the routes
and zones that :mod:`tracker.geofence.build` validated and packed (:func:`build_index` does both).

A check runs the kernels' passes (:func:`tracker.geofence.kernels.passes.check_batch`, the one
orchestration of them) over the whole batch, never Python per fix. How is decided in one place,
:meth:`GeofenceIndex.check`, by batch size: a small batch in one numba call (a numba call from Python
costs microseconds; a batch amortises it), a big one pass by pass over numpy's arrays, and from
:data:`PARALLEL_MIN_FIXES` on each pass over blocks of fixes on every numba thread. The answers are the
same bit for bit whichever way runs (tests/unit/test_geofence_oracle.py checks the three). When the
kernels were compiled ahead of time (:mod:`tracker.geofence.kernels.compiled`: a worker without numba),
every batch runs in one call of the compiled module unless ``parallel=True`` asks for numba's threads
(the pass-by-pass and parallel passes are the JIT's; the answers are the same bits).

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
* **depth** (per possible zone, beside its id): the fix's signed distance to the zone's boundary,
  positive inside (``d``) and negative outside (``-d``), clipped to ``+-min(acc, R)``: exact wherever
  the zone is possible but not certain; a certain zone is ``min(acc, R)`` deep. In sigmas of the fix's
  error it is what the monitor's lingering rule weighs (how deep, not only whether, a fix lies in a
  zone); computed where the verdict computes the boundary distance, so a fix with no possible zone
  costs nothing more.
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
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracker.geofence import kernels
from tracker.geofence.build import (
    GeometryRefused,
    PackedIndex,
    Prepared,
    RouteSpec,
    ZoneMeeting,
    ZoneSpec,
    pack,
    pack_prepared,
    route_meets_zones,
    zone_polygons,
)
from tracker.geofence.projection import LocalProjection

__all__ = [
    "PARALLEL_MIN_FIXES",
    "GeofenceAnswers",
    "GeofenceIndex",
    "GeometryRefused",
    "RouteSpec",
    "ZoneMeeting",
    "ZoneSpec",
    "build_index",
    "build_index_from",
    "route_meets_zones",
    "zone_polygons",
]
# GeometryRefused, RouteSpec, ZoneSpec and zone_polygons live in tracker.geofence.build; they are
# named here too because callers have imported them from this module.

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

_BIG_BATCH = 20_000
"""From here on, a check runs the passes one numba call at a time, over arrays from numpy's allocator
(see :func:`~tracker.geofence.kernels.passes.check_batch`)."""

PARALLEL_MIN_FIXES = 50_000
"""``check(parallel=None)`` uses every numba thread from this batch size on (the service's batches,
up to a few thousand fixes, stay on the calling thread: a parallel launch costs more than they do)."""

# Only one parallel kernel runs at a time: numba's fallback threading layer (workqueue, when neither
# TBB nor OpenMP is installed) must not be entered from two threads at once.
_parallel_lock = threading.Lock()


def _csr(offsets: I64, ids: I64, i: int) -> tuple[int, ...]:
    return tuple(ids[offsets[i] : offsets[i + 1]].tolist())


@dataclass(frozen=True, eq=False)
class GeofenceAnswers:
    """The index's answers for one batch of n fixes (what the geometry says; what the monitor makes of
    each fix is its `Verdict`); zone ids per fix are CSR slices, ascending.

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
    possible_depth_m: F64
    """float64, beside ``possible_zone_ids``: how deep in that zone the fix lies, clipped to
    +-min(acc, R) (positive inside; -d outside, d <= min(acc, R) since the zone is possible)."""

    def certain(self, i: int) -> tuple[int, ...]:
        """Zone ids certainly holding fix i (ascending)."""
        return _csr(self.certain_offsets, self.certain_zone_ids, i)

    def possible(self, i: int) -> tuple[int, ...]:
        """Zone ids possibly holding fix i (ascending)."""
        return _csr(self.possible_offsets, self.possible_zone_ids, i)

    def depths(self, i: int) -> dict[int, float]:
        """Zone id -> depth of fix i, for its possible zones (see ``possible_depth_m``)."""
        j0, j1 = int(self.possible_offsets[i]), int(self.possible_offsets[i + 1])
        return dict(
            zip(self.possible_zone_ids[j0:j1].tolist(), self.possible_depth_m[j0:j1].tolist(), strict=True)
        )

    def crossed(self, i: int) -> tuple[int, ...]:
        """Zone ids crossed between fix i's previous fix and fix i (ascending)."""
        return _csr(self.crossed_offsets, self.crossed_zone_ids, i)

    def __len__(self) -> int:
        return int(self.route_distance_m.shape[0])


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

    def __init__(self, packed: PackedIndex) -> None:
        """The index over ``packed`` (use :func:`build_index`); makes its arrays read-only."""
        projection = packed.projection
        routes, zones, grid = packed.routes, packed.zones, packed.grid
        self.projection = projection
        self.search_radius_m = float(packed.search_radius_m)
        self.route_ids = packed.route_ids
        self.zone_ids = packed.zone_ids
        self._routes = routes
        self._zones = zones
        self._grid = grid
        _readonly(self.route_ids, self.zone_ids, *_arrays(routes, zones, grid))
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
        self._kernel_args = (
            params,
            routes.kernel_args(),
            zones.kernel_args(),
            grid.kernel_args(),
            self.zone_ids,
        )
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
    ) -> GeofenceAnswers:
        """The answers for a batch of n fixes (lon/lat degrees, accuracy metres, route slot or -1).

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
            parallel = n >= PARALLEL_MIN_FIXES and kernels.default_threads() > 1
        args = (lon_a, lat_a, acc_a, slot_a, q_lon, q_lat, q_acc, *self._kernel_args)
        if parallel:
            with _parallel_lock:
                return GeofenceAnswers(*kernels.check_batch(*args, kernels.parallel))
        if n >= _BIG_BATCH and kernels.AHEAD_OF_TIME is None:
            return GeofenceAnswers(*kernels.check_batch(*args))
        return GeofenceAnswers(*kernels.check_batch_in_one_call(*args))


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
    The build itself: :func:`tracker.geofence.build.pack`.
    """
    return GeofenceIndex(pack(routes, zones, projection=projection, search_radius_m=search_radius_m))


def build_index_from(
    prepared: Prepared, *, projection: LocalProjection | None = None, search_radius_m: float = 150.0
) -> GeofenceIndex:
    """:func:`build_index` in two steps: ``build_index_from(prepare(routes, zones))``, the same index.
    :func:`~tracker.geofence.build.prepare` validates and flattens (it raises what build_index raises);
    the caller can let the routes' and zones' shapely geometry go before the packing (the registry
    view does: at city scale they were ~30 MiB of a worker's peak at start, bench/worker_memory.py)."""
    return GeofenceIndex(pack_prepared(prepared, projection=projection, search_radius_m=search_radius_m))


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
