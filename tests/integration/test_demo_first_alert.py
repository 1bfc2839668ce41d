"""`make run`'s first look: the demo city, its simulator with the options `make run` gives it
(tracker.demo.script.simulator_options) and the real service over MQTT; within the first minute the
demo guardian (whom `make run`'s parent link signs in as) gets an alert on their websocket, live, and
the school page's socket (/ws/school, with the token of `make run`'s school link: staff of the demo
guardian's school) gets it too, live, and it is in the school's day's list (today in the school's time
zone, as the school page asks for it)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx

from simulator import run_simulator
from tests.helpers import GuardianSocket
from tracker.demo.city import load_demo_city
from tracker.demo.script import demo_child, simulator_options
from tracker.store.registry_rows import load_registry, world_geojson
from tracker.store.tokens import issue_token


async def test_the_demo_guardian_sees_an_alert_within_the_first_minute(  # type: ignore[no-untyped-def]
    service, mqtt_url: str, tmp_path
) -> None:
    svc = service
    async with svc.pool.acquire() as conn:
        city = await load_demo_city(conn, children=12)
        child = await demo_child(conn, city.demo_guardian_id)
        again = await demo_child(conn, city.demo_guardian_id)  # a kept database: the same child, unchanged
        first_told = await conn.fetchval(
            "SELECT guardian_id FROM child_guardians WHERE child_id = $1 ORDER BY priority LIMIT 1",
            child.child_id,
        )
        guardian = await issue_token(conn, role="guardian", guardian_id=city.demo_guardian_id)
        school_id = await conn.fetchval(  # the school of make run's school link (tracker.cli)
            "SELECT min(school_id) FROM children c JOIN child_guardians g ON g.child_id = c.id"
            " WHERE g.guardian_id = $1",
            city.demo_guardian_id,
        )
        child_school = await conn.fetchval("SELECT school_id FROM children WHERE id = $1", child.child_id)
        timezone = await conn.fetchval("SELECT timezone FROM schools WHERE id = $1", school_id)
        staff = await issue_token(conn, role="school", school_id=school_id)
        world = world_geojson(await load_registry(conn))
    assert again == child and first_told == city.demo_guardian_id
    assert school_id == child_school  # the school link's page is the scripted child's school's
    await svc.reload_registry()
    world_path = tmp_path / "demo-world.geojson"
    world_path.write_text(json.dumps(world, ensure_ascii=False), encoding="utf-8")
    options = simulator_options(svc.settings, world_path, mqtt_url, child.tag)
    assert options.schedule is not None and options.schedule.first_s < 60  # the defaults make run uses

    base = f"http://127.0.0.1:{svc.settings.http_port}"
    stop = asyncio.Event()
    sockets = f"ws://127.0.0.1:{svc.settings.http_port}"
    async with (
        GuardianSocket(f"{sockets}/ws?token={guardian}") as ws,
        GuardianSocket(f"{sockets}/ws/school?token={staff}") as school,  # hello first, as /ws
    ):
        started = time.time()
        simulation = asyncio.create_task(run_simulator(options, stop))
        try:
            arrived, message = await ws.wait_for(
                lambda m: (
                    m["type"] == "alert" and m["child"]["id"] == child.child_id and m["severity"] != "info"
                ),  # not the 'arrived home' notice of the child's first fixes
                60,
            )
            at_school, pushed = await school.wait_for(
                lambda m: m["type"] == "alert" and m["alert"]["id"] == message["alert_id"],
                max(1.0, started + 60 - time.time()),
            )
        finally:
            stop.set()
            summary = await simulation
    assert arrived - started < 60 and at_school - started < 60
    assert (pushed["alert"]["kind"], pushed["alert"]["state"]) == ("sos", "open")
    assert pushed["alert"]["child"]["id"] == child.child_id
    assert (message["kind"], message["severity"], message["transition"]) == ("sos", "critical", "opened")
    assert child.name in message["text"]  # the demo guardian reads English: "SOS from ..."
    assert summary.incidents.get("sos", 0) >= 1

    # the school page's day list (the server's filters it asks for) holds it too
    midnight = datetime.now(ZoneInfo(timezone)).replace(hour=0, minute=0, second=0, microsecond=0)
    async with httpx.AsyncClient(base_url=base) as http:
        page = (
            await http.get(
                "/api/v1/alerts",
                params={"since": midnight.isoformat(), "severity": ["critical", "warning"]},
                headers={"Authorization": f"Bearer {staff}"},
            )
        ).json()
    assert message["alert_id"] in [a["id"] for a in page["items"]]
