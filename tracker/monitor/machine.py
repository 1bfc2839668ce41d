"""The per-child status machine.

    step(state, observation, context, rules) -> (new state, events, verdict)   a fix arrived
    tick(state, now, context, rules)         -> (new state, events)            the clock moved
    gate(state, ts, context, rules)          -> (new state, events)            an RFID gate saw the tag

Pure: no I/O, no clock of its own, and the previous state is never modified, so a batch whose commit
fails leaves the caller's states as they were.

Rules (docs/alert-quality.md, 'The rules'; thresholds in `Rules`). Wherever a rule reads a fix's
accuracy it reads `Observation.error_m`: what the fix reports, times what its tag is known to
under-report (`ChildState.error_scale`, learnt at home and school by ``_place_fit``).
- A fix decides nothing when it is a duplicate, older than the last decided fix, of unknown
  accuracy, less accurate than `max_accuracy_m`, or an impossible jump (faster than `max_speed_mps`
  from the last decided fix, both accuracy radii allowed for). The verdict says which. Only SOS
  passes these filters.
- A fix of unknown accuracy (a phone app that stated none: `Observation.acc` is nan) is stored, and
  counted as `unknown_accuracy`. Its position may be good or a kilometre out, and nothing in it says
  which: taken as the worst admissible accuracy (100 m) it would still be "certainly" inside a large
  zone, or many sigmas off a route, on a guess. So it is no evidence for or against anything the
  position decides: it neither raises nor resolves a route departure or a danger zone, nor counts
  toward or against arrival, and leaves every count where it was (the fixes with an accuracy
  around it decide as if it were not there); it is not a segment's end for crossings, nor the
  reference of the next fix's speed. What it does say is not about where the child is: an SOS
  (never dropped for lack of accuracy), its battery level (low battery), and that the tag is
  alive: it brings the signal back and keeps 'signal lost' from being raised while such fixes
  come (`heard_ts`). A child whose phone never states its accuracy is therefore not watched for
  zones and routes, and its status stays "unknown" rather than looking safe. A fix less accurate
  than `max_accuracy_m`, or an impossible jump, is heard the same way: it decides nothing of where
  the child is, but the tag that sent it is alive (issue 15: a tag indoors whose fixes came at more
  than 100 m for three minutes raised 'signal lost' while they kept arriving).
- left route: only while the route's schedule watches it, when the evidence of the fixes outside the
  corridor adds up. Each fix's distance beyond the corridor is measured in sigmas of its own error
  (accuracy is a 68 % radius: sigma = acc / 1.51); a CUSUM adds (sigmas - `off_route_sigma`), at most
  `off_route_step_cap` per fix, never below 0; 'left route' when it reaches `off_route_score` from
  at least `off_route_min_fixes` fixes beyond `off_route_sigma` spanning `off_route_min_s` (the
  reference is `off_route_margin_m` metres instead where that is farther: 0 by default). A fix
  inside the corridor starts over. (GPS error drifts, with a correlation time near 45 s: two fixes
  at 2-3 sigma in a row happen to every child every day; a sum of four sigmas of excess does not.)
  While the child is at home or at school (arrived, not yet left) and a fix's zone disc still
  reaches the place's fence, the evidence adds up but 'left route' waits for a fix certainly away
  from the place (one fix's worth of them in a row, per second: ``_away_for``): the route begins
  and ends there, and a child indoors there scatters fixes 20-60 m and more (issue 15: the devices
  that under-report their error raised 'left route' at home).
  back on route: `on_route_min_fixes` consecutive fixes inside the corridor, at any hour.
- entered danger zone (zones are always on unless they have hours), on any of:
  1. the accuracy circle certainly inside the zone on `zone_confirm_fixes` consecutive fixes;
  2. a short visit: certainly inside once and the next fix still near the zone (within
     `zone_near_m` + its accuracy, so not a multipath jump that came back); a fix less accurate
     than `zone_confirm_max_acc_m` neither confirms nor cancels it (its disc touches every zone
     near it: after a multipath jump into a zone it would confirm the jump), the next one decides;
  3. a pass-through: the straight segment from the last decided fix crosses the zone while neither
     fix may be inside it (both within `crossing_max_gap_s`, at least `crossing_max_acc_m` accurate),
     confirmed by the next fix not crossing back (a multipath fix thrown across comes back across:
     to a fix that lies outside the zone, though its disc may touch it);
  4. lingering in a zone too thin to be certainly inside: `zone_linger_crossings` segments into it,
     spanning `zone_linger_min_s`, while every fix keeps it possible (fixes at least
     `zone_linger_max_acc_m` accurate). Outside the child's commute windows (or with no route) only
     from fixes at least `zone_linger_idle_max_acc_m` (20 m) accurate, weighed by how deep each lies
     in the zone: a CUSUM adds each fix's depth (the geofence's signed distance to the zone's edge)
     in sigmas of its error beyond `zone_linger_idle_sigma`, at most `zone_linger_idle_step_cap`,
     in proportion to the time it covers (Rules.weight), never below 0 (there the run starts over);
     'entered' at `zone_linger_idle_score` over a run spanning `zone_linger_idle_min_s` (90 s), a
     run that stays where it began (a fix certainly `zone_linger_idle_travel_m` from the run's first
     starts it over: a child walking a sidewalk beside a road zone goes along it, a stay stays); the
     same while the child is at home or at school (a fix that may be there) in a commute window.
     (Issue 15: a child on a sidewalk 3-8 m from a road zone has fixes a few metres in the road for
     a minute or two now and then: counted as "inside or not", runs of them alerted the children of
     the city-like bench 0.3 times a day; a few metres is a fraction of a sigma: it adds little
     here, and the fixes outside take it back. And a child indoors at home 20-40 m from a road
     zone reports 20-60 m of accuracy; its discs always touch the road and its drifting error
     crosses the edge now and then: counted over hours, those crossings alerted it 1.7 times an
     hour.) In a commute window a segment to a fix that may still be on the child's route
     (distance - accuracy within the corridor) is not counted (nor does it start over): the route
     explains it. The weakest evidence is the one GPS noise by a zone's edge fakes
     (bench/zone_rule_mc.py: a child 10 m inside a thin zone and one standing a few metres outside
     it give fixes no rule can tell apart); a child on its way to school is not standing there.
  left: `zone_exit_fixes` consecutive fixes certainly outside (the zone is not even possible).
- SOS: at once, from any fix that is not a duplicate (a late SOS is still a real press).
- low battery: below `low_battery_pct`, once per local day.
- arrived at / left school or home: `place_confirm_fixes` fixes inside the fence; left: as many
  fixes' worth in a row certainly outside it (the zone disc of `zone_sigma` clear of the fence, as
  zones are judged; each out weighted per second, ``Rules.weight``; a fix that may still be there
  starts the count over). An
  RFID gate sighting counts as arrival at once (or, when the child has been at school for an hour,
  as leaving).
- signal lost (tick): inside a commute window, no decided fix (nor one of unknown or poor accuracy,
  nor an impossible jump: a fix the tag sent later than the last decided one) for
  `signal_lost_s` since one earlier the same day, unless the child is at school; back with the next
  such fix.
- not arrived (tick): a window's `arrive_by` has passed and the child has neither reached its
  destination since the window began nor is there now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tracker.monitor.model import (
    R68_PER_SIGMA,
    ChildContext,
    ChildState,
    Event,
    EventKind,
    Observation,
    Place,
    Rules,
    Verdict,
)

GATE_LEAVE_AFTER_S = 3600.0
_ROUNDING = 1e-9  # weighted evidence is a sum of fractions: three fixes 5 s apart make one whole


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Distance over a few kilometres (equirectangular on the WGS84 ellipsoid's local radii)."""
    lat = _radians((lat1 + lat2) / 2)
    dx = (lon2 - lon1) * (111_412.84 * _cos(lat) - 93.5 * _cos(3 * lat))
    dy = (lat2 - lat1) * (111_132.92 - 559.82 * _cos(2 * lat) + 1.175 * _cos(4 * lat))
    return _hypot(dx, dy)


_radians, _cos, _hypot = math.radians, math.cos, math.hypot  # (metres runs several times per fix)


def judge(state: ChildState, obs: Observation, rules: Rules) -> Verdict:
    """Whether this fix may decide anything (named filters, in order)."""
    last_ts, ts, acc = state.last_ts, obs.ts, obs.acc
    if last_ts is not None and ts == last_ts:
        return Verdict.DUPLICATE
    if last_ts is not None and ts < last_ts:
        return Verdict.STALE
    if acc != acc:  # nan: not stated
        # a repeat of the last fix of unknown accuracy (a redelivery) is a duplicate too
        return Verdict.DUPLICATE if ts == state.heard_ts else Verdict.UNKNOWN_ACCURACY
    if acc > rules.max_accuracy_m:
        return Verdict.POOR_ACCURACY
    if last_ts is not None and state.last_lon is not None and state.last_lat is not None:
        moved = metres(state.last_lon, state.last_lat, obs.lon, obs.lat) - acc - (state.last_acc or 0.0)
        if moved > rules.max_speed_mps * (ts - last_ts):
            return Verdict.IMPOSSIBLE_JUMP
    return Verdict.DECIDED


def step(
    state: ChildState, obs: Observation, ctx: ChildContext, rules: Rules, *, owned: bool = False
) -> tuple[ChildState, list[Event], Verdict]:
    """``owned``: ``state`` is the caller's own copy, made for this batch and seen by no one else
    (tracker.stages.monitor: a child's later fixes in one batch): it is moved in place instead of
    copied again. Otherwise ``state`` is left as it was and a moved state is a new object."""
    verdict = judge(state, obs, rules)
    if verdict == Verdict.DUPLICATE:
        return state, [], verdict
    events = [Event(EventKind.SOS, obs.ts, detail=_stamp(obs))] if obs.sos else []
    if verdict == Verdict.DECIDED:
        new = state if owned else state.copy()
        _decide(new, obs, ctx, rules, events)
        return new, events, verdict
    if verdict in _HEARD:
        new = state if owned else state.copy()
        _heard(new, obs, ctx, rules, events)
        return new, events, verdict
    return state, events, verdict


_HEARD = frozenset((Verdict.UNKNOWN_ACCURACY, Verdict.POOR_ACCURACY, Verdict.IMPOSSIBLE_JUMP))
"""Fixes that decide nothing of where the child is, but say that its tag is alive: later than the last
decided fix, so they keep 'signal lost' away and bring the signal back (a tag indoors whose fixes
arrive at 120 m, or whose receiver throws one far, is heard; a duplicate or an older fix is not news)"""


def _decide(new: ChildState, obs: Observation, ctx: ChildContext, rules: Rules, events: list[Event]) -> None:
    """A fix that decides, on ``new`` in place (a copy of the state before it)."""
    last_ts = new.last_ts
    gap = obs.ts - last_ts if last_ts is not None else math.inf
    weight = rules.weight(gap)
    prev_acc = new.last_acc if new.last_acc is not None else math.inf
    was_in_corridor = new.in_corridor
    new.last_ts, new.last_lon, new.last_lat, new.last_acc = obs.ts, obs.lon, obs.lat, obs.acc
    _clock(new, obs)
    if new.heard_ts is not None and new.heard_ts <= obs.ts:
        new.heard_ts = None  # last_ts says as much now
    if new.signal_lost:
        new.signal_lost = False
        events.append(Event(EventKind.SIGNAL_BACK, obs.ts))
    mode = _mode(ctx, obs.ts)
    _pace(new, obs, mode, rules)
    walking = False  # the child walks its route and this fix may be on it
    on_its_route = False  # a commute window, and the child has a route: judged by its corridor
    has_route = obs.has_route
    settled = _at_place(new, obs, ctx, rules, weight)  # at home or school, and this fix may be there
    if has_route:
        watched = ctx.schedule is None or ctx.schedule.watched(obs.ts)
        _route(new, obs, watched, weight, rules.mode_max_mps(mode), rules, events, hold=settled)
        walking = watched and obs.may_be_on_route
        on_its_route = watched
    if _near_zones(new, obs):  # (most fixes have no zone near them: the rules would change nothing)
        from_last = obs.crossed_from_ts is not None and obs.crossed_from_ts == last_ts
        segment = (gap, max(obs.acc, prev_acc) * obs.acc_scale) if from_last else None
        riding = new.speed_mps > rules.ride_min_mps
        _zones(
            new,
            obs,
            ctx,
            _Judged(segment, walking, on_its_route, was_in_corridor, riding, weight, settled),
            rules,
            events,
        )
    new.in_corridor = has_route and obs.on_route
    if ctx.school is not None:
        _place(new, "school", ctx.school, obs, rules, weight, events)
    if ctx.home is not None:
        _place(new, "home", ctx.home, obs, rules, weight, events)
    if obs.batt is not None and obs.batt < rules.low_battery_pct and ctx.schedule is not None:
        _battery(new, obs, ctx.schedule.local_day(obs.ts), rules, events)


def _mode(ctx: ChildContext, ts: float) -> str:
    """How the child goes along its route at ``ts``: the mode its commute window names (a route walked
    in the morning and ridden home on the academy's shuttle), else the route's own."""
    schedule = ctx.schedule
    if schedule is None or not schedule.modes_named:
        return ctx.mode
    return schedule.mode_at(ts) or ctx.mode


STAMPED_AT_RECEIPT = "stamped at receipt"
FAST_MEASURES = 2
CLOCK_BUCKET_S = 300.0
"""The tag's clock offset is the least receipt delay of the fixes received in the current bucket (of
this many seconds of receipt time) and the one before it: a late fix only makes a delay longer (a
burst of buffered fixes after a silence is judged beside the last bucket before it), and a clock that
is set is followed at once when it goes forward, within two buckets of reports when it goes back."""


def _at_place(s: ChildState, obs: Observation, ctx: ChildContext, rules: Rules, weight: float) -> bool:
    """The child is at home or at school (arrived there and not yet left) and this fix may still be
    inside the place's fence: its disc (Rules.place_sigma of the error it is judged by,
    Observation.error_m) reaches it, or the fixes certainly away from it have not yet covered one
    fix's worth of time (``_away_for``: a tag reporting every second or five is away once it has
    been for about as long as one reporting every 10 s or more). Learns the tag's fit there on the
    way (``_place_fit``: from the accuracy the fix reports, so that what is learnt never feeds back
    into how it is learnt)."""
    at = s.at
    place = ctx.school if at == "school" else ctx.home if at == "home" else None
    if place is None:
        f = s.place_fit
        if f is not None and f[3]:
            s.place_fit = [f[0], f[1], f[2], 0.0, *f[4:]]  # (the child walked out: nothing to confirm)
        return False
    d = metres(place.lon, place.lat, obs.lon, obs.lat) - place.radius_m  # beyond the fence
    beyond = d > rules.place_disc_m(obs.acc)
    telling = obs.acc >= rules.place_fit_acc_share * place.radius_m
    _place_fit(s, obs, beyond, telling, rules, weight)
    if telling:
        _place_scatter(s, obs, 1.0 if at == "home" else 2.0, weight)
    if d <= rules.place_disc_m(obs.error_m):
        return True
    # certainly away, but for less than one fix's worth of time yet (a 1 s or 5 s tag): still held
    return _away_for(s.place_counts.get(f"out:{at}", 0) + 1, weight) < 1.0 - _ROUNDING


def _away_for(fixes: int, weight: float) -> float:
    """How many fixes' worth of evidence ``fixes`` certain outs in a row, each carrying ``weight``
    (Rules.weight), are: per second, not per fix. From 10 s apart on each counts whole, as before; a
    tag reporting every second must stay certainly out for as long as one every 15 s (a drifting
    error's brief excursions beyond a place's disc are caught the more often the denser the fixes)."""
    return fixes * weight


def _place_fit(
    s: ChildState, obs: Observation, beyond: bool, telling: bool, rules: Rules, weight: float
) -> None:
    """Learn, per tag, whether its fixes keep to their accuracy where the child is known to be: at home
    or at school (arrived and not left), a fix whose disc of Rules.place_sigma does not reach the
    fence (``beyond``), followed by one that does, lay beyond what its accuracy allows (one followed
    by more such is a child walking out, and counts for nothing). A device that reports its error
    truly does that in a few fixes of a thousand; one whose true error is 1.5x what it reports,
    indoors, in one of ten: judged at a place by 2.5 of its own sigmas, it "left" home or school again
    and again, and each time its scattered fixes were evidence of leaving its route
    (docs/alert-quality.md). Weighed as all evidence is (Rules.weight: per second, not per fix),
    fading by half every place_fit_half_life_s. Only ``telling`` fixes count, in or beyond: those whose
    accuracy is a fair share of the fence (Rules.place_fit_acc_share). A fix at 10 m in a 60 m fence
    lands beyond its disc almost never, whether its device under-reports or not; counted, a tag's
    accurate fixes outdoors hid its indoor ones' scatter (1.5x devices at 0.1-0.9 % of their
    evidence, under place_out_rate, where their fixes of 40-60 m land beyond one time in 30-60). Any
    fix back inside confirms an out still pending. A place whose fence is wider than twice
    max_accuracy_m learns nothing: no fix that decides can tell there (nor could one before: beyond
    such a fence's disc even a device that under-reports lands almost never)."""
    f = s.place_fit
    scatter: list[float] = []  # (_place_scatter's part, faded as the rest)
    if f is None:
        evidence = out = pending = 0.0
    else:
        fade = 0.5 ** (max(0.0, obs.ts - f[0]) / rules.place_fit_half_life_s)
        evidence, out, pending = f[1] * fade, f[2] * fade, f[3] * fade
        if len(f) == PLACE_FIT_LEN:
            scatter = [*f[4:7], f[7] * fade, f[8] * fade, *f[9:]]
    if beyond:
        if telling:
            pending += weight
    else:
        out, pending = out + pending, 0.0
    s.place_fit = [obs.ts, evidence + weight if telling else evidence, out, pending, *scatter]


PLACE_FIT_LEN = 11
"""ChildState.place_fit: the outs' four, then the scatter's seven (_place_scatter)"""
PLACE_SCATTER_CAP = 16.0
"""a fix's squared distance from where the child stays, in its reported sigmas squared, counts at most
this much (a fix thrown 40-120 m by the receiver, at its usual accuracy, must not decide alone)"""
PLACE_MEAN_FIXES = 60.0
"""where the child stays at the place: the running mean of the telling fixes over about this many
fixes' worth (Rules.weight: 10 minutes), long beside the error's correlation time"""
PLACE_MEAN_WARM_FIXES = 12.0
"""the scatter is read once the mean holds this many fixes' worth (two minutes of a stay)"""
PLACE_MEAN_RESET_S = 1800.0
"""a stay's mean starts over after this long without a telling fix at the place (the child may sit
elsewhere)"""


def _place_scatter(s: ChildState, obs: Observation, code: float, weight: float) -> None:
    """Learn, per tag, how its telling fixes at home or at school scatter round where the child stays
    (``place_fit[4:11]``: the stay's running mean lon, lat, its fixes' worth, the fading sum of each
    fix's squared distance from it in reported sigmas squared and its evidence, which place, and when
    its last telling fix came). A device that reports its error truly scatters 2 of those a fix on
    average (the chi-square of two axes), one whose true error is 1.5x what it reports 4.5, wherever
    in the fence the child sits: unlike the outs (``_place_fit``), where a true device by the fence
    lands beyond as often as a 1.5x one in its middle. From the reported accuracy, so that what is
    learnt never feeds back into how it is learnt (ChildState.error_scale reads it)."""
    f = s.place_fit
    assert f is not None  # (_place_fit has just written it, a list of this fix's own)
    x, y = obs.lon, obs.lat
    if len(f) != PLACE_FIT_LEN:
        f[4:] = [x, y, 0.0, 0.0, 0.0, code, obs.ts]
    if f[9] != code or obs.ts - f[10] > PLACE_MEAN_RESET_S:  # another place, or another stay
        f[4], f[5], f[6], f[9] = x, y, 0.0, code
    if f[6] >= PLACE_MEAN_WARM_FIXES - _ROUNDING:
        sigma = max(obs.acc, 1.0) / R68_PER_SIGMA  # the reported one
        z = min((metres(f[4], f[5], x, y) / sigma) ** 2, PLACE_SCATTER_CAP)
        f[7] += weight * z
        f[8] += weight
    n = min(f[6] + weight, PLACE_MEAN_FIXES)
    f[4] += (x - f[4]) * weight / n
    f[5] += (y - f[5]) * weight / n
    f[6], f[10] = n, obs.ts


def _stamp(obs: Observation) -> str | None:
    return STAMPED_AT_RECEIPT if obs.stamped_at_receipt else None


def _clock(s: ChildState, obs: Observation) -> None:
    """Learn the tag's clock offset from a fix's receipt time (see ChildState.clock_offset), and whether
    it stores and forwards (see ChildState.upload_gap_s)."""
    received = obs.received_at
    if received != received or obs.stamped_at_receipt:  # nan: not known; a restamped SOS says nothing
        return
    delay = received - obs.ts
    _uplink(s, obs.ts + s.clock_offset, received)
    c = s.clock
    if c is None:
        s.clock = [received, delay, delay]
    elif received >= c[0] + CLOCK_BUCKET_S:
        s.clock = [received, delay, c[1]]
    elif delay < c[1]:
        s.clock = [c[0], delay, c[2]]


UPLINK_BUCKET_S = 1800.0
"""A store-and-forward tag's upload gaps are remembered over the current and the previous bucket of
this many seconds of receipt time."""
UPLINK_MIN_GAP_S = 30.0
"""A silence between two receipts shorter than this is not an upload gap (network jitter, a batch)."""
UPLINK_MAX_GAP_S = 360.0
"""Nor is one longer than this (a tag off overnight that sends its last fix of the evening in the
morning, a long ride): store-and-forward tags upload every few minutes, and the gap learnt delays
'signal lost' by as much, so it is never longer than this."""


def _uplink(s: ChildState, taken: float, received: float) -> None:
    """A fix received after a silence of the tag, taken (on the tracker's time) in that silence's first
    half, was buffered through it: the tag stores and forwards, and the silence was an upload gap, not
    a lost signal (a tag that truly went silent sends, when it comes back, a fix taken then)."""
    last = s.received_last
    if last is not None and received <= last:
        return
    s.received_last = received
    if last is None:
        return
    gap = received - last
    u = s.uplink
    if u is not None and received >= u[0] + 2 * UPLINK_BUCKET_S:  # both buckets are past: forgotten
        u = [received, 0.0, 0.0, 0.0, 0.0]
        s.uplink = u
    elif u is not None and received >= u[0] + UPLINK_BUCKET_S:
        u = [received, 0.0, 0.0, u[1], u[2]]
        s.uplink = u
    if UPLINK_MIN_GAP_S <= gap <= UPLINK_MAX_GAP_S and taken <= last + gap / 2:
        u = [received, 0.0, 0.0, 0.0, 0.0] if u is None else list(u)
        u[1] += 1.0
        u[2] = max(u[2], gap)
        s.uplink = u


def _pace(s: ChildState, obs: Observation, mode: str, rules: Rules) -> None:
    """The child's speed, at least: over evidence_s or more (both accuracy radii taken off the
    distance, so GPS jitter never makes a child fast), and since when it has gone faster than its
    route's mode allows."""
    p = s.pace
    if p is None:
        s.pace = [obs.ts, obs.lon, obs.lat, obs.acc]
        return
    dt = obs.ts - p[0]
    if dt < rules.evidence_s:
        return
    moved = metres(p[1], p[2], obs.lon, obs.lat) - obs.acc - p[3]
    s.speed_mps = max(0.0, moved / dt)
    s.pace = [obs.ts, obs.lon, obs.lat, obs.acc]
    if s.speed_mps > rules.mode_max_mps(mode):
        if s.fast_from is None:
            s.fast_from = p  # the measure's start: the whole stretch is judged from there too
        s.fast_measures += 1
    else:
        s.fast_from, s.fast_measures = None, 0


def _heard(state: ChildState, obs: Observation, ctx: ChildContext, rules: Rules, events: list[Event]) -> None:
    """A fix of unknown accuracy, later than the last decided fix, on ``state`` in place (a copy of the
    state before it): what it says without a position (see the module's docstring): the tag is alive,
    and its battery level."""
    _clock(state, obs)
    if state.heard_ts is None or obs.ts > state.heard_ts:
        state.heard_ts = obs.ts
    if state.signal_lost:
        state.signal_lost = False
        events.append(Event(EventKind.SIGNAL_BACK, obs.ts))
    if obs.batt is not None and obs.batt < rules.low_battery_pct and ctx.schedule is not None:
        _battery(state, obs, ctx.schedule.local_day(obs.ts), rules, events)


def _too_fast(s: ChildState, obs: Observation, mode_max_mps: float, rules: Rules) -> bool:
    """Faster than its route's mode for long enough: two measures in a row, over fast_min_s, and over
    the whole stretch from the first measure's start to this fix (one fix thrown far makes two
    measures fast, as the end of one and the start of the next, but not the stretch: the fix after it
    is back where the child is; issue 15: with three measures, 45 s at 15 s fixes, a shuttle ride of
    two short legs either side of a red light was never fast for long enough)."""
    f = s.fast_from
    if f is None or s.fast_measures < FAST_MEASURES or obs.ts - f[0] < rules.fast_min_s:
        return False
    moved = metres(f[1], f[2], obs.lon, obs.lat) - obs.acc - f[3]
    return moved > mode_max_mps * (obs.ts - f[0])


def _route(
    s: ChildState,
    obs: Observation,
    watched: bool,
    weight: float,
    mode_max_mps: float,
    rules: Rules,
    events: list[Event],
    *,
    hold: bool = False,
) -> None:
    """``hold``: the child is at home or at school and this fix may still be there (``_at_place``):
    the evidence adds up as anywhere, but 'left route' waits for a fix certainly away from the place
    (one fix's worth of them in a row: at 1 s, ten).
    The place is where the route begins or ends; a child indoors there, whose fixes scatter 20-60 m
    and more (more than a device that under-reports its error admits), has not left its route, and
    a child who has walks out of the place within a fix or two."""
    fast = _too_fast(s, obs, mode_max_mps, rules)
    if s.off_route:
        if obs.on_route and not fast:
            s.on_count += weight if s.on_count else 1.0
            if s.on_count >= rules.on_route_min_fixes - _ROUNDING:
                s.off_route, s.on_count = False, 0.0
                events.append(Event(EventKind.BACK_ON_ROUTE, obs.ts))
        elif obs.off_route_sigmas >= rules.off_route_sigma or fast:
            s.on_count = 0.0
        return
    if not watched or (obs.on_route and not fast):
        s.off_count, s.off_since, s.off_score, s.off_pace = 0, None, 0.0, 0.0
        return
    if fast and not hold:  # faster than its route's mode for long enough: not going its way
        s.off_route, s.off_count, s.off_since, s.off_score, s.on_count = True, 0, None, 0.0, 0.0
        s.off_pace = 0.0
        events.append(Event(EventKind.LEFT_ROUTE, obs.ts))
        return
    # a CUSUM: each fix adds how far beyond the reference it is (less: it takes away), capped, in
    # proportion to the time it covers (evidence per second, not per fix)
    x = obs.off_route_sigmas
    reference = max(rules.off_route_sigma, rules.off_route_margin_m / obs.sigma_m)
    step_score = min(x - reference, rules.off_route_step_cap) * weight
    s.off_score = max(0.0, s.off_score + step_score)
    if s.off_score == 0.0:
        s.off_count, s.off_since, s.off_pace = 0, None, 0.0
        return
    if x >= reference:
        s.off_count += 1
        # how fast the child went into each fix of the evidence, at the fastest (a lower bound)
        s.off_pace = s.speed_mps if s.off_count == 1 else max(s.off_pace, s.speed_mps)
        if s.off_since is None:
            s.off_since = obs.ts
    if (
        not hold
        and s.off_score >= rules.off_route_score
        and (
            s.off_count >= rules.off_route_min_fixes
            or (s.off_count >= rules.off_route_walked_fixes and s.off_pace <= rules.off_route_walk_mps)
        )
        and s.off_since is not None
        and obs.ts - s.off_since >= rules.off_route_min_s
    ):
        s.off_route, s.off_count, s.off_since, s.off_score, s.on_count = True, 0, None, 0.0, 0.0
        s.off_pace = 0.0
        events.append(Event(EventKind.LEFT_ROUTE, obs.ts))


@dataclass(frozen=True, slots=True)
class _Judged:
    """What the zone rules need to know of a fix besides its observation.

    ``segment``: (gap in seconds, worse accuracy of its two ends) of the segment from the last decided
    fix to this one, whose crossed zones the observation holds; None when they are of another segment
    (the geofence saw a previous fix that did not decide) or of none. ``walking``: the child walks its
    route (a commute window) and this fix may be on it: its segment into a zone is no evidence of
    lingering there. ``on_its_route``: a commute window of a child with a route: the zone minus the
    corridor is what counts. ``was_in_corridor``: the last decided fix lay inside the corridor.
    ``riding``: the child moves faster than anyone on foot or a bicycle: no evidence of entering
    (one fix thrown far makes a measure or two fast: a fix or two that decide nothing).
    ``weight``: the part of one fix's evidence this fix carries (Rules.weight). ``settled``: the child
    is at home or at school and this fix may be there: it idles, as outside its windows."""

    segment: tuple[float, float] | None
    walking: bool
    on_its_route: bool
    was_in_corridor: bool
    riding: bool
    weight: float
    settled: bool = False


def _near_zones(s: ChildState, obs: Observation) -> bool:
    """A zone near this fix or the last one, or evidence about one pending: else (most fixes) the zone
    rules would change nothing."""
    return bool(
        obs.certain_zones
        or obs.possible_zones
        or obs.crossed_zones
        or s.zones_in
        or s.zone_counts
        or s.zone_passes
        or s.zone_lingers
        or s.zones_possible
    )


def _zones(
    s: ChildState, obs: Observation, ctx: ChildContext, j: _Judged, rules: Rules, events: list[Event]
) -> None:
    """Danger zones: entered by one of four kinds of evidence, left when certainly outside."""

    if not _near_zones(s, obs):
        return  # no zone near this fix nor the last one (most fixes): nothing below would change

    def on(zone: int) -> bool:
        hours = ctx.zone_hours.get(zone)
        return hours is None or hours.active(obs.ts)

    segment, w = j.segment, j.weight
    certain = {z for z in obs.certain_zones if on(z)}
    possible = reachable = {z for z in obs.possible_zones if on(z)}  # (reachable: the corridor aside)
    crossed = {z for z in obs.crossed_zones if on(z)} if segment is not None else set()
    error = obs.error_m
    near = obs.nearest_zone_m <= rules.zone_near_m + error
    if j.on_its_route:
        # the zone minus the corridor is what counts: certainly in it when the disc lies in the zone
        # and clear of the corridor (exact); possibly, when the disc reaches beyond the corridor
        disc = float(rules.zone_disc_m(error))
        beyond = obs.beyond_corridor_m
        if not beyond > disc:
            certain = set()
        if not beyond > -disc:
            possible, near = set(), False
        if obs.on_route and j.was_in_corridor:
            crossed = set()  # from the corridor to the corridor: its crosswalk, its sidewalk
    evidence = not j.riding  # a child in a vehicle on a road is not a child in the road
    gap, worse_acc = segment if segment is not None else (math.inf, math.inf)
    short = gap <= rules.crossing_max_gap_s
    passes = crossed if evidence and short and worse_acc <= rules.crossing_max_acc_m else set()
    # outside its commute windows a child is mostly somewhere for hours, indoors: lingering there
    # reads only accurate fixes, and only a run of them reported inside the zone (issue 15)
    idle = not j.on_its_route or j.settled
    linger_max_acc = rules.zone_linger_idle_max_acc_m if idle else rules.zone_linger_max_acc_m
    linger_acc = worse_acc <= linger_max_acc
    entered: set[int] = set()
    # 1-2. certainly inside once, then still in it or by it (not a jump come back) for long enough:
    #      the first fix counts whole, each later one the part of the error's correlation time it
    #      covers; a fix too inaccurate to tell (its disc touches every zone near) waits for the next
    vague = error > rules.zone_confirm_max_acc_m
    counts: dict[int, float] = {}
    for z in (certain | set(s.zone_counts)) - s.zones_in:
        n = s.zone_counts.get(z, 0.0)
        if evidence and z in certain:
            n += w if n else 1.0
        elif vague and n:
            pass
        elif evidence and n and on(z) and (z in possible or near):
            n += w
        else:
            continue
        if n >= rules.zone_confirm_fixes - _ROUNDING:
            entered.add(z)
        else:
            counts[z] = n
    # 3. a pass-through between two fixes outside it, confirmed by the next fix not crossing back
    #    (a multipath fix thrown across a zone comes back across it: its segment crosses the zone
    #    again to a fix that lies outside it, though its disc may touch it; one that lies inside it
    #    may have stopped there)
    if evidence:
        for z in s.zone_passes - s.zones_in:
            lies_inside = z in reachable and obs.zone_depths_m.get(z, 0.0) >= 0.0
            if not (z in crossed and not lies_inside):
                entered.add(z)
    # neither end may be inside (the zone itself, not the zone minus the corridor: a segment onto the
    # child's crosswalk ends in the zone): through it, not into it or out of it
    outside = passes - reachable - s.zones_possible
    s.zone_passes = outside - s.zones_in - entered - s.zone_passes
    s.zones_possible = reachable
    # 4. lingering in a zone too thin to be certainly inside, while it stays possible. In a commute
    #    window: segments into it. Outside them (idle), from fixes of zone_linger_idle_max_acc_m: a
    #    CUSUM of how deep each fix lies in the zone, in sigmas of its error, beyond a reference, per
    #    second (a child at home 20-40 m from a road zone, whose indoor discs always touch it, and a
    #    child on a sidewalk a few metres from it, have fixes that now and then lie a few metres in it:
    #    no evidence; a child in its middle has fixes deep in it, most of the time)
    #    A run stays where it began: a fix that has certainly gone `zone_linger_idle_travel_m` from the
    #    run's first one is a child going along the zone's edge (its sidewalk), and starts it over.
    #    In a commute window too (`zone_linger_travel_m`: a child off its route on the sidewalk beside a
    #    road zone, three segments into it in 30 s, has gone 20-30 m along it).
    lingering: dict[int, tuple[float, ...]] = {}
    reads = evidence and short and linger_acc and not j.walking  # a fix this rule may read
    travel_m = rules.zone_linger_idle_travel_m if idle else rules.zone_linger_travel_m
    for z in possible - s.zones_in - entered:
        reading = reads and (idle or z in crossed)  # (in a window: a segment into it)
        n, since, first = _lingering_run(s.zone_lingers.get(z), obs, travel_m if reading else math.inf)
        if reading:
            if idle:
                x = obs.zone_depth_sigmas(z) - rules.zone_linger_idle_sigma
                n = max(0.0, n + min(x, rules.zone_linger_idle_step_cap) * w)
                done = (
                    n >= rules.zone_linger_idle_score - _ROUNDING
                    and obs.ts - since >= rules.zone_linger_idle_min_s
                )
            else:
                n += w if n else 1.0
                done = (
                    n >= rules.zone_linger_crossings - _ROUNDING and obs.ts - since >= rules.zone_linger_min_s
                )
            if done:
                entered.add(z)
                continue
            if not first:
                first = (obs.lon, obs.lat, obs.error_m)
        if n:
            lingering[z] = (n, since, *first)  # (at 0 the run starts over)
    s.zone_lingers = lingering
    s.zone_counts = counts
    if entered:
        s.zones_in = s.zones_in | entered
        for zone in sorted(entered):
            events.append(Event(EventKind.ENTERED_ZONE, obs.ts, zone))
    staying = s.zones_in - entered
    if not staying:
        return
    exits = dict(s.zone_exit_counts)
    for zone in sorted(staying):
        if zone in possible:
            exits.pop(zone, None)
            continue
        n = exits.get(zone, 0.0)
        exits[zone] = n + (w if n else 1.0)
        if exits[zone] >= rules.zone_exit_fixes - _ROUNDING:
            s.zones_in = s.zones_in - {zone}
            del exits[zone]
            events.append(Event(EventKind.LEFT_ZONE, obs.ts, zone))
    s.zone_exit_counts = exits


def _lingering_run(
    run: tuple[float, ...] | None, obs: Observation, travel_m: float
) -> tuple[float, float, tuple[float, ...]]:
    """A lingering run as this fix finds it: its evidence, since when, and the (lon, lat, error_m) of
    its first fix; over from this fix when it has certainly gone ``travel_m`` from that one (a child
    going along the zone's edge, not lingering in it)."""
    if run is None:
        return 0.0, obs.ts, ()
    first = run[2:]
    if first and _gone_from(first, obs) > travel_m:
        return 0.0, obs.ts, ()
    return run[0], run[1], first


def _gone_from(first: tuple[float, ...], obs: Observation) -> float:
    """How far the child has certainly gone from a fix (lon, lat, error_m) to this one: the distance
    less both fixes' error radii (at most 0 when either may explain it)."""
    return metres(first[0], first[1], obs.lon, obs.lat) - first[2] - obs.error_m


def _place(
    s: ChildState,
    name: str,
    place: Place,
    obs: Observation,
    rules: Rules,
    weight: float,
    events: list[Event],
) -> None:
    d = metres(place.lon, place.lat, obs.lon, obs.lat)
    counts = s.place_counts
    if s.at == name:
        out_key = f"out:{name}"
        if d - rules.place_disc_m(obs.error_m) > place.radius_m:  # certainly out (Rules.place_sigma)
            n = counts.get(out_key, 0) + 1
            if _away_for(n, weight) >= rules.place_confirm_fixes - _ROUNDING:
                s.at = None
                s.place_counts = _without(counts, out_key)
                events.append(Event(EventKind.LEFT_PLACE, obs.ts, detail=name))
            else:
                s.place_counts = {**counts, out_key: n}
        elif out_key in counts:  # a fix that may still be there: the outs must come in a row
            s.place_counts = _without(counts, out_key)
        return
    if d <= place.radius_m:
        n = counts.get(name, 0) + 1
        if n >= rules.place_confirm_fixes:
            _arrive(s, name, obs.ts, events, at=obs.ts + s.clock_offset)
        else:
            s.place_counts = {**counts, name: n}
    elif name in counts:
        s.place_counts = _without(counts, name)


def _without(d: dict[str, int], key: str) -> dict[str, int]:
    """``d`` less ``key``, as a new dict (a state's containers are never changed in place)."""
    return {k: v for k, v in d.items() if k != key}


def _arrive(s: ChildState, name: str, ts: float, events: list[Event], *, at: float | None = None) -> None:
    """Arrived at ``ts`` (the fix's time); ``at``: the same moment in the tracker's time (the clock's
    rules compare it with theirs), by default ``ts``."""
    if name in s.place_counts:
        s.place_counts = _without(s.place_counts, name)
    if s.at is not None and s.at != name:
        events.append(Event(EventKind.LEFT_PLACE, ts, detail=s.at))
    s.at = name
    s.arrived = {**s.arrived, name: ts if at is None else at}
    events.append(Event(EventKind.ARRIVED, ts, detail=name))


def _battery(s: ChildState, obs: Observation, local_day: str, rules: Rules, events: list[Event]) -> None:
    if obs.batt is not None and obs.batt < rules.low_battery_pct and s.low_battery_day != local_day:
        s.low_battery_day = local_day
        events.append(Event(EventKind.LOW_BATTERY, obs.ts))


def tick(state: ChildState, now: float, ctx: ChildContext, rules: Rules) -> tuple[ChildState, list[Event]]:
    """What the passing of time decides: signal lost, not arrived."""
    schedule = ctx.schedule
    if schedule is None:
        return state, []
    now_at = schedule.at(now)
    events: list[Event] = []
    new: ChildState | None = None
    last = state.last_ts  # the tag was last heard from: a decided fix, or a later one of unknown accuracy
    if state.heard_ts is not None and (last is None or state.heard_ts > last):
        last = state.heard_ts
    if last is not None:
        last += state.clock_offset  # in the tracker's time: a tag's clock may be minutes off
    if (
        not state.signal_lost
        and last is not None
        and state.at != "school"
        and now - last >= rules.signal_lost_s + state.upload_gap_s  # a tag that uploads in bursts
        and now_at.watched
        and schedule.watched(last)
        and schedule.local_day(last) == now_at.local_day
    ):
        new = state.copy()
        new.signal_lost = True
        events.append(Event(EventKind.SIGNAL_LOST, now))
    today = now_at.local_day
    for key, start, _deadline, destination in now_at.deadlines:
        if key in state.not_arrived:
            continue  # settled: raised, or the child was there when it came due
        new = new or state.copy()
        new.not_arrived = [k for k in new.not_arrived if k.startswith(today)] + [key]
        if state.at != destination and state.arrived.get(destination, 0.0) < start:
            events.append(Event(EventKind.NOT_ARRIVED, now, detail=destination))
    return (new or state), events


def gate(state: ChildState, ts: float, ctx: ChildContext, rules: Rules) -> tuple[ChildState, list[Event]]:
    """An RFID reader at the school's gate saw the child's card: arrival, or leaving after an hour."""
    new = state.copy()
    events: list[Event] = []
    if new.at == "school":
        if ts - new.arrived.get("school", ts) >= GATE_LEAVE_AFTER_S:
            new.at = None
            events.append(Event(EventKind.LEFT_PLACE, ts, detail="school"))
        return new, events
    _arrive(new, "school", ts, events)
    return new, events
