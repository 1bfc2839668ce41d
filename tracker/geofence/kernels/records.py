"""Build time: the routes' records and the cells' records, written into flat float64 arrays.

Layouts: :mod:`.layout`. Which edges a cell lists is decided by :func:`.cells.build_cells`; here they
are laid out, each cell's records after the other's.
"""

from __future__ import annotations

import numpy as np

from .jit import hot, jit
from .layout import BOUNDARY, INSIDE, RC, ZD, ZF, ZH, ZP

__all__ = ["build_chunks", "cell_record_sizes", "pack_cells", "pack_routes", "route_record_sizes"]


# ---------------------------------------------------------------------------------------------------
# routes


@jit
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


@jit
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


@hot
def pack_routes(
    route_chunk_off: np.ndarray,
    chunk_v: np.ndarray,
    chunk_box: np.ndarray,
    xy: np.ndarray,
    route_start: np.ndarray,
    rb: np.ndarray,
) -> None:
    """Write every route's record (layout: :mod:`.layout`) into ``rb``."""
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


# ---------------------------------------------------------------------------------------------------
# cells


@jit
def _near_count(d_lb: np.ndarray, d0: int, d1: int, near_m: float) -> int:
    k = d0
    while k < d1 and d_lb[k] <= near_m:
        k += 1
    return k - d0


@jit
def cell_record_sizes(
    cell_off: np.ndarray, e_doff: np.ndarray, d_lb: np.ndarray, e_poff: np.ndarray, near_m: float
) -> tuple[np.ndarray, int]:
    """(cell_start, far size) for :func:`pack_cells`: where each cell's records begin in the blob, and
    how many doubles the far edges take (``zf`` is one more, for its header, then the zones' xy)."""
    n_cells = cell_off.shape[0] - 1
    start = np.zeros(n_cells + 1, dtype=np.int64)
    far = 0
    for c in range(n_cells):
        size = 0
        if cell_off[c + 1] - cell_off[c] > 0xFFFF:
            raise ValueError("a cell of the zone index lists more than 65535 zones")
        for e in range(cell_off[c], cell_off[c + 1]):
            nd = e_doff[e + 1] - e_doff[e]
            near = _near_count(d_lb, e_doff[e], e_doff[e + 1], near_m)
            if near > 0xFFFF or e_poff[e + 1] - e_poff[e] > 0xFFFF or nd - near > 0xFFFFF:
                raise ValueError("a zone has more edges near one cell of the index than it can record")
            size += ZH + ZP * (e_poff[e + 1] - e_poff[e]) + ZD * near
            far += ZF * (nd - near)
        start[c + 1] = start[c] + size
    return start, far


@jit
def _put_edge(out: np.ndarray, o: int, lb: float, xy: np.ndarray, j: int) -> None:
    out[o] = lb
    out[o + 1] = xy[j, 0]
    out[o + 2] = xy[j, 1]
    out[o + 3] = xy[j + 1, 0]
    out[o + 4] = xy[j + 1, 1]


@jit
def pack_cells(
    cell_off: np.ndarray,
    e_zone: np.ndarray,
    e_flags: np.ndarray,
    e_L: np.ndarray,
    e_doff: np.ndarray,
    d_edge: np.ndarray,
    d_lb: np.ndarray,
    e_poff: np.ndarray,
    p_edge: np.ndarray,
    xy: np.ndarray,
    near_m: float,
    zb: np.ndarray,
    zf: np.ndarray,
) -> None:
    """Write every cell's records (layout: :mod:`.layout`) into ``zb``: first the entries
    whose zone may hold a point of the cell (zone order), then the others by ascending ``L``; each
    with its point-in-polygon edges and its distance edges with a bound up to ``near_m``. The
    farther distance edges go to ``zf``, from ``zf[1]`` on (the caller writes ``zf[0]`` and the
    zones' xy after them)."""
    o = 0
    f = 1
    for c in range(cell_off.shape[0] - 1):
        e0 = cell_off[c]
        e1 = cell_off[c + 1]
        order = np.empty(e1 - e0, dtype=np.int64)
        m = 0
        for e in range(e0, e1):
            if e_flags[e] & (BOUNDARY | INSIDE):
                order[m] = e
                m += 1
        rest = m
        for e in range(e0, e1):
            if not e_flags[e] & (BOUNDARY | INSIDE):
                u = m - 1
                while u >= rest and e_L[order[u]] > e_L[e]:
                    order[u + 1] = order[u]
                    u -= 1
                order[u + 1] = e
                m += 1
        for t in range(e1 - e0):
            e = order[t]
            nd = e_doff[e + 1] - e_doff[e]
            near = _near_count(d_lb, e_doff[e], e_doff[e + 1], near_m)
            n_pip = e_poff[e + 1] - e_poff[e]
            zb[o] = e_L[e]
            zb[o + 1] = d_lb[e_doff[e] + near] if near < nd else np.inf
            # small integers packed exactly into doubles (checked by cell_record_sizes)
            zb[o + 2] = near | (n_pip << 16) | ((e - e0) << 32) | (np.int64(e_flags[e]) << 48)
            zb[o + 3] = np.int64(e_zone[e]) | ((nd - near) << 32)
            zb[o + 4] = f
            o += ZH
            for u in range(e_poff[e], e_poff[e + 1]):
                j = p_edge[u]
                zb[o] = xy[j, 0]
                zb[o + 1] = xy[j, 1]
                zb[o + 2] = xy[j + 1, 0]
                zb[o + 3] = xy[j + 1, 1]
                o += ZP
            for u in range(e_doff[e], e_doff[e] + near):
                _put_edge(zb, o, d_lb[u], xy, d_edge[u])
                o += ZD
            for u in range(e_doff[e] + near, e_doff[e + 1]):
                zf[f] = d_lb[u]
                zf[f + 1] = d_edge[u]  # (a vertex number: exact in a double)
                f += ZF
