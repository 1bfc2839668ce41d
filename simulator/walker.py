"""Where a virtual child truly is: walking its route, idling, or out on an excursion.

A child's day is a queue of legs, each with a duration: idle at home (the spread start), walk the
route to school, idle at school, walk back home, idle at home, and again. An incident that takes the
child off the route (leave_route, enter_zone) splits the current leg at that moment and puts its
excursion legs in front of the remainder, so the commute simply resumes where it stopped.
Positions are a pure function of time given the legs, so the result does not depend on how often
anyone asks.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.rng import RandomSource

XY = tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkConfig:
    speed_mps: tuple[float, float] = (1.0, 1.5)
    """each child's walking speed is drawn from this range"""
    start_spread_s: float = 600.0
    """children set off from home at a random moment in [0, start_spread_s) after the start"""
    school_dwell_s: tuple[float, float] = (900.0, 2700.0)
    """a compressed school day: the child idles at school this long, then walks home"""
    home_dwell_s: tuple[float, float] = (900.0, 2700.0)
    """then idles at home this long, then walks to school again"""

    def __post_init__(self) -> None:
        lo, hi = self.speed_mps
        if not 0 < lo <= hi:
            raise ValueError("need 0 < min speed <= max speed")
        if self.start_spread_s < 0 or min(*self.school_dwell_s, *self.home_dwell_s) < 0:
            raise ValueError("durations must not be negative")


class Path:
    """A polyline in local metres, walked by arc length ``s`` from 0 to ``length``."""

    __slots__ = ("_cum", "_xs", "_ys", "length")

    def __init__(self, points: Sequence[XY]) -> None:
        xs: list[float] = []
        ys: list[float] = []
        for x, y in points:
            if xs and x == xs[-1] and y == ys[-1]:
                continue
            xs.append(x)
            ys.append(y)
        if len(xs) < 2:
            raise ValueError("a path needs two distinct points")
        cum = [0.0]
        for i in range(1, len(xs)):
            cum.append(cum[-1] + math.hypot(xs[i] - xs[i - 1], ys[i] - ys[i - 1]))
        self._xs, self._ys, self._cum = xs, ys, cum
        self.length = cum[-1]

    @property
    def points(self) -> list[XY]:
        return list(zip(self._xs, self._ys, strict=True))

    def _segment(self, s: float) -> int:
        return min(max(bisect_right(self._cum, s) - 1, 0), len(self._xs) - 2)

    def point_at(self, s: float) -> XY:
        i = self._segment(s)
        seg = self._cum[i + 1] - self._cum[i]
        f = min(1.0, max(0.0, (s - self._cum[i]) / seg))
        return self._xs[i] + f * (self._xs[i + 1] - self._xs[i]), self._ys[i] + f * (
            self._ys[i + 1] - self._ys[i]
        )

    def direction_at(self, s: float) -> XY:
        """Unit tangent of the segment under ``s``."""
        i = self._segment(s)
        dx, dy = self._xs[i + 1] - self._xs[i], self._ys[i + 1] - self._ys[i]
        n = math.hypot(dx, dy)
        return dx / n, dy / n


class Leg:
    """A stretch of a child's time: along the route from s0 to s1, or on a straight line off it."""

    __slots__ = ("duration", "on_route", "s0", "s1", "x0", "x1", "y0", "y1")

    def __init__(
        self,
        duration: float,
        *,
        route: tuple[float, float] | None = None,
        line: tuple[XY, XY] | None = None,
    ) -> None:
        self.duration = max(0.0, duration)
        self.on_route = route is not None
        self.s0, self.s1 = route if route is not None else (0.0, 0.0)
        (self.x0, self.y0), (self.x1, self.y1) = line if line is not None else ((0.0, 0.0), (0.0, 0.0))

    def position(self, path: Path, f: float) -> XY:
        if self.on_route:
            return path.point_at(self.s0 + f * (self.s1 - self.s0))
        return self.x0 + f * (self.x1 - self.x0), self.y0 + f * (self.y1 - self.y0)

    def remainder(self, f: float) -> Leg:
        """What is left of this leg after fraction ``f`` of it."""
        rest = self.duration * (1.0 - f)
        if self.on_route:
            return Leg(rest, route=(self.s0 + f * (self.s1 - self.s0), self.s1))
        x = self.x0 + f * (self.x1 - self.x0)
        y = self.y0 + f * (self.y1 - self.y0)
        return Leg(rest, line=((x, y), (self.x1, self.y1)))


class Walker:
    """One child's true position over time. Ask with non-decreasing times."""

    __slots__ = ("_cfg", "_leg", "_leg_t0", "_phase", "_phase_t0", "_queue", "_rng", "path", "speed")

    PHASES = ("to_school", "at_school", "to_home", "at_home")

    def __init__(self, path: Path, rng: RandomSource, config: WalkConfig, t0: float) -> None:
        self.path = path
        self._rng = rng
        self._cfg = config
        self.speed = rng.uniform(*config.speed_mps)
        self._queue: deque[Leg] = deque()
        self._phase = -1  # the first leg is the spread start at home, then PHASES in a cycle
        self._leg = Leg(rng.uniform(0.0, config.start_spread_s), route=(0.0, 0.0))
        self._leg_t0 = t0
        self._phase_t0 = t0

    @property
    def on_route(self) -> bool:
        return self._leg.on_route

    def phase(self, t: float) -> tuple[str, float]:
        """What the child's day is at ``t`` ('start', 'to_school', 'at_school', 'to_home', 'at_home'),
        and when that phase began. An excursion does not change the phase it interrupts."""
        self._advance(t)
        return ("start" if self._phase < 0 else self.PHASES[self._phase]), self._phase_t0

    def _next_phase_leg(self) -> Leg:
        self._phase = (self._phase + 1) % len(self.PHASES)
        phase = self.PHASES[self._phase]
        length = self.path.length
        if phase == "to_school":
            return Leg(length / self.speed, route=(0.0, length))
        if phase == "at_school":
            return Leg(self._rng.uniform(*self._cfg.school_dwell_s), route=(length, length))
        if phase == "to_home":
            return Leg(length / self.speed, route=(length, 0.0))
        return Leg(self._rng.uniform(*self._cfg.home_dwell_s), route=(0.0, 0.0))

    def _advance(self, t: float) -> float:
        """Move to the leg under ``t``; return the fraction of it done at ``t``."""
        while t >= self._leg_t0 + self._leg.duration:
            self._leg_t0 += self._leg.duration
            if self._queue:
                self._leg = self._queue.popleft()
            else:
                self._leg = self._next_phase_leg()
                self._phase_t0 = self._leg_t0
        if self._leg.duration <= 0.0:
            return 1.0
        return (t - self._leg_t0) / self._leg.duration

    def position(self, t: float) -> XY:
        f = self._advance(t)
        return self._leg.position(self.path, f)

    def route_s(self, t: float) -> float | None:
        """Arc length along the route at ``t``, or None when off it."""
        f = self._advance(t)
        leg = self._leg
        return leg.s0 + f * (leg.s1 - leg.s0) if leg.on_route else None

    def detour(self, t: float, legs: Sequence[Leg]) -> None:
        """From ``t`` on, walk ``legs`` first, then carry on with what the child was doing."""
        f = self._advance(t)
        rest = self._leg.remainder(f)
        self._queue.appendleft(rest)
        for leg in reversed(legs[1:]):
            self._queue.appendleft(leg)
        self._leg = legs[0]
        self._leg_t0 = t
