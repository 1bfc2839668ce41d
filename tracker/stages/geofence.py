"""Stage 3: what the geofence says about a batch of fixes, as the monitor's observations.

This is the one function that geofences a batch. The pipeline calls it for every batch, `tracker
replay` for a file of past fixes, and `bench/quality` for its simulated children, so that what each of
them calls "certainly in a zone" is what the tracker decides on:

1. each fix's previous fix (the one before it in the batch if it will decide too, else the child's
   last decided fix, see :func:`tracker.monitor.previous_fixes`), for the zones crossed in between;
2. each fix judged on a disc of ``Rules.zone_sigma`` round it (the accuracy is a 68 % radius: the
   disc is about 1.66 of it by default), not on the raw accuracy circle; the accuracy times what its
   tag is known to under-report (``ChildState.error_scale``, learnt at home and school);
3. one kernel call of the index for the whole batch;
4. one :class:`tracker.monitor.Observation` per fix, in the fixes' order, with how deep it lies in
   each zone that may hold it (the kernel's signed distance to the zone's edge, for rule 4).

Pure: no I/O, no state kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tracker.geofence import GeofenceIndex
from tracker.monitor import ChildState, Observation, Rules, previous_fixes

__all__ = ["Positioned", "error_scales", "observe"]


class Positioned(Protocol):
    """A fix as this stage reads it (the ingest's `Fix`, the simulator's fix, a replayed CSV row)."""

    @property
    def ts(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def lat(self) -> float: ...
    @property
    def acc(self) -> float: ...
    @property
    def batt(self) -> int | None: ...
    @property
    def sos(self) -> bool: ...


def observe(
    index: GeofenceIndex,
    rules: Rules,
    fixes: Sequence[Positioned],
    children: Sequence[int] | npt.NDArray[np.int64],
    route_slots: npt.NDArray[np.integer],
    states: Mapping[int, ChildState],
    scales: npt.NDArray[np.float64] | None = None,
) -> list[Observation]:
    """The observation of each fix: its route distance and corridor (nan: no route), the zones that
    certainly / possibly hold its disc, the zones the segment from its previous fix crossed, and the
    nearest zone.

    ``children[i]`` is fix i's child and ``route_slots[i]`` its route's slot in ``index`` (-1: none);
    each child's fixes are in time order. ``states``: the children's states before the batch (for
    each child's last decided fix). ``scales``: each fix's ``error_scales``, when the caller has them."""
    n = len(fixes)
    # the fixes' columns in one pass over them (four contiguous float arrays)
    cols = np.array([(f.lon, f.lat, f.acc, f.ts) for f in fixes], dtype=np.float64).reshape(n, 4).T.copy()
    lon, lat, acc, ts = cols[0], cols[1], cols[2], cols[3]
    prev_ts, prev_lon, prev_lat, prev_acc = previous_fixes(children, ts, lon, lat, acc, states)
    if scales is None:
        scales = error_scales(children, states, rules)
    disc = rules.zone_disc_m
    v = index.check(
        lon,
        lat,
        disc(acc * scales),
        route_slots,
        prev_lon=prev_lon,
        prev_lat=prev_lat,
        prev_acc=disc(np.nan_to_num(prev_acc, nan=0.0) * scales),
    )
    # the batch's arrays as Python lists once (indexing a numpy array per fix costs more than the rules)
    route_m, corridor_m = v.route_distance_m.tolist(), v.corridor_m.tolist()
    nearest_m = v.nearest_zone_m.tolist()
    from_ts = [None if t != t else t for t in prev_ts.tolist()]  # nan: no previous fix
    certain = _zone_sets(v.certain_offsets, v.certain_zone_ids)
    possible = _zone_sets(v.possible_offsets, v.possible_zone_ids)
    crossed = _zone_sets(v.crossed_offsets, v.crossed_zone_ids)
    depths = _zone_depths(v.possible_offsets, v.possible_zone_ids, v.possible_depth_m)
    scale_of = scales.tolist()
    # (positional: the fields in Observation's order; a fix of a bench may not say when it was received)
    return [
        Observation(
            f.ts,
            f.lon,
            f.lat,
            f.acc,
            route,
            corridor,
            certain_zones,
            possible_zones,
            crossed_zones,
            since,
            nearest,
            f.batt,
            f.sos,
            getattr(f, "received_at", math.nan),
            getattr(f, "stamped_at_receipt", False),
            zd,
            k,
        )
        for f, route, corridor, certain_zones, possible_zones, crossed_zones, since, nearest, zd, k in zip(
            fixes,
            route_m,
            corridor_m,
            certain,
            possible,
            crossed,
            from_ts,
            nearest_m,
            depths,
            scale_of,
            strict=True,
        )
    ]


def error_scales(
    children: Sequence[int] | npt.NDArray[np.int64], states: Mapping[int, ChildState], rules: Rules
) -> npt.NDArray[np.float64]:
    """Each fix's tag's error scale (ChildState.error_scale, from its child's state before the batch:
    1 for a tag that reports its error truly, the most of them), by which its accuracy is judged."""
    out = np.ones(len(children))
    get = states.get
    for i, child in enumerate(children.tolist() if isinstance(children, np.ndarray) else children):
        st = get(child)
        if st is not None and st.place_fit is not None:
            out[i] = st.error_scale(rules)
    return out


_NO_ZONES: frozenset[int] = frozenset()


_NO_DEPTHS: dict[int, float] = {}  # shared by every fix with no possible zone: never changed


def _zone_depths(offsets: np.ndarray, zone_ids: np.ndarray, depth_m: np.ndarray) -> list[dict[int, float]]:
    """Each fix's possible zones' depths (the geofence's signed distance to each one's edge), as a
    dict zone id -> metres; the fixes with none share one empty dict."""
    out = [_NO_DEPTHS] * (len(offsets) - 1)
    if len(zone_ids):
        bounds = offsets.tolist()
        ids = zone_ids.tolist()
        depths = depth_m.tolist()
        for i in np.flatnonzero(np.diff(offsets)).tolist():
            b0, b1 = bounds[i], bounds[i + 1]
            out[i] = dict(zip(ids[b0:b1], depths[b0:b1], strict=True))
    return out


def _zone_sets(offsets: np.ndarray, zone_ids: np.ndarray) -> list[frozenset[int]]:
    """Each fix's zone ids (a CSR slice of the geofence's answer) as a frozenset; most fixes are in
    no zone, and they share one empty set (only the others are visited)."""
    out = [_NO_ZONES] * (len(offsets) - 1)
    if len(zone_ids):
        bounds = offsets.tolist()
        ids = zone_ids.tolist()
        for i in np.flatnonzero(np.diff(offsets)).tolist():
            out[i] = frozenset(ids[bounds[i] : bounds[i + 1]])
    return out
