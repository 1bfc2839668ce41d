"""Hot swap through the service (issue 3, point 3): a registry change in PostgreSQL is read and built
into a new view off the hot path, and swapped in while batches keep running; a batch answers entirely
from the view it took, and the batches after a swap answer from the new one.

What shows which view a fix was checked against: its stored route distance. One child stands still on
its route while its fixes stream in; the route is moved 12 m north and back, again and again, in
PostgreSQL. Under the first geometry every fix is 0 m from the route, under the second 12 m. In the
order the fixes were taken (one tag, one topic: the broker keeps their order, and the service commits
batches in order) the distance may change only where a swap happened: a batch that mixed two views, or
a half-built view, would show as a change of its own or as a distance that is neither.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import forget_mqtt_session
from tests.helpers import Publisher, build_small_world, fix, line, wait_until
from tracker.service import Service

ROUTES = (line((-600, 0), (0, 0)), line((-600, 12), (0, 12)))  # the route, and the route 12 m north
DISTANCES = (0.0, 12.0)  # of the child at (-300, 0) from each
SWAPS = 6


@pytest.fixture
async def unthrottled_service(database_url: str, mqtt_url: str, settings_for) -> AsyncIterator[Service]:  # type: ignore[no-untyped-def]
    """A service that stores every fix of a tag sending as fast as it can (no rate limit to speak of)."""
    settings = settings_for(database_url, mqtt_url, tag_rate_per_s=1e6, tag_burst=1_000_000)
    svc = Service(settings, database_url, mqtt_url)
    await svc.start(http=False)
    try:
        yield svc
    finally:
        await svc.stop()
        await asyncio.to_thread(forget_mqtt_session, mqtt_url, settings.mqtt_client_id)


def _which(distance_m: float) -> int:
    """The geometry a stored distance was measured from (an index into ROUTES)."""
    which = min(range(len(DISTANCES)), key=lambda k: abs(DISTANCES[k] - distance_m))
    assert abs(DISTANCES[which] - distance_m) < 1.0, f"{distance_m} m is from neither geometry"
    return which


async def test_a_registry_change_is_swapped_in_while_batches_run(
    unthrottled_service: Service, mqtt_url: str
) -> None:
    svc = unthrottled_service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, ["Dami"])
    await svc.reload_registry()
    kid = world.kids["Dami"]
    topic = f"{svc.settings.topic_prefix}tracker/v1/tags/{kid.tag}/position"
    stop = threading.Event()

    def stream() -> None:
        """Fixes 10 ms apart from ten minutes ago on (at most 500 s of them: never in the future)."""
        pub = Publisher(mqtt_url)
        t0 = time.time() - 600
        try:
            for i in range(50_000):
                if stop.is_set():
                    return
                pub.publish(topic, fix(-300, 0, t0 + i / 100))
        finally:
            pub.close()

    async def latest() -> Any:
        return await svc.pool.fetchval(
            "SELECT route_distance_m FROM positions WHERE tag_id = $1 ORDER BY ts DESC LIMIT 1", kid.tag
        )

    streaming = asyncio.create_task(asyncio.to_thread(stream))
    try:
        await wait_until(lambda: _is_from(latest, 0), 10)
        for k in range(1, SWAPS + 1):
            async with svc.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE routes SET geometry = $2::text::jsonb WHERE id = $1",
                    world.route_id,
                    json.dumps(ROUTES[k % 2]),
                )
            # every second change is swapped in by an explicit reload, the others by the service's
            # own listener (the trigger's NOTIFY registry_changed)
            if k % 2:
                await svc.reload_registry()
            await wait_until(lambda k=k: _is_from(latest, k % 2), 10)
    finally:
        stop.set()
        await streaming

    distances = await svc.pool.fetch(
        "SELECT route_distance_m FROM positions WHERE tag_id = $1 ORDER BY ts", kid.tag
    )
    seen = [_which(r["route_distance_m"]) for r in distances]
    changes = sum(a != b for a, b in itertools.pairwise(seen))
    assert changes == SWAPS, f"{changes} changes of view over {len(seen)} fixes for {SWAPS} swaps"


async def _is_from(latest: Any, which: int) -> bool:
    distance = await latest()
    return distance is not None and abs(DISTANCES[which] - distance) < 1.0
