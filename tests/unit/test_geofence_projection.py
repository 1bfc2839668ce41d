"""LocalProjection against the WGS84 geodesic (pyproj is a test-only dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.geofence import LocalProjection

pyproj = pytest.importorskip("pyproj")

SEOUL_LON, SEOUL_LAT = 126.978, 37.5665


def test_origin_maps_to_zero() -> None:
    proj = LocalProjection(SEOUL_LON, SEOUL_LAT)
    x, y = proj.to_xy(np.array([SEOUL_LON]), np.array([SEOUL_LAT]))
    assert x.dtype == np.float64 and y.dtype == np.float64
    assert x[0] == 0.0 and y[0] == 0.0


def test_around_is_bbox_centre() -> None:
    proj = LocalProjection.around(np.array([126.8, 127.2, 127.0]), np.array([37.4, 37.7, 37.5]))
    assert proj.lon0 == pytest.approx(127.0) and proj.lat0 == pytest.approx(37.55)
    with pytest.raises(ValueError):
        LocalProjection.around(np.array([]), np.array([]))


@pytest.mark.parametrize("lon0, lat0", [(float("nan"), 37.0), (200.0, 37.0), (127.0, 90.0), (127.0, -95.0)])
def test_bad_origin_refused(lon0: float, lat0: float) -> None:
    with pytest.raises(ValueError):
        LocalProjection(lon0, lat0)


def test_round_trip() -> None:
    proj = LocalProjection(SEOUL_LON, SEOUL_LAT)
    rng = np.random.default_rng(1)
    lon = SEOUL_LON + rng.uniform(-0.3, 0.3, 1000)
    lat = SEOUL_LAT + rng.uniform(-0.3, 0.3, 1000)
    lon2, lat2 = proj.to_lonlat(*proj.to_xy(lon, lat))
    np.testing.assert_allclose(lon2, lon, rtol=0, atol=1e-12)
    np.testing.assert_allclose(lat2, lat, rtol=0, atol=1e-12)


def test_agrees_with_geodesic_within_half_percent_over_30_km() -> None:
    """Pairs of points anywhere in a 30 km × 30 km square centred on Seoul."""
    proj = LocalProjection(SEOUL_LON, SEOUL_LAT)
    geod = pyproj.Geod(ellps="WGS84")
    rng = np.random.default_rng(7)
    n = 20_000
    # ±15 km expressed in degrees (generously: the square's corners are ~21 km from the origin)
    dlon, dlat = 15_000 / proj.kx, 15_000 / proj.ky
    lon1 = SEOUL_LON + rng.uniform(-dlon, dlon, n)
    lat1 = SEOUL_LAT + rng.uniform(-dlat, dlat, n)
    lon2 = SEOUL_LON + rng.uniform(-dlon, dlon, n)
    lat2 = SEOUL_LAT + rng.uniform(-dlat, dlat, n)
    x1, y1 = proj.to_xy(lon1, lat1)
    x2, y2 = proj.to_xy(lon2, lat2)
    planar = np.hypot(x2 - x1, y2 - y1)
    _, _, geodesic = geod.inv(lon1, lat1, lon2, lat2)
    keep = geodesic > 1.0
    rel = np.abs(planar[keep] - geodesic[keep]) / geodesic[keep]
    assert rel.max() < 0.005, rel.max()
    # near the origin the radii of curvature make it almost exact
    lon3 = SEOUL_LON + rng.uniform(-dlon, dlon, 1000) / 15
    lat3 = SEOUL_LAT + rng.uniform(-dlat, dlat, 1000) / 15
    x3, y3 = proj.to_xy(lon3, lat3)
    _, _, g3 = geod.inv(np.full(1000, SEOUL_LON), np.full(1000, SEOUL_LAT), lon3, lat3)
    assert (np.abs(np.hypot(x3, y3) - g3) / g3).max() < 1e-4
    # the axes: 1 km east and 1 km north of the origin
    lon_e, lat_e, _ = geod.fwd(SEOUL_LON, SEOUL_LAT, 90.0, 1000.0)
    lon_n, lat_n, _ = geod.fwd(SEOUL_LON, SEOUL_LAT, 0.0, 1000.0)
    xe, ye = proj.to_xy(np.array([lon_e]), np.array([lat_e]))
    xn, yn = proj.to_xy(np.array([lon_n]), np.array([lat_n]))
    assert xe[0] == pytest.approx(1000.0, rel=1e-5) and abs(ye[0]) < 0.1
    assert yn[0] == pytest.approx(1000.0, rel=1e-6) and abs(xn[0]) < 1e-6
