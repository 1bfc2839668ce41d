"""The per-child status machine: (previous state, observation, schedule, rules) -> (new state, events).

Pure: no I/O, no clock of its own (time is the fix's timestamp), and the previous state is never
modified, so a batch whose commit fails leaves the caller's states as they were.

Rules (DESIGN.md, 'What an alert means'):
- A fix decides nothing when it is a duplicate or older than the last decided fix, or its accuracy
  is worse than ``rules.max_accuracy_m``: the verdict says which.
- left route: only while the route's schedule watches it; ``off_route_min_fixes`` consecutive fixes
  *certainly* off the corridor (distance - accuracy > corridor) spanning ``off_route_min_s`` seconds.
  A fix inside the corridor resets the count; a fix in the hysteresis band (neither certainly off nor
  inside) neither counts nor resets.
- back on route: ``on_route_min_fixes`` consecutive fixes inside the corridor, at any hour.
- entered danger zone (always watched): ``zone_confirm_fixes`` consecutive fixes whose accuracy circle
  lies certainly inside the zone; left: ``zone_exit_fixes`` consecutive fixes certainly outside it
  (the zone is not even possible).
- SOS: at once, from any fix that is not a duplicate (a late SOS is still a real press).
- low battery: below ``rules.low_battery_pct``, once per local day.
"""

from __future__ import annotations

import copy

from tracker.monitor.model import ChildState, Event, EventKind, Observation, Rules, Verdict
from tracker.monitor.schedule import RouteSchedule


def step(
    state: ChildState, obs: Observation, schedule: RouteSchedule | None, rules: Rules
) -> tuple[ChildState, list[Event], Verdict]:
    if state.last_ts is not None and obs.ts == state.last_ts:
        return state, [], Verdict.DUPLICATE
    events: list[Event] = []
    if obs.sos:
        events.append(Event(EventKind.SOS, obs.ts))
    if state.last_ts is not None and obs.ts < state.last_ts:
        return state, events, Verdict.STALE
    if obs.acc > rules.max_accuracy_m:
        return state, events, Verdict.POOR_ACCURACY

    new = copy.deepcopy(state)
    new.last_ts = obs.ts
    if obs.has_route:
        _route(new, obs, schedule is None or schedule.watched(obs.ts), rules, events)
    _zones(new, obs, rules, events)
    if schedule is not None:
        _battery(new, obs, schedule.local_day(obs.ts), rules, events)
    return new, events, Verdict.DECIDED


def _route(s: ChildState, obs: Observation, watched: bool, rules: Rules, events: list[Event]) -> None:
    if s.off_route:
        if obs.on_route:
            s.on_count += 1
            if s.on_count >= rules.on_route_min_fixes:
                s.off_route, s.on_count = False, 0
                events.append(Event(EventKind.BACK_ON_ROUTE, obs.ts))
        elif obs.certainly_off_route:
            s.on_count = 0
        return
    if obs.on_route or not watched:
        s.off_count, s.off_since = 0, None
        return
    if not obs.certainly_off_route:
        return  # hysteresis band: no evidence either way
    s.off_count += 1
    if s.off_since is None:
        s.off_since = obs.ts
    if s.off_count >= rules.off_route_min_fixes and obs.ts - s.off_since >= rules.off_route_min_s:
        s.off_route, s.off_count, s.off_since, s.on_count = True, 0, None, 0
        events.append(Event(EventKind.LEFT_ROUTE, obs.ts))


def _zones(s: ChildState, obs: Observation, rules: Rules, events: list[Event]) -> None:
    s.zone_counts = {z: s.zone_counts.get(z, 0) + 1 for z in obs.certain_zones if z not in s.zones_in}
    for zone, count in sorted(s.zone_counts.items()):
        if count >= rules.zone_confirm_fixes:
            s.zones_in.add(zone)
            del s.zone_counts[zone]
            events.append(Event(EventKind.ENTERED_ZONE, obs.ts, zone))
    for zone in sorted(s.zones_in):
        if zone in obs.possible_zones:
            s.zone_exit_counts.pop(zone, None)
            continue
        s.zone_exit_counts[zone] = s.zone_exit_counts.get(zone, 0) + 1
        if s.zone_exit_counts[zone] >= rules.zone_exit_fixes:
            s.zones_in.discard(zone)
            del s.zone_exit_counts[zone]
            events.append(Event(EventKind.LEFT_ZONE, obs.ts, zone))


def _battery(s: ChildState, obs: Observation, local_day: str, rules: Rules, events: list[Event]) -> None:
    if obs.batt is not None and obs.batt < rules.low_battery_pct and s.low_battery_day != local_day:
        s.low_battery_day = local_day
        events.append(Event(EventKind.LOW_BATTERY, obs.ts))
