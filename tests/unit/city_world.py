"""A street of a city, for the scenario tests of the rules where routes meet zones (issue 15.3-15.4).

Metres east/north of a point in Daechi-dong (tests.helpers.lonlat). An arterial road drawn as a
danger zone to its kerbs: y from 0 to 40, x from -600 to 600. Routes (watched all day, every day):

* 1 "sidewalk" (walk, corridor 20 m): home at (-400, -10), east along the south sidewalk 10 m from
  the kerb to x = 0, over the crosswalk to (0, 50), east along the north sidewalk to (400, 50),
  north to the school at (400, 80);
* 2 "shuttle" (shuttle, corridor 25 m): along the road's middle, y = 20, x from -600 to 600;
* 3 "bike" (bicycle, corridor 20 m): north over the road at x = 200, from (200, -100) to (200, 140);
* 4 "walk, then shuttle" (shuttle, corridor 25 m): as route 2, but its window until 17:30 (the fixes'
  first half hour from T0) says walk: a child who walks to school and rides the academy's shuttle
  home.

A building site, a 200 m square (x 0-200, y -300 to -100), stands south of the sidewalk.

Children: 11 and 12 walk route 1, 21 rides route 2, 31 cycles route 3, 22 goes route 4, 41 has no
route (at the school). Their tags are "t11", "t12", ...

Fixes go through :class:`tracker.offline.OfflineTracker`: admission, the one function that geofences
a batch, the monitor's step and the clock's passes, as the service runs them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

from tests.helpers import line, lonlat
from tracker.importers.features import read_world
from tracker.ingest.decode import Fix
from tracker.monitor import Rules
from tracker.offline import Alert, OfflineTracker
from tracker.registry_view import RegistryView, view_from_world

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
ALL_DAY = [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00"}]
WALK_THEN_RIDE = [
    {"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "17:30", "mode": "walk"},
    {"days": [0, 1, 2, 3, 4, 5, 6], "start": "17:30", "end": "24:00"},
]
ROAD, SITE = 5, 6


def _box(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    return {"type": "Polygon", "coordinates": [[list(lonlat(x, y)) for x, y in ring]]}


def _route(
    rid: int,
    name: str,
    mode: str | None,
    corridor: float,
    geometry: dict[str, Any],
    kids: list[int],
    windows: list[dict[str, Any]] = ALL_DAY,
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "kind": "route",
        "id": rid,
        "name": name,
        "school_id": 1,
        "corridor_m": corridor,
        "windows": windows,
        "children": [{"id": k, "tag": f"t{k}"} for k in kids],
    }
    if mode is not None:
        props["mode"] = mode
    return {"type": "Feature", "geometry": geometry, "properties": props}


def world(*, modes: bool = True) -> dict[str, Any]:
    """The street as a world document (schemas/world.v1.json). ``modes``: the routes say their mode."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(lonlat(400, 80))},
                "properties": {
                    "kind": "school",
                    "id": 1,
                    "timezone": "Asia/Seoul",
                    "children": [{"id": 41, "tag": "t41"}],
                },
            },
            {
                "type": "Feature",
                "geometry": _box(-600, 0, 600, 40),
                "properties": {"kind": "zone", "id": ROAD, "name": "arterial", "zone_kind": "road"},
            },
            {
                "type": "Feature",
                "geometry": _box(0, -300, 200, -100),
                "properties": {"kind": "zone", "id": SITE, "name": "site", "zone_kind": "construction"},
            },
            _route(
                1,
                "sidewalk",
                "walk" if modes else None,
                20,
                line((-400, -10), (0, -10), (0, 50), (400, 50), (400, 80)),
                [11, 12],
            ),
            _route(2, "shuttle", "shuttle" if modes else None, 25, line((-600, 20), (600, 20)), [21]),
            _route(3, "bike", "bicycle" if modes else None, 20, line((200, -100), (200, 140)), [31]),
            _route(
                4,
                "walk, then shuttle",
                "shuttle" if modes else None,
                25,
                line((-600, 20), (600, 20)),
                [22],
                WALK_THEN_RIDE if modes else ALL_DAY,
            ),
        ],
    }


def street_view(*, modes: bool = True) -> RegistryView:
    features, problems = read_world(json.dumps(world(modes=modes)).encode())
    assert not problems, problems
    return view_from_world(features, default_timezone="Asia/Seoul")


def fix(
    child: int,
    t: float,
    x: float,
    y: float,
    acc: float = 5.0,
    *,
    late_s: float = 0.5,
    clock_s: float = 0.0,
    sos: bool = False,
) -> Fix:
    """Child's fix at T0 + t (true time) at (x, y): received ``late_s`` later; the tag's clock is
    ``clock_s`` ahead of the true time (negative: slow), and stamps the fix with it."""
    lon, lat = lonlat(x, y)
    return Fix(
        f"t{child}", T0 + t + clock_s, lat, lon, acc, None, None, sos, T0 + t + late_s, f"tags/t{child}"
    )


def path(
    child: int, points: Sequence[tuple[float, float, float]], every_s: float, acc: float = 5.0, **kw: Any
) -> list[Fix]:
    """Fixes every ``every_s`` seconds along a polyline of (t, x, y) waypoints (linear in between)."""
    out = []
    t, end = points[0][0], points[-1][0]
    while t <= end + 1e-9:
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(points):
            if t0 <= t <= t1:
                u = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                out.append(fix(child, t, x0 + u * (x1 - x0), y0 + u * (y1 - y0), acc, **kw))
                break
        t += every_s
    return out


def run(
    fixes: Iterable[Fix], *, rules: Rules | None = None, modes: bool = True, until: float | None = None
) -> tuple[OfflineTracker, list[Alert]]:
    tracker = OfflineTracker(street_view(modes=modes), rules or Rules())
    alerts = tracker.run(list(fixes), until=until)
    return tracker, alerts


def kinds(alerts: Iterable[Alert]) -> list[tuple[int, str, int | None]]:
    return [(a.child_id, a.kind, a.zone_id) for a in alerts]
