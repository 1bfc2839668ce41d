"""Device simulator: virtual children walking real routes with GPS noise and scripted incidents.

A client of the tracker: it speaks the wire contract in ``schemas/`` and imports nothing from
``tracker``. The core (``FixGenerator``) makes fixes and ground truth without I/O; ``Simulator``
paces it with a clock and publishes over MQTT; ``python -m simulator`` is the command line.
"""

from simulator.core import FixGenerator, SimChild, SimConfig, Step, select_children
from simulator.gps import GpsConfig
from simulator.incidents import KINDS, IncidentConfig, IncidentSchedule, TruthRecord, read_truth
from simulator.messages import Fix, Position, encode_batch, encode_position
from simulator.projection import LocalProjection
from simulator.runner import SimOptions, Simulator, Summary, run_simulator
from simulator.walker import WalkConfig
from simulator.world import ChildSpec, Route, School, World, WorldError, Zone, load_world, parse_world

__all__ = [
    "KINDS",
    "ChildSpec",
    "Fix",
    "FixGenerator",
    "GpsConfig",
    "IncidentConfig",
    "IncidentSchedule",
    "LocalProjection",
    "Position",
    "Route",
    "School",
    "SimChild",
    "SimConfig",
    "SimOptions",
    "Simulator",
    "Step",
    "Summary",
    "TruthRecord",
    "WalkConfig",
    "World",
    "WorldError",
    "Zone",
    "encode_batch",
    "encode_position",
    "load_world",
    "parse_world",
    "read_truth",
    "run_simulator",
    "select_children",
]
