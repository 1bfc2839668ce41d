"""The passes of :mod:`.passes` over blocks of ``BLOCK`` fixes, on every numba thread.

This module is what :func:`.passes.check_batch` takes as ``blocks``: each function here has the name
of a pass and runs it over the whole batch, one ``prange`` iteration per block. Each prange loop costs
seconds of compilation per big function it calls, so the passes that call little stay separate.
Only one parallel kernel may run at a time (see :mod:`tracker.geofence.index`).
"""

from __future__ import annotations

import numba
import numpy as np

from . import passes
from .jit import parallel
from .layout import BLOCK, SCRATCH, SUB

__all__ = ["crossed", "fill", "locate", "main"]


@parallel
def locate(lon: np.ndarray, lat: np.ndarray, P: np.ndarray, cell_off: np.ndarray, counts: np.ndarray) -> None:
    n = lon.shape[0]
    for b in numba.prange((n + BLOCK - 1) // BLOCK):
        i0 = np.int64(b) * BLOCK  # prange counts in uint64
        passes.locate(i0, min(i0 + BLOCK, n), lon, lat, P, cell_off, counts)


@parallel
def main(
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
) -> None:
    n = lon.shape[0]
    n_blocks = (n + BLOCK - 1) // BLOCK
    scratch = np.empty((n_blocks, SCRATCH * SUB + 1), dtype=np.float64)
    for b in numba.prange(n_blocks):
        i0 = np.int64(b) * BLOCK
        passes.main(
            i0, min(i0 + BLOCK, n), lon, lat, acc, slot, cand_off, flags, depth, P, R, Z, G, route_d,
            corridor, nearest, n_certain, n_possible, scratch[b],
        )  # fmt: skip


@parallel
def crossed(
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
        passes.crossed(
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


@parallel
def fill(
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
    n = lon.shape[0]
    for b in numba.prange((n + BLOCK - 1) // BLOCK):
        i0 = np.int64(b) * BLOCK
        passes.fill(
            i0, min(i0 + BLOCK, n), lon, lat, P, cand_off, flags, depth, G, zone_ids, certain_off,
            certain_ids, possible_off, possible_ids, possible_depth,
        )  # fmt: skip
