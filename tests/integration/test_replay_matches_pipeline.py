"""``tracker replay --world ... --alerts-out ...`` raises the alerts the live pipeline raises.

One world (a school, a route with a commute window and an arrival time, two danger zones, one of
them with hours) is written into PostgreSQL, and six children's morning is fed, batch by batch as
received, through the real pipeline (decode, admit, geofence, monitor, the commit to PostgreSQL),
with the service's clock pass (``Pipeline.tick``) every ``TRACKER_TICK_S`` of the fixes' time. The
same fixes, as a CSV, and the world as ``GET /api/v1/world`` gives it, go through ``tracker replay``.
The alerts table and the replay's lines must agree on every alert: child, kind, zone, severity,
opened_at, resolved_at.

The morning: Ara walks into the construction site and out again (off her route meanwhile); Bomi
leaves her route across a zone that is dangerous only later in the morning; Chan presses SOS on a
low battery; Dami's tag is silent for ten minutes in the window; Eun stops half-way and does not
arrive by 08:40; Gyu, on the same route, never sends a fix at all (not arrived either).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.helpers import line, lonlat, square
from tracker.cli import main as tracker_cli
from tracker.config import Settings
from tracker.ingest.decode import RawMessage
from tracker.metrics import Metrics
from tracker.monitor import public_holidays
from tracker.offline import clock_passes
from tracker.pipeline import Pipeline
from tracker.registry_view import build_view
from tracker.store.alert_rules import load_alert_rules
from tracker.store.db import create_pool
from tracker.store.registry_rows import load_registry, load_world
from tracker.store.seeding import add_child, add_route, add_school, add_tag, add_zone

SEOUL = ZoneInfo("Asia/Seoul")
INTERVAL_S = 10.0
RECEIVED_AFTER_S = 0.5  # each fix reaches the tracker half a second after it was taken
TICK_S = Settings.model_fields["tick_s"].default
SIGNAL_LOST_S = Settings.model_fields["signal_lost_s"].default


def school_day() -> date:
    """A weekday at least a week ago that is no Korean public holiday."""
    day = date.today() - timedelta(days=7)
    while day.weekday() >= 5 or day in public_holidays("KR"):
        day -= timedelta(days=1)
    return day


def seoul(day: date, hhmm: str) -> float:
    return datetime.combine(day, time.fromisoformat(hhmm), SEOUL).timestamp()


Path_ = Callable[[float], tuple[float, float] | None]  # seconds since 07:45 -> (x, y) metres, None: silent


def walk(speed: float = 1.0, stop_at: float = 0.0) -> Path_:
    """Along the route (y = 0) from x = -600 east to the school at 0 (or ``stop_at``), then there."""
    return lambda s: (max(-600.0 + speed * s, -600.0) if -600.0 + speed * s < stop_at else stop_at, 0.0)


def detour(base: Path_, start: float, end: float, to: tuple[float, float]) -> Path_:
    """``base``, but at ``to`` from ``start`` to ``end`` (seconds since 07:45)."""
    return lambda s: to if start <= s < end else base(s)


def silent(base: Path_, start: float, end: float) -> Path_:
    return lambda s: None if start <= s < end else base(s)


def morning(day: date) -> list[tuple[str, float, float, float, float, float, bool, int]]:
    """(tag, ts, received, lon, lat, acc, sos, batt) of every fix, in the order taken."""
    t0 = seoul(day, "07:45")
    slow = 0.5  # the walk takes 20 minutes
    paths: dict[str, Path_] = {
        "tag-ara": detour(walk(slow), 600, 720, (-300.0, 150.0)),  # the construction site, 2 minutes
        "tag-bomi": detour(walk(slow), 900, 1080, (-150.0, -150.0)),  # the night works, not yet dangerous
        "tag-chan": walk(slow),
        "tag-dami": silent(walk(slow), 480, 1080),  # ten minutes without a fix
        "tag-eun": walk(slow, stop_at=-400.0),  # stops 400 m short of the school
    }
    out = []
    for k in range(int(3600 / INTERVAL_S)):  # 07:45-08:45
        s = k * INTERVAL_S
        for tag, path in paths.items():
            xy = path(s)
            if xy is None:
                continue
            lon, lat = lonlat(*xy)
            sos = tag == "tag-chan" and s == 1200.0
            batt = 12 if tag == "tag-chan" and s >= 1200.0 else 80
            out.append((tag, t0 + s, t0 + s + RECEIVED_AFTER_S, lon, lat, 8.0, sos, batt))
    return out


async def test_replay_raises_the_alerts_the_pipeline_raises(database_url: str, tmp_path: Path) -> None:
    day = school_day()
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            school = await add_school(conn, name="Replay School", lon=lonlat(0, 0)[0], lat=lonlat(0, 0)[1])
            route = await add_route(
                conn,
                school_id=school,
                name="East walk",
                geometry=line((-600, 0), (0, 0)),
                corridor_m=30,
                windows=[{"days": [0, 1, 2, 3, 4], "start": "07:30", "end": "09:00"}],
            )
            await conn.execute(
                "UPDATE routes SET arrivals = $2 WHERE id = $1",
                route,
                [{"days": [0, 1, 2, 3, 4], "time": "08:40", "to": "school"}],
            )
            site = await add_zone(
                conn, name="Construction site", kind="construction", geometry=square(-300, 150, 40)
            )
            works = await add_zone(
                conn,
                name="Night works",
                kind="road_works",
                geometry=square(-150, -150, 40),
                severity="warning",
            )
            await conn.execute(
                "UPDATE danger_zones SET hours = $2 WHERE id = $1",
                works,
                [{"days": [0, 1, 2, 3, 4], "start": "08:30", "end": "09:00"}],
            )
            children: dict[str, int] = {}
            for name in ("Ara", "Bomi", "Chan", "Dami", "Eun", "Gyu"):
                children[name] = await add_child(conn, school_id=school, route_id=route, name=name)
                await add_tag(conn, tag_id=f"tag-{name.lower()}", child_id=children[name])
            rows, rules = await load_registry(conn), await load_alert_rules(conn)
            world = await load_world(conn)  # what GET /api/v1/world answers
        settings = Settings(database_url=database_url, mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]
        view = build_view(
            rows, default_timezone=settings.default_timezone, rules=rules, home_fence_m=settings.home_fence_m
        )
        pipeline = Pipeline(pool=pool, view=lambda: view, settings=settings, metrics=Metrics())

        fixes = morning(day)
        # the live service: batches as received (by the second), the clock every TICK_S between them
        batches: dict[int, list[RawMessage]] = {}
        for n, (tag, ts, received, lon, lat, acc, sos, batt) in enumerate(fixes):
            payload = {"ts": ts, "lon": lon, "lat": lat, "acc": acc, "sos": sos, "batt": batt}
            batches.setdefault(math.floor(received), []).append(
                RawMessage(
                    f"tracker/v1/tags/{tag}/position", json.dumps(payload).encode(), received, n + 1, 1
                )
            )
        last_pass = fixes[0][2] - TICK_S  # the clock has been running: its last pass before the first fix
        for _second, messages in sorted(batches.items()):
            for t in clock_passes(last_pass, messages[0].received_at, TICK_S):
                await pipeline.tick(t)
                last_pass = t
            outcome = await pipeline.process(messages)
            assert outcome.stored == len(messages) and not outcome.rejected
        end = fixes[-1][2] + SIGNAL_LOST_S + TICK_S
        for t in clock_passes(last_pass, end + 1e-9, TICK_S):
            await pipeline.tick(t)
        live = {
            (r["child_id"], r["kind"], r["zone_id"], r["severity"], r["opened_at"], r["resolved_at"])
            for r in await pool.fetch(
                "SELECT child_id, kind, zone_id, severity, opened_at, resolved_at FROM alerts"
            )
        }
    finally:
        await pool.close()

    # the same fixes and the world through `tracker replay`
    world_path = tmp_path / "world.geojson"
    world_path.write_text(json.dumps(world), encoding="utf-8")
    fixes_path = tmp_path / "fixes.csv"
    lines = ["tag,ts,received,lon,lat,acc,sos,batt"]
    for tag, ts, received, lon, lat, acc, sos, batt in fixes:
        when = datetime.fromtimestamp(ts, UTC).isoformat()  # ISO 8601 and unix seconds both read
        lines.append(f"{tag},{when},{received!r},{lon!r},{lat!r},{acc},{str(sos).lower()},{batt}")
    fixes_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    alerts_path = tmp_path / "alerts.jsonl"

    def run(*argv: str) -> int:
        try:
            tracker_cli(list(argv))
        except SystemExit as e:
            return int(e.code or 0)
        return 0

    argv = ["replay", "--world", str(world_path), str(fixes_path), "--alerts-out", str(alerts_path)]
    assert await asyncio.to_thread(run, *argv) == 0
    replayed = [json.loads(x) for x in alerts_path.read_text(encoding="utf-8").splitlines()]

    def at(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text)

    offline = {
        (a["child_id"], a["kind"], a["zone_id"], a["severity"], at(a["opened_at"]), at(a["resolved_at"]))
        for a in replayed
    }
    assert len(offline) == len(replayed)  # each alert once
    assert offline == live

    # and the morning holds the incidents it was written for
    kinds = {(c, k, z, r is None) for c, k, z, _s, _o, r in live}
    ara, bomi, chan, dami, eun, gyu = (children[n] for n in ("Ara", "Bomi", "Chan", "Dami", "Eun", "Gyu"))
    assert (ara, "danger_zone", site, False) in kinds and (ara, "left_route", None, False) in kinds
    assert (bomi, "left_route", None, False) in kinds
    assert not any(z == works for _c, _k, z, _r in kinds)  # its hours had not begun
    assert (chan, "sos", None, True) in kinds and (chan, "low_battery", None, False) in kinds
    assert (dami, "signal_lost", None, False) in kinds
    assert (eun, "not_arrived_school", None, True) in kinds and (
        gyu,
        "not_arrived_school",
        None,
        True,
    ) in kinds
    assert (ara, "arrived_school", None, False) in kinds and (eun, "arrived_school", None, False) not in kinds

    by_kind = {(a["child_id"], a["kind"]): a for a in replayed}
    zone_alert = by_kind[(ara, "danger_zone")]
    assert zone_alert["tag"] == "tag-ara" and zone_alert["zone_id"] == site and zone_alert["route_id"] is None
    assert zone_alert["fix"]["line"] > 1 and zone_alert["fix"]["acc"] == 8.0
    assert zone_alert["severity"] == "critical" and zone_alert["resolved_by"] == "left_zone"
    lost = by_kind[(dami, "signal_lost")]
    assert lost["fix"] is None and lost["route_id"] == route and lost["resolved_by"] == "signal_back"
