"""The zones whose interior the segment from a fix's previous fix to the fix meets (``crossed``).

The segment is walked through the cell index; where a piece of it touches a boundary exactly, the
whole segment is decided by an exact test against the zone's every edge (:func:`segment_meets_interior`).
"""

from __future__ import annotations

import math

import numpy as np

from .geometry import contact_kind, orient, within_box
from .jit import hot
from .layout import BOUNDARY, CERTAIN, INSIDE, P_CELL, P_EXACT, P_GX0, P_GY0, P_NX, P_NY, ZD, ZH, ZP
from .zones import (
    cell_of,
    certain_at,
    entry_inside,
    entry_next,
    entry_within,
    h_flags,
    h_k,
    h_nd,
    h_np,
    h_z,
    on_boundary,
    zone_pip,
    zone_within,
)


@hot
def segment_meets_interior(
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
        return zone_pip(px, py, z, Z) and not on_boundary(px, py, z, Z)
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
            k = contact_kind(qx, qy, px, py, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1])
            if k == 1:
                proper = True
            elif k == 2:
                contacts += 1
    if contacts == 0:
        return proper or zone_pip(qx, qy, z, Z)
    return _pieces_meet_interior(qx, qy, px, py, z, Z)


@hot
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
            k = contact_kind(qx, qy, px, py, ax, ay, bx, by)
            if k == 1:
                d3 = orient(ax, ay, bx, by, qx, qy)
                d4 = orient(ax, ay, bx, by, px, py)
                t = min(max(d3 / (d3 - d4), 0.0), 1.0)
                if after < t < best:
                    best = t
            elif k == 2:
                # cut at the edge's ends that lie on the segment (an end of the segment lying on the
                # edge is a cut at 0 or 1 already)
                for end in range(2):
                    ex = ax if end == 0 else bx
                    ey = ay if end == 0 else by
                    if orient(qx, qy, px, py, ex, ey) == 0.0 and within_box(qx, qy, px, py, ex, ey):
                        t = min(max(((ex - qx) * ux + (ey - qy) * uy) / len2, 0.0), 1.0)
                        if after < t < best:
                            best = t
    return best


@hot
def _pieces_meet_interior(
    qx: float,
    qy: float,
    px: float,
    py: float,
    z: int,
    Z: tuple,
) -> bool:
    """The degenerate case of segment_meets_interior: cut q-p at every edge it meets and test the
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
        if zone_pip(mx, my, z, Z) and not zone_within(mx, my, z, tol, Z):
            return True
        if t1 >= 1.0:
            return False
        t0 = t1


@hot
def _strictly_inside(px: float, py: float, o: int, exact: float, zb: np.ndarray, zf: np.ndarray) -> bool:
    """Inside the entry's zone and not on its boundary."""
    return entry_inside(px, py, o, zb) and entry_within(px, py, o, 0.0, exact, zb, zf) == 0


@hot
def _piece_meets(
    ax: float, ay: float, bx: float, by: float, o: int, exact: float, zb: np.ndarray, zf: np.ndarray
) -> int:
    """Whether the piece a-b of a segment, lying in the entry's cell, meets the zone's interior:
    1 yes, 0 no, -1 it touches the boundary exactly (the caller decides with an exhaustive scan).

    Without BOUNDARY the cell is in one face. Otherwise only the edges that meet the cell (bound 0,
    the first ones) can meet the piece: a proper crossing enters the interior (a valid polygon has its
    interior on one side of every edge); with no crossing and no contact the piece lies in one face,
    the interior iff its end a is inside."""
    f = h_flags(o, zb)
    if (f & BOUNDARY) == 0:
        return 1 if f & INSIDE else 0
    if ax == bx and ay == by:
        return 1 if _strictly_inside(ax, ay, o, exact, zb, zf) else 0
    proper = False
    p = o + ZH + ZP * h_np(o, zb)
    for t in range(h_nd(o, zb)):
        q = p + ZD * t
        if zb[q] > 0.0:
            break
        k = contact_kind(ax, ay, bx, by, zb[q + 1], zb[q + 2], zb[q + 3], zb[q + 4])
        if k == 2:
            return -1
        if k == 1:
            proper = True
    if proper:
        return 1
    return 1 if entry_inside(ax, ay, o, zb) else 0


@hot
def crossed_fix(
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
            if flags[fbase + h_k(o, zb)] & CERTAIN:
                seen[h_z(o, zb)] = -2 - stamp
            o = entry_next(o, zb)
    cq = cell_of(qx, qy, P)
    if cq >= 0:
        o = cell_start[cq]
        for _e in range(cell_off[cq], cell_off[cq + 1]):
            z = h_z(o, zb)
            if seen[z] != -2 - stamp and certain_at(qx, qy, qa, o, exact, zb, zf, Z):
                seen[z] = -2 - stamp
            o = entry_next(o, zb)
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
            z = h_z(o, zb)
            if seen[z] != stamp and seen[z] != -2 - stamp:  # met / ruled out for the whole segment
                r = _piece_meets(ax, ay, bx, by, o, exact, zb, zf)
                if r < 0:  # an exact contact with the boundary: decide the whole segment at once
                    if segment_meets_interior(qx, qy, px, py, z, Z):
                        r = 1
                    else:
                        seen[z] = -2 - stamp
                        r = 0
                if r > 0:
                    seen[z] = stamp
                    buf[m] = z
                    m += 1
            o = entry_next(o, zb)
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


@hot
def sort_inplace(a: np.ndarray, n: int) -> None:
    """Insertion sort of a[:n] (the lists sorted per fix are short; no library sort to compile)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
