"""Pure geofence core: lon/lat → local metres, a flat index of routes and zones, numba kernels.

No I/O and no asyncio here. A batch of fixes goes through one call::

    index = view.index                          # one index for the whole batch
    verdicts = index.check(lon, lat, acc, index.route_slots(route_ids))
    # with the previous fix of each (nan where none): the zones crossed in between, too
    verdicts = index.check(lon, lat, acc, slots, prev_lon=plon, prev_lat=plat, prev_acc=pacc)

See :mod:`tracker.geofence.index` for the exact semantics of each verdict. The build side (shapely
validation, flattening, packing) is :mod:`tracker.geofence.build`; the numba kernels, of both sides,
are the package :mod:`tracker.geofence.kernels`.
"""

from tracker.geofence.build import (
    GeometryRefused,
    Prepared,
    RouteSpec,
    ZoneMeeting,
    ZoneSpec,
    prepare,
    route_meets_zones,
)
from tracker.geofence.index import GeofenceAnswers, GeofenceIndex, build_index, build_index_from
from tracker.geofence.projection import LocalProjection

__all__ = [
    "GeofenceAnswers",
    "GeofenceIndex",
    "GeometryRefused",
    "LocalProjection",
    "Prepared",
    "RouteSpec",
    "ZoneMeeting",
    "ZoneSpec",
    "build_index",
    "build_index_from",
    "prepare",
    "route_meets_zones",
]
