"""Local projection lon/lat (WGS84 degrees) → metres east/north of a city-centre origin.

The projection is an equirectangular tangent plane scaled by the WGS84 ellipsoid's radii of curvature
at the origin's latitude::

    x = N(lat0) · cos(lat0) · Δlon      (prime-vertical radius N, Δ in radians)
    y = M(lat0) · Δlat                  (meridional radius M)

Each axis is an affine function of one coordinate only, so the projection maps polygon validity,
point-in-polygon and axis-aligned boxes in lon/lat exactly onto their metre counterparts. It is meant
for one city: within ±15 km of the origin (a 30 km square around Seoul) Euclidean distances in it agree
with the geodesic distance on the ellipsoid to better than 0.5 % (the tests check it against
``pyproj.Geod('WGS84')``). Longitudes are not wrapped: do not use it across the antimeridian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["WGS84_A", "WGS84_F", "LocalProjection"]

WGS84_A = 6_378_137.0
"""WGS84 semi-major axis in metres."""
WGS84_F = 1.0 / 298.257223563
"""WGS84 flattening."""
_E2 = WGS84_F * (2.0 - WGS84_F)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LocalProjection:
    """Tangent-plane projection around ``(lon0, lat0)`` (degrees); see the module docstring.

    ``kx`` and ``ky`` are the metres per degree of longitude and latitude at the origin.
    """

    lon0: float
    lat0: float
    kx: float = field(init=False, repr=False, compare=False)
    ky: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lon0, lat0 = float(self.lon0), float(self.lat0)
        if not (math.isfinite(lon0) and -180.0 <= lon0 <= 180.0):
            raise ValueError(f"projection origin longitude out of range: {self.lon0!r}")
        if not (math.isfinite(lat0) and -89.0 <= lat0 <= 89.0):
            raise ValueError(f"projection origin latitude out of range (|lat| <= 89): {self.lat0!r}")
        phi = math.radians(lat0)
        w = 1.0 - _E2 * math.sin(phi) ** 2
        n = WGS84_A / math.sqrt(w)  # prime vertical radius of curvature
        m = WGS84_A * (1.0 - _E2) / (w * math.sqrt(w))  # meridional radius of curvature
        object.__setattr__(self, "lon0", lon0)
        object.__setattr__(self, "lat0", lat0)
        object.__setattr__(self, "kx", n * math.cos(phi) * math.pi / 180.0)
        object.__setattr__(self, "ky", m * math.pi / 180.0)

    @classmethod
    def around(cls, lons: npt.ArrayLike, lats: npt.ArrayLike) -> LocalProjection:
        """Projection whose origin is the centre of the bounding box of the given coordinates.

        Non-finite values are ignored; raises ``ValueError`` when no finite coordinate is left.
        """
        lo = np.asarray(lons, dtype=np.float64).ravel()
        la = np.asarray(lats, dtype=np.float64).ravel()
        lo = lo[np.isfinite(lo)]
        la = la[np.isfinite(la)]
        if lo.size == 0 or la.size == 0:
            raise ValueError("LocalProjection.around needs at least one finite coordinate")
        return cls(
            lon0=0.5 * (float(lo.min()) + float(lo.max())), lat0=0.5 * (float(la.min()) + float(la.max()))
        )

    def to_xy(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Metres east and north of the origin (float64 arrays shaped like the inputs)."""
        lon_a = np.asarray(lon, dtype=np.float64)
        lat_a = np.asarray(lat, dtype=np.float64)
        x = (lon_a - self.lon0) * self.kx
        y = (lat_a - self.lat0) * self.ky
        return x, y

    def to_lonlat(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Inverse of :meth:`to_xy` (up to floating-point rounding)."""
        x_a = np.asarray(x, dtype=np.float64)
        y_a = np.asarray(y, dtype=np.float64)
        return x_a / self.kx + self.lon0, y_a / self.ky + self.lat0
