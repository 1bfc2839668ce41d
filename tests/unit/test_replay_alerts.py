"""``tracker replay --world ... --alerts-out ...``: its input errors, the world it reads, and the open
alerts it keeps (one per child, kind and zone, as the alerts table's unique index keeps them).

That its alerts are the live pipeline's: tests/integration/test_replay_matches_pipeline.py."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import line, lonlat, square
from tracker.alerts.lifecycle import AlertRule, ChildEvent, change_of
from tracker.config import Settings
from tracker.monitor import Event, EventKind
from tracker.offline import AlertLedger, clock_passes
from tracker.replay import ReplayError, add_arguments, read_fixes, replay_alerts, run

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, a Friday: 17:00 in Seoul


def world() -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(lonlat(0, 0))},
                "properties": {"kind": "school", "id": 1, "timezone": "Asia/Seoul"},
            },
            {
                "type": "Feature",
                "geometry": square(-300, 150, 40),
                "properties": {"kind": "zone", "id": 5, "name": "pit", "zone_kind": "construction"},
            },
            {
                "type": "Feature",
                "geometry": line((-600, 0), (0, 0)),
                "properties": {
                    "kind": "route",
                    "id": 3,
                    "name": "walk",
                    "school_id": 1,
                    "corridor_m": 30,
                    "children": [{"id": 7, "tag": "tag-7"}],
                },
            },
        ],
    }


def settings() -> Settings:
    return Settings(database_url="postgresql://unused/x", mqtt_url="mqtt://unused:1")  # type: ignore[call-arg]


def in_the_pit(who: str, n: int = 3, header: str = "tag,ts,lon,lat,acc") -> list[str]:
    lon, lat = lonlat(-300, 150)
    return [header] + [f"{who},{T0 + 10 * k},{lon!r},{lat!r},5" for k in range(n)]


@pytest.mark.parametrize("header, who", [("tag,ts,lon,lat,acc", "tag-7"), ("child,ts,lon,lat,acc", "7")])
def test_a_fix_row_may_name_the_child_instead_of_the_tag(header: str, who: str) -> None:
    result = replay_alerts(read_fixes(in_the_pit(who, header=header)), world(), settings=settings())
    assert [(a["child_id"], a["tag"], a["kind"], a["zone_id"], a["route_id"]) for a in result.alerts] == [
        (7, "tag-7", "danger_zone", 5, None)
    ]
    alert = result.alerts[0]
    assert alert["opened_at"] == "2027-01-15T08:00:10Z" and alert["resolved_at"] is None
    assert alert["fix"]["line"] == 3 and alert["updates"] == 0


def test_unknown_tags_are_refused_as_the_front_refuses_them() -> None:
    result = replay_alerts(read_fixes(in_the_pit("stranger")), world(), settings=settings())
    assert result.alerts == [] and result.refused == {"unknown_tag": 3}


def test_the_zone_hours_and_severity_of_the_world_are_used() -> None:
    doc = world()
    doc["features"][1]["properties"] |= {"severity": "warning"}
    result = replay_alerts(read_fixes(in_the_pit("tag-7")), doc, settings=settings())
    assert [a["severity"] for a in result.alerts] == ["warning"]
    # dangerous only in the morning (Seoul): at 17:00 nothing
    doc["features"][1]["properties"] |= {"hours": [{"days": [4], "start": "07:00", "end": "09:00"}]}
    assert replay_alerts(read_fixes(in_the_pit("tag-7")), doc, settings=settings()).alerts == []
    doc["features"][1]["properties"] |= {"active": False}
    assert replay_alerts(read_fixes(in_the_pit("tag-7")), world() | doc, settings=settings()).alerts == []


BAD_WORLDS = [
    (
        "corridor not a number",
        lambda d: d["features"][2]["properties"].update(corridor_m="wide"),
        "world: features[2].properties.corridor_m: ",
    ),
    (
        "child without id",
        lambda d: d["features"][2]["properties"].update(children=[{"tag": "x"}]),
        "world: features[2].properties.children[0].id: ",
    ),
    (
        "school without a point",
        lambda d: d["features"][0].update(geometry={"type": "Point", "coordinates": [127.0]}),
        "world: features[0].geometry: a school is a Point",
    ),
    (
        "school latitude out of range",
        lambda d: d["features"][0]["geometry"].update(coordinates=[127.0, 95.0]),
        "world: features[0].geometry.coordinates: ",
    ),
    (
        "bad window",
        lambda d: d["features"][2]["properties"].update(windows=[{"start": "09:00", "end": "08:00"}]),
        "world: features[2].properties.windows[0]: window must start before it ends",
    ),
    (
        "bad arrival",
        lambda d: d["features"][2]["properties"].update(arrivals=[{"time": "8 o'clock"}]),
        "world: features[2].properties.arrivals[0].time: ",
    ),
    (
        "zone hours",
        lambda d: d["features"][1]["properties"].update(hours=[{"start": "7", "end": "9"}]),
        "world: features[1].properties.hours[0].start: ",
    ),
    (
        "unknown time zone",
        lambda d: d["features"][0]["properties"].update(timezone="Mars/Olympus"),
        "world: features[0].properties.timezone: unknown time zone 'Mars/Olympus'",
    ),
    (
        "a zone the index refuses",
        lambda d: d["features"][1]["geometry"].update(
            coordinates=[[list(lonlat(0, 0)), list(lonlat(10, 0)), list(lonlat(20, 0)), list(lonlat(0, 0))]]
        ),
        "world: features[1] (zone 5): ",
    ),
]


@pytest.mark.parametrize("spoil, message", [b[1:] for b in BAD_WORLDS], ids=[b[0] for b in BAD_WORLDS])
def test_a_bad_world_is_named_by_the_feature_path(spoil: Any, message: str) -> None:
    doc = world()
    spoil(doc)
    with pytest.raises(ReplayError, match="^" + re.escape(message)):
        replay_alerts(read_fixes(in_the_pit("tag-7")), doc, settings=settings())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracker replay")
    add_arguments(p)
    return p


def test_command_line_errors_name_the_file_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "world.geojson"
    doc.write_text(json.dumps(world()), encoding="utf-8")
    fixes = tmp_path / "fixes.csv"
    out = tmp_path / "alerts.jsonl"

    def replay(*extra: str) -> tuple[int, str]:
        code = run(parser().parse_args([str(fixes), *extra]))
        return code, capsys.readouterr().err

    cases = [
        ("tag,ts,lon,lat,acc\ntag-7,1,127,37.5,5\ntag-7,2,127,37.5,lots\n", f"{fixes}: line 3: acc 'lots'"),
        ("tag,ts,lon,lat,acc,sos\ntag-7,1,127,37.5,5,maybe\n", f"{fixes}: line 2: sos 'maybe'"),
        ("tag,ts,received,lon,lat,acc\ntag-7,1,soon,127,37.5,5\n", f"{fixes}: line 2: received 'soon'"),
        ("child,ts,lon,lat,acc\n\n99,1,127,37.5,5\n", f"{fixes}: line 3: child '99' has no tag in the world"),
    ]
    for text, message in cases:
        fixes.write_text(text, encoding="utf-8")
        code, err = replay("--world", str(doc), "--alerts-out", str(out))
        assert code == 2 and message in err, err

    fixes.write_text("\n".join(in_the_pit("tag-7")) + "\n", encoding="utf-8")
    bad = world()
    bad["features"][2]["properties"]["corridor_m"] = -1
    broken = tmp_path / "broken.geojson"
    broken.write_text(json.dumps(bad), encoding="utf-8")
    code, err = replay("--world", str(broken), "--alerts-out", str(out))
    assert code == 2 and "world: features[2].properties.corridor_m: " in err
    code, err = replay("--alerts-out", str(out), "--zones", str(doc))
    assert code == 2 and "--alerts-out needs --world" in err
    code, err = replay()
    assert code == 2 and "give --world" in err
    code, err = replay("--world", str(doc), "--alerts-out", str(out), "--until", "later")
    assert code == 2 and "--until 'later'" in err
    code, err = replay("--world", str(tmp_path / "missing.geojson"), "--alerts-out", str(out))
    assert code == 2 and "missing.geojson" in err

    code, err = replay("--world", str(doc), "--alerts-out", str(out), "--until", "2027-01-15T09:00:00Z")
    assert code == 0 and "3 fixes (none refused), 1 alerts (1 open at the end)" in err
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(a["kind"], a["zone_id"]) for a in lines] == [("danger_zone", 5)]
    # the world alone also gives the verdicts' zones and routes
    verdicts = tmp_path / "verdicts.csv"
    code, err = replay("--world", str(doc), "-o", str(verdicts))
    assert code == 0 and verdicts.read_text(encoding="utf-8").count("\n") == 4


# what one transition does to the alerts, by whether its incident has an open alert
CHANGES = [
    ("open", False, "opened"),
    ("open", True, "updated"),  # one incident is one alert
    ("resolve", True, "resolved"),
    ("resolve", False, "none"),  # nothing open: nothing to resolve
    ("notice", False, "noticed"),
    ("notice", True, "noticed"),  # a notice never stays open, so it never meets one
]


@pytest.mark.parametrize("action, is_open, change", CHANGES)
def test_change_of_a_transition(action: Any, is_open: bool, change: str) -> None:
    assert change_of(AlertRule("x", action, "warning"), is_open) == change


def test_the_ledger_keeps_one_open_alert_per_child_kind_and_zone() -> None:
    def ev(kind: EventKind, ts: float, zone: int | None = None, child: int = 1) -> ChildEvent:
        return ChildEvent(
            child, Event(kind, ts, zone), None, None, None, None, "warning" if zone == 9 else None
        )

    ledger = AlertLedger()
    ledger.apply(
        [
            ev(EventKind.ENTERED_ZONE, 10, 5),
            ev(EventKind.ENTERED_ZONE, 11, 9),  # another zone: another alert, with the zone's severity
            ev(EventKind.ENTERED_ZONE, 12, 5),  # the same incident again: updated
            ev(EventKind.ENTERED_ZONE, 12, 5, child=2),  # another child: another alert
            ev(EventKind.LEFT_ZONE, 20, 5),
            ev(EventKind.LEFT_ZONE, 21, 5),  # nothing open any more
            ev(EventKind.ENTERED_ZONE, 30, 5),  # a new incident
            ev(EventKind.ARRIVED, 40),  # resolves nothing (none open), notices the arrival
        ]
    )
    got = [
        (a.child_id, a.kind, a.zone_id, a.severity, a.opened_at, a.resolved_at, a.updates)
        for a in ledger.alerts
    ]
    assert got == [
        (1, "danger_zone", 5, "critical", 10, 20, 1),
        (1, "danger_zone", 9, "warning", 11, None, 0),
        (2, "danger_zone", 5, "critical", 12, None, 0),
        (1, "danger_zone", 5, "critical", 30, None, 0),
        (1, "arrived_school", None, "info", 40, 40, 0),
    ]


def test_clock_passes_are_the_multiples_of_the_tick_strictly_between() -> None:
    assert clock_passes(0.0, 20.0, 5.0) == [5.0, 10.0, 15.0]
    assert clock_passes(2.5, 10.5, 5.0) == [5.0, 10.0]
    assert clock_passes(5.0, 5.0, 5.0) == []
