"""Numba kernels of the geofence core: flat arrays in, flat arrays out, no objects per fix.

All coordinates are metres in the index's :class:`~tracker.geofence.projection.LocalProjection`.

Layout of the flat geometry (built by :mod:`tracker.geofence.index`):

* routes: ``route_part_off[r] .. route_part_off[r + 1]`` are the parts (line strings) of route slot
  ``r``; ``line_vert_off[p] .. line_vert_off[p + 1]`` the vertices of part ``p`` in ``lvx``/``lvy``;
  segments join consecutive vertices of one part, never across parts.
* zones: ``zone_part_off`` (zone slot → polygon parts), ``part_ring_off`` (part → rings, exterior and
  holes alike), ``ring_vert_off`` (ring → closed vertex sequence in ``rvx``/``rvy``, first == last),
  with bounding boxes per zone, per part and per ring (``*_box`` arrays of shape (k, 4): minx, miny,
  maxx, maxy).
* grid: cell ``(cx, cy)`` of size ``cell`` from ``(gx0, gy0)``; ``cell_off[cy * nx + cx] ..
  cell_off[cy * nx + cx + 1]`` index ``cell_items``: the zone slots (ascending) whose bounding box
  expanded by the search radius meets the cell.

Boundary semantics (the reason the kernels return both "inside" and "distance to the boundary", as
Tile38 does): ``inside`` is the even-odd rule over all rings of one polygon part, so holes are outside
and a multipolygon holds a point when any part does; for a point exactly on a boundary the even-odd
answer is arbitrary, but its boundary distance is 0, and every verdict below is written so that the
arbitrary bit never matters (certain needs ``d > acc >= 0``; possible holds with ``d <= acc``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["grid_fill", "route_distances", "zone_verdicts"]

# A bounding-box distance is a lower bound of the true distance, but both are rounded; boxes are only
# used to *skip* work when the lower bound is beyond the radius by this relative margin.
_SLACK = 1.0 + 1e-9
# Distances are computed exactly only below a cap; anything else is reported as sqrt(cap2) with
# cap2 = cap² · _SLACK + _TINY2, which is strictly above the cap even when the cap is 0.
_TINY2 = 1e-18


@numba.njit(cache=True, nogil=True, inline="always")
def _box_dist2(px: float, py: float, x0: float, y0: float, x1: float, y1: float) -> float:
    """Squared distance from a point to a closed box (0 inside or on it)."""
    dx = 0.0
    if px < x0:
        dx = x0 - px
    elif px > x1:
        dx = px - x1
    dy = 0.0
    if py < y0:
        dy = y0 - py
    elif py > y1:
        dy = py - y1
    return dx * dx + dy * dy


@numba.njit(cache=True, nogil=True, inline="always")
def _seg_dist2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """Squared distance from a point to the segment a-b (GEOS' formulation, degenerate a == b allowed)."""
    dx = bx - ax
    dy = by - ay
    wx = px - ax
    wy = py - ay
    dot = wx * dx + wy * dy
    if dot <= 0.0:
        return wx * wx + wy * wy
    len2 = dx * dx + dy * dy
    if dot >= len2:
        ex = px - bx
        ey = py - by
        return ex * ex + ey * ey
    cr = wx * dy - wy * dx
    return cr * cr / len2


@numba.njit(cache=True, nogil=True)
def _polyline_dist2(
    px: float,
    py: float,
    v0: int,
    v1: int,
    vx: np.ndarray,
    vy: np.ndarray,
    best2: float,
) -> float:
    """min(best2, squared distance to the segments of vertices v0..v1-1); skips segments whose box is
    not closer than best2."""
    for j in range(v0, v1 - 1):
        ax = vx[j]
        ay = vy[j]
        bx = vx[j + 1]
        by = vy[j + 1]
        # lower bound: distance to the segment's box
        lx = 0.0
        if px < ax and px < bx:
            lx = min(ax, bx) - px
        elif px > ax and px > bx:
            lx = px - max(ax, bx)
        ly = 0.0
        if py < ay and py < by:
            ly = min(ay, by) - py
        elif py > ay and py > by:
            ly = py - max(ay, by)
        if lx * lx + ly * ly >= best2:
            continue
        d2 = _seg_dist2(px, py, ax, ay, bx, by)
        if d2 < best2:
            best2 = d2
    return best2


@numba.njit(cache=True, nogil=True)
def route_distances(
    x: np.ndarray,
    y: np.ndarray,
    slot: np.ndarray,
    route_part_off: np.ndarray,
    line_vert_off: np.ndarray,
    lvx: np.ndarray,
    lvy: np.ndarray,
) -> np.ndarray:
    """Distance (m) from each fix to every segment of every part of its route; nan for slot outside
    ``0 .. n_routes - 1`` or a non-finite fix."""
    n = x.shape[0]
    n_routes = route_part_off.shape[0] - 1
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        s = slot[i]
        px = x[i]
        py = y[i]
        if s < 0 or s >= n_routes or not (math.isfinite(px) and math.isfinite(py)):
            out[i] = np.nan
            continue
        best2 = np.inf
        for p in range(route_part_off[s], route_part_off[s + 1]):
            best2 = _polyline_dist2(px, py, line_vert_off[p], line_vert_off[p + 1], lvx, lvy, best2)
        out[i] = math.sqrt(best2)
    return out


@numba.njit(cache=True, nogil=True)
def _zone_inside_dist2(
    px: float,
    py: float,
    z: int,
    cap2: float,
    zone_part_off: np.ndarray,
    part_box: np.ndarray,
    part_ring_off: np.ndarray,
    ring_box: np.ndarray,
    ring_vert_off: np.ndarray,
    rvx: np.ndarray,
    rvy: np.ndarray,
) -> tuple[bool, float]:
    """(inside, d2) for zone slot z: inside by even-odd per part, any part; d2 = squared distance to
    the nearest ring of any part if it is below cap2, else some value >= cap2 (possibly inf)."""
    inside = False
    best2 = cap2
    for p in range(zone_part_off[z], zone_part_off[z + 1]):
        pb2 = _box_dist2(px, py, part_box[p, 0], part_box[p, 1], part_box[p, 2], part_box[p, 3])
        in_part_box = pb2 == 0.0
        if not in_part_box and pb2 >= best2:
            continue
        odd = False
        for r in range(part_ring_off[p], part_ring_off[p + 1]):
            rb2 = _box_dist2(px, py, ring_box[r, 0], ring_box[r, 1], ring_box[r, 2], ring_box[r, 3])
            in_ring_box = rb2 == 0.0
            if not in_ring_box and rb2 >= best2:
                # outside the ring's box: the ring adds an even number of crossings and is not closer
                continue
            v0 = ring_vert_off[r]
            v1 = ring_vert_off[r + 1]
            if in_ring_box:
                # even-odd crossing count of the ray towards +x, division free
                for j in range(v0, v1 - 1):
                    ay = rvy[j]
                    by = rvy[j + 1]
                    if (ay > py) != (by > py):
                        ax = rvx[j]
                        bx = rvx[j + 1]
                        cr = (py - ay) * (bx - ax) - (px - ax) * (by - ay)
                        if by > ay:
                            if cr > 0.0:
                                odd = not odd
                        elif cr < 0.0:
                            odd = not odd
            best2 = _polyline_dist2(px, py, v0, v1, rvx, rvy, best2)
        if odd:
            inside = True
    return inside, best2


@numba.njit(cache=True, nogil=True)
def zone_verdicts(
    x: np.ndarray,
    y: np.ndarray,
    acc: np.ndarray,
    radius: float,
    gx0: float,
    gy0: float,
    cell: float,
    nx: int,
    ny: int,
    cell_off: np.ndarray,
    cell_items: np.ndarray,
    zone_ids: np.ndarray,
    zone_box: np.ndarray,
    zone_part_off: np.ndarray,
    part_box: np.ndarray,
    part_ring_off: np.ndarray,
    ring_box: np.ndarray,
    ring_vert_off: np.ndarray,
    rvx: np.ndarray,
    rvy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Zone verdicts for a batch: (certain_off, certain_ids, possible_off, possible_ids, nearest).

    Per fix and zone, with d the distance to the zone's boundary (all rings), ``a = acc`` (nan or
    negative = unknown = inf) and ``R = radius``:

    * certain  = inside and d > a          (the whole accuracy circle is in the interior)
    * possible = inside or d <= min(a, R)  (the fix may be in the zone)
    * nearest  = min over zones of (0 if inside else d), counting only values <= R; inf if none.

    Three passes: candidates per fix from the grid (O(1) each) give the size of a per-candidate flag
    buffer; the geometry pass fills the flags and nearest; the last pass compacts the flags into CSR.
    Zone ids come out in slot order (ascending ids).
    """
    n = x.shape[0]
    r2 = radius * radius * _SLACK
    cells = np.full(n, -1, dtype=np.int64)
    cand_off = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        px = x[i]
        py = y[i]
        c = -1
        if nx > 0:
            # floor by truncation once the position is known to be non-negative (false for nan)
            fx = (px - gx0) / cell
            fy = (py - gy0) / cell
            if 0.0 <= fx < nx and 0.0 <= fy < ny:
                c = int(fy) * nx + int(fx)
        cells[i] = c
        k = 0
        if c >= 0:
            k = cell_off[c + 1] - cell_off[c]
        cand_off[i + 1] = cand_off[i] + k

    flags = np.zeros(cand_off[n], dtype=np.uint8)  # bit 0: possible, bit 1: certain
    nearest = np.full(n, np.inf, dtype=np.float64)
    n_certain = np.zeros(n, dtype=np.int64)
    n_possible = np.zeros(n, dtype=np.int64)
    for i in range(n):
        c = cells[i]
        if c < 0:
            continue
        px = x[i]
        py = y[i]
        a = acc[i]
        if not (a >= 0.0):
            a = np.inf
        am = min(a, radius)
        am2 = am * am * _SLACK
        # distances are needed up to max(R, a) (a only matters when inside, and is ignored if inf)
        cap = radius
        if a > cap and a < np.inf:
            cap = a
        cap2 = cap * cap * _SLACK + _TINY2
        near = np.inf
        base = cand_off[i] - cell_off[c]
        for k in range(cell_off[c], cell_off[c + 1]):
            z = cell_items[k]
            bd2 = _box_dist2(px, py, zone_box[z, 0], zone_box[z, 1], zone_box[z, 2], zone_box[z, 3])
            if bd2 > r2:
                continue
            if bd2 > 0.0 and bd2 > am2 and bd2 >= near * near:
                # outside the box (so not inside), too far to be possible, cannot beat nearest
                continue
            inside, d2 = _zone_inside_dist2(
                px, py, z, cap2, zone_part_off, part_box, part_ring_off, ring_box, ring_vert_off, rvx, rvy
            )
            d = math.sqrt(d2)
            f = 0
            if inside:
                f = 1
                if d > a:
                    f = 3
                near = 0.0
            elif d <= am:
                f = 1
            if not inside and d <= radius and d < near:
                near = d
            if f != 0:
                flags[base + k] = f
                n_possible[i] += 1
                if f == 3:
                    n_certain[i] += 1
        nearest[i] = near

    certain_off = np.zeros(n + 1, dtype=np.int64)
    possible_off = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        certain_off[i + 1] = certain_off[i] + n_certain[i]
        possible_off[i + 1] = possible_off[i] + n_possible[i]
    certain_ids = np.empty(certain_off[n], dtype=np.int64)
    possible_ids = np.empty(possible_off[n], dtype=np.int64)
    for i in range(n):
        c = cells[i]
        if c < 0 or n_possible[i] == 0:
            continue
        jc = certain_off[i]
        jp = possible_off[i]
        base = cand_off[i] - cell_off[c]
        for k in range(cell_off[c], cell_off[c + 1]):
            f = flags[base + k]
            if f != 0:
                zid = zone_ids[cell_items[k]]
                possible_ids[jp] = zid
                jp += 1
                if f == 3:
                    certain_ids[jc] = zid
                    jc += 1
    return certain_off, certain_ids, possible_off, possible_ids, nearest


@numba.njit(cache=True, nogil=True)
def grid_fill(
    ix0: np.ndarray, iy0: np.ndarray, ix1: np.ndarray, iy1: np.ndarray, nx: int, ny: int
) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the uniform grid: item z (ascending) is listed in every cell of its inclusive cell range
    ``ix0[z]..ix1[z]`` × ``iy0[z]..iy1[z]``. Two passes: count, then fill."""
    n_cells = nx * ny
    counts = np.zeros(n_cells + 1, dtype=np.int64)
    for z in range(ix0.shape[0]):
        for cy in range(iy0[z], iy1[z] + 1):
            for cx in range(ix0[z], ix1[z] + 1):
                counts[cy * nx + cx + 1] += 1
    off = np.cumsum(counts)
    items = np.empty(off[n_cells], dtype=np.int32)
    fill = off[:-1].copy()
    for z in range(ix0.shape[0]):
        for cy in range(iy0[z], iy1[z] + 1):
            for cx in range(ix0[z], ix1[z] + 1):
                c = cy * nx + cx
                items[fill[c]] = z
                fill[c] += 1
    return off, items
