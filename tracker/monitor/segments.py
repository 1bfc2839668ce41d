"""Which segment the geofence checks for crossings: from each fix's previous fix.

Pure. For a batch of fixes (each child's in time order), a fix's previous fix is the child's
previous fix in the same batch when it is newer than the child's last decided fix (it will most
likely decide too), else the last decided fix from the child's state. The monitor uses the crossed
zones only when that previous fix turns out to be its last decided one (`Observation.crossed_from_ts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from tracker.monitor.model import ChildState

Floats = npt.NDArray[np.float64]
Numbers = Sequence[float] | Floats


def previous_fixes(
    children: Sequence[int] | npt.NDArray[np.int64],
    ts: Numbers,
    lon: Numbers,
    lat: Numbers,
    acc: Numbers,
    states: Mapping[int, ChildState],
) -> tuple[Floats, Floats, Floats, Floats]:
    """(prev_ts, prev_lon, prev_lat, prev_acc) per fix; nan where a fix has no previous fix.

    Vectorised (the pipeline calls it for every batch): a stable sort by child keeps each child's
    fixes in their order; only the children, not the fixes, are visited in Python."""
    c = np.asarray(children, dtype=np.int64)
    n = c.shape[0]
    cols = [np.asarray(v, dtype=np.float64) for v in (ts, lon, lat, acc)]
    if n == 0:
        return cols[0].copy(), cols[1].copy(), cols[2].copy(), cols[3].copy()
    order = np.argsort(c, kind="stable")
    cs = c[order]
    t, x, y, a = (v[order] for v in cols)
    kids, first = np.unique(cs, return_inverse=True)
    # each child's last decided fix, from its state (one row of Python floats per child, one array)
    nan4 = (np.nan, np.nan, np.nan, np.nan)
    rows = []
    for child in kids.tolist():
        st = states.get(child)
        if st is not None and st.last_ts is not None and st.last_lon is not None and st.last_lat is not None:
            rows.append((st.last_ts, st.last_lon, st.last_lat, st.last_acc or 0.0))
        else:
            rows.append(nan4)
    known = np.array(rows, dtype=np.float64).reshape(-1, 4).T
    last_t, last_x, last_y, last_a = (row[first] for row in known)
    prev_t = np.r_[np.nan, t[:-1]]
    same = np.r_[False, cs[1:] == cs[:-1]]
    in_batch = same & (np.isnan(last_t) | (prev_t > last_t)) & (prev_t < t)
    out = []
    for mine, last in ((t, last_t), (x, last_x), (y, last_y), (a, last_a)):
        v = np.where(in_batch, np.r_[np.nan, mine[:-1]], last)
        back = np.empty(n)
        back[order] = v
        out.append(back)
    return out[0], out[1], out[2], out[3]
