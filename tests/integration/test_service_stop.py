"""Stopping the service finishes even when PostgreSQL went away under it (an operator's Ctrl-C or a
container's SIGTERM must not hang on a dead database)."""

from __future__ import annotations

import asyncio

import asyncpg

from tracker.service import STOP_TIMEOUT_S, Service


async def test_stop_finishes_when_the_database_was_dropped_under_the_service(
    database_url: str, mqtt_url: str, pg_admin_url: str, settings_for
) -> None:  # type: ignore[no-untyped-def]
    svc = Service(settings_for(database_url, mqtt_url), database_url, mqtt_url)
    await svc.start()
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # every connection is cut
    finally:
        await admin.close()
    await asyncio.sleep(1.0)  # let the loops notice and start retrying
    await asyncio.wait_for(svc.stop(), timeout=3 * STOP_TIMEOUT_S)  # raises TimeoutError if it hangs
    assert svc.pool._closed  # the pool was closed or terminated, not left behind
