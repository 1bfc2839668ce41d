"""Issue 15.3-15.4, the rules where routes meet zones, at any fix rate and with any clock, as scenario
tables on a street of a city (tests/unit/city_world.py: an arterial road drawn as a zone to its kerbs,
a walking route on its sidewalks that crosses it at a crosswalk, a shuttle route along it, a bicycle
route over it). Every fix goes through admission, the one function that geofences a batch, the
monitor's step and the clock's passes (tracker.offline.OfflineTracker)."""

from __future__ import annotations

import math

import pytest

from tests.unit.city_world import ROAD, SITE, T0, fix, path, run, street_view
from tracker.ingest.decode import Fix
from tracker.monitor import ChildState, Rules
from tracker.monitor.machine import STAMPED_AT_RECEIPT, _uplink
from tracker.offline import Alert, OfflineTracker

SIGMA35 = 35 / 1.5096


def kinds(alerts: list[Alert]) -> list[tuple[int, str, int | None]]:
    """The warnings and critical alerts (arrived home, at school: notices), in order of kind."""
    return sorted((a.child_id, a.kind, a.zone_id) for a in alerts if a.severity != "info")


def _zigzag(child: int, every_s: float, seconds: float, y_line: float, swing: float, acc: float) -> list[Fix]:
    """Walking east at 1.2 m/s on the line y = y_line, the fixes drifting ``swing`` m towards the road
    and back (GPS error correlated over ~45 s: a triangle wave of that period)."""
    out = []
    t = 0.0
    while t <= seconds:
        phase = (t % 45.0) / 45.0
        drift = swing * (1 - abs(2 * phase - 1))
        out.append(fix(child, t, -390 + 1.2 * t, y_line + drift, acc))
        t += every_s
    return out


def _episode(every_s: float) -> list[Fix]:
    """10 m off the sidewalk's line with 35 m accuracy, and for 24 s the error puts the fixes 2.6 sigma
    beyond the corridor (a drift, the same in time whatever the fix rate)."""
    out = []
    t = 0.0
    while t <= 120:
        off = 20 + 2.6 * SIGMA35 if 30 <= t < 54 else 10.0
        out.append(fix(11, t, -350 + 1.2 * t, -10 - off, 35.0))
        t += every_s
    return out


def _departure(every_s: float) -> list[Fix]:
    """On the sidewalk for a minute, then 80 m south of it (60 m beyond the corridor) from t = 60 s."""
    return path(11, [(0, -380, -10), (60, -308, -10), (75, -300, -90), (240, -300, -90)], every_s, 8.0)


def _kerb_walk(
    every_s: float, seconds: float, period_s: float, in_road_s: float, in_road_y: float
) -> list[Fix]:
    """Child 41 (no route: idle, as any child outside its commute windows) walking east on a sidewalk
    5 m south of the road zone at 1 m/s with 15 m accuracy, its error drifting north for the first
    ``in_road_s`` of every ``period_s``: its fixes lie at ``in_road_y`` (the road's edge is y 0) then."""
    out = []
    t = 0.0
    while t <= seconds:
        y = in_road_y if t % period_s < in_road_s else -5.0
        out.append(fix(41, t, -450 + 1.0 * t, y, 15.0))
        t += every_s
    return out


def _kerb_drift(every_s: float) -> list[Fix]:
    """Fixes 4 m in the road half the time, in runs of 45 s (the error drifting 9 m north)."""
    return _kerb_walk(every_s, 900.0, 90.0, 45.0, 4.0)


def _kerb_graze(every_s: float) -> list[Fix]:
    """Fixes 5 m in the road (half a sigma) for two minutes of every three (the error drifting 10 m
    north)."""
    return _kerb_walk(every_s, 600.0, 180.0, 120.0, 5.0)


def _kerb_along(every_s: float, seconds: float, v: float) -> list[Fix]:
    """Child 41 (idle) going east at ``v`` m/s on the sidewalk 5 m south of the road zone, at 15 m
    accuracy, its error drifting 13 m north the whole time: every fix lies 8 m in the road (0.8 sigma
    deep, so each adds 0.55 to the lingering run)."""
    times = (k * every_s for k in range(int(seconds / every_s) + 1))
    return [fix(41, t, -450 + v * t, 8.0, 15.0) for t in times]


NOTHING: list[tuple[int, str, int | None]] = []
# (name, fixes, what is alerted); `until` = the last fix: the clock stops with the fixes
SCENARIOS = [
    (
        "a crosswalk of its own route: waiting 60 s at the kerb, then crossing (15 s fixes)",
        path(11, [(0, -60, -10), (50, 0, -10), (110, 0, -12), (150, 0, 50), (200, 60, 50)], 15, 5),
        NOTHING,
    ),
    (
        "... at 60 s fixes (before: a pass-through over the crosswalk)",
        [fix(11, 0, -20, -10, 4), fix(11, 60, 15, 50, 4), fix(11, 120, 85, 50, 4)],
        NOTHING,
    ),
    (
        "... at 1 s fixes",
        path(11, [(0, -60, -10), (50, 0, -10), (110, 0, -12), (150, 0, 50), (200, 60, 50)], 1, 5),
        NOTHING,
    ),
    (
        "a child who walks into the road beyond its corridor and stays: the zone minus the corridor",
        path(11, [(0, -250, -10), (20, -250, 25), (120, -250, 25)], 15, 5),
        [(11, "danger_zone", ROAD), (11, "left_route", None)],
    ),
    (
        "the sidewalk 10 m from a road zone, fixes drifting 18 m into the road (15 s fixes)",
        _zigzag(11, 15, 300, -10, 18, 10),
        NOTHING,
    ),
    ("... at 1 s fixes", _zigzag(11, 1, 300, -10, 18, 10), NOTHING),
    (
        "a registered shuttle ride along the road zone at 12 m/s",
        path(21, [(0, -550, 20), (90, 530, 20)], 15, 8),
        NOTHING,
    ),
    (
        "the same ride by a child whose route is a walk: one 'left route', nothing else",
        path(12, [(0, -550, 20), (90, 530, 20)], 15, 8),
        [(12, "left_route", None)],
    ),
    (
        "... the same child on a shuttle of two short legs along the road, 30 s at 10 m/s either side of"
        " a 60 s red light: one 'left route' (before: none, never three fast measures in a row)",
        path(12, [(0, -550, 20), (30, -250, 20), (90, -250, 20), (120, 50, 20)], 15, 8),
        [(12, "left_route", None)],
    ),
    (
        "a shuttle route whose window until 17:30 says walk: the same ride in that window is too fast"
        " for a walk: one 'left route'",
        path(22, [(0, -550, 20), (90, 530, 20)], 15, 8),
        [(22, "left_route", None)],
    ),
    (
        "... the same ride in its next window, which names no mode: the route's shuttle, nothing",
        path(22, [(1800, -550, 20), (1890, 530, 20)], 15, 8),
        NOTHING,
    ),
    (
        "... a walk along it in the walk window: nothing",
        path(22, [(0, -550, 20), (300, -190, 20)], 15, 8),
        NOTHING,
    ),
    (
        "a bicycle route over the road at 5 m/s (before: a pass-through)",
        path(31, [(0, 200, -100), (48, 200, 140)], 15, 5),
        NOTHING,
    ),
    (
        "a bus over the road at 10 m/s, not the child's route: 'left route', no danger zone",
        path(12, [(0, -300, -40), (45, -300, 410)], 15, 5),
        [(12, "left_route", None)],
    ),
    (
        "two fixes thrown 110-125 m with a small accuracy, one between: no speed, no departure (before: one)",
        [
            fix(11, 13 * k, -380 + 16 * k, -10 - (110 if k == 3 else 125 if k == 5 else 3), 14)
            for k in range(8)
        ],
        NOTHING,
    ),
    (
        "a 24 s error episode at 2.6 sigma beyond the corridor, 1 s fixes (before: 'left route')",
        _episode(1),
        NOTHING,
    ),
    ("... the same at 15 s fixes", _episode(15), NOTHING),
    ("... the same at 30 s fixes", _episode(30), NOTHING),
    (
        "outside any window, a sidewalk 5 m from a road zone, fixes in the road in runs of 45 s (15 s"
        " fixes; before: three in a row, 'entered danger zone')",
        _kerb_drift(15),
        NOTHING,
    ),
    ("... the same walk at 1 s fixes", _kerb_drift(1), NOTHING),
    (
        "... the child who does stand 15 m into the road for two minutes, outside any window: alerted"
        " (at 12 m accuracy never certainly inside: lingering)",
        path(41, [(0, -300, -5), (15, -300, 15), (135, -300, 15), (150, -300, -5)], 15, 12),
        [(41, "danger_zone", ROAD)],
    ),
    (
        "outside any window, the sidewalk 5 m from the road zone, fixes 5 m in the road for two minutes"
        " at a time (15 s fixes): a graze, no stay (before: a run of 90 s, 'entered danger zone')",
        _kerb_graze(15),
        NOTHING,
    ),
    ("... the same graze at 1 s fixes", _kerb_graze(1), NOTHING),
    (
        "outside any window, walking the sidewalk at 1 m/s for four minutes, every fix 8 m in the road:"
        " going along the zone, not lingering in it (before: 'entered danger zone')",
        _kerb_along(15, 240, 1.0),
        NOTHING,
    ),
    ("... the same walk at 1 s fixes (before: alerted too)", _kerb_along(1, 240, 1.0), NOTHING),
    (
        "... the child who stands there with the same fixes, 8 m in the road for four minutes: alerted",
        _kerb_along(15, 240, 0.0),
        [(41, "danger_zone", ROAD)],
    ),
    (
        "... one who wanders there at 0.25 m/s (60 m in four minutes, 30 m from where it began when"
        " alerted): alerted",
        _kerb_along(15, 240, 0.25),
        [(41, "danger_zone", ROAD)],
    ),
    (
        "standing 25 m south of the road at 10 m accuracy, one fix thrown 87 m over the road, the next"
        " back 12 m from it (its disc touches the road): a jump come back, nothing (before: a"
        " pass-through)",
        [fix(41, 15 * k, -300, 62 if k == 4 else -12 if k == 5 else -25, 10) for k in range(9)],
        NOTHING,
    ),
    (
        "walking its crosswalk, a fix thrown 65 m off the route south of the road, the next on the"
        " crosswalk 8 m into the road: its segment ends in the zone, no pass-through (before: one)",
        [
            fix(11, 0, -30, -10, 8),
            fix(11, 15, -10, -10, 8),
            fix(11, 30, -10, -75, 8),
            fix(11, 45, 0, 8, 8),
            fix(11, 60, 0, 30, 8),
            fix(11, 75, 0, 50, 8),
            fix(11, 90, 15, 50, 8),
        ],
        NOTHING,
    ),
    (
        "in a commute window, off its route, walking the north sidewalk 5 m from the road zone at 1.2"
        " m/s with every fix 3 m in the road: going along it, not lingering (before: 'entered danger"
        " zone' at the third segment into it)",
        path(12, [(0, -400, 37), (250, -100, 37)], 15, 8),
        [(12, "left_route", None)],
    ),
    (
        "... the child who stands there with the same fixes: alerted",
        path(12, [(0, -300, 37), (250, -300, 37)], 15, 8),
        [(12, "danger_zone", ROAD), (12, "left_route", None)],
    ),
    (
        "a child 25 m deep in the building site for two minutes at 20 m accuracy (never certainly"
        " inside: lingering), outside any window: alerted",
        path(41, [(0, 100, -80), (15, 100, -125), (135, 100, -125), (150, 100, -80)], 15, 20),
        [(41, "danger_zone", SITE)],
    ),
    (
        "... the same at 1 s fixes",
        path(41, [(0, 100, -80), (15, 100, -125), (135, 100, -125), (150, 100, -80)], 1, 20),
        [(41, "danger_zone", SITE)],
    ),
]


@pytest.mark.parametrize(("name", "fixes", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_where_routes_meet_zones(
    name: str, fixes: list[Fix], expected: list[tuple[int, str, int | None]]
) -> None:
    _, alerts = run(fixes, until=max(f.received_at for f in fixes))
    assert kinds(alerts) == expected


@pytest.mark.parametrize("every_s", [1, 5, 15, 30])
def test_a_real_departure_is_seen_alike_at_every_fix_rate(every_s: float) -> None:
    _, alerts = run(_departure(every_s), until=T0 + 240)
    assert kinds(alerts) == [(11, "left_route", None)]
    alerts = [a for a in alerts if a.kind == "left_route"]
    # 60 m beyond the corridor from t = 75 s (beyond 2 sigma from t = 62 s): 1-5 s fixes decide when
    # 20 s of evidence have added up, 15 s fixes on the third fix out, 30 s fixes on the third too
    delay = alerts[0].opened_at - (T0 + 75)
    assert 5 <= delay <= max(30.0, 2.5 * every_s), delay


def test_the_same_walk_at_1_s_and_30_s_decides_the_same() -> None:
    for episode in (_episode, _departure):
        assert kinds(run(episode(1), until=T0 + 240)[1]) == kinds(run(episode(30), until=T0 + 240)[1])


# --- clocks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clock_s", [-240.0, -60.0, 0.0, 45.0, 90.0])
def test_a_tag_that_keeps_reporting_never_loses_its_signal_whatever_its_clock(clock_s: float) -> None:
    walk = path(11, [(0, -400, -10), (600, -0.1, -10)], 15, 5, clock_s=clock_s)
    tracker, alerts = run(walk, until=T0 + 600)
    assert [a.kind for a in alerts if a.kind == "signal_lost"] == []
    assert tracker.states[11].clock_offset == pytest.approx(0.5 - clock_s)  # receipt minus stamp


def test_a_slow_tag_that_goes_silent_loses_its_signal_once_on_the_trackers_time() -> None:
    walk = path(11, [(0, -400, -10), (300, -40, -10)], 15, 5, clock_s=-240)
    _, alerts = run(walk, until=T0 + 900)
    lost = [a for a in alerts if a.kind == "signal_lost"]
    assert len(lost) == 1
    assert 180 <= lost[0].opened_at - (T0 + 300.5) <= 185  # after the last receipt, not its stamp


UPLOADS = [60.0, 200.0, 340.0, 580.0, 700.0, 940.0, 1180.0, 1320.0]  # every 2-4 minutes


def _store_and_forward(until: float) -> list[Fix]:
    """Child 11 on its sidewalk, a fix every 15 s, each received at the tag's next upload."""
    out = []
    for t in range(0, int(until) + 1, 15):
        upload = next(u for u in UPLOADS if u >= t)
        out.append(fix(11, t, -400 + 0.3 * t, -10, 5, late_s=upload - t + 0.5))
    return out


def test_a_tag_that_stores_and_forwards_keeps_its_signal_between_uploads() -> None:
    """Before: 'signal lost' after every upload gap over 180 s, 'back' with the next burst. The tag is
    known to buffer from its second buffered gap (here two of 140 s: a gap over 180 s before that
    is still 'signal lost', once)."""
    _, alerts = run(_store_and_forward(1320), until=T0 + 1320 + 1)
    assert [a.kind for a in alerts if a.kind == "signal_lost"] == []


def test_a_tag_that_stores_and_forwards_and_stops_loses_its_signal_once_after_its_upload_gap() -> None:
    tracker, alerts = run(_store_and_forward(1320), until=T0 + 1320 + 900)
    assert tracker.states[11].upload_gap_s == pytest.approx(240.0, abs=1.0)  # its longest gap
    lost = [a for a in alerts if a.kind == "signal_lost"]
    assert len(lost) == 1
    silent = lost[0].opened_at - (T0 + 1320.5)  # after its last upload
    assert 180 + 240 <= silent <= 180 + 240 + 5


def test_a_buffered_subway_ride_once_is_not_an_upload_pattern() -> None:
    """Fixes taken at a station before going down, delivered 10 minutes later on coming up: one
    buffered silence; the tag then reports live, and a silence of 180 s is 'signal lost' as before."""
    live = [fix(11, t, -400, -10, 5) for t in range(0, 300, 15)]
    station = [fix(11, t, -390, -10, 5, late_s=900 - t) for t in range(300, 330, 15)]
    after = [fix(11, t, -380, -10, 5) for t in range(900, 1200, 15)]
    tracker, alerts = run(live + station + after, until=T0 + 1500)
    assert tracker.states[11].upload_gap_s == 0.0
    lost = [a.opened_at - T0 for a in alerts if a.kind == "signal_lost"]
    assert len(lost) == 2  # underground (counted apart by the bench), and after the last fix
    assert 1185 + 180 <= lost[1] <= 1185 + 185


def _uploads(start: float, gaps: list[float]) -> list[tuple[float, float]]:
    """(taken, received) of a tag that buffers: each upload brings a fix taken just after the one before."""
    out, last = [], start
    for gap in gaps:
        out.append((last + 1, last + gap))
        last += gap
    return out


# (what, the tag's receipts as (taken, received) on the tracker's time, the upload gap learnt)
UPLINK_CASES = [
    ("uploads every 140 and 240 s", [(0.0, 0.0), *_uploads(0, [140, 240])], 240.0),
    (
        "a fix of the evening sent in the morning (11 h), then uploads every 140 and 240 s",
        [(0.0, 0.0), (1.0, 39_600.0), *_uploads(39_600, [140, 240])],
        240.0,
    ),
    (
        "one buffered ride of 300 s a day, two days running",
        [(0.0, 0.0), (10.0, 300.0), (400.0, 400.0), (86_400.0, 86_400.0), (86_410.0, 86_700.0)],
        0.0,
    ),
]


@pytest.mark.parametrize(("what", "receipts", "gap"), UPLINK_CASES, ids=[c[0] for c in UPLINK_CASES])
def test_the_upload_gap_learnt_is_a_rhythm_of_minutes_never_hours(
    what: str, receipts: list[tuple[float, float]], gap: float
) -> None:
    """What store-and-forward teaches delays 'signal lost': an overnight silence or yesterday's ride
    must not (before: 39,600 s and 300 s learnt, 'signal lost' muted for 11 hours)."""
    state = ChildState()
    for taken, received in receipts:
        _uplink(state, taken, received)
    assert state.upload_gap_s == gap, what


def test_the_clock_offset_is_not_fooled_by_fixes_that_arrive_late() -> None:
    live = [fix(11, t, -400 + 1.2 * t, -10, 5, clock_s=-100) for t in range(0, 300, 15)]
    # a subway ride: 10 minutes buffered, delivered at once when the train comes up
    burst = [fix(11, t, -40, -10, 5, clock_s=-100, late_s=900 - t) for t in range(300, 900, 15)]
    tracker, _ = run(live + burst)
    assert tracker.states[11].clock_offset == pytest.approx(100.5)


def test_a_clock_that_is_set_is_followed_within_ten_minutes() -> None:
    before = [fix(11, t, -400, -10, 5, clock_s=-240) for t in range(0, 600, 15)]
    after = [fix(11, t, -400, -10, 5) for t in range(600, 1800, 15)]
    tracker, alerts = run(before + after, until=T0 + 1800)
    assert tracker.states[11].clock_offset == pytest.approx(0.5)
    assert [a.kind for a in alerts if a.kind == "signal_lost"] == []


def test_an_sos_stamped_in_the_future_is_stamped_at_receipt_and_flagged() -> None:
    tracker = OfflineTracker(street_view(), Rules())
    tracker.batch([fix(41, 0, 100, 60, 5)], T0 + 1)
    press = fix(41, 15, 100, 60, 5, clock_s=3600.0, sos=True)  # an hour ahead: far beyond max_future_s
    events = tracker.batch([press], press.received_at)
    assert [(e.event.kind.value, e.event.ts, e.event.detail) for e in events] == [
        ("sos", press.received_at, STAMPED_AT_RECEIPT)
    ]
    (alert,) = [a for a in tracker.ledger.alerts if a.kind == "sos"]
    assert alert.opened_at - press.received_at <= 5
    assert not tracker.refused
    # the tag's clock is not learnt from the restamped SOS
    assert tracker.states[41].clock_offset == pytest.approx(0.5)


def test_a_position_stamped_in_the_future_is_still_refused() -> None:
    tracker = OfflineTracker(street_view(), Rules())
    tracker.batch([fix(41, 0, 100, 60, 5, clock_s=3600.0)], T0 + 1)
    assert [r.reason.value for r in tracker.refused] == ["future_timestamp"]


def test_a_checkpoint_from_before_weights_and_clocks_loads() -> None:
    old = {
        "last_ts": T0,
        "off_count": 2,
        "on_count": 1,
        "zone_counts": {"5": 1},
        "zone_exit_counts": {"6": 1},
        "zone_lingers": {"5": [2, T0 - 30]},
        "arrived": {"school": T0 - 60},
    }
    state = ChildState.from_json(old)
    assert state.zone_counts == {5: 1.0} and state.zone_lingers == {5: (2.0, T0 - 30)}
    assert state.clock is None and state.clock_offset == 0.0 and state.pace is None
    assert ChildState.from_json(state.to_json()) == state


def test_weights_follow_the_time_a_fix_covers() -> None:
    rules = Rules()
    assert rules.weight(math.inf) == 1.0 and rules.weight(30.0) == 1.0 and rules.weight(10.0) == 1.0
    assert rules.weight(1.0) == pytest.approx(1 / 10) and rules.weight(5.0) == pytest.approx(0.5)
    assert rules.weight(0.0) == 0.0
