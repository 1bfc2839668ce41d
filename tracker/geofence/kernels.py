"""Numba kernels of the geofence core: flat arrays in, flat arrays out, no objects per fix.

All coordinates are metres in the index's :class:`~tracker.geofence.projection.LocalProjection`; the
kernels project lon/lat themselves with exactly the arithmetic of ``LocalProjection.to_xy``.

Why the data looks the way it does
----------------------------------
At city scale the index is hundreds of megabytes and each fix touches a random route and a random
cell: the cost of a check is memory latency, not arithmetic. A dependent chain of cache misses costs
~150-300 ns each on this class of machine, independent loads ~10 ns. So everything one fix needs lies
in two contiguous records (its route's, its cell's), and a group of ``SUB`` fixes is checked in three
stages: find the records' addresses, touch their cache lines (independent loads that overlap), then
compute from cache.

Flat geometry (built by :mod:`tracker.geofence.index` and :mod:`tracker.geofence.cells`)
------------------------------------------------------------------------------------------------------
* ``R`` (routes) = ``(corridor, route_start, rb)``: route slot ``r``'s record is
  ``rb[route_start[r]:route_start[r + 1]]``: the number of chunks ``nc``, then per chunk
  ``x0, y0, x1, y1, vo, nv`` (its box; ``nv`` vertices from record offset ``vo``), then the vertices
  (x, y pairs). A chunk holds at most ``CHUNK`` segments of one part; chunks of a part share their
  end vertex; segments never join parts.
* ``Z`` (zones, exact geometry, for the rare exhaustive scans and crossings) = ``(zone_box,
  zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy)``: ``zone_ring_off[z] ..`` are the rings of
  every polygon part of zone slot ``z`` (shells and holes alike, each closed: first vertex == last),
  cut into chunks over the vertices ``xy`` (``chunk_v[c]``: vertex range, ``chunk_box[c]``: box).
* ``G`` (the cell index, see :mod:`tracker.geofence.cells`) = ``(cell_off, e_zone, cell_start, zb,
  zf)``: square cells; cell ``c = cy * nx + cx`` has the *entries* ``cell_off[c] .. cell_off[c + 1]``
  (zone slots ``e_zone``, ascending), one per zone whose boundary lies within ``E`` (the exact range,
  >= the search radius) of the cell or whose interior holds the whole cell. Their records follow each
  other in ``zb[cell_start[c]:cell_start[c + 1]]``: first the zones that may hold a point of the cell,
  then the others by ascending ``L``. A record is a header of ``ZH`` doubles, ``L, fl, (nd | np << 16
  | k << 32 | flags << 48), (z | nf << 32), fo`` (small integers packed exactly into doubles), then
  ``np`` point-in-polygon edges ``ax, ay, bx, by``, then ``nd`` near distance edges ``lb, ax, ay, bx,
  by``; the ``nf`` far distance edges of the entry are at ``zf[fo:]``, their smallest bound ``fl``:

  - ``flags`` bit 0 ``BOUNDARY`` (the boundary may cross the cell: point-in-polygon by ray casting),
    bit 1 ``INSIDE`` (without BOUNDARY: the whole cell is inside; with it: the parity of the edges
    that cross the whole row to the right of the cell, which need no test);
  - ``L``: a lower bound of the distance from any point of the cell to the zone's boundary; ``k``:
    the entry's number in the cell (zone order: where its flag goes while a batch is checked);
  - distance edges: every edge within ``E`` of the cell, ascending by ``lb`` (a lower bound of its
    distance from the cell), so "is an edge within a" stops at the first bound above ``a``; those up
    to ``NEAR_M`` from the cell are in the record, the others (read by few fixes) in ``zf``. The
    edges that meet the cell come first (``lb`` = 0);
  - point-in-polygon edges: the edges of the cell's row that a ray towards +x from the cell may cross
    and that do not meet the cell (those are the distance edges of bound 0, tested from there), minus
    the ones crossing the whole row to the right (their parity is the INSIDE bit).

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

import math
from typing import Any

import numba
import numpy as np

__all__ = [
    "BLOCK",
    "CHUNK",
    "MARGIN",
    "build_chunks",
    "check_serial",
    "cumsum_inplace",
    "pack_routes",
    "par_crossed",
    "par_fill",
    "par_locate",
    "par_main",
]

# A bounding-box distance is a lower bound of the true distance, but both are rounded; boxes are only
# used to *skip* work when the lower bound is beyond the radius by this relative margin.
_SLACK = 1.0 + 1e-9
# Distances are computed exactly only below a cap; anything else is reported as sqrt(cap2) with
# cap2 = cap² · _SLACK + _TINY2, which is strictly above the cap even when the cap is 0.
_TINY2 = 1e-18

CHUNK = 8
"""Segments per chunk of a route part or a zone ring (see the module docstring)."""
MARGIN = 1e-3
"""Metres of safety in every bound the cell index relies on (rounding is below 1e-6 m in a city)."""
BLOCK = 2048
"""Fixes per unit of work (one prange iteration in the parallel kernel)."""
SUB = 32
"""Fixes whose records are fetched together (see the module docstring)."""
TOUCH = 24
"""Cache lines of a cell's records fetched ahead (the rest is rarely read: edges sorted by bound)."""
ROUTE_HEAD = 3
"""Cache lines of a route's record fetched ahead: its chunk boxes (then only the nearest chunk)."""
SCRATCH = 5  # per fix in a group: route record start, end, cell records start, end, nearest chunk

# record layouts
RC = 6  # per route chunk: x0, y0, x1, y1, vo, nv
ZH = 5  # per zone entry: L, fl, (nd, np, k, flags), (z, nf), fo (see the module docstring)
ZP = 4  # per point-in-polygon edge: ax, ay, bx, by
ZD = 5  # per distance edge: lb, ax, ay, bx, by

BOUNDARY = np.uint8(1)
INSIDE = np.uint8(2)

# flags of one (fix, entry) pair while a batch is checked
_POSSIBLE = 1
_CERTAIN = 2
_PENDING = 4  # outside: decided in the second pass
_SCAN = 8  # inside, accuracy beyond the exact range: certain after a scan of the whole boundary

# parameter vector P
P_LON0, P_LAT0, P_KX, P_KY, P_GX0, P_GY0, P_CELL, P_NX, P_NY, P_RADIUS, P_EXACT = range(11)
P_SIZE = 11


# Functions that allocate (and so need numba's reference-counted runtime, NRT) are ``_jit``; every
# other one is ``_hot``: compiled without NRT, so passing arrays to it costs no atomic increments and
# decrements (with NRT they cost ~14 ns per call even when inlined, more than the work of a call).
_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}
_NO_NRT: dict[str, Any] = {"_nrt": False}  # a private option of numba's, stable for years
_jit = numba.njit(**_OPTIONS)
_hot = numba.njit(**_OPTIONS, **_NO_NRT)
_inline = numba.njit(**_OPTIONS, **_NO_NRT, inline="always")
_parallel = numba.njit(**_OPTIONS, parallel=True)


# ---------------------------------------------------------------------------------------------------
# small geometry


@_inline
def _box_dist2(px: float, py: float, box: np.ndarray, k: int) -> float:
    """Squared distance from a point to the closed box ``box[k]`` (0 inside or on it)."""
    dx = max(max(box[k, 0] - px, px - box[k, 2]), 0.0)
    dy = max(max(box[k, 1] - py, py - box[k, 3]), 0.0)
    return dx * dx + dy * dy


@_inline
def _seg_dist2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """Squared distance from a point to the segment a-b.

    ``(cross² + m²) / |ab|²`` with ``m`` how far the projection falls beyond an end (Lagrange's
    identity): no branch to mispredict, and exactly 0 for a point on a vertex or on an axis-parallel
    edge. A degenerate segment (a == b, a repeated vertex) is the distance to the point.
    """
    dx = bx - ax
    dy = by - ay
    wx = px - ax
    wy = py - ay
    len2 = dx * dx + dy * dy
    if len2 > 0.0:
        dot = wx * dx + wy * dy
        cr = wx * dy - wy * dx
        m = max(max(-dot, dot - len2), 0.0)
        return (cr * cr + m * m) / len2
    return wx * wx + wy * wy


@_inline
def _seg_box_dist2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """Squared distance from a point to the segment's bounding box: a lower bound of the squared
    distance to the segment, cheap (no division), 0 for a point on the segment."""
    dx = max(max(min(ax, bx) - px, px - max(ax, bx)), 0.0)
    dy = max(max(min(ay, by) - py, py - max(ay, by)), 0.0)
    return dx * dx + dy * dy


@_inline
def _ray_crosses(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> bool:
    """Whether the edge a-b crosses the ray from the point towards +x (half-open in y, division free).

    Every point-in-polygon answer of the core, at build time and per fix, goes through this test.
    """
    if (ay > py) != (by > py):
        cr = (py - ay) * (bx - ax) - (px - ax) * (by - ay)
        return (cr > 0.0) == (by > ay)
    return False


@_inline
def _orient(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@_inline
def _within_box(ax: float, ay: float, bx: float, by: float, px: float, py: float) -> bool:
    """p in the closed bounding box of a-b (for a p known to be collinear with a-b)."""
    return min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


@_hot
def segment_meets_rect(
    x0: float, y0: float, x1: float, y1: float, ax: float, ay: float, bx: float, by: float
) -> bool:
    """Whether the closed segment a-b meets the closed rectangle (Liang–Barsky clipping)."""
    t0 = 0.0
    t1 = 1.0
    dx = bx - ax
    dy = by - ay
    for k in range(4):
        if k == 0:
            p = -dx
            q = ax - x0
        elif k == 1:
            p = dx
            q = x1 - ax
        elif k == 2:
            p = -dy
            q = ay - y0
        else:
            p = dy
            q = y1 - ay
        if p == 0.0:
            if q < 0.0:
                return False
        else:
            r = q / p
            if p < 0.0:
                t0 = max(t0, r)
            else:
                t1 = min(t1, r)
            if t0 > t1:
                return False
    return True


# ---------------------------------------------------------------------------------------------------
# routes


@_hot
def _route_chunk_dist2(px: float, py: float, o: int, k: int, rb: np.ndarray, best2: float) -> float:
    q = o + 1 + RC * k
    v = o + np.int64(rb[q + 4])
    for j in range(np.int64(rb[q + 5]) - 1):
        t = v + 2 * j
        best2 = min(best2, _seg_dist2(px, py, rb[t], rb[t + 1], rb[t + 2], rb[t + 3]))
    return best2


@_hot
def _route_first(px: float, py: float, o: int, rb: np.ndarray) -> int:
    """The chunk whose box is nearest the point, of the route whose record starts at ``rb[o]``."""
    first = 0
    first_b = np.inf
    for k in range(np.int64(rb[o])):
        q = o + 1 + RC * k
        dx = max(max(rb[q] - px, px - rb[q + 2]), 0.0)
        dy = max(max(rb[q + 1] - py, py - rb[q + 3]), 0.0)
        b = dx * dx + dy * dy
        if b < first_b:
            first_b = b
            first = k
    return first


@_hot
def _route_dist(px: float, py: float, o: int, first: int, rb: np.ndarray) -> float:
    """Distance from a point to every segment of the route whose record starts at ``rb[o]``: chunk
    ``first`` (the nearest box) first, then only chunks whose box is nearer than the best so far."""
    best2 = _route_chunk_dist2(px, py, o, first, rb, np.inf)
    for k in range(np.int64(rb[o])):
        if k == first:
            continue
        q = o + 1 + RC * k
        dx = max(max(rb[q] - px, px - rb[q + 2]), 0.0)
        dy = max(max(rb[q + 1] - py, py - rb[q + 3]), 0.0)
        if dx * dx + dy * dy < best2:
            best2 = _route_chunk_dist2(px, py, o, k, rb, best2)
    return math.sqrt(best2)


# ---------------------------------------------------------------------------------------------------
# zones: exhaustive scans (build time, fallbacks, crossings)


@_hot
def _zone_pip(px: float, py: float, z: int, Z: tuple) -> bool:
    """Even-odd point-in-polygon over every ring of zone z (chunks that cannot cross the ray skipped)."""
    zone_box, zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy = Z
    if not (zone_box[z, 1] <= py <= zone_box[z, 3] and zone_box[z, 0] <= px <= zone_box[z, 2]):
        return False
    odd = False
    for c in range(ring_chunk_off[zone_ring_off[z]], ring_chunk_off[zone_ring_off[z + 1]]):
        if chunk_box[c, 1] <= py <= chunk_box[c, 3] and px <= chunk_box[c, 2]:
            for j in range(chunk_v[c, 0], chunk_v[c, 1] - 1):
                if _ray_crosses(px, py, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1]):
                    odd = not odd
    return odd


@_hot
def _zone_within(px: float, py: float, z: int, cap: float, Z: tuple) -> bool:
    """Whether the boundary of zone z comes within ``cap`` metres of the point (every ring)."""
    _, zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy = Z
    cap2 = cap * cap * _SLACK + _TINY2
    for c in range(ring_chunk_off[zone_ring_off[z]], ring_chunk_off[zone_ring_off[z + 1]]):
        if _box_dist2(px, py, chunk_box, c) > cap2:
            continue
        for j in range(chunk_v[c, 0], chunk_v[c, 1] - 1):
            if math.sqrt(_seg_dist2(px, py, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1])) <= cap:
                return True
    return False


@_hot
def _on_boundary(px: float, py: float, z: int, Z: tuple) -> bool:
    """Whether the point lies exactly on the boundary of zone z (distance 0 to some edge)."""
    _, zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy = Z
    for c in range(ring_chunk_off[zone_ring_off[z]], ring_chunk_off[zone_ring_off[z + 1]]):
        if _box_dist2(px, py, chunk_box, c) > 0.0:
            continue
        for j in range(chunk_v[c, 0], chunk_v[c, 1] - 1):
            if _seg_dist2(px, py, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1]) == 0.0:
                return True
    return False


@_hot
def sort_inplace(a: np.ndarray, n: int) -> None:
    """Insertion sort of a[:n] (the lists sorted per fix are short; no library sort to compile)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@_hot
def _contact_kind(
    qx: float, qy: float, px: float, py: float, ax: float, ay: float, bx: float, by: float
) -> int:
    """How the segment q-p meets the edge a-b: 0 not at all, 1 a proper crossing (interiors cross at
    one point), 2 a contact (an end of one lies on the other, or they are collinear and overlap)."""
    d1 = _orient(qx, qy, px, py, ax, ay)
    d2 = _orient(qx, qy, px, py, bx, by)
    d3 = _orient(ax, ay, bx, by, qx, qy)
    d4 = _orient(ax, ay, bx, by, px, py)
    if ((d1 > 0.0 and d2 < 0.0) or (d1 < 0.0 and d2 > 0.0)) and (
        (d3 > 0.0 and d4 < 0.0) or (d3 < 0.0 and d4 > 0.0)
    ):
        return 1
    if (
        (d1 == 0.0 and _within_box(qx, qy, px, py, ax, ay))
        or (d2 == 0.0 and _within_box(qx, qy, px, py, bx, by))
        or (d3 == 0.0 and _within_box(ax, ay, bx, by, qx, qy))
        or (d4 == 0.0 and _within_box(ax, ay, bx, by, px, py))
    ):
        return 2
    return 0


@_hot
def _segment_meets_interior(
    qx: float,
    qy: float,
    px: float,
    py: float,
    z: int,
    Z: tuple,
) -> bool:
    """Whether the closed segment q-p meets the open interior of zone z.

    A proper crossing of an edge enters the interior (a valid polygon has its interior on one side of
    every edge). Without any contact the segment lies in one face: the interior iff q is inside. With
    a contact (an end on the boundary, a vertex on the segment, a stretch along an edge) the segment
    is cut at every contact and crossing, and the midpoint of every piece is tested (a piece that runs
    along an edge has a midpoint on the boundary: distance 0, not interior).
    """
    zone_box, zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy = Z
    if qx == px and qy == py:
        return _zone_pip(px, py, z, Z) and not _on_boundary(px, py, z, Z)
    sx0 = min(qx, px)
    sx1 = max(qx, px)
    sy0 = min(qy, py)
    sy1 = max(qy, py)
    if sx1 < zone_box[z, 0] or sx0 > zone_box[z, 2] or sy1 < zone_box[z, 1] or sy0 > zone_box[z, 3]:
        return False
    c0 = ring_chunk_off[zone_ring_off[z]]
    c1 = ring_chunk_off[zone_ring_off[z + 1]]
    proper = False
    contacts = 0
    for c in range(c0, c1):
        if sx1 < chunk_box[c, 0] or sx0 > chunk_box[c, 2] or sy1 < chunk_box[c, 1] or sy0 > chunk_box[c, 3]:
            continue
        for j in range(chunk_v[c, 0], chunk_v[c, 1] - 1):
            k = _contact_kind(qx, qy, px, py, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1])
            if k == 1:
                proper = True
            elif k == 2:
                contacts += 1
    if contacts == 0:
        return proper or _zone_pip(qx, qy, z, Z)
    return _pieces_meet_interior(qx, qy, px, py, z, Z)


@_hot
def _next_cut(
    qx: float,
    qy: float,
    px: float,
    py: float,
    z: int,
    Z: tuple,
    after: float,
) -> float:
    """The smallest parameter t > after (t along q-p, in [0, 1]) where q-p meets an edge of zone z:
    a crossing, or an end of an edge lying on the segment; 1.0 if none."""
    _, zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy = Z
    sx0 = min(qx, px)
    sx1 = max(qx, px)
    sy0 = min(qy, py)
    sy1 = max(qy, py)
    ux = px - qx
    uy = py - qy
    len2 = ux * ux + uy * uy
    best = 1.0
    for c in range(ring_chunk_off[zone_ring_off[z]], ring_chunk_off[zone_ring_off[z + 1]]):
        if sx1 < chunk_box[c, 0] or sx0 > chunk_box[c, 2] or sy1 < chunk_box[c, 1] or sy0 > chunk_box[c, 3]:
            continue
        for j in range(chunk_v[c, 0], chunk_v[c, 1] - 1):
            ax = xy[j, 0]
            ay = xy[j, 1]
            bx = xy[j + 1, 0]
            by = xy[j + 1, 1]
            k = _contact_kind(qx, qy, px, py, ax, ay, bx, by)
            if k == 1:
                d3 = _orient(ax, ay, bx, by, qx, qy)
                d4 = _orient(ax, ay, bx, by, px, py)
                t = min(max(d3 / (d3 - d4), 0.0), 1.0)
                if after < t < best:
                    best = t
            elif k == 2:
                # cut at the edge's ends that lie on the segment (an end of the segment lying on the
                # edge is a cut at 0 or 1 already)
                for end in range(2):
                    ex = ax if end == 0 else bx
                    ey = ay if end == 0 else by
                    if _orient(qx, qy, px, py, ex, ey) == 0.0 and _within_box(qx, qy, px, py, ex, ey):
                        t = min(max(((ex - qx) * ux + (ey - qy) * uy) / len2, 0.0), 1.0)
                        if after < t < best:
                            best = t
    return best


@_hot
def _pieces_meet_interior(
    qx: float,
    qy: float,
    px: float,
    py: float,
    z: int,
    Z: tuple,
) -> bool:
    """The degenerate case of _segment_meets_interior: cut q-p at every edge it meets and test the
    midpoint of every piece, in order (no buffer: a contact is rare, its pieces few)."""
    ux = px - qx
    uy = py - qy
    tol = 1e-9 * (1.0 + math.sqrt(ux * ux + uy * uy))
    t0 = 0.0
    while True:
        t1 = _next_cut(qx, qy, px, py, z, Z, t0)
        tm = 0.5 * (t0 + t1)
        mx = qx + tm * ux
        my = qy + tm * uy
        # a piece along an edge has its midpoint on the boundary: not the interior
        if _zone_pip(mx, my, z, Z) and not _zone_within(mx, my, z, tol, Z):
            return True
        if t1 >= 1.0:
            return False
        t0 = t1


# ---------------------------------------------------------------------------------------------------
# zones: one (fix, cell entry) pair; ``o`` is the offset of the entry's record in ``zb``


@_inline
def _h_nd(o: int, zb: np.ndarray) -> int:
    return int(np.int64(zb[o + 2]) & 0xFFFF)


@_inline
def _h_np(o: int, zb: np.ndarray) -> int:
    return int((np.int64(zb[o + 2]) >> 16) & 0xFFFF)


@_inline
def _h_k(o: int, zb: np.ndarray) -> int:
    return int((np.int64(zb[o + 2]) >> 32) & 0xFFFF)


@_inline
def _h_flags(o: int, zb: np.ndarray) -> int:
    return int(np.int64(zb[o + 2]) >> 48)


@_inline
def _h_z(o: int, zb: np.ndarray) -> int:
    return int(np.int64(zb[o + 3]) & 0xFFFFFFFF)


@_inline
def _h_nf(o: int, zb: np.ndarray) -> int:
    return int(np.int64(zb[o + 3]) >> 32)


@_inline
def _entry_next(o: int, zb: np.ndarray) -> int:
    return o + ZH + ZP * _h_np(o, zb) + ZD * _h_nd(o, zb)


@_inline
def _entry_inside(px: float, py: float, o: int, zb: np.ndarray) -> bool:
    f = _h_flags(o, zb)
    odd = (f & INSIDE) != 0
    if (f & BOUNDARY) == 0:
        return odd
    p = o + ZH
    n_pip = _h_np(o, zb)
    for t in range(n_pip):  # the row's edges that do not meet the cell
        q = p + ZP * t
        if _ray_crosses(px, py, zb[q], zb[q + 1], zb[q + 2], zb[q + 3]):
            odd = not odd
    p += ZP * n_pip
    for t in range(_h_nd(o, zb)):  # then the edges that meet the cell: the distance edges of bound 0
        q = p + ZD * t
        if zb[q] > 0.0:
            break
        if _ray_crosses(px, py, zb[q + 1], zb[q + 2], zb[q + 3], zb[q + 4]):
            odd = not odd
    return odd


@_inline
def _edges_within(px: float, py: float, e: np.ndarray, p: int, n: int, cap: float) -> int:
    """Over n distance edges from ``e[p]`` (ascending bounds): 1 if one is within cap, 0 if a bound
    passed cap first, -1 if the list ran out."""
    skip2 = cap * cap * _SLACK
    for t in range(n):
        q = p + ZD * t
        if e[q] > cap:
            return 0  # this edge and every later one are farther than cap
        ax = e[q + 1]
        ay = e[q + 2]
        bx = e[q + 3]
        by = e[q + 4]
        if _seg_box_dist2(px, py, ax, ay, bx, by) > skip2:
            continue  # the segment's box is farther than cap: so is the segment
        if math.sqrt(_seg_dist2(px, py, ax, ay, bx, by)) <= cap:
            return 1
    return -1


@_inline
def _entry_within(
    px: float, py: float, o: int, cap: float, exact: float, zb: np.ndarray, zf: np.ndarray
) -> int:
    """Whether the zone's boundary comes within ``cap`` of the point: 1 yes, 0 no, -1 unknown (only
    when ``cap`` exceeds the exact range and no listed edge is within ``cap``). The far edges are
    read only when the near ones run out."""
    w = _edges_within(px, py, zb, o + ZH + ZP * _h_np(o, zb), _h_nd(o, zb), cap)
    if w < 0 and zb[o + 1] <= cap:  # the far edges' bound is in the header: no miss when they cannot matter
        w = _edges_within(px, py, zf, np.int64(zb[o + 4]), _h_nf(o, zb), cap)
    if w < 0:
        return 0 if cap <= exact else -1
    return w


@_hot
def _edges_dist2(px: float, py: float, e: np.ndarray, p: int, n: int, best2: float) -> tuple[float, bool]:
    """(min(best2, squared distances of n edges from e[p])), whether the list ran out."""
    for t in range(n):
        q = p + ZD * t
        lb = e[q]
        if lb > 0.0 and lb * lb > best2:
            return best2, False
        ax = e[q + 1]
        ay = e[q + 2]
        bx = e[q + 3]
        by = e[q + 4]
        if _seg_box_dist2(px, py, ax, ay, bx, by) < best2:
            best2 = min(best2, _seg_dist2(px, py, ax, ay, bx, by))
    return best2, True


@_hot
def _entry_dist(px: float, py: float, o: int, cap: float, zb: np.ndarray, zf: np.ndarray) -> float:
    """Distance to the zone's boundary when it is <= cap (cap <= the exact range), else a value > cap."""
    best2, more = _edges_dist2(
        px, py, zb, o + ZH + ZP * _h_np(o, zb), _h_nd(o, zb), cap * cap * _SLACK + _TINY2
    )
    fl = zb[o + 1]
    if more and fl * fl <= best2:
        best2, more = _edges_dist2(px, py, zf, np.int64(zb[o + 4]), _h_nf(o, zb), best2)
    return math.sqrt(best2)


@_inline
def _inside_certain(
    px: float, py: float, a: float, o: int, exact: float, zb: np.ndarray, zf: np.ndarray
) -> int:
    """For a point inside the entry's zone: is its boundary distance > a (a = inf: never)? 1 yes, 0 no,
    -1 unknown (a beyond the exact range: the caller scans the whole boundary, see _certain_at)."""
    if not a < np.inf:
        return 0
    if a < zb[o]:
        return 1
    w = _entry_within(px, py, o, a, exact, zb, zf)
    if w < 0:
        return -1
    return 1 - w


@_hot
def _certain_at(
    px: float,
    py: float,
    a: float,
    o: int,
    exact: float,
    zb: np.ndarray,
    zf: np.ndarray,
    Z: tuple,
) -> bool:
    """certain = inside the entry's zone and boundary distance > a, with the exhaustive scan when the
    cell index cannot tell."""
    if not _entry_inside(px, py, o, zb):
        return False
    r = _inside_certain(px, py, a, o, exact, zb, zf)
    if r < 0:
        return not _zone_within(px, py, _h_z(o, zb), a, Z)
    return r == 1


@_hot
def _resolve_scans(
    px: float,
    py: float,
    a: float,
    o0: int,
    o1: int,
    flags: np.ndarray,
    fbase: int,
    zb: np.ndarray,
    Z: tuple,
) -> int:
    """Zones flagged _SCAN by _zones_fix (inside, accuracy beyond the exact range): scan their whole
    boundary; returns how many are certain."""
    n = 0
    o = o0
    while o < o1:
        k = fbase + _h_k(o, zb)
        if flags[k] & _SCAN:
            flags[k] = _POSSIBLE
            if not _zone_within(px, py, _h_z(o, zb), a, Z):
                flags[k] = _POSSIBLE | _CERTAIN
                n += 1
        o = _entry_next(o, zb)
    return n


@_hot
def _outside_flag(
    px: float,
    py: float,
    o: int,
    am: float,
    radius: float,
    near: float,
    exact: float,
    zb: np.ndarray,
    zf: np.ndarray,
) -> tuple[int, float]:
    """(flag, nearest so far) for a zone that does not hold the fix: possible iff d <= min(acc, R);
    its exact distance is needed only while no zone holds the fix (nearest)."""
    bound = zb[o]  # no point of the cell is nearer the zone's boundary
    if near == 0.0:
        if bound <= am and _entry_within(px, py, o, am, exact, zb, zf) == 1:
            return _POSSIBLE, near
        return 0, near
    cap = max(am, min(near, radius))
    f = 0
    if bound <= cap:
        d = _entry_dist(px, py, o, cap, zb, zf)
        if d <= am:
            f = _POSSIBLE
        if d <= radius and d < near:
            near = d
    return f, near


@_hot
def _zones_fix(
    px: float,
    py: float,
    acc: float,
    o0: int,
    o1: int,
    n_entries: int,
    flags: np.ndarray,
    fbase: int,
    radius: float,
    exact: float,
    zb: np.ndarray,
    zf: np.ndarray,
) -> tuple[int, int, float, int]:
    """Zone verdicts of one fix whose cell's records are ``zb[o0:o1]``: writes a flag per entry into
    ``flags[fbase:]`` and returns (certain count, possible count, nearest zone distance, zones left
    to an exhaustive scan: see _resolve_scans).

    The records come in two runs: the zones that may hold a point of the cell, then the others by
    ascending lower bound ``L``, so that the second run is read only as far as ``L`` can matter.
    """
    a = acc if acc >= 0.0 else np.inf  # nan or negative: unknown
    am = min(a, radius)
    near = np.inf
    n_certain = 0
    n_possible = 0
    n_scan = 0
    for k in range(n_entries):
        flags[fbase + k] = 0
    o = o0
    pending = False
    while o < o1:
        if (_h_flags(o, zb) & (BOUNDARY | INSIDE)) == 0:
            break
        k = fbase + _h_k(o, zb)
        if _entry_inside(px, py, o, zb):
            near = 0.0
            f = _POSSIBLE
            r = _inside_certain(px, py, a, o, exact, zb, zf)
            if r > 0:
                f = _POSSIBLE | _CERTAIN
                n_certain += 1
            elif r < 0:
                f = _SCAN
                n_scan += 1
            n_possible += 1
            flags[k] = f
        else:
            flags[k] = _PENDING
            pending = True
        o = _entry_next(o, zb)
    o_out = o
    if pending:
        o = o0
        while o < o_out:
            k = fbase + _h_k(o, zb)
            if flags[k] == _PENDING:
                f, near = _outside_flag(px, py, o, am, radius, near, exact, zb, zf)
                n_possible += f
                flags[k] = f
            o = _entry_next(o, zb)
    o = o_out
    while o < o1:
        if zb[o] > (am if near == 0.0 else max(am, min(near, radius))):
            break  # ascending L: no later zone can be possible or nearer
        f, near = _outside_flag(px, py, o, am, radius, near, exact, zb, zf)
        n_possible += f
        flags[fbase + _h_k(o, zb)] = f
        o = _entry_next(o, zb)
    return n_certain, n_possible, near, n_scan


@_inline
def _cell_of(px: float, py: float, P: np.ndarray) -> int:
    """Cell of a point, -1 outside the grid (or not finite)."""
    nx = int(P[P_NX])
    if nx == 0:
        return -1
    # floor by truncation once the position is known to be non-negative (false for nan)
    fx = (px - P[P_GX0]) / P[P_CELL]
    fy = (py - P[P_GY0]) / P[P_CELL]
    if 0.0 <= fx < nx and 0.0 <= fy < P[P_NY]:
        return int(fy) * nx + int(fx)
    return -1


@_hot
def _strictly_inside(px: float, py: float, o: int, exact: float, zb: np.ndarray, zf: np.ndarray) -> bool:
    """Inside the entry's zone and not on its boundary."""
    return _entry_inside(px, py, o, zb) and _entry_within(px, py, o, 0.0, exact, zb, zf) == 0


@_hot
def _piece_meets(
    ax: float, ay: float, bx: float, by: float, o: int, exact: float, zb: np.ndarray, zf: np.ndarray
) -> int:
    """Whether the piece a-b of a segment, lying in the entry's cell, meets the zone's interior:
    1 yes, 0 no, -1 it touches the boundary exactly (the caller decides with an exhaustive scan).

    Without BOUNDARY the cell is in one face. Otherwise only the edges that meet the cell (bound 0,
    the first ones) can meet the piece: a proper crossing enters the interior (a valid polygon has its
    interior on one side of every edge); with no crossing and no contact the piece lies in one face,
    the interior iff its end a is inside."""
    f = _h_flags(o, zb)
    if (f & BOUNDARY) == 0:
        return 1 if f & INSIDE else 0
    if ax == bx and ay == by:
        return 1 if _strictly_inside(ax, ay, o, exact, zb, zf) else 0
    proper = False
    p = o + ZH + ZP * _h_np(o, zb)
    for t in range(_h_nd(o, zb)):
        q = p + ZD * t
        if zb[q] > 0.0:
            break
        k = _contact_kind(ax, ay, bx, by, zb[q + 1], zb[q + 2], zb[q + 3], zb[q + 4])
        if k == 2:
            return -1
        if k == 1:
            proper = True
    if proper:
        return 1
    return 1 if _entry_inside(ax, ay, o, zb) else 0


@_hot
def _crossed_fix(
    px: float,
    py: float,
    c: int,
    qx: float,
    qy: float,
    qa: float,
    flags: np.ndarray,
    fbase: int,
    P: np.ndarray,
    G: tuple,
    Z: tuple,
    seen: np.ndarray,
    stamp: int,
    buf: np.ndarray,
    out: np.ndarray,
    out_at: int,
    zone_ids: np.ndarray,
) -> int:
    """Zones whose interior the segment from the previous fix q to this fix p meets while neither end
    is certainly inside (q with accuracy qa). Writes their ids ascending into ``out[out_at:]`` when
    ``out_at >= 0``; returns how many.

    The segment is walked cell by cell (grid traversal); the piece in each cell is tested against the
    entries of that cell: a zone with no entry there is farther than the exact range from the cell and
    does not hold it, so the piece misses it."""
    if not (math.isfinite(qx) and math.isfinite(qy) and math.isfinite(px) and math.isfinite(py)):
        return 0
    cell_off, _, cell_start, zb, zf = G
    nx = np.int64(P[P_NX])
    ny = np.int64(P[P_NY])
    if nx == 0:
        return 0
    exact = P[P_EXACT]
    qa = qa if qa >= 0.0 else np.inf
    gx0 = P[P_GX0]
    gy0 = P[P_GY0]
    cell = P[P_CELL]
    # the segment in cell units, clipped to the grid (parameter t along q-p)
    ux = px - qx
    uy = py - qy
    fx = (qx - gx0) / cell
    fy = (qy - gy0) / cell
    dx = ux / cell
    dy = uy / cell
    t0 = 0.0
    t1 = 1.0
    if dx == 0.0:
        if fx < 0.0 or fx > nx:
            return 0
    else:
        t0 = max(t0, min(-fx / dx, (nx - fx) / dx))
        t1 = min(t1, max(-fx / dx, (nx - fx) / dx))
    if dy == 0.0:
        if fy < 0.0 or fy > ny:
            return 0
    else:
        t0 = max(t0, min(-fy / dy, (ny - fy) / dy))
        t1 = min(t1, max(-fy / dy, (ny - fy) / dy))
    if t0 > t1:
        return 0
    # a zone that certainly holds either end is no crossing: rule those out first (they have an entry
    # in that end's cell)
    if c >= 0:
        o = cell_start[c]
        for _e in range(cell_off[c], cell_off[c + 1]):
            if flags[fbase + _h_k(o, zb)] & _CERTAIN:
                seen[_h_z(o, zb)] = -2 - stamp
            o = _entry_next(o, zb)
    cq = _cell_of(qx, qy, P)
    if cq >= 0:
        o = cell_start[cq]
        for _e in range(cell_off[cq], cell_off[cq + 1]):
            z = _h_z(o, zb)
            if seen[z] != -2 - stamp and _certain_at(qx, qy, qa, o, exact, zb, zf, Z):
                seen[z] = -2 - stamp
            o = _entry_next(o, zb)
    # grid traversal from t0
    cx = int(min(max(math.floor(fx + t0 * dx), 0), nx - 1))
    cy = int(min(max(math.floor(fy + t0 * dy), 0), ny - 1))
    step_x = 1 if dx > 0.0 else -1
    step_y = 1 if dy > 0.0 else -1
    next_x = ((cx + (1 if dx > 0.0 else 0)) - fx) / dx if dx != 0.0 else np.inf
    next_y = ((cy + (1 if dy > 0.0 else 0)) - fy) / dy if dy != 0.0 else np.inf
    m = 0
    t = t0
    for _ in range(nx + ny + 2):
        t_end = min(min(next_x, next_y), t1)
        ax = qx if t == 0.0 else qx + t * ux
        ay = qy if t == 0.0 else qy + t * uy
        bx = px if t_end >= 1.0 else qx + t_end * ux
        by = py if t_end >= 1.0 else qy + t_end * uy
        cc = cy * nx + cx
        o = cell_start[cc]
        for _e in range(cell_off[cc], cell_off[cc + 1]):
            z = _h_z(o, zb)
            if seen[z] != stamp and seen[z] != -2 - stamp:  # met / ruled out for the whole segment
                r = _piece_meets(ax, ay, bx, by, o, exact, zb, zf)
                if r < 0:  # an exact contact with the boundary: decide the whole segment at once
                    if _segment_meets_interior(qx, qy, px, py, z, Z):
                        r = 1
                    else:
                        seen[z] = -2 - stamp
                        r = 0
                if r > 0:
                    seen[z] = stamp
                    buf[m] = z
                    m += 1
            o = _entry_next(o, zb)
        if t_end >= t1:
            break
        if next_x <= next_y:
            cx += step_x
            next_x += abs(1.0 / dx)
        else:
            cy += step_y
            next_y += abs(1.0 / dy)
        if cx < 0 or cx >= nx or cy < 0 or cy >= ny:
            break
        t = t_end
    if m > 0 and out_at >= 0:
        sort_inplace(buf, m)
        for u in range(m):
            out[out_at + u] = zone_ids[buf[u]]
    return m


# ---------------------------------------------------------------------------------------------------
# a range of fixes: the passes of a check
#
# A check is four passes over the fixes: locate (entries per fix, for the flag buffer), main (route
# distance and zone verdicts), crossed (only with previous fixes: count, then write), fill (the zone
# ids). Each pass is a function over a range of fixes that allocates nothing (scratch comes in), so
# it runs without NRT and can be called from the one-call kernel for small batches, from Python for
# big ones (outputs from numpy's allocator), and per block from prange.


@_hot
def _locate(
    i0: int,
    i1: int,
    lon: np.ndarray,
    lat: np.ndarray,
    P: np.ndarray,
    cell_off: np.ndarray,
    counts: np.ndarray,
) -> None:
    """counts[i + 1] = entries in fix i's cell (0 outside the grid)."""
    for i in range(i0, i1):
        c = _cell_of((lon[i] - P[P_LON0]) * P[P_KX], (lat[i] - P[P_LAT0]) * P[P_KY], P)
        counts[i + 1] = cell_off[c + 1] - cell_off[c] if c >= 0 else 0


@_hot
def _main(
    i0: int,
    i1: int,
    lon: np.ndarray,
    lat: np.ndarray,
    acc: np.ndarray,
    slot: np.ndarray,
    cand_off: np.ndarray,
    flags: np.ndarray,
    P: np.ndarray,
    R: tuple,
    Z: tuple,
    G: tuple,
    route_d: np.ndarray,
    corridor: np.ndarray,
    nearest: np.ndarray,
    n_certain: np.ndarray,
    n_possible: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Route distance and zone verdicts of fixes i0 .. i1 - 1, SUB fixes at a time in three stages:
    record addresses, touch their cache lines (independent loads that overlap), compute.
    ``scratch``: float64 [SCRATCH * SUB + 1]."""
    corridor_m, route_start, rb = R
    _, _, cell_start, zb, zf = G
    n_routes = corridor_m.shape[0]
    radius = P[P_RADIUS]
    exact = P[P_EXACT]
    lon0 = P[P_LON0]
    lat0 = P[P_LAT0]
    kx = P[P_KX]
    ky = P[P_KY]
    touched = 0.0
    for s0 in range(i0, i1, SUB):
        s1 = min(s0 + SUB, i1)
        # 1: where the records are
        for i in range(s0, s1):
            k = SCRATCH * (i - s0)
            s = slot[i]
            if s >= 0 and s < n_routes:
                scratch[k] = route_start[s]
                scratch[k + 1] = route_start[s + 1]
            else:
                scratch[k] = 0.0
                scratch[k + 1] = 0.0
            c = _cell_of((lon[i] - lon0) * kx, (lat[i] - lat0) * ky, P)
            if c >= 0:
                scratch[k + 2] = cell_start[c]
                scratch[k + 3] = cell_start[c + 1]
            else:
                scratch[k + 2] = 0.0
                scratch[k + 3] = 0.0
        # 2: fetch the route headers (chunk boxes) and the cells' records
        for k in range(0, SCRATCH * (s1 - s0), SCRATCH):
            r0 = np.int64(scratch[k])
            for t in range(r0, min(np.int64(scratch[k + 1]), r0 + 8 * ROUTE_HEAD), 8):
                touched += rb[t]
            z0 = np.int64(scratch[k + 2])
            for t in range(z0, min(np.int64(scratch[k + 3]), z0 + 8 * TOUCH), 8):
                touched += zb[t]
        # 3: the chunk of each route whose box is nearest the fix; fetch its vertices
        for i in range(s0, s1):
            k = SCRATCH * (i - s0)
            r0 = np.int64(scratch[k])
            if r0 == np.int64(scratch[k + 1]):
                continue
            first = _route_first((lon[i] - lon0) * kx, (lat[i] - lat0) * ky, r0, rb)
            scratch[k + 4] = first
            q = r0 + 1 + RC * first
            v = r0 + np.int64(rb[q + 4])
            for t in range(v, v + 2 * np.int64(rb[q + 5]), 8):
                touched += rb[t]
        # 4: compute
        for i in range(s0, s1):
            k = SCRATCH * (i - s0)
            px = (lon[i] - lon0) * kx
            py = (lat[i] - lat0) * ky
            s = slot[i]
            if s < 0 or s >= n_routes:
                route_d[i] = np.nan
                corridor[i] = np.nan
            else:
                corridor[i] = corridor_m[s]
                if math.isfinite(px) and math.isfinite(py):
                    route_d[i] = _route_dist(px, py, np.int64(scratch[k]), np.int64(scratch[k + 4]), rb)
                else:
                    route_d[i] = np.nan
            if cand_off[i + 1] == cand_off[i]:
                nearest[i] = np.inf  # outside the grid, or a cell without entries
                n_certain[i + 1] = 0
                n_possible[i + 1] = 0
                continue
            o0 = np.int64(scratch[k + 2])
            o1 = np.int64(scratch[k + 3])
            nc, npos, near, n_scan = _zones_fix(
                px,
                py,
                acc[i],
                o0,
                o1,
                cand_off[i + 1] - cand_off[i],
                flags,
                cand_off[i],
                radius,
                exact,
                zb,
                zf,
            )
            if n_scan:
                nc += _resolve_scans(px, py, acc[i], o0, o1, flags, cand_off[i], zb, Z)
            nearest[i] = near
            n_certain[i + 1] = nc
            n_possible[i + 1] = npos
    scratch[SCRATCH * SUB] = touched  # keeps the touching loads alive


@_hot
def _crossed(
    i0: int,
    i1: int,
    lon: np.ndarray,
    lat: np.ndarray,
    qlon: np.ndarray,
    qlat: np.ndarray,
    qacc: np.ndarray,
    cand_off: np.ndarray,
    flags: np.ndarray,
    P: np.ndarray,
    G: tuple,
    Z: tuple,
    zone_ids: np.ndarray,
    crossed_off: np.ndarray,
    crossed_ids: np.ndarray,
    seen: np.ndarray,
    buf: np.ndarray,
) -> None:
    """Count the crossed zones of fixes i0 .. i1 - 1 into ``crossed_off[i + 1]`` while ``crossed_ids``
    is empty; write them once it is allocated (``crossed_off`` then holds the offsets). (A mode flag
    would be a literal at both call sites, and numba compiles a function once per literal.)
    ``seen`` (-1 filled, reused by both passes) and ``buf``: int64 [n_zones] scratch."""
    fill = crossed_ids.shape[0] > 0
    lon0 = P[P_LON0]
    lat0 = P[P_LAT0]
    kx = P[P_KX]
    ky = P[P_KY]
    for i in range(i0, i1):
        if fill and crossed_off[i + 1] == crossed_off[i]:
            continue
        px = (lon[i] - lon0) * kx
        py = (lat[i] - lat0) * ky
        k = _crossed_fix(
            px,
            py,
            _cell_of(px, py, P),
            (qlon[i] - lon0) * kx,
            (qlat[i] - lat0) * ky,
            qacc[i],
            flags,
            cand_off[i],
            P,
            G,
            Z,
            seen,
            i + lon.shape[0] if fill else i,  # stamps of the counting pass must not count again
            buf,
            crossed_ids,
            crossed_off[i] if fill else -1,
            zone_ids,
        )
        if not fill:
            crossed_off[i + 1] = k


@_hot
def _fill(
    i0: int,
    i1: int,
    lon: np.ndarray,
    lat: np.ndarray,
    P: np.ndarray,
    cand_off: np.ndarray,
    flags: np.ndarray,
    G: tuple,
    zone_ids: np.ndarray,
    certain_off: np.ndarray,
    certain_ids: np.ndarray,
    possible_off: np.ndarray,
    possible_ids: np.ndarray,
) -> None:
    """Write the certain and possible zone ids of fixes i0 .. i1 - 1 from their flags."""
    cell_off = G[0]
    e_zone = G[1]
    for i in range(i0, i1):
        jp = possible_off[i]
        if possible_off[i + 1] == jp:
            continue
        c = _cell_of((lon[i] - P[P_LON0]) * P[P_KX], (lat[i] - P[P_LAT0]) * P[P_KY], P)
        jc = certain_off[i]
        base = cand_off[i] - cell_off[c]
        for e in range(cell_off[c], cell_off[c + 1]):
            f = flags[base + e]
            if f & _POSSIBLE:
                zid = zone_ids[e_zone[e]]
                possible_ids[jp] = zid
                jp += 1
                if f & _CERTAIN:
                    certain_ids[jc] = zid
                    jc += 1


@_hot
def cumsum_inplace(a: np.ndarray) -> None:
    for i in range(1, a.shape[0]):
        a[i] += a[i - 1]


@_jit
def check_serial(
    lon: np.ndarray,
    lat: np.ndarray,
    acc: np.ndarray,
    slot: np.ndarray,
    qlon: np.ndarray,
    qlat: np.ndarray,
    qacc: np.ndarray,
    P: np.ndarray,
    R: tuple,
    Z: tuple,
    G: tuple,
    zone_ids: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """The whole check of a (small) batch on the calling thread, in one call:
    (route_d, corridor, certain_off, certain_ids, possible_off, possible_ids, nearest, crossed_off,
    crossed_ids). ``qlon`` empty: no previous fixes, no crossings."""
    n = lon.shape[0]
    i0 = n - n  # 0, but not a literal: a literal argument would compile each pass once more
    cand_off = np.zeros(n + 1, dtype=np.int64)
    _locate(i0, n, lon, lat, P, G[0], cand_off)
    cumsum_inplace(cand_off)
    flags = np.empty(cand_off[n], dtype=np.uint8)
    route_d = np.empty(n, dtype=np.float64)
    corridor = np.empty(n, dtype=np.float64)
    nearest = np.empty(n, dtype=np.float64)
    certain_off = np.zeros(n + 1, dtype=np.int64)
    possible_off = np.zeros(n + 1, dtype=np.int64)
    crossed_off = np.zeros(n + 1, dtype=np.int64)
    scratch = np.empty(SCRATCH * SUB + 1, dtype=np.float64)
    _main(
        i0, n, lon, lat, acc, slot, cand_off, flags, P, R, Z, G, route_d, corridor, nearest,
        certain_off, possible_off, scratch,
    )  # fmt: skip
    cumsum_inplace(certain_off)
    cumsum_inplace(possible_off)
    certain_ids = np.empty(certain_off[n], dtype=np.int64)
    possible_ids = np.empty(possible_off[n], dtype=np.int64)
    _fill(
        i0, n, lon, lat, P, cand_off, flags, G, zone_ids, certain_off, certain_ids, possible_off, possible_ids
    )
    crossed_ids = np.empty(0, dtype=np.int64)
    if qlon.shape[0] == n and n > 0:
        seen = np.full(zone_ids.shape[0], -1, dtype=np.int64)
        buf = np.empty(zone_ids.shape[0], dtype=np.int64)
        _crossed(
            i0,
            n,
            lon,
            lat,
            qlon,
            qlat,
            qacc,
            cand_off,
            flags,
            P,
            G,
            Z,
            zone_ids,
            crossed_off,
            crossed_ids,
            seen,
            buf,
        )
        cumsum_inplace(crossed_off)
        if crossed_off[n] > 0:
            crossed_ids = np.empty(crossed_off[n], dtype=np.int64)
            _crossed(
                i0,
                n,
                lon,
                lat,
                qlon,
                qlat,
                qacc,
                cand_off,
                flags,
                P,
                G,
                Z,
                zone_ids,
                crossed_off,
                crossed_ids,
                seen,
                buf,
            )
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


# Big batches: the passes over blocks of BLOCK fixes, on every numba thread. Each prange loop costs
# seconds of compilation per big function it calls, so the passes that call little stay separate.


@_parallel
def par_locate(
    lon: np.ndarray, lat: np.ndarray, P: np.ndarray, cell_off: np.ndarray, counts: np.ndarray
) -> None:
    n = lon.shape[0]
    for b in numba.prange((n + BLOCK - 1) // BLOCK):
        i0 = np.int64(b) * BLOCK  # prange counts in uint64
        _locate(i0, min(i0 + BLOCK, n), lon, lat, P, cell_off, counts)


@_parallel
def par_main(
    lon: np.ndarray,
    lat: np.ndarray,
    acc: np.ndarray,
    slot: np.ndarray,
    cand_off: np.ndarray,
    flags: np.ndarray,
    P: np.ndarray,
    R: tuple,
    Z: tuple,
    G: tuple,
    route_d: np.ndarray,
    corridor: np.ndarray,
    nearest: np.ndarray,
    n_certain: np.ndarray,
    n_possible: np.ndarray,
) -> None:
    n = lon.shape[0]
    n_blocks = (n + BLOCK - 1) // BLOCK
    scratch = np.empty((n_blocks, SCRATCH * SUB + 1), dtype=np.float64)
    for b in numba.prange(n_blocks):
        i0 = np.int64(b) * BLOCK
        _main(
            i0, min(i0 + BLOCK, n), lon, lat, acc, slot, cand_off, flags, P, R, Z, G, route_d, corridor,
            nearest, n_certain, n_possible, scratch[b],
        )  # fmt: skip


@_parallel
def par_crossed(
    lon: np.ndarray,
    lat: np.ndarray,
    qlon: np.ndarray,
    qlat: np.ndarray,
    qacc: np.ndarray,
    cand_off: np.ndarray,
    flags: np.ndarray,
    P: np.ndarray,
    G: tuple,
    Z: tuple,
    zone_ids: np.ndarray,
    crossed_off: np.ndarray,
    crossed_ids: np.ndarray,
) -> None:
    n = lon.shape[0]
    for b in numba.prange((n + BLOCK - 1) // BLOCK):
        i0 = np.int64(b) * BLOCK
        i1 = min(i0 + BLOCK, n)
        if crossed_ids.shape[0] > 0 and crossed_off[i1] == crossed_off[i0]:
            continue
        seen = np.full(zone_ids.shape[0], -1, dtype=np.int64)
        buf = np.empty(zone_ids.shape[0], dtype=np.int64)
        _crossed(
            i0,
            i1,
            lon,
            lat,
            qlon,
            qlat,
            qacc,
            cand_off,
            flags,
            P,
            G,
            Z,
            zone_ids,
            crossed_off,
            crossed_ids,
            seen,
            buf,
        )


@_parallel
def par_fill(
    lon: np.ndarray,
    lat: np.ndarray,
    P: np.ndarray,
    cand_off: np.ndarray,
    flags: np.ndarray,
    G: tuple,
    zone_ids: np.ndarray,
    certain_off: np.ndarray,
    certain_ids: np.ndarray,
    possible_off: np.ndarray,
    possible_ids: np.ndarray,
) -> None:
    n = lon.shape[0]
    for b in numba.prange((n + BLOCK - 1) // BLOCK):
        i0 = np.int64(b) * BLOCK
        _fill(
            i0, min(i0 + BLOCK, n), lon, lat, P, cand_off, flags, G, zone_ids, certain_off, certain_ids,
            possible_off, possible_ids,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# build helpers


@_jit
def build_chunks(
    vert_off: np.ndarray, xy: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut polylines (``vert_off``: polyline → vertices, each >= 2) into chunks of <= size segments:
    (line_chunk_off, chunk_v [k, 2], chunk_box [k, 4])."""
    n_lines = vert_off.shape[0] - 1
    line_chunk_off = np.zeros(n_lines + 1, dtype=np.int64)
    for ln in range(n_lines):
        segments = max(vert_off[ln + 1] - vert_off[ln] - 1, 1)
        line_chunk_off[ln + 1] = line_chunk_off[ln] + (segments + size - 1) // size
    k = line_chunk_off[n_lines]
    chunk_v = np.empty((k, 2), dtype=np.int64)
    chunk_box = np.empty((k, 4), dtype=np.float64)
    for ln in range(n_lines):
        start = vert_off[ln]
        end = vert_off[ln + 1]
        for c in range(line_chunk_off[ln], line_chunk_off[ln + 1]):
            stop = min(start + size + 1, end)
            chunk_v[c, 0] = start
            chunk_v[c, 1] = stop
            x0 = x1 = xy[start, 0]
            y0 = y1 = xy[start, 1]
            for j in range(start + 1, stop):
                x0 = min(x0, xy[j, 0])
                x1 = max(x1, xy[j, 0])
                y0 = min(y0, xy[j, 1])
                y1 = max(y1, xy[j, 1])
            chunk_box[c, 0] = x0
            chunk_box[c, 1] = y0
            chunk_box[c, 2] = x1
            chunk_box[c, 3] = y1
            start = stop - 1
    return line_chunk_off, chunk_v, chunk_box


@_jit
def route_record_sizes(route_chunk_off: np.ndarray, chunk_v: np.ndarray) -> np.ndarray:
    """route_start for :func:`pack_routes` (record sizes, prefix-summed)."""
    n = route_chunk_off.shape[0] - 1
    start = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):
        size = 1
        for c in range(route_chunk_off[r], route_chunk_off[r + 1]):
            size += RC + 2 * (chunk_v[c, 1] - chunk_v[c, 0])
        start[r + 1] = start[r] + size
    return start


@_hot
def pack_routes(
    route_chunk_off: np.ndarray,
    chunk_v: np.ndarray,
    chunk_box: np.ndarray,
    xy: np.ndarray,
    route_start: np.ndarray,
    rb: np.ndarray,
) -> None:
    """Write every route's record (layout: the module docstring) into ``rb``."""
    for r in range(route_start.shape[0] - 1):
        o = route_start[r]
        c0 = route_chunk_off[r]
        nc = route_chunk_off[r + 1] - c0
        rb[o] = nc
        v = 1 + RC * nc  # offset of the next chunk's vertices in the record
        for k in range(nc):
            c = c0 + k
            q = o + 1 + RC * k
            rb[q] = chunk_box[c, 0]
            rb[q + 1] = chunk_box[c, 1]
            rb[q + 2] = chunk_box[c, 2]
            rb[q + 3] = chunk_box[c, 3]
            nv = chunk_v[c, 1] - chunk_v[c, 0]
            rb[q + 4] = v
            rb[q + 5] = nv
            for j in range(nv):
                rb[o + v + 2 * j] = xy[chunk_v[c, 0] + j, 0]
                rb[o + v + 2 * j + 1] = xy[chunk_v[c, 0] + j, 1]
            v += 2 * nv
