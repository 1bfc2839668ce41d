"""The passes of a check, and the one place that runs them in order: :func:`check_batch`.

A check is four passes over the fixes: locate (entries per fix, for the flag buffer), main (route
distance and zone verdicts), fill (the zone ids), and crossed (only with previous fixes: count, then
write). Each pass is a function over a range of fixes ``i0 .. i1 - 1`` that allocates nothing (scratch
comes in), so it runs without NRT and can be called from the compiled :func:`check_batch` for small
batches, from Python for big ones, and per block of fixes from ``prange`` (:mod:`.parallel`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .crossings import crossed_fix
from .jit import hot, jit
from .layout import (
    CERTAIN,
    P_EXACT,
    P_KX,
    P_KY,
    P_LAT0,
    P_LON0,
    P_RADIUS,
    POSSIBLE,
    RC,
    ROUTE_HEAD,
    SCRATCH,
    SUB,
    TOUCH,
)
from .routes import route_dist, route_first
from .zones import cell_of, resolve_scans, zones_fix

__all__ = ["check_batch", "check_batch_in_one_call", "crossed", "cumsum_inplace", "fill", "locate", "main"]


@hot
def locate(
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
        c = cell_of((lon[i] - P[P_LON0]) * P[P_KX], (lat[i] - P[P_LAT0]) * P[P_KY], P)
        counts[i + 1] = cell_off[c + 1] - cell_off[c] if c >= 0 else 0


@hot
def main(
    i0: int,
    i1: int,
    lon: np.ndarray,
    lat: np.ndarray,
    acc: np.ndarray,
    slot: np.ndarray,
    cand_off: np.ndarray,
    flags: np.ndarray,
    depth: np.ndarray,
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
            c = cell_of((lon[i] - lon0) * kx, (lat[i] - lat0) * ky, P)
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
            first = route_first((lon[i] - lon0) * kx, (lat[i] - lat0) * ky, r0, rb)
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
                    route_d[i] = route_dist(px, py, np.int64(scratch[k]), np.int64(scratch[k + 4]), rb)
                else:
                    route_d[i] = np.nan
            if cand_off[i + 1] == cand_off[i]:
                nearest[i] = np.inf  # outside the grid, or a cell without entries
                n_certain[i + 1] = 0
                n_possible[i + 1] = 0
                continue
            o0 = np.int64(scratch[k + 2])
            o1 = np.int64(scratch[k + 3])
            nc, npos, near, n_scan = zones_fix(
                px,
                py,
                acc[i],
                o0,
                o1,
                cand_off[i + 1] - cand_off[i],
                flags,
                depth,
                cand_off[i],
                radius,
                exact,
                zb,
                zf,
            )
            if n_scan:
                am = min(acc[i], radius)  # (a SCAN zone's acc is known: beyond the exact range)
                nc += resolve_scans(px, py, acc[i], o0, o1, flags, depth, cand_off[i], am, zb, zf, Z)
            nearest[i] = near
            n_certain[i + 1] = nc
            n_possible[i + 1] = npos
    scratch[SCRATCH * SUB] = touched  # keeps the touching loads alive


@hot
def crossed(
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
        k = crossed_fix(
            px,
            py,
            cell_of(px, py, P),
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


@hot
def fill(
    i0: int,
    i1: int,
    lon: np.ndarray,
    lat: np.ndarray,
    P: np.ndarray,
    cand_off: np.ndarray,
    flags: np.ndarray,
    depth: np.ndarray,
    G: tuple,
    zone_ids: np.ndarray,
    certain_off: np.ndarray,
    certain_ids: np.ndarray,
    possible_off: np.ndarray,
    possible_ids: np.ndarray,
    possible_depth: np.ndarray,
) -> None:
    """Write the certain and possible zone ids of fixes i0 .. i1 - 1 from their flags (and each
    possible zone's depth beside its id)."""
    cell_off = G[0]
    e_zone = G[1]
    for i in range(i0, i1):
        jp = possible_off[i]
        if possible_off[i + 1] == jp:
            continue
        c = cell_of((lon[i] - P[P_LON0]) * P[P_KX], (lat[i] - P[P_LAT0]) * P[P_KY], P)
        jc = certain_off[i]
        base = cand_off[i] - cell_off[c]
        for e in range(cell_off[c], cell_off[c + 1]):
            f = flags[base + e]
            if f & POSSIBLE:
                zid = zone_ids[e_zone[e]]
                possible_ids[jp] = zid
                possible_depth[jp] = depth[base + e]
                jp += 1
                if f & CERTAIN:
                    certain_ids[jc] = zid
                    jc += 1


@hot
def cumsum_inplace(a: np.ndarray) -> None:
    for i in range(1, a.shape[0]):
        a[i] += a[i - 1]


def check_batch(
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
    blocks: Any = None,
) -> tuple[np.ndarray, ...]:
    """The check of a batch: the passes in order, and the arrays between them. Returns (route_d,
    corridor, certain_off, certain_ids, possible_off, possible_ids, nearest, crossed_off,
    crossed_ids, possible_depth); ``qlon`` empty: no previous fixes, no crossings.

    The same code runs two ways. Compiled, as :func:`check_batch_in_one_call`: a small batch in one
    call from Python (one dispatch; numpy's allocations and a dispatch per pass would cost more than
    the work). As plain Python, for a big batch: each pass is one numba call and the arrays come from
    numpy's allocator, which gives big ones huge pages (fewer page faults than numba's).

    ``blocks``: None runs each pass over the whole batch on the calling thread; the module
    :mod:`.parallel` (plain Python only) runs each pass over blocks of fixes on every numba thread.
    Compiled, ``blocks`` is None, which numba knows while it compiles: it drops the branches that
    test ``blocks is None`` the other way before typing them (numba's pruning of dead branches on
    arguments), so the one-call kernel never compiles the parallel passes.
    """
    n = lon.shape[0]
    i0 = n - n  # 0, but not a literal: a literal argument would compile each pass once more
    cand_off = np.zeros(n + 1, dtype=np.int64)
    if blocks is None:
        locate(i0, n, lon, lat, P, G[0], cand_off)
    else:
        blocks.locate(lon, lat, P, G[0], cand_off)
    cumsum_inplace(cand_off)
    flags = np.empty(cand_off[n], dtype=np.uint8)
    depth = np.empty(cand_off[n], dtype=np.float64)  # written for the possible entries only
    route_d = np.empty(n, dtype=np.float64)
    corridor = np.empty(n, dtype=np.float64)
    nearest = np.empty(n, dtype=np.float64)
    certain_off = np.zeros(n + 1, dtype=np.int64)
    possible_off = np.zeros(n + 1, dtype=np.int64)
    crossed_off = np.zeros(n + 1, dtype=np.int64)
    if blocks is None:
        scratch = np.empty(SCRATCH * SUB + 1, dtype=np.float64)
        main(
            i0, n, lon, lat, acc, slot, cand_off, flags, depth, P, R, Z, G, route_d, corridor, nearest,
            certain_off, possible_off, scratch,
        )  # fmt: skip
    else:
        blocks.main(
            lon, lat, acc, slot, cand_off, flags, depth, P, R, Z, G, route_d, corridor, nearest,
            certain_off, possible_off,
        )  # fmt: skip
    cumsum_inplace(certain_off)
    cumsum_inplace(possible_off)
    certain_ids = np.empty(certain_off[n], dtype=np.int64)
    possible_ids = np.empty(possible_off[n], dtype=np.int64)
    possible_depth = np.empty(possible_off[n], dtype=np.float64)
    if blocks is None:
        fill(
            i0, n, lon, lat, P, cand_off, flags, depth, G, zone_ids, certain_off, certain_ids,
            possible_off, possible_ids, possible_depth,
        )  # fmt: skip
    else:
        blocks.fill(
            lon, lat, P, cand_off, flags, depth, G, zone_ids, certain_off, certain_ids, possible_off,
            possible_ids, possible_depth,
        )  # fmt: skip
    crossed_ids = np.empty(0, dtype=np.int64)
    if qlon.shape[0] == n and n > 0:
        seen = np.full(zone_ids.shape[0], -1, dtype=np.int64)  # the serial pass's scratch
        buf = np.empty(zone_ids.shape[0], dtype=np.int64)
        for step in range(2):  # count into crossed_off, then write the ids
            if step == 1:
                cumsum_inplace(crossed_off)
                if crossed_off[n] == 0:
                    break
                crossed_ids = np.empty(crossed_off[n], dtype=np.int64)
            if blocks is None:
                crossed(
                    i0, n, lon, lat, qlon, qlat, qacc, cand_off, flags, P, G, Z, zone_ids, crossed_off,
                    crossed_ids, seen, buf,
                )  # fmt: skip
            else:
                blocks.crossed(
                    lon, lat, qlon, qlat, qacc, cand_off, flags, P, G, Z, zone_ids, crossed_off,
                    crossed_ids,
                )  # fmt: skip
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
        possible_depth,
    )


check_batch_in_one_call = jit(check_batch)
""":func:`check_batch` compiled (``blocks`` None): a small batch in one call from Python."""
