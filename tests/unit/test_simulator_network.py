"""What the network and the devices do to fixes: duplicates, late (out-of-order) fixes, gaps, battery
drain; the other formats (OwnTracks, RFID gate sightings); the progress report; the scale."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from typing import Any

import msgspec
import pytest

from simulator.core import FixGenerator, SimConfig, select_children
from simulator.gps import GpsConfig
from simulator.incidents import IncidentConfig
from simulator.messages import (
    Fix,
    Position,
    encode_owntracks,
    encode_sightings,
    owntracks_topic,
    reader_topic,
)
from simulator.runner import SimOptions, Summary, progress_line
from tests.unit.test_simulator_walker import T0, tiny_world

QUIET = IncidentConfig(per_child_per_hour=0.0)


def sent(config: SimConfig, seconds: float, step_s: float = 10.0, children: int = 4) -> list[Fix]:
    generator = FixGenerator(tiny_world(children), config, T0)
    out: list[Fix] = []
    for step in generator.steps(step_s, seconds):
        out += step.fixes
    return out


def test_duplicates_are_exact_copies_sent_after_the_original() -> None:
    fixes = sent(SimConfig(seed=3, incidents=QUIET, duplicate_probability=0.1), 3 * 3600)
    copies = [i for i, f in enumerate(fixes) if f.delivery == "duplicate"]
    made = len(fixes) - len(copies)
    assert 0.06 * made < len(copies) < 0.14 * made
    first_seen: dict[tuple[str, float], int] = {}
    for i, f in enumerate(fixes):
        key = (f.tag, f.ts)
        if f.delivery == "duplicate":
            original = fixes[first_seen[key]]
            assert original.delivery is None and original.position == f.position and first_seen[key] < i
        else:
            assert key not in first_seen, "only copies repeat a fix"
            first_seen[key] = i


def test_late_fixes_come_after_fixes_made_later_and_nothing_is_lost() -> None:
    plain = sent(SimConfig(seed=3, incidents=QUIET), 3 * 3600)
    late = sent(SimConfig(seed=3, incidents=QUIET, late_probability=0.05), 3 * 3600)
    # the same fixes (the network's dice have their own stream), some of them in another order
    made_before_end = {(f.tag, f.ts) for f in plain if f.ts < T0 + 3 * 3600 - 120}
    assert made_before_end <= {(f.tag, f.ts) for f in late}
    assert len({(f.tag, f.ts) for f in late}) == len(late), "late is not doubled"
    per_tag: dict[str, list[Fix]] = defaultdict(list)
    for f in late:
        per_tag[f.tag].append(f)
    out_of_order = 0
    for fixes in per_tag.values():
        for a, b in itertools.pairwise(fixes):
            if b.ts < a.ts:
                out_of_order += 1
                assert a.ts - b.ts <= 120.0 + 20.0, "held back at most late_delay_s"
                assert b.delivery == "late"
    n_late = sum(f.delivery == "late" for f in late)
    assert out_of_order > 0 and 0.02 * len(late) < n_late < 0.08 * len(late)


def test_network_effects_do_not_depend_on_the_step_size() -> None:
    config = SimConfig(seed=11, incidents=QUIET, duplicate_probability=0.05, late_probability=0.05)
    coarse = sent(config, 3600, step_s=60.0)
    fine = sent(config, 3600, step_s=1.0)
    assert [(f.tag, f.ts, f.delivery) for f in coarse] == [(f.tag, f.ts, f.delivery) for f in fine]


def test_gaps_leave_stretches_without_fixes() -> None:
    plain = sent(SimConfig(seed=5, incidents=QUIET, interval_s=10.0), 4 * 3600)
    gappy = sent(SimConfig(seed=5, incidents=QUIET, interval_s=10.0, gap_probability=0.05), 4 * 3600)
    assert len(gappy) < len(plain)

    def longest_silence(fixes: list[Fix]) -> float:
        per_tag: dict[str, list[float]] = defaultdict(list)
        for f in fixes:
            per_tag[f.tag].append(f.ts)
        return max(max(b - a for a, b in itertools.pairwise(ts)) for ts in per_tag.values())

    assert longest_silence(plain) <= 10.0 * 1.2 + 1e-6
    # the last fix before a gap came at most one interval (+20 %) before it; a gap never follows a gap
    assert 20.0 < longest_silence(gappy) <= 12.0 + 90.0 + 1e-6


def test_battery_drains_a_few_percent_an_hour() -> None:
    fixes = sent(SimConfig(seed=2, incidents=QUIET), 5 * 3600)
    per_tag: dict[str, list[Fix]] = defaultdict(list)
    for f in fixes:
        per_tag[f.tag].append(f)
    for tag_fixes in per_tag.values():
        levels = [f.position.batt for f in tag_fixes]
        assert all(b <= a for a, b in itertools.pairwise(levels)), "never charges on the way"
        hours = (tag_fixes[-1].ts - tag_fixes[0].ts) / 3600
        assert 2.0 * hours - 1 <= levels[0] - levels[-1] <= 5.0 * hours + 1


def fix_with(sos: bool = False, acc: float = 12.4, ts: float = 1_750_000_000.9) -> Fix:
    position = Position(ts=ts, lat=37.5, lon=127.0, acc=acc, batt=77, seq=3, sos=sos)
    return Fix(
        tag="tag-0042",
        child_id=1,
        route_id=1,
        gateway="g",
        position=position,
        true_lon=127.0,
        true_lat=37.5,
    )


def test_owntracks_location_follows_the_documented_json() -> None:
    # https://owntracks.org/booklet/tech/json/ (_type=location): lat, lon, tst (whole seconds),
    # acc (whole metres), batt (%), tid (two characters); t="u" for a manual publish
    doc = json.loads(encode_owntracks(fix_with()))
    assert doc == {
        "_type": "location",
        "lat": 37.5,
        "lon": 127.0,
        "tst": 1_750_000_000,
        "acc": 12,
        "batt": 77,
        "tid": "42",
    }
    assert isinstance(doc["tst"], int) and isinstance(doc["acc"], int)
    assert json.loads(encode_owntracks(fix_with(sos=True)))["t"] == "u"
    assert json.loads(encode_owntracks(fix_with(acc=0.2)))["acc"] == 1
    assert owntracks_topic("city-a/", "tag-0042", "watch") == "city-a/owntracks/tag-0042/watch"


def test_rfid_sightings_follow_the_contract() -> None:
    assert json.loads(encode_sightings(1_750_000_000.12345, ["tag-1"])) == {
        "ts": 1_750_000_000.123,
        "tags": ["tag-1"],
    }
    assert reader_topic("p/", "sim-gate-1") == "p/tracker/v1/readers/sim-gate-1/sightings"


def test_gate_reader_sees_each_child_arrive_and_leave_in_turn() -> None:
    world = tiny_world(4)
    config = SimConfig(seed=4, incidents=QUIET, rfid_gates=True, gps=GpsConfig(enabled=False))
    generator = FixGenerator(world, config, T0)
    sightings = []
    fixes: list[Fix] = []
    for step in generator.steps(30.0, 6 * 3600):
        sightings += step.sightings
        fixes += step.fixes
    by_tag: dict[str, list[Any]] = defaultdict(list)
    for s in sightings:
        assert s.reader == "sim-gate-1"
        by_tag[s.tag].append(s)
    assert set(by_tag) == {f"tag-{i}" for i in range(4)}
    school_xy = world.projection.to_xy(*world.routes[0].parts[0][-1])
    for tag, seen in by_tag.items():
        events = [s.event for s in seen]
        assert events[0] == "arrive" and all(a != b for a, b in itertools.pairwise(events))
        assert [s.ts for s in seen] == sorted(s.ts for s in seen)
        # between arriving and leaving, every fix of the child is at the school's end of the route
        for arrive, leave in zip(seen[::2], seen[1::2], strict=False):
            at_school = [f for f in fixes if f.tag == tag and arrive.ts < f.ts < leave.ts]
            assert at_school
            for f in at_school:
                x, y = world.projection.to_xy(f.true_lon, f.true_lat)
                assert math.dist((x, y), school_xy) < 1.0


def test_without_rfid_there_are_no_sightings() -> None:
    generator = FixGenerator(tiny_world(2), SimConfig(seed=4, incidents=QUIET), T0)
    assert all(not step.sightings for step in generator.steps(60.0, 3 * 3600))


def test_progress_line_shows_a_bar_and_the_live_rate() -> None:
    s = Summary(fixes_sent=12_345, messages=12_345, acked=12_000, sim_start_ts=T0, sim_seconds=300.0)
    line = progress_line(s, rate=7512.4, lag_s=0.0, duration_s=600.0, broker_up=True)
    assert line.startswith("[" + "#" * 12 + "." * 12 + "]  50%")
    assert "7,512 fixes/s" in line and "sent 12,345" in line and "broker up" in line
    endless = progress_line(s, rate=1.0, lag_s=2.5, duration_s=None, broker_up=False)
    assert not endless.startswith("[") and "lag 2.5s" in endless and "DOWN" in endless


def test_four_hundred_thousand_children_get_distinct_tags() -> None:
    world = tiny_world(3)
    chosen = select_children(world, 400_000)
    assert len(chosen) == 400_000 and len({c.tag for c in chosen}) == 400_000
    assert Counter(c.replica == 0 for c in chosen)[True] == 3
    assert [c.tag for c in select_children(world, 1)] == ["tag-0"]


@pytest.mark.parametrize(
    "bad",
    [
        {"format": "gpx"},
        {"format": "owntracks", "batch": 10},
        {"owntracks_device": "a/b"},
        {"duplicates": 1.5},
        {"late": -0.1},
    ],
)
def test_contradictory_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimOptions(world="w.json", **bad)


def test_a_fix_struct_round_trips_with_its_delivery() -> None:
    f = msgspec.structs.replace(fix_with(), delivery="late")
    assert msgspec.json.decode(msgspec.json.encode(f), type=Fix).delivery == "late"


def test_after_a_lost_connection_nothing_goes_until_the_broker_is_back_and_all_before_is_acked() -> None:
    """paho marks a session connected before it sends what it queued while away: a fix published in
    between would reach the broker before them (simulator/publisher.py)."""
    from types import SimpleNamespace

    from simulator.publisher import MqttPublisher

    publisher = MqttPublisher("mqtt://127.0.0.1:1", high_water=100)  # (never started: no connection)
    ok = SimpleNamespace(is_failure=False)
    publisher._on_connect(publisher._client, None, None, ok, None)
    publisher.published, publisher.acked = 8, 5
    assert publisher.has_room  # connected, 3 waiting: below the high water
    publisher._on_disconnect(publisher._client, None, None, None, None)
    assert not publisher.has_room  # the broker is away
    publisher.acked = 8
    assert not publisher.has_room  # (nothing waits, but the broker is still away)
    publisher.acked = 6
    publisher._on_connect(publisher._client, None, None, ok, None)
    assert not publisher.has_room  # back, and paho is sending again the 2 it held
    publisher.acked = 8
    assert publisher.has_room
    publisher.published = 9
    assert publisher.has_room  # in order again: the usual back-pressure only
