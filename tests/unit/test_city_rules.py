"""Issue 15.3-15.4, the rules where routes meet zones, at any fix rate and with any clock, as scenario
tables on a street of a city (tests/unit/city_world.py: an arterial road drawn as a zone to its kerbs,
a walking route on its sidewalks that crosses it at a crosswalk, a shuttle route along it, a bicycle
route over it). Every fix goes through admission, the one function that geofences a batch, the
monitor's step and the clock's passes (tracker.offline.OfflineTracker)."""

from __future__ import annotations

import math

import pytest

from tests.unit.city_world import ROAD, T0, fix, path, run, street_view
from tracker.ingest.decode import Fix
from tracker.monitor import ChildState, Rules
from tracker.monitor.machine import STAMPED_AT_RECEIPT
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
