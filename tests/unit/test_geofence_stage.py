"""The geofence stage (tracker.stages.geofence.observe) judges each fix by the error its tag is known
to have: the reported accuracy times the tag's learnt error scale (ChildState.error_scale), for the
zones' discs as for the route's sigmas."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import shapely

from tracker.geofence import LocalProjection, RouteSpec, ZoneSpec, build_index
from tracker.monitor import ChildState, Rules
from tracker.stages.geofence import error_scales, observe

RULES = Rules()
PROJ = LocalProjection(127.0, 37.5)
WIDE = 4.0 / 2.5  # Rules.wide_scale at the defaults (place_wide_sigma / place_sigma)
assert RULES.wide_scale == pytest.approx(WIDE)


def ll(x: float, y: float) -> tuple[float, float]:
    lon, lat = PROJ.to_lonlat(np.array(x), np.array(y))
    return float(lon), float(lat)


# a 100 m square zone (id 10) and a route along y = -200 with a 30 m corridor (id 5)
INDEX = build_index(
    [RouteSpec(5, shapely.LineString([ll(-500, -200), ll(500, -200)]), 30.0)],
    [ZoneSpec(10, shapely.Polygon([ll(0, 0), ll(100, 0), ll(100, 100), ll(0, 100), ll(0, 0)]))],
    projection=PROJ,
    search_radius_m=50.0,
)


@dataclass(frozen=True)
class Fix:
    ts: float
    lon: float
    lat: float
    acc: float
    batt: int | None = None
    sos: bool = False


def _state(evidence: float, out: float) -> ChildState:
    return ChildState(place_fit=[0.0, evidence, out, 0.0])


TRUE = _state(100.0, 0.5)  # at home, 0.5 % of its fixes beyond their disc: reports truly
UNDER = _state(100.0, 5.0)  # 5 %: above Rules.place_out_rate, learnt to under-report
YOUNG = _state(20.0, 5.0)  # as often, but under place_fit_min_evidence: not learnt yet

SCALES = [
    ("a child with no state yet", None, 1.0),
    ("a tag that has not been at home or school", ChildState(), 1.0),
    ("a tag whose fixes there keep to their accuracy", TRUE, 1.0),
    ("a tag whose fixes there land beyond it 5 % of the time", UNDER, WIDE),
    ("... with too little evidence yet", YOUNG, 1.0),
]


@pytest.mark.parametrize(("name", "state", "scale"), SCALES, ids=[s[0] for s in SCALES])
def test_a_tags_error_scale(name: str, state: ChildState | None, scale: float) -> None:
    states = {} if state is None else {7: state}
    assert error_scales([7], states, RULES).tolist() == [pytest.approx(scale)]


# (name, where the fix is (x, y in metres), accuracy, the tag's state,
#  certain zones, possible zones, off-route sigmas)
OBSERVED = [
    (
        "20 m inside the zone at 10 m accuracy: its disc (16.6 m) lies inside: certainly in",
        (50, 20),
        10.0,
        TRUE,
        {10},
        {10},
        None,
    ),
    (
        "... on a tag learnt to under-report: its disc is 26.5 m: only possibly in",
        (50, 20),
        10.0,
        UNDER,
        set(),
        {10},
        None,
    ),
    (
        "20 m outside the zone: a disc of 16.6 m does not reach it",
        (50, -20),
        10.0,
        TRUE,
        set(),
        set(),
        None,
    ),
    (
        "... one of 26.5 m does: possibly in",
        (50, -20),
        10.0,
        UNDER,
        set(),
        {10},
        None,
    ),
    (
        "60 m from the route (30 m beyond its corridor) at 10 m: 4.5 sigmas",
        (0, -260),
        10.0,
        TRUE,
        set(),
        set(),
        30 / (10 / 1.5096),
    ),
    (
        "... on a tag learnt to under-report: 2.8 of its sigmas",
        (0, -260),
        10.0,
        UNDER,
        set(),
        set(),
        30 / (16 / 1.5096),
    ),
]


@pytest.mark.parametrize(
    ("name", "at", "acc", "state", "certain", "possible", "sigmas"), OBSERVED, ids=[s[0] for s in OBSERVED]
)
def test_a_fix_is_judged_by_its_tags_error(
    name: str,
    at: tuple[float, float],
    acc: float,
    state: ChildState,
    certain: set[int],
    possible: set[int],
    sigmas: float | None,
) -> None:
    lon, lat = ll(*at)
    (o,) = observe(
        INDEX, RULES, [Fix(1000.0, lon, lat, acc)], [7], INDEX.route_slots(np.array([5])), {7: state}
    )
    assert (set(o.certain_zones), set(o.possible_zones)) == (certain, possible)
    assert o.acc == acc  # the fix keeps what it reported
    if sigmas is not None:
        assert o.off_route_sigmas == pytest.approx(sigmas, rel=0.01)
    assert math.isfinite(o.route_distance_m)
