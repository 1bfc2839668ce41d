"""Small plane geometry of points, segments and boxes, shared by every other kernel file.

Each answer is exact where the verdicts need it to be: a point on a vertex or on an axis-parallel edge
is at distance exactly 0, and the segment tests decide by signs of orientations, not by divisions.
"""

from __future__ import annotations

import numpy as np

from .jit import hot, inline


@inline
def box_dist2(px: float, py: float, box: np.ndarray, k: int) -> float:
    """Squared distance from a point to the closed box ``box[k]`` (0 inside or on it)."""
    dx = max(max(box[k, 0] - px, px - box[k, 2]), 0.0)
    dy = max(max(box[k, 1] - py, py - box[k, 3]), 0.0)
    return dx * dx + dy * dy


@inline
def seg_dist2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
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


@inline
def seg_box_dist2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """Squared distance from a point to the segment's bounding box: a lower bound of the squared
    distance to the segment, cheap (no division), 0 for a point on the segment."""
    dx = max(max(min(ax, bx) - px, px - max(ax, bx)), 0.0)
    dy = max(max(min(ay, by) - py, py - max(ay, by)), 0.0)
    return dx * dx + dy * dy


@inline
def ray_crosses(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> bool:
    """Whether the edge a-b crosses the ray from the point towards +x (half-open in y, division free).

    Every point-in-polygon answer of the core, at build time and per fix, goes through this test.
    """
    if (ay > py) != (by > py):
        cr = (py - ay) * (bx - ax) - (px - ax) * (by - ay)
        return (cr > 0.0) == (by > ay)
    return False


@inline
def orient(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@inline
def within_box(ax: float, ay: float, bx: float, by: float, px: float, py: float) -> bool:
    """p in the closed bounding box of a-b (for a p known to be collinear with a-b)."""
    return min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


@hot
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


@hot
def contact_kind(
    qx: float, qy: float, px: float, py: float, ax: float, ay: float, bx: float, by: float
) -> int:
    """How the segment q-p meets the edge a-b: 0 not at all, 1 a proper crossing (interiors cross at
    one point), 2 a contact (an end of one lies on the other, or they are collinear and overlap)."""
    d1 = orient(qx, qy, px, py, ax, ay)
    d2 = orient(qx, qy, px, py, bx, by)
    d3 = orient(ax, ay, bx, by, qx, qy)
    d4 = orient(ax, ay, bx, by, px, py)
    if ((d1 > 0.0 and d2 < 0.0) or (d1 < 0.0 and d2 > 0.0)) and (
        (d3 > 0.0 and d4 < 0.0) or (d3 < 0.0 and d4 > 0.0)
    ):
        return 1
    if (
        (d1 == 0.0 and within_box(qx, qy, px, py, ax, ay))
        or (d2 == 0.0 and within_box(qx, qy, px, py, bx, by))
        or (d3 == 0.0 and within_box(ax, ay, bx, by, qx, qy))
        or (d4 == 0.0 and within_box(ax, ay, bx, by, px, py))
    ):
        return 2
    return 0
