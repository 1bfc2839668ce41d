"""Stage 3: what the geofence says about a batch of fixes, as the monitor's observations.

This is the one function that geofences a batch. The pipeline calls it for every batch, `tracker
replay` for a file of past fixes, and `bench/quality` for its simulated children, so that what each of
them calls "certainly in a zone" is what the tracker decides on:

1. each fix's previous fix (the one before it in the batch if it will decide too, else the child's
   last decided fix, see :func:`tracker.monitor.previous_fixes`), for the zones crossed in between;
2. each fix judged on a disc of ``Rules.zone_sigma`` round it (the accuracy is a 68 % radius: the
   disc is about 1.66 of it by default), not on the raw accuracy circle;
3. one kernel call of the index for the whole batch;
4. one :class:`tracker.monitor.Observation` per fix, in the fixes' order.

Pure: no I/O, no state kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tracker.geofence import GeofenceIndex
from tracker.monitor import ChildState, Observation, Rules, previous_fixes

__all__ = ["Positioned", "observe"]


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
) -> list[Observation]:
    """The observation of each fix: its route distance and corridor (nan: no route), the zones that
    certainly / possibly hold its disc, the zones the segment from its previous fix crossed, and the
    nearest zone.

    ``children[i]`` is fix i's child and ``route_slots[i]`` its route's slot in ``index`` (-1: none);
    each child's fixes are in time order. ``states``: the children's states before the batch (for
    each child's last decided fix)."""
    n = len(fixes)
    lon = np.fromiter((f.lon for f in fixes), dtype=np.float64, count=n)
    lat = np.fromiter((f.lat for f in fixes), dtype=np.float64, count=n)
    acc = np.fromiter((f.acc for f in fixes), dtype=np.float64, count=n)
    ts = np.fromiter((f.ts for f in fixes), dtype=np.float64, count=n)
    prev_ts, prev_lon, prev_lat, prev_acc = previous_fixes(children, ts, lon, lat, acc, states)
    disc = rules.zone_disc_m
    v = index.check(
        lon,
        lat,
        disc(acc),
        route_slots,
        prev_lon=prev_lon,
        prev_lat=prev_lat,
        prev_acc=disc(np.nan_to_num(prev_acc, nan=0.0)),
    )
    # the batch's arrays as Python lists once (indexing a numpy array per fix costs more than the rules)
    route_m, corridor_m = v.route_distance_m.tolist(), v.corridor_m.tolist()
    nearest_m, from_ts = v.nearest_zone_m.tolist(), prev_ts.tolist()
    received = [getattr(f, "received_at", math.nan) for f in fixes]  # a bench's fix may not say
    certain = _zone_sets(v.certain_offsets, v.certain_zone_ids)
    possible = _zone_sets(v.possible_offsets, v.possible_zone_ids)
    crossed = _zone_sets(v.crossed_offsets, v.crossed_zone_ids)
    return [
        Observation(
            ts=f.ts,
            lon=f.lon,
            lat=f.lat,
            acc=f.acc,
            route_distance_m=route_m[i],
            corridor_m=corridor_m[i],
            certain_zones=certain[i],
            possible_zones=possible[i],
            crossed_zones=crossed[i],
            crossed_from_ts=None if from_ts[i] != from_ts[i] else from_ts[i],  # nan: no previous fix
            nearest_zone_m=nearest_m[i],
            batt=f.batt,
            sos=f.sos,
            received_at=received[i],
            stamped_at_receipt=getattr(f, "stamped_at_receipt", False),
        )
        for i, f in enumerate(fixes)
    ]


_NO_ZONES: frozenset[int] = frozenset()


def _zone_sets(offsets: np.ndarray, zone_ids: np.ndarray) -> list[frozenset[int]]:
    """Each fix's zone ids (a CSR slice of the geofence's answer) as a frozenset; most fixes are in
    no zone, and they share one empty set."""
    bounds = offsets.tolist()
    ids = zone_ids.tolist()
    return [frozenset(ids[lo:hi]) if hi > lo else _NO_ZONES for lo, hi in pairwise(bounds)]
