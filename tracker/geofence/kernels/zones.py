"""Zone verdicts of one fix: from its cell's records (the fast path), or from a scan of a zone's
whole boundary (the rare fallback, and the crossings' exact tests).

Layouts: :mod:`.layout`. Semantics: :mod:`tracker.geofence.kernels` and :mod:`tracker.geofence.index`.
"""

from __future__ import annotations

import math

import numpy as np

from .geometry import box_dist2, ray_crosses, seg_box_dist2, seg_dist2
from .jit import hot, inline
from .layout import (
    BOUNDARY,
    CERTAIN,
    INSIDE,
    P_CELL,
    P_GX0,
    P_GY0,
    P_NX,
    P_NY,
    PENDING,
    POSSIBLE,
    SCAN,
    SLACK,
    TINY2,
    ZD,
    ZF,
    ZH,
    ZP,
)

# ---------------------------------------------------------------------------------------------------
# exhaustive scans of a zone's whole boundary (fallbacks, crossings)


@hot
def zone_pip(px: float, py: float, z: int, Z: tuple) -> bool:
    """Even-odd point-in-polygon over every ring of zone z (chunks that cannot cross the ray skipped)."""
    zone_box, zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy = Z
    if not (zone_box[z, 1] <= py <= zone_box[z, 3] and zone_box[z, 0] <= px <= zone_box[z, 2]):
        return False
    odd = False
    for c in range(ring_chunk_off[zone_ring_off[z]], ring_chunk_off[zone_ring_off[z + 1]]):
        if chunk_box[c, 1] <= py <= chunk_box[c, 3] and px <= chunk_box[c, 2]:
            for j in range(chunk_v[c, 0], chunk_v[c, 1] - 1):
                if ray_crosses(px, py, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1]):
                    odd = not odd
    return odd


@hot
def zone_within(px: float, py: float, z: int, cap: float, Z: tuple) -> bool:
    """Whether the boundary of zone z comes within ``cap`` metres of the point (every ring)."""
    _, zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy = Z
    cap2 = cap * cap * SLACK + TINY2
    for c in range(ring_chunk_off[zone_ring_off[z]], ring_chunk_off[zone_ring_off[z + 1]]):
        if box_dist2(px, py, chunk_box, c) > cap2:
            continue
        for j in range(chunk_v[c, 0], chunk_v[c, 1] - 1):
            if math.sqrt(seg_dist2(px, py, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1])) <= cap:
                return True
    return False


@hot
def on_boundary(px: float, py: float, z: int, Z: tuple) -> bool:
    """Whether the point lies exactly on the boundary of zone z (distance 0 to some edge)."""
    _, zone_ring_off, ring_chunk_off, chunk_v, chunk_box, xy = Z
    for c in range(ring_chunk_off[zone_ring_off[z]], ring_chunk_off[zone_ring_off[z + 1]]):
        if box_dist2(px, py, chunk_box, c) > 0.0:
            continue
        for j in range(chunk_v[c, 0], chunk_v[c, 1] - 1):
            if seg_dist2(px, py, xy[j, 0], xy[j, 1], xy[j + 1, 0], xy[j + 1, 1]) == 0.0:
                return True
    return False


# ---------------------------------------------------------------------------------------------------
# one (fix, cell entry) pair; ``o`` is the offset of the entry's record in ``zb``


@inline
def h_nd(o: int, zb: np.ndarray) -> int:
    return int(np.int64(zb[o + 2]) & 0xFFFF)


@inline
def h_np(o: int, zb: np.ndarray) -> int:
    return int((np.int64(zb[o + 2]) >> 16) & 0xFFFF)


@inline
def h_k(o: int, zb: np.ndarray) -> int:
    return int((np.int64(zb[o + 2]) >> 32) & 0xFFFF)


@inline
def h_flags(o: int, zb: np.ndarray) -> int:
    return int(np.int64(zb[o + 2]) >> 48)


@inline
def h_z(o: int, zb: np.ndarray) -> int:
    return int(np.int64(zb[o + 3]) & 0xFFFFFFFF)


@inline
def h_nf(o: int, zb: np.ndarray) -> int:
    return int(np.int64(zb[o + 3]) >> 32)


@inline
def entry_next(o: int, zb: np.ndarray) -> int:
    return o + ZH + ZP * h_np(o, zb) + ZD * h_nd(o, zb)


@inline
def entry_inside(px: float, py: float, o: int, zb: np.ndarray) -> bool:
    f = h_flags(o, zb)
    odd = (f & INSIDE) != 0
    if (f & BOUNDARY) == 0:
        return odd
    p = o + ZH
    n_pip = h_np(o, zb)
    for t in range(n_pip):  # the row's edges that do not meet the cell
        q = p + ZP * t
        if ray_crosses(px, py, zb[q], zb[q + 1], zb[q + 2], zb[q + 3]):
            odd = not odd
    p += ZP * n_pip
    for t in range(h_nd(o, zb)):  # then the edges that meet the cell: the distance edges of bound 0
        q = p + ZD * t
        if zb[q] > 0.0:
            break
        if ray_crosses(px, py, zb[q + 1], zb[q + 2], zb[q + 3], zb[q + 4]):
            odd = not odd
    return odd


@inline
def _edges_within(px: float, py: float, e: np.ndarray, p: int, n: int, cap: float) -> int:
    """Over n distance edges from ``e[p]`` (ascending bounds): 1 if one is within cap, 0 if a bound
    passed cap first, -1 if the list ran out."""
    skip2 = cap * cap * SLACK
    for t in range(n):
        q = p + ZD * t
        if e[q] > cap:
            return 0  # this edge and every later one are farther than cap
        ax = e[q + 1]
        ay = e[q + 2]
        bx = e[q + 3]
        by = e[q + 4]
        if seg_box_dist2(px, py, ax, ay, bx, by) > skip2:
            continue  # the segment's box is farther than cap: so is the segment
        if math.sqrt(seg_dist2(px, py, ax, ay, bx, by)) <= cap:
            return 1
    return -1


@inline
def _far_within(px: float, py: float, zf: np.ndarray, p: int, n: int, cap: float) -> int:
    """``_edges_within`` over n far edges from ``zf[p]`` (layout: :mod:`.layout`): the same doubles,
    read through their vertex numbers."""
    skip2 = cap * cap * SLACK
    base = np.int64(zf[0])
    for t in range(n):
        q = p + ZF * t
        if zf[q] > cap:
            return 0  # this edge and every later one are farther than cap
        v = base + 2 * np.int64(zf[q + 1])
        ax = zf[v]
        ay = zf[v + 1]
        bx = zf[v + 2]
        by = zf[v + 3]
        if seg_box_dist2(px, py, ax, ay, bx, by) > skip2:
            continue  # the segment's box is farther than cap: so is the segment
        if math.sqrt(seg_dist2(px, py, ax, ay, bx, by)) <= cap:
            return 1
    return -1


@inline
def entry_within(
    px: float, py: float, o: int, cap: float, exact: float, zb: np.ndarray, zf: np.ndarray
) -> int:
    """Whether the zone's boundary comes within ``cap`` of the point: 1 yes, 0 no, -1 unknown (only
    when ``cap`` exceeds the exact range and no listed edge is within ``cap``). The far edges are
    read only when the near ones run out."""
    w = _edges_within(px, py, zb, o + ZH + ZP * h_np(o, zb), h_nd(o, zb), cap)
    if w < 0 and zb[o + 1] <= cap:  # the far edges' bound is in the header: no miss when they cannot matter
        w = _far_within(px, py, zf, np.int64(zb[o + 4]), h_nf(o, zb), cap)
    if w < 0:
        return 0 if cap <= exact else -1
    return w


@hot
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
        if seg_box_dist2(px, py, ax, ay, bx, by) < best2:
            best2 = min(best2, seg_dist2(px, py, ax, ay, bx, by))
    return best2, True


@hot
def _far_dist2(px: float, py: float, zf: np.ndarray, p: int, n: int, best2: float) -> tuple[float, bool]:
    """``_edges_dist2`` over n far edges from ``zf[p]`` (see ``_far_within``)."""
    base = np.int64(zf[0])
    for t in range(n):
        q = p + ZF * t
        lb = zf[q]
        if lb > 0.0 and lb * lb > best2:
            return best2, False
        v = base + 2 * np.int64(zf[q + 1])
        ax = zf[v]
        ay = zf[v + 1]
        bx = zf[v + 2]
        by = zf[v + 3]
        if seg_box_dist2(px, py, ax, ay, bx, by) < best2:
            best2 = min(best2, seg_dist2(px, py, ax, ay, bx, by))
    return best2, True


@hot
def _entry_dist(px: float, py: float, o: int, cap: float, zb: np.ndarray, zf: np.ndarray) -> float:
    """Distance to the zone's boundary when it is <= cap (cap <= the exact range), else a value > cap."""
    best2, more = _edges_dist2(px, py, zb, o + ZH + ZP * h_np(o, zb), h_nd(o, zb), cap * cap * SLACK + TINY2)
    fl = zb[o + 1]
    if more and fl * fl <= best2:
        best2, more = _far_dist2(px, py, zf, np.int64(zb[o + 4]), h_nf(o, zb), best2)
    return math.sqrt(best2)


@inline
def _inside_certain(
    px: float, py: float, a: float, o: int, exact: float, zb: np.ndarray, zf: np.ndarray
) -> int:
    """For a point inside the entry's zone: is its boundary distance > a (a = inf: never)? 1 yes, 0 no,
    -1 unknown (a beyond the exact range: the caller scans the whole boundary, see certain_at)."""
    if not a < np.inf:
        return 0
    if a < zb[o]:
        return 1
    w = entry_within(px, py, o, a, exact, zb, zf)
    if w < 0:
        return -1
    return 1 - w


@hot
def certain_at(
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
    if not entry_inside(px, py, o, zb):
        return False
    r = _inside_certain(px, py, a, o, exact, zb, zf)
    if r < 0:
        return not zone_within(px, py, h_z(o, zb), a, Z)
    return r == 1


@inline
def inside_depth(px: float, py: float, o: int, am: float, zb: np.ndarray, zf: np.ndarray) -> float:
    """How deep inside the entry's zone a point that it holds lies: its boundary distance, or ``am``
    (= min(acc, R), within the exact range) when that is farther (certain zones are ``am`` deep)."""
    if am < zb[o]:
        return am  # no point of the cell is nearer the boundary than L
    return min(_entry_dist(px, py, o, am, zb, zf), am)


@hot
def resolve_scans(
    px: float,
    py: float,
    a: float,
    o0: int,
    o1: int,
    flags: np.ndarray,
    depth: np.ndarray,
    fbase: int,
    am: float,
    zb: np.ndarray,
    zf: np.ndarray,
    Z: tuple,
) -> int:
    """Zones flagged SCAN by zones_fix (inside, accuracy beyond the exact range): scan their whole
    boundary; returns how many are certain. Writes their depth (see :func:`inside_depth`)."""
    n = 0
    o = o0
    while o < o1:
        k = fbase + h_k(o, zb)
        if flags[k] & SCAN:
            flags[k] = POSSIBLE
            if not zone_within(px, py, h_z(o, zb), a, Z):
                flags[k] = POSSIBLE | CERTAIN
                depth[k] = am
                n += 1
            else:
                depth[k] = inside_depth(px, py, o, am, zb, zf)
        o = entry_next(o, zb)
    return n


@hot
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
) -> tuple[int, float, float]:
    """(flag, nearest so far, depth) for a zone that does not hold the fix: possible iff d <= min(acc,
    R), and then its depth is -d (else nan); its exact distance is needed only while no zone holds the
    fix (nearest) or when it is possible (depth)."""
    bound = zb[o]  # no point of the cell is nearer the zone's boundary
    if near == 0.0:
        if bound <= am and entry_within(px, py, o, am, exact, zb, zf) == 1:
            return POSSIBLE, near, -min(_entry_dist(px, py, o, am, zb, zf), am)
        return 0, near, np.nan
    cap = max(am, min(near, radius))
    f = 0
    dep = np.nan
    if bound <= cap:
        d = _entry_dist(px, py, o, cap, zb, zf)
        if d <= am:
            f = POSSIBLE
            dep = -d
        if d <= radius and d < near:
            near = d
    return f, near, dep


@hot
def zones_fix(
    px: float,
    py: float,
    acc: float,
    o0: int,
    o1: int,
    n_entries: int,
    flags: np.ndarray,
    depth: np.ndarray,
    fbase: int,
    radius: float,
    exact: float,
    zb: np.ndarray,
    zf: np.ndarray,
) -> tuple[int, int, float, int]:
    """Zone verdicts of one fix whose cell's records are ``zb[o0:o1]``: writes a flag per entry into
    ``flags[fbase:]``, and the depth of each possible one into ``depth[fbase:]`` (the point's signed
    distance to its boundary, positive inside, clipped to +-min(acc, R); a scanned one's is written
    by resolve_scans), and returns (certain count, possible count, nearest zone distance, zones left
    to an exhaustive scan: see resolve_scans).

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
        if (h_flags(o, zb) & (BOUNDARY | INSIDE)) == 0:
            break
        k = fbase + h_k(o, zb)
        if entry_inside(px, py, o, zb):
            near = 0.0
            f = POSSIBLE
            r = _inside_certain(px, py, a, o, exact, zb, zf)
            if r > 0:
                f = POSSIBLE | CERTAIN
                n_certain += 1
                depth[k] = am
            elif r < 0:
                f = SCAN
                n_scan += 1
            else:
                depth[k] = inside_depth(px, py, o, am, zb, zf)
            n_possible += 1
            flags[k] = f
        else:
            flags[k] = PENDING
            pending = True
        o = entry_next(o, zb)
    o_out = o
    if pending:
        o = o0
        while o < o_out:
            k = fbase + h_k(o, zb)
            if flags[k] == PENDING:
                f, near, depth[k] = _outside_flag(px, py, o, am, radius, near, exact, zb, zf)
                n_possible += f
                flags[k] = f
            o = entry_next(o, zb)
    o = o_out
    while o < o1:
        if zb[o] > (am if near == 0.0 else max(am, min(near, radius))):
            break  # ascending L: no later zone can be possible or nearer
        k = fbase + h_k(o, zb)
        f, near, depth[k] = _outside_flag(px, py, o, am, radius, near, exact, zb, zf)
        n_possible += f
        flags[k] = f
        o = entry_next(o, zb)
    return n_certain, n_possible, near, n_scan


@inline
def cell_of(px: float, py: float, P: np.ndarray) -> int:
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
