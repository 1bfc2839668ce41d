"""Numba kernels of the geofence core: flat arrays in, flat arrays out, no objects per fix.

All coordinates are metres in the index's :class:`~tracker.geofence.projection.LocalProjection`; the
kernels project lon/lat themselves with exactly the arithmetic of ``LocalProjection.to_xy``. The build
side (:mod:`tracker.geofence.build`) and the query side (:mod:`tracker.geofence.index`) use them
through this package's namespace (so a test that patches ``CHUNK`` here changes what the build uses).

The files, by what they compute:

* :mod:`.layout`: the flat geometry the kernels read (record layouts, parameter vector, constants);
* :mod:`.geometry`: points, segments and boxes (distances, ray crossing, orientation, contacts);
* :mod:`.routes`: distance to a route; :mod:`.zones`: zone verdicts of a fix (from its cell's records,
  or from a scan of a zone's boundary); :mod:`.crossings`: zones crossed between two fixes;
* :mod:`.passes`: the passes of a check over a range of fixes, and :func:`~.passes.check_batch`, the
  one orchestration of them; :mod:`.parallel`: the passes over blocks, on every numba thread;
* build time: :mod:`.records` (chunks and records of routes and cells), :mod:`.cells` (which edges
  each cell lists);
* :mod:`.jit`: the decorators, with the compilation cache keyed on every file of this package (a
  kernel is compiled with its callees from the other files: numba's own cache would not notice a
  change to them). The package imports nothing but numba and numpy, relatively: it is self-contained
  (the cache test copies it elsewhere and changes it there);
* :mod:`.compiled`: which compiled kernels run. The entry points a worker calls (the build's and
  :func:`~.passes.check_batch_in_one_call`) come from a module compiled ahead of time when it is there
  and fresh (numba is then never imported: ~115 MiB less RSS), else from numba's JIT; the rest
  (:func:`~.passes.check_batch` pass by pass, :mod:`.parallel`) is the JIT's, imported when first asked
  for. ``python -m tracker.geofence.kernels`` (``make kernels``) builds the module.

Why the data looks the way it does
----------------------------------
At city scale the index is hundreds of megabytes and each fix touches a random route and a random
cell: the cost of a check is memory latency, not arithmetic. A dependent chain of cache misses costs
~150-300 ns each on this class of machine, independent loads ~10 ns. So everything one fix needs lies
in two contiguous records (its route's, its cell's), and a group of ``SUB`` fixes is checked in three
stages: find the records' addresses, touch their cache lines (independent loads that overlap), then
compute from cache.

Semantics
---------
Boundary semantics (the reason the kernels compute both "inside" and "distance to the boundary", as
Tile38 does): ``inside`` is the even-odd rule over all rings of a zone (a hole is outside; the parts
of a valid multipolygon do not overlap, so this is "inside any part"); for a point exactly on a
boundary the even-odd answer is arbitrary, but its boundary distance is exactly 0 (on a vertex, or on
an axis-parallel edge such as a lon/lat box), and every verdict is written so that the arbitrary bit
never matters there (certain needs ``d > acc >= 0``; possible holds with ``d <= acc``).

Every answer equals the one an exhaustive scan of every edge would give: the cell index only decides
which edges are looked at, with bounds that carry a safety margin (``MARGIN``) far above rounding.
"""

from __future__ import annotations

from typing import Any

from .compiled import AHEAD_OF_TIME, IN_USE, SOURCES_STAMP, entry_points
from .layout import (
    BLOCK,
    CHUNK,
    MARGIN,
    P_CELL,
    P_EXACT,
    P_GX0,
    P_GY0,
    P_KX,
    P_KY,
    P_LAT0,
    P_LON0,
    P_NX,
    P_NY,
    P_RADIUS,
    P_SIZE,
    SCRATCH,
    SUB,
)

_entry = entry_points()  # compiled ahead of time, or numba's dispatchers (see .compiled)
build_cells: Any = _entry["build_cells"]
build_chunks: Any = _entry["build_chunks"]
cell_record_sizes: Any = _entry["cell_record_sizes"]
check_batch_in_one_call: Any = _entry["check_batch_in_one_call"]
pack_cells: Any = _entry["pack_cells"]
pack_routes: Any = _entry["pack_routes"]
route_record_sizes: Any = _entry["route_record_sizes"]
del _entry

_JIT_ONLY = {"check_batch": "passes", "cumsum_inplace": "passes", "parallel": None}


def __getattr__(name: str) -> Any:
    """The JIT-only parts (:func:`~.passes.check_batch` as Python, its passes, :mod:`.parallel`),
    imported, with numba, when first asked for: a worker running the kernels compiled ahead of time
    never asks."""
    if name not in _JIT_ONLY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    source = _JIT_ONLY[name]
    value = import_module(f"{__name__}.{source or name}")
    return value if source is None else getattr(value, name)


def default_threads() -> int:
    """The threads a check runs on unless told (:meth:`tracker.geofence.index.GeofenceIndex.check`):
    numba's when the JIT runs, 1 when the kernels were compiled ahead of time (the parallel passes are
    the JIT's: they would load numba into the process)."""
    if AHEAD_OF_TIME is not None:
        return 1
    import numba

    return int(numba.get_num_threads())


__all__ = [
    "AHEAD_OF_TIME",
    "BLOCK",
    "CHUNK",
    "IN_USE",
    "MARGIN",
    "P_CELL",
    "P_EXACT",
    "P_GX0",
    "P_GY0",
    "P_KX",
    "P_KY",
    "P_LAT0",
    "P_LON0",
    "P_NX",
    "P_NY",
    "P_RADIUS",
    "P_SIZE",
    "SCRATCH",
    "SOURCES_STAMP",
    "SUB",
    "build_cells",
    "build_chunks",
    "cell_record_sizes",
    "check_batch",
    "check_batch_in_one_call",
    "cumsum_inplace",
    "default_threads",
    "pack_cells",
    "pack_routes",
    "parallel",
    "route_record_sizes",
]
