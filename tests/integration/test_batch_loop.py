"""The service's batch loop: each batch prepared while the one before it commits. A message that
trips a bug (in deciding, or in committing what it decided) is dead-lettered as `internal_error` and
everything around it goes through; the clock gets its turn while messages keep coming."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import tracker.stages.commit
import tracker.stages.monitor
from tests.helpers import Publisher, build_small_world, fix, wait_until

KIDS = ["Ara", "Bom", "Cho"]


async def _count(svc: Any, sql: str, *args: object) -> int:
    return int(await svc.pool.fetchval(sql, *args))


async def _stored_some(svc: Any) -> None:
    async def some() -> bool:
        return await _count(svc, "SELECT count(*) FROM positions") > 0

    await wait_until(some, 10)


def _taken(svc: Any) -> int:
    """Messages the service is done with: counted in ``messages_in`` once the batch holding them is
    committed, or in ``rejected["internal_error"]`` once one is dead-lettered on its own."""
    return int(svc.metrics.messages_in + svc.metrics.rejected["internal_error"])


async def _stored(svc: Any, before: int, published: int, stored: int) -> None:
    """Once every published message is taken (``before``: ``_taken`` before publishing), nothing more
    is on its way: exactly ``stored`` positions are there."""
    await wait_until(lambda: _taken(svc) >= before + published, 15)
    assert _taken(svc) == before + published
    assert await _count(svc, "SELECT count(*) FROM positions") == stored


def _walks(svc: Any, world: Any, t0: float, marked: tuple[str, int] | None = None) -> list[tuple[str, dict]]:
    """Each kid along the route, a fix every 10 s; ``marked``: (kid, index) of the fix with batt 13."""
    p = svc.settings.topic_prefix
    out = []
    for i in range(20):
        for name in KIDS:
            f = fix(-580 + 20 * i, 0, t0 + 10 * i)
            if marked == (name, i):
                f["batt"] = 13
            out.append((f"{p}tracker/v1/tags/{world.kids[name].tag}/position", f))
    return out


async def _publish(mqtt_url: str, messages: list[tuple[str, dict]]) -> None:
    def run() -> None:
        pub = Publisher(mqtt_url)
        try:
            for topic, payload in messages:
                pub.publish(topic, payload)
        finally:
            pub.close()

    await asyncio.to_thread(run)


async def test_a_message_that_trips_a_bug_in_deciding_is_dead_lettered_alone(
    service: Any, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, KIDS)
    await svc.reload_registry()
    real_step = tracker.stages.monitor.step

    def step(state: Any, obs: Any, ctx: Any, rules: Any, **kw: Any) -> Any:
        if obs.batt == 13:
            raise RuntimeError("a bug this fix triggers")
        return real_step(state, obs, ctx, rules, **kw)

    monkeypatch.setattr(tracker.stages.monitor, "step", step)
    messages = _walks(svc, world, time.time() - 400, marked=("Bom", 7))
    before = _taken(svc)
    await _publish(mqtt_url, messages)

    await _stored(svc, before, len(messages), stored=len(messages) - 1)
    dead = await svc.pool.fetch("SELECT reason, detail FROM dead_letters")
    assert [(r["reason"], r["detail"]) for r in dead] == [
        ("internal_error", "RuntimeError: a bug this fix triggers")
    ]
    assert svc.metrics.rejected["internal_error"] == 1
    # every kid's state goes on from its last fix, Bom's too
    states = await svc.pool.fetch("SELECT state FROM child_state")
    assert sorted(s["state"]["last_ts"] for s in states) == [messages[-1][1]["ts"]] * 3


async def test_a_message_whose_alert_trips_a_bug_in_committing_is_dead_lettered_alone(
    service: Any, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch holding it is not committed; the batch prepared on top of it is prepared again; its
    messages go through one by one, and the one whose SOS cannot be committed is dead-lettered."""
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, KIDS)
    await svc.reload_registry()
    cho = world.kids["Cho"].child_id
    real_apply = tracker.stages.commit.apply_events

    async def apply_events(conn: Any, events: list[Any], *args: Any) -> Any:
        if any(e.child_id == cho and e.event.kind.value == "sos" for e in events):
            raise RuntimeError("a bug this alert triggers")
        return await real_apply(conn, events, *args)

    monkeypatch.setattr(tracker.stages.commit, "apply_events", apply_events)
    messages = _walks(svc, world, time.time() - 400)
    sos = next(i for i, (topic, _) in enumerate(messages) if world.kids["Cho"].tag in topic and i > 30)
    messages[sos][1]["sos"] = True
    before = _taken(svc)
    await _publish(mqtt_url, messages)

    await _stored(svc, before, len(messages), stored=len(messages) - 1)
    dead = await svc.pool.fetch("SELECT reason, payload FROM dead_letters")
    assert [r["reason"] for r in dead] == ["internal_error"]
    assert b'"sos": true' in dead[0]["payload"]
    # no SOS alert: it could not be committed; Cho's other fixes went through (arrived home, as all)
    kinds = await svc.pool.fetch("SELECT child_id, kind FROM alerts ORDER BY child_id")
    assert [(r["child_id"], r["kind"]) for r in kinds] == [
        (world.kids[name].child_id, "arrived_home") for name in KIDS
    ]


async def test_the_clock_gets_its_turn_while_messages_keep_coming(service: Any, mqtt_url: str) -> None:
    svc = service
    async with svc.pool.acquire() as conn:
        world = await build_small_world(conn, KIDS)
    await svc.reload_registry()
    stop = threading.Event()
    p = svc.settings.topic_prefix

    def stream() -> None:
        pub = Publisher(mqtt_url)
        t = time.time() - 3000
        try:
            while not stop.is_set():
                for name in KIDS:
                    pub.publish(f"{p}tracker/v1/tags/{world.kids[name].tag}/position", fix(-300, 0, t))
                t += 1
        finally:
            pub.close()

    streaming = asyncio.create_task(asyncio.to_thread(stream))
    try:
        await _stored_some(svc)
        for _ in range(3):
            started = time.monotonic()
            await asyncio.wait_for(svc.pipeline.tick(), 5)
            assert time.monotonic() - started < 5
        batches = svc.metrics.batches
        await wait_until(lambda: svc.metrics.batches > batches + 2, 5)  # and the batches go on
    finally:
        stop.set()
        await streaming
