"""The HTTP ingest's answer is the pipeline's own outcome for the request's message, through the real
pipeline (real PostgreSQL, the running service): 200 when its fix is stored (a repeat of a stored fix
too: retrying is safe), 400 with the dead letter's reason, 429 with ``Retry-After`` when the tag is
over its rate, 500 when a bug met it (kept as a dead letter). Each refusal is in ``dead_letters``
with the same reason the answer gives."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import tracker.stages.monitor
from tests.conftest import forget_mqtt_session
from tests.helpers import build_small_world, lonlat
from tracker.store.devices import link_device
from tracker.store.tokens import issue_token

RATE_PER_S = 0.01  # a token every 100 s: a test never sees one come back
BURST = 2
DEVICE = "48241179"


@pytest.fixture
async def slow_tag_service(database_url: str, mqtt_url: str, settings_for) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    from tracker.service import Service

    settings = settings_for(database_url, mqtt_url, tag_rate_per_s=RATE_PER_S, tag_burst=BURST)
    svc = Service(settings, database_url, mqtt_url)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
        await asyncio.to_thread(forget_mqtt_session, mqtt_url, settings.mqtt_client_id)


async def _bob(service: Any) -> tuple[Any, str]:
    async with service.pool.acquire() as conn:
        world = await build_small_world(conn, ["Bob"])
        bob = world.kids["Bob"]
        await link_device(conn, tag_id=bob.tag, protocol="osmand", device=DEVICE)
        token = await issue_token(conn, role="device", tag_id=bob.tag)
    await service.reload_registry()
    return bob, token


def _fix(token: str, ts: float, **extra: object) -> dict[str, object]:
    lon, lat = lonlat(-200, 0)
    return {
        "id": DEVICE,
        "lat": lat,
        "lon": lon,
        "timestamp": int(ts),
        "accuracy": 8,
        "token": token,
        **extra,
    }


async def test_each_answer_is_the_pipelines_outcome_for_that_message(slow_tag_service: Any) -> None:
    service = slow_tag_service
    bob, token = await _bob(service)
    url = f"http://127.0.0.1:{service.settings.http_port}/ingest/osmand"
    now = time.time()
    first = _fix(token, now - 60)
    # (what the app sends, status, what the answer's detail starts with, dead letters by then, stored by then)
    scenario: list[tuple[str, dict[str, object], int, str, list[str], int]] = [
        ("a new fix", first, 200, "", [], 1),
        ("the same fix again (the app retries)", first, 200, "", [], 1),
        ("stamped an hour ahead", _fix(token, now + 3600), 400, "future_timestamp", ["future_timestamp"], 1),
        ("the app says it is not valid", _fix(token, now - 50, valid="false"), 400, "invalid_fix",
         ["future_timestamp", "invalid_fix"], 1),
        ("a latitude that is no latitude", _fix(token, now - 45, lat=123.0), 400, "schema_violation",
         ["future_timestamp", "invalid_fix", "schema_violation"], 1),
        ("a third fix within the burst of two", _fix(token, now - 40), 429, "rate_limited",
         ["future_timestamp", "invalid_fix", "schema_violation", "rate_limited"], 1),
    ]  # fmt: skip
    async with httpx.AsyncClient() as http:
        for what, params, status, detail, dead, stored in scenario:
            r = await http.post(url, params=params)
            assert r.status_code == status, (what, r.text)
            if status == 200:
                assert r.json() == {"fixes": 1}, what
            else:
                assert r.json()["detail"].startswith(f"{detail}: "), (what, r.text)
            if status == 429:
                assert r.headers["retry-after"] == str(math.ceil(1 / RATE_PER_S)), what
            # committed before the answer: the tables already say the same
            reasons = await service.pool.fetch("SELECT reason FROM dead_letters ORDER BY id")
            assert [x["reason"] for x in reasons] == dead, what
            count = await service.pool.fetchval("SELECT count(*) FROM positions WHERE tag_id = $1", bob.tag)
            assert count == stored, what


async def test_a_message_a_bug_meets_is_answered_500_and_kept(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = await _bob(service)
    real_step = tracker.stages.monitor.step

    def step(state: Any, obs: Any, ctx: Any, rules: Any, **kw: Any) -> Any:
        if obs.acc == 13:
            raise RuntimeError("a bug this fix triggers")
        return real_step(state, obs, ctx, rules, **kw)

    monkeypatch.setattr(tracker.stages.monitor, "step", step)
    url = f"http://127.0.0.1:{service.settings.http_port}/ingest/osmand"
    async with httpx.AsyncClient() as http:
        r = await http.post(url, params=_fix(token, time.time() - 30, accuracy=13))
        assert (r.status_code, r.json()["detail"]) == (
            500,
            "internal_error: RuntimeError: a bug this fix triggers",
        )
        fine = await http.post(url, params=_fix(token, time.time() - 20))
        assert (fine.status_code, fine.json()) == (200, {"fixes": 1})
    dead = await service.pool.fetch("SELECT reason, payload FROM dead_letters")
    assert [d["reason"] for d in dead] == ["internal_error"]
    assert b"accuracy=13" in dead[0]["payload"] and b"token=" not in dead[0]["payload"]
