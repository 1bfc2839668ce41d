"""Distance from a fix to its route, read from the route's record (layout: :mod:`.layout`)."""

from __future__ import annotations

import math

import numpy as np

from .geometry import seg_dist2
from .jit import hot
from .layout import RC


@hot
def _route_chunk_dist2(px: float, py: float, o: int, k: int, rb: np.ndarray, best2: float) -> float:
    q = o + 1 + RC * k
    v = o + np.int64(rb[q + 4])
    for j in range(np.int64(rb[q + 5]) - 1):
        t = v + 2 * j
        best2 = min(best2, seg_dist2(px, py, rb[t], rb[t + 1], rb[t + 2], rb[t + 3]))
    return best2


@hot
def route_first(px: float, py: float, o: int, rb: np.ndarray) -> int:
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


@hot
def route_dist(px: float, py: float, o: int, first: int, rb: np.ndarray) -> float:
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
