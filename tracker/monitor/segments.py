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
    children: Sequence[int],
    ts: Numbers,
    lon: Numbers,
    lat: Numbers,
    acc: Numbers,
    states: Mapping[int, ChildState],
) -> tuple[Floats, Floats, Floats, Floats]:
    """(prev_ts, prev_lon, prev_lat, prev_acc) per fix; nan where a fix has no previous fix."""
    n = len(children)
    out = np.full((4, n), np.nan)
    seen: dict[int, int] = {}  # child -> index of its latest fix so far in the batch
    for i, child in enumerate(children):
        j = seen.get(child)
        state = states.get(child)
        last_ts = state.last_ts if state is not None else None
        if j is not None and (last_ts is None or ts[j] > last_ts) and ts[j] < ts[i]:
            out[:, i] = (ts[j], lon[j], lat[j], acc[j])
        elif state is not None and last_ts is not None and state.last_lon is not None:
            out[:, i] = (last_ts, state.last_lon, state.last_lat, state.last_acc or 0.0)
        seen[child] = i
    return out[0], out[1], out[2], out[3]
