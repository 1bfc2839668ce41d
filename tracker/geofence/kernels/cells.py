"""Build time: the cell index over the zones, which edges each cell lists (layout: :mod:`.layout`).

A uniform grid of square cells covers every zone's bounding box grown by the exact range ``E`` (the
search radius, at least ``MIN_EXACT_M``: :mod:`tracker.geofence.build` chooses the grid). For each
(cell, zone) pair it keeps only what a fix in that cell can need:

* a cell whose distance to the zone's boundary is above ``E`` is wholly inside the zone (an entry
  with no edges at all: inside, boundary farther than ``E``) or wholly outside (no entry: the zone is
  out of every fix's search radius there);
* any other cell lists the zone's edges within ``E`` of it, sorted by a lower bound of their distance
  from the cell, so "is an edge within the accuracy radius" stops after the few edges near the cell;
* a cell the boundary may cross also lists, for point-in-polygon, the edges that a ray towards +x
  from the cell's row may cross, minus those that cross the whole row to the right of the cell (their
  parity is stored once) and those that meet the cell (already among the distance edges).

:func:`.records.pack_cells` then lays the entries out as records, cell after cell.

Every bound is computed in float64 and loosened by :data:`~.layout.MARGIN` (1 mm), orders of magnitude
above the rounding of city-sized coordinates, so that the answers are the same as an exhaustive scan of
every edge.
"""

from __future__ import annotations

import math

import numpy as np

from .geometry import ray_crosses, seg_dist2, segment_meets_rect
from .jit import jit
from .layout import BOUNDARY, INSIDE, MARGIN

__all__ = ["build_cells"]


@jit
def _rect_seg_dist(
    x0: float, y0: float, x1: float, y1: float, ax: float, ay: float, bx: float, by: float
) -> float:
    """Distance between the closed rectangle and the segment a-b (0 when they meet)."""
    if segment_meets_rect(x0, y0, x1, y1, ax, ay, bx, by):
        return 0.0
    d2 = np.inf
    for k in range(2):
        px = ax if k == 0 else bx
        py = ay if k == 0 else by
        dx = max(max(x0 - px, px - x1), 0.0)
        dy = max(max(y0 - py, py - y1), 0.0)
        d2 = min(d2, dx * dx + dy * dy)
    d2 = min(d2, seg_dist2(x0, y0, ax, ay, bx, by))
    d2 = min(d2, seg_dist2(x1, y0, ax, ay, bx, by))
    d2 = min(d2, seg_dist2(x0, y1, ax, ay, bx, by))
    d2 = min(d2, seg_dist2(x1, y1, ax, ay, bx, by))
    return math.sqrt(d2)


@jit
def _grow_i64(a: np.ndarray, need: int) -> np.ndarray:
    if need <= a.shape[0]:
        return a
    out = np.empty(max(need, 2 * a.shape[0]), dtype=a.dtype)
    for k in range(a.shape[0]):
        out[k] = a[k]
    return out


@jit
def _grow_i32(a: np.ndarray, need: int) -> np.ndarray:
    if need <= a.shape[0]:
        return a
    out = np.empty(max(need, 2 * a.shape[0]), dtype=a.dtype)
    for k in range(a.shape[0]):
        out[k] = a[k]
    return out


@jit
def _grow_f64(a: np.ndarray, need: int) -> np.ndarray:
    if need <= a.shape[0]:
        return a
    out = np.empty(max(need, 2 * a.shape[0]), dtype=a.dtype)
    for k in range(a.shape[0]):
        out[k] = a[k]
    return out


@jit
def _grow_u8(a: np.ndarray, need: int) -> np.ndarray:
    if need <= a.shape[0]:
        return a
    out = np.empty(max(need, 2 * a.shape[0]), dtype=a.dtype)
    for k in range(a.shape[0]):
        out[k] = a[k]
    return out


@jit
def build_cells(
    zone_box: np.ndarray,
    zone_ring_off: np.ndarray,
    ring_vert_off: np.ndarray,
    xy: np.ndarray,
    gx0: float,
    gy0: float,
    cell: float,
    nx: int,
    ny: int,
    exact: float,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:
    """(cell_off, e_zone, e_flags, e_L, e_doff, d_edge, d_lb, e_poff, p_edge); see the module docstring.

    Zones are processed one at a time over the window of cells their grown box covers; the entries
    come out zone by zone and are then put in cell order (zones ascending within a cell).
    """
    m = MARGIN
    reach = exact + 2.0 * m
    n_zones = zone_box.shape[0]
    # zone-major output, grown as needed
    e_cell = np.empty(1024, dtype=np.int64)
    e_zone = np.empty(1024, dtype=np.int32)
    e_flags = np.empty(1024, dtype=np.uint8)
    e_L = np.empty(1024, dtype=np.float64)
    e_dn = np.empty(1024, dtype=np.int64)
    e_pn = np.empty(1024, dtype=np.int64)
    d_edge = np.empty(4096, dtype=np.int32)
    d_lb = np.empty(4096, dtype=np.float64)
    p_edge = np.empty(4096, dtype=np.int32)
    n_e = 0
    n_d = 0
    n_p = 0
    for z in range(n_zones):
        ix0 = max(math.floor((zone_box[z, 0] - reach - gx0) / cell), 0)
        iy0 = max(math.floor((zone_box[z, 1] - reach - gy0) / cell), 0)
        ix1 = min(math.floor((zone_box[z, 2] + reach - gx0) / cell), nx - 1)
        iy1 = min(math.floor((zone_box[z, 3] + reach - gy0) / cell), ny - 1)
        if ix1 < ix0 or iy1 < iy0:
            continue
        w = ix1 - ix0 + 1
        h = iy1 - iy0 + 1
        v0 = ring_vert_off[zone_ring_off[z]]
        v1 = ring_vert_off[zone_ring_off[z + 1]]
        # the zone's edges: j in [v0, v1) except the last vertex of each ring
        is_edge = np.ones(v1 - v0, dtype=np.bool_)
        for r in range(zone_ring_off[z], zone_ring_off[z + 1]):
            is_edge[ring_vert_off[r + 1] - 1 - v0] = False
        lmin = np.full(w * h, np.inf)
        cnt = np.zeros(w * h + 1, dtype=np.int64)
        row_cnt = np.zeros(h + 1, dtype=np.int64)
        for rep in range(2):  # 0: count, 1: fill
            if rep == 1:
                for k in range(w * h):
                    cnt[k + 1] += cnt[k]
                for k in range(h):
                    row_cnt[k + 1] += row_cnt[k]
                l_edge = np.empty(cnt[w * h], dtype=np.int32)
                l_lb = np.empty(cnt[w * h], dtype=np.float64)
                l_lb_sorted = np.empty(cnt[w * h], dtype=np.float64)
                fill = cnt[:-1].copy()
                row_edge = np.empty(row_cnt[h], dtype=np.int32)
                row_fill = row_cnt[:-1].copy()
            for j in range(v0, v1):
                if not is_edge[j - v0]:
                    continue
                ax = xy[j, 0]
                ay = xy[j, 1]
                bx = xy[j + 1, 0]
                by = xy[j + 1, 1]
                # rows whose band (grown by the margin) the edge's y-range meets
                ry0 = max(math.floor((min(ay, by) - m - gy0) / cell), iy0)
                ry1 = min(math.floor((max(ay, by) + m - gy0) / cell), iy1)
                for cy in range(ry0, ry1 + 1):
                    if rep == 0:
                        row_cnt[cy - iy0 + 1] += 1
                    else:
                        row_edge[row_fill[cy - iy0]] = j
                        row_fill[cy - iy0] += 1
                cx0 = max(math.floor((min(ax, bx) - reach - gx0) / cell), ix0)
                cx1 = min(math.floor((max(ax, bx) + reach - gx0) / cell), ix1)
                cy0 = max(math.floor((min(ay, by) - reach - gy0) / cell), iy0)
                cy1 = min(math.floor((max(ay, by) + reach - gy0) / cell), iy1)
                for cy in range(cy0, cy1 + 1):
                    y0 = gy0 + cy * cell
                    y1 = gy0 + (cy + 1) * cell
                    for cx in range(cx0, cx1 + 1):
                        x0 = gx0 + cx * cell
                        x1 = gx0 + (cx + 1) * cell
                        d = _rect_seg_dist(x0, y0, x1, y1, ax, ay, bx, by)
                        if d - m > exact:
                            continue
                        k = (cy - iy0) * w + (cx - ix0)
                        if rep == 0:
                            cnt[k + 1] += 1
                            lmin[k] = min(lmin[k], d)
                        else:
                            l_edge[fill[k]] = j
                            l_lb[fill[k]] = d
                            fill[k] += 1
        for cy in range(iy0, iy1 + 1):
            y0 = gy0 + cy * cell
            y1 = gy0 + (cy + 1) * cell
            yc = gy0 + (cy + 0.5) * cell
            r0 = row_cnt[cy - iy0]
            r1 = row_cnt[cy - iy0 + 1]
            for cx in range(ix0, ix1 + 1):
                x0 = gx0 + cx * cell
                x1 = gx0 + (cx + 1) * cell
                k = (cy - iy0) * w + (cx - ix0)
                nd = cnt[k + 1] - cnt[k]
                boundary = lmin[k] <= m
                flags = np.uint8(0)
                npip = 0
                if boundary:
                    flags |= BOUNDARY
                    base = False
                    for t in range(r0, r1):
                        j = row_edge[t]
                        ax = xy[j, 0]
                        ay = xy[j, 1]
                        bx = xy[j + 1, 0]
                        by = xy[j + 1, 1]
                        if max(ax, bx) < x0 - m:
                            continue  # left of the cell: never crosses a ray towards +x from it
                        if min(ax, bx) > x1 + m and min(ay, by) < y0 - m and max(ay, by) > y1 + m:
                            base = not base  # crosses every such ray, whatever the fix's position
                            continue
                        if _rect_seg_dist(x0, y0, x1, y1, ax, ay, bx, by) <= m:
                            continue  # meets the cell: a distance edge of bound 0, tested from there
                        p_edge = _grow_i32(p_edge, n_p + npip + 1)
                        p_edge[n_p + npip] = j
                        npip += 1
                    if base:
                        flags |= INSIDE
                else:
                    xc = gx0 + (cx + 0.5) * cell
                    odd = False
                    for t in range(r0, r1):
                        j = row_edge[t]
                        if ray_crosses(xc, yc, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1]):
                            odd = not odd
                    if odd:
                        flags |= INSIDE
                    elif nd == 0:
                        continue  # wholly outside and farther than the exact range
                e_cell = _grow_i64(e_cell, n_e + 1)
                e_zone = _grow_i32(e_zone, n_e + 1)
                e_flags = _grow_u8(e_flags, n_e + 1)
                e_L = _grow_f64(e_L, n_e + 1)
                e_dn = _grow_i64(e_dn, n_e + 1)
                e_pn = _grow_i64(e_pn, n_e + 1)
                e_cell[n_e] = cy * nx + cx
                e_zone[n_e] = z
                e_flags[n_e] = flags
                e_dn[n_e] = nd
                e_pn[n_e] = npip
                n_p += npip
                if nd > 0:
                    d_edge = _grow_i32(d_edge, n_d + nd)
                    d_lb = _grow_f64(d_lb, n_d + nd)
                    # insertion sort by bound (the lists are short); ties keep edge order
                    for t in range(nd):
                        lb = l_lb[cnt[k] + t]
                        j = l_edge[cnt[k] + t]
                        u = n_d + t - 1
                        while u >= n_d and l_lb_sorted[u - n_d] > lb:
                            l_lb_sorted[u - n_d + 1] = l_lb_sorted[u - n_d]
                            d_edge[u + 1] = d_edge[u]
                            u -= 1
                        l_lb_sorted[u - n_d + 1] = lb
                        d_edge[u + 1] = j
                    for t in range(nd):
                        d_lb[n_d + t] = max(l_lb_sorted[t] - m, 0.0)
                    e_L[n_e] = d_lb[n_d]
                    n_d += nd
                else:
                    e_L[n_e] = exact
                n_e += 1
    # cell-major order (a stable counting sort keeps zones ascending within a cell)
    n_cells = nx * ny
    cell_off = np.zeros(n_cells + 1, dtype=np.int64)
    for e in range(n_e):
        cell_off[e_cell[e] + 1] += 1
    for c in range(n_cells):
        cell_off[c + 1] += cell_off[c]
    d_start = np.zeros(n_e + 1, dtype=np.int64)
    p_start = np.zeros(n_e + 1, dtype=np.int64)
    for e in range(n_e):
        d_start[e + 1] = d_start[e] + e_dn[e]
        p_start[e + 1] = p_start[e] + e_pn[e]
    pos = cell_off[:-1].copy()
    perm = np.empty(n_e, dtype=np.int64)
    for e in range(n_e):
        perm[pos[e_cell[e]]] = e
        pos[e_cell[e]] += 1
    o_zone = np.empty(n_e, dtype=np.int32)
    o_flags = np.empty(n_e, dtype=np.uint8)
    o_L = np.empty(n_e, dtype=np.float64)
    o_doff = np.zeros(n_e + 1, dtype=np.int64)
    o_poff = np.zeros(n_e + 1, dtype=np.int64)
    o_dedge = np.empty(n_d, dtype=np.int32)
    o_dlb = np.empty(n_d, dtype=np.float64)
    o_pedge = np.empty(n_p, dtype=np.int32)
    for t in range(n_e):
        e = perm[t]
        o_zone[t] = e_zone[e]
        o_flags[t] = e_flags[e]
        o_L[t] = e_L[e]
        nd = e_dn[e]
        npip = e_pn[e]
        o_doff[t + 1] = o_doff[t] + nd
        o_poff[t + 1] = o_poff[t] + npip
        o_dedge[o_doff[t] : o_doff[t + 1]] = d_edge[d_start[e] : d_start[e] + nd]
        o_dlb[o_doff[t] : o_doff[t + 1]] = d_lb[d_start[e] : d_start[e] + nd]
        o_pedge[o_poff[t] : o_poff[t + 1]] = p_edge[p_start[e] : p_start[e] + npip]
    return cell_off, o_zone, o_flags, o_L, o_doff, o_dedge, o_dlb, o_poff, o_pedge
