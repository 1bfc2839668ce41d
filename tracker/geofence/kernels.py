"""Numba kernels of the geofence core: flat arrays in, flat arrays out, no objects per fix.

All coordinates are metres in the index's :class:`~tracker.geofence.projection.LocalProjection`.

Layout of the flat geometry (built by :mod:`tracker.geofence.index`):

* polylines (a route's parts; a zone's rings, closed: first vertex == last) are cut into *chunks* of
  at most ``CHUNK`` consecutive segments: ``line_chunk_off[l] .. line_chunk_off[l + 1]`` are the chunks
  of polyline ``l``; chunk ``c`` spans vertices ``chunk_vert[c, 0] .. chunk_vert[c, 1] - 1`` of
  ``vx``/``vy`` (neighbouring chunks share their end vertex) and has the bounding box
  ``chunk_box[c]``. Segments join consecutive vertices of one polyline, never across polylines.
  A chunk is skipped when its box is farther than the distance still of interest and, for rings, when
  it cannot cross the point-in-polygon ray; so a long, detailed boundary (a river bank, a district)
  costs a few chunks per fix, not every vertex.
* routes: ``route_part_off[r] .. route_part_off[r + 1]`` are the polylines of route slot ``r``.
* zones: ``zone_part_off`` (zone slot → polygon parts), ``part_ring_off`` (part → rings, exterior and
  holes alike), with bounding boxes per zone and per part (``*_box``: (k, 4) arrays of minx, miny,
  maxx, maxy) and per ring (``ring_box``).
* grid: cell ``(cx, cy)`` of size ``cell`` from ``(gx0, gy0)``; ``cell_off[cy * nx + cx] ..
  cell_off[cy * nx + cx + 1]`` index ``cell_items``: the zone slots (ascending) whose bounding box
  expanded by the search radius meets the cell.

Boundary semantics (the reason the kernels compute both "inside" and "distance to the boundary", as
Tile38 does): ``inside`` is the even-odd rule over all rings of one polygon part, so holes are outside
and a multipolygon holds a point when any part does; for a point exactly on a boundary the even-odd
answer is arbitrary, but its boundary distance is exactly 0 (on a vertex, or on an axis-parallel edge
such as a lon/lat box), and every verdict is written so that the arbitrary bit never matters there
(certain needs ``d > acc >= 0``; possible holds with ``d <= acc``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["CHUNK", "build_chunks", "grid_fill", "route_distances", "zone_verdicts"]

# A bounding-box distance is a lower bound of the true distance, but both are rounded; boxes are only
# used to *skip* work when the lower bound is beyond the radius by this relative margin.
_SLACK = 1.0 + 1e-9
# Distances are computed exactly only below a cap; anything else is reported as sqrt(cap2) with
# cap2 = cap² · _SLACK + _TINY2, which is strictly above the cap even when the cap is 0.
_TINY2 = 1e-18

CHUNK = 16
"""Segments per chunk (see the module docstring)."""


@numba.njit(cache=True, nogil=True, inline="always")
def _box_dist2(px: float, py: float, box: np.ndarray, k: int) -> float:
    """Squared distance from a point to the closed box ``box[k]`` (0 inside or on it)."""
    dx = max(max(box[k, 0] - px, px - box[k, 2]), 0.0)
    dy = max(max(box[k, 1] - py, py - box[k, 3]), 0.0)
    return dx * dx + dy * dy


@numba.njit(cache=True, nogil=True, inline="always")
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


@numba.njit(cache=True, nogil=True)
def _lines_dist2(
    px: float,
    py: float,
    c0: int,
    c1: int,
    chunk_vert: np.ndarray,
    chunk_box: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    best2: float,
) -> float:
    """min(best2, squared distance to the segments of chunks c0 .. c1 - 1)."""
    for c in range(c0, c1):
        if _box_dist2(px, py, chunk_box, c) >= best2:
            continue
        for j in range(chunk_vert[c, 0], chunk_vert[c, 1] - 1):
            best2 = min(best2, _seg_dist2(px, py, vx[j], vy[j], vx[j + 1], vy[j + 1]))
    return best2


@numba.njit(cache=True, nogil=True)
def _ring_scan(
    px: float,
    py: float,
    c0: int,
    c1: int,
    chunk_vert: np.ndarray,
    chunk_box: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    best2: float,
) -> tuple[bool, float]:
    """(odd, best2) over the chunks c0 .. c1 - 1 of one closed ring: ``odd`` is the parity of the
    crossings of the ray from the point towards +x (division free), ``best2`` as in _lines_dist2."""
    odd = False
    for c in range(c0, c1):
        # only a chunk whose y-range holds the point and that reaches right of it can cross the ray
        cross = chunk_box[c, 1] <= py and py <= chunk_box[c, 3] and px <= chunk_box[c, 2]
        near = _box_dist2(px, py, chunk_box, c) < best2
        if not (cross or near):
            continue
        for j in range(chunk_vert[c, 0], chunk_vert[c, 1] - 1):
            ax = vx[j]
            ay = vy[j]
            bx = vx[j + 1]
            by = vy[j + 1]
            if cross and (ay > py) != (by > py):
                cr = (py - ay) * (bx - ax) - (px - ax) * (by - ay)
                if (cr > 0.0) == (by > ay):
                    odd = not odd
            if near:
                best2 = min(best2, _seg_dist2(px, py, ax, ay, bx, by))
    return odd, best2


@numba.njit(cache=True, nogil=True)
def route_distances(
    x: np.ndarray,
    y: np.ndarray,
    slot: np.ndarray,
    route_part_off: np.ndarray,
    line_chunk_off: np.ndarray,
    chunk_vert: np.ndarray,
    chunk_box: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
) -> np.ndarray:
    """Distance (m) from each fix to every segment of every part of its route; nan for a slot outside
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
            best2 = _lines_dist2(
                px, py, line_chunk_off[p], line_chunk_off[p + 1], chunk_vert, chunk_box, vx, vy, best2
            )
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
    ring_chunk_off: np.ndarray,
    chunk_vert: np.ndarray,
    chunk_box: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
) -> tuple[bool, float]:
    """(inside, d2) for zone slot z: inside by even-odd per part, any part; d2 = the squared distance
    to the nearest ring of any part when it is below cap2, else some value >= cap2."""
    inside = False
    best2 = cap2
    for p in range(zone_part_off[z], zone_part_off[z + 1]):
        pb2 = _box_dist2(px, py, part_box, p)
        if pb2 > 0.0 and pb2 >= best2:
            continue  # outside the part's box (so not in it) and not closer
        odd = False
        for r in range(part_ring_off[p], part_ring_off[p + 1]):
            rb2 = _box_dist2(px, py, ring_box, r)
            if rb2 > 0.0:
                # outside the ring's box: the ring adds an even number of crossings
                if rb2 < best2:
                    best2 = _lines_dist2(
                        px, py, ring_chunk_off[r], ring_chunk_off[r + 1], chunk_vert, chunk_box, vx, vy, best2
                    )
                continue
            ring_odd, best2 = _ring_scan(
                px, py, ring_chunk_off[r], ring_chunk_off[r + 1], chunk_vert, chunk_box, vx, vy, best2
            )
            if ring_odd:
                odd = not odd
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
    ring_chunk_off: np.ndarray,
    chunk_vert: np.ndarray,
    chunk_box: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
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
        c = -1
        if nx > 0:
            # floor by truncation once the position is known to be non-negative (false for nan)
            fx = (x[i] - gx0) / cell
            fy = (y[i] - gy0) / cell
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
        a_fin = a if a < np.inf else 0.0
        am = min(a, radius)
        am2 = am * am * _SLACK
        near = np.inf
        base = cand_off[i] - cell_off[c]
        for k in range(cell_off[c], cell_off[c + 1]):
            z = cell_items[k]
            bd2 = _box_dist2(px, py, zone_box, z)
            if bd2 > r2:
                continue
            if bd2 > 0.0 and bd2 > am2 and bd2 >= near * near:
                # outside the box (so not inside), too far to be possible, cannot beat nearest
                continue
            # d matters up to: a if inside (certain), am if outside (possible), min(R, near) (nearest)
            cap = max(max(a_fin, am), min(radius, near))
            inside, d2 = _zone_inside_dist2(
                px,
                py,
                z,
                cap * cap * _SLACK + _TINY2,
                zone_part_off,
                part_box,
                part_ring_off,
                ring_box,
                ring_chunk_off,
                chunk_vert,
                chunk_box,
                vx,
                vy,
            )
            d = math.sqrt(d2)
            f = 0
            if inside:
                f = 1
                if d > a:
                    f = 3
                near = 0.0
            else:
                if d <= am:
                    f = 1
                if d <= radius and d < near:
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
def build_chunks(
    vert_off: np.ndarray, vx: np.ndarray, vy: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut polylines (``vert_off``: polyline → vertices, each >= 2) into chunks of <= size segments:
    (line_chunk_off, chunk_vert [k, 2], chunk_box [k, 4])."""
    n_lines = vert_off.shape[0] - 1
    line_chunk_off = np.zeros(n_lines + 1, dtype=np.int64)
    for ln in range(n_lines):
        segments = max(vert_off[ln + 1] - vert_off[ln] - 1, 1)
        line_chunk_off[ln + 1] = line_chunk_off[ln] + (segments + size - 1) // size
    k = line_chunk_off[n_lines]
    chunk_vert = np.empty((k, 2), dtype=np.int64)
    chunk_box = np.empty((k, 4), dtype=np.float64)
    for ln in range(n_lines):
        start = vert_off[ln]
        end = vert_off[ln + 1]
        for c in range(line_chunk_off[ln], line_chunk_off[ln + 1]):
            stop = min(start + size + 1, end)
            chunk_vert[c, 0] = start
            chunk_vert[c, 1] = stop
            x0 = x1 = vx[start]
            y0 = y1 = vy[start]
            for j in range(start + 1, stop):
                x0 = min(x0, vx[j])
                x1 = max(x1, vx[j])
                y0 = min(y0, vy[j])
                y1 = max(y1, vy[j])
            chunk_box[c, 0] = x0
            chunk_box[c, 1] = y0
            chunk_box[c, 2] = x1
            chunk_box[c, 3] = y1
            start = stop - 1
    return line_chunk_off, chunk_vert, chunk_box


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
