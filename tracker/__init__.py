"""Real-time child-safety geofencing: school routes, danger zones, alerts to parents."""

__version__ = "0.1.0"
