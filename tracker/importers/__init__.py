"""Routes and danger zones from files and requests: GeoJSON (RFC 7946) and GPX, checked before they
are stored (structure, then the geofence index's own validation), and written back out."""

from tracker.importers.features import Draft, ImportDefaults, Problem, pydantic_problems, read_import
from tracker.importers.geojson import GeometryProblem, validate_route_geometry, validate_zone_geometry
from tracker.importers.gpx import GpxError, read_gpx, write_gpx

__all__ = [
    "Draft",
    "GeometryProblem",
    "GpxError",
    "ImportDefaults",
    "Problem",
    "pydantic_problems",
    "read_gpx",
    "read_import",
    "validate_route_geometry",
    "validate_zone_geometry",
    "write_gpx",
]
