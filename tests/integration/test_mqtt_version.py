"""TRACKER_MQTT_VERSION: 'auto' speaks MQTT 5 where the broker does; '3.1.1' and '5' are what they say
(a deployment whose broker-config has set the window may keep 3.1.1, which costs paho less CPU per
message: docs/performance.md)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import forget_mqtt_session


@pytest.mark.parametrize("version, speaks_5", [("auto", True), ("3.1.1", False), ("5", True)])
async def test_the_ingest_speaks_the_version_asked(
    database_url: str, mqtt_url: str, settings_for, version: str, speaks_5: bool
) -> None:  # type: ignore[no-untyped-def]
    from tracker.service import Service

    settings = settings_for(database_url, mqtt_url, mqtt_version=version)
    svc = Service(settings, database_url, mqtt_url)
    await svc.start(http=False)
    try:
        assert svc.ingestor.connected
        assert svc.ingestor.mqtt5 is speaks_5  # the suite's Mosquitto 2 speaks MQTT 5
    finally:
        await svc.stop()
        await asyncio.to_thread(forget_mqtt_session, mqtt_url, settings.mqtt_client_id)
