"""A small local metric projection: equirectangular around a centre point.

x is metres east of the centre, y metres north. Over a city (±20 km) the east-west scale is off by
at most tan(lat0)·Δlat (≈ 0.3 % at Seoul's latitude 20 km north or south of the centre), which is
well below what matters to a simulator: corridors are tens of metres, excursions a few hundred, so
local distances are wrong by centimetres. Positions round-trip exactly (the inverse is exact).
The simulator is a client of the tracker and keeps its own projection on purpose.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)

FloatArray = npt.NDArray[np.float64]


class LocalProjection:
    """lon/lat degrees <-> local metres (equirectangular around ``(lon0, lat0)``)."""

    __slots__ = ("_kx", "_ky", "lat0", "lon0")

    def __init__(self, lon0: float, lat0: float) -> None:
        if not (-85.0 <= lat0 <= 85.0):
            raise ValueError(f"latitude {lat0} is too close to a pole for a local projection")
        self.lon0 = lon0
        self.lat0 = lat0
        self._ky = math.radians(1.0) * EARTH_RADIUS_M  # metres per degree of latitude
        self._kx = self._ky * math.cos(math.radians(lat0))  # metres per degree of longitude here

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.lon0) * self._kx, (lat - self.lat0) * self._ky

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        return self.lon0 + x / self._kx, self.lat0 + y / self._ky

    def to_xy_arrays(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        lon_a = np.asarray(lon, dtype=np.float64)
        lat_a = np.asarray(lat, dtype=np.float64)
        return (lon_a - self.lon0) * self._kx, (lat_a - self.lat0) * self._ky

    def to_lonlat_arrays(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        x_a = np.asarray(x, dtype=np.float64)
        y_a = np.asarray(y, dtype=np.float64)
        return self.lon0 + x_a / self._kx, self.lat0 + y_a / self._ky
