"""The demo's first look: one child whose alerts the demo guardian (the one `make run`'s parent link
signs in as) is told of first, and a script of incidents on it, so that a newcomer watching the
parent page and the school page sees an alert arrive within the first minute and again every few
minutes: an SOS about 40 s after the start (the quickest alert there is: one fix), then a walk into a
danger zone, a departure from the route, an SOS again, and so on (TRACKER_DEMO_FIRST_INCIDENT_S,
TRACKER_DEMO_INCIDENT_EVERY_S).

Every other child keeps the simulator's random incidents (tracker.cli starts it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg

from simulator import IncidentSchedule, SimOptions
from tracker.config import Settings

DEMO_KINDS = ("sos", "enter_zone", "leave_route")


@dataclass(frozen=True)
class DemoChild:
    child_id: int
    name: str
    tag: str


async def demo_child(conn: asyncpg.Connection, guardian_id: int) -> DemoChild:
    """The demo guardian's first child (lowest id, the first on the parent page), made the one whose
    alerts go to the demo guardian first: an alert opens to a child's first guardian only, and the
    others hear of it when it escalates, minutes later. Idempotent (a kept database is fixed up)."""
    row = await conn.fetchrow(
        "SELECT c.id, c.name, min(t.id) AS tag FROM child_guardians g JOIN children c ON c.id = g.child_id"
        " JOIN tags t ON t.child_id = c.id AND t.kind = 'gps'"
        " WHERE g.guardian_id = $1 GROUP BY c.id ORDER BY c.id LIMIT 1",
        guardian_id,
    )
    if row is None:
        raise LookupError(f"the demo guardian {guardian_id} has no child with a GPS tag")
    async with conn.transaction():
        # priorities are unique per child only by convention: move the others down, the demo guardian up
        await conn.execute(
            "UPDATE child_guardians SET priority = priority + 1 WHERE child_id = $1 AND guardian_id <> $2"
            " AND priority <= (SELECT priority FROM child_guardians"
            " WHERE child_id = $1 AND guardian_id = $2)",
            row["id"],
            guardian_id,
        )
        await conn.execute(
            "UPDATE child_guardians SET priority = 1 WHERE child_id = $1 AND guardian_id = $2",
            row["id"],
            guardian_id,
        )
    return DemoChild(row["id"], row["name"], row["tag"])


def demo_schedule(settings: Settings, tag: str) -> IncidentSchedule:
    return IncidentSchedule(
        tag=tag,
        first_s=settings.demo_first_incident_s,
        every_s=settings.demo_incident_every_s,
        kinds=DEMO_KINDS,
    )


def simulator_options(settings: Settings, world_path: Path, mqtt_url: str, tag: str) -> SimOptions:
    """What `make run`'s simulator runs: every child of the demo city walking, random incidents for
    some, and the demo child's schedule."""
    return SimOptions(
        world=str(world_path),
        mqtt_url=mqtt_url,
        prefix=settings.topic_prefix,
        incident_fraction=0.3,  # 30 % of the children have one scripted incident in the first hour
        incidents_per_hour=0.2,  # and every child a few more as time goes on
        schedule=demo_schedule(settings, tag),
        truth_path=str(settings.data_dir / "demo-truth.jsonl"),
        quiet=True,
    )


def describe(child: DemoChild, settings: Settings) -> str:
    """The line `make run` prints about it."""
    return (
        f"{child.name} ({child.tag}) presses SOS {settings.demo_first_incident_s:.0f} s after the start,"
        f" then every {settings.demo_incident_every_s / 60:.0f} min walks into a danger zone, off the route"
        " or presses SOS again"
    )
