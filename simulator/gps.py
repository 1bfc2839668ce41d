"""A GPS receiver's errors: reported accuracy, the actual error behind it, multipath, battery.

Choices, written down because an alert-quality benchmark is judged against them:

* **Reported accuracy** ``acc`` is a 68 % radius (as Android's ``Location.getAccuracy`` and the
  wire contract define it). Each device has its own typical accuracy (8–20 m); the reported value
  wanders around it slowly (log-normal Ornstein–Uhlenbeck, time constant 5 min) and is clipped to
  5–50 m.
* **Actual error** is a 2-D isotropic normal whose per-axis sigma makes ``acc`` its 68 % radius:
  the error radius of such a normal is Rayleigh-distributed, P(r ≤ R) = 1 − exp(−R²/2σ²), so
  R68 = σ·√(−2 ln 0.32) ≈ 1.5096 σ and σ = acc / 1.5096. The error is not white noise: like a real
  receiver's it drifts, as a unit-variance Ornstein–Uhlenbeck process per axis (time constant 45 s)
  scaled by the current σ, so its distribution at every fix is exactly that normal while two fixes
  15 s apart are strongly correlated (ρ ≈ 0.72). Consecutive fixes therefore tend to err on the same
  side, which is what makes a dwell rule earn its keep.
* **Multipath** starts at a fix with a small probability. Most of the time (honest) it lasts 1–3
  fixes, reports a larger accuracy (50–150 m) and the error is drawn from that larger normal. Some
  of the time (a lie) it is one fix thrown 40–120 m away while the reported accuracy stays small.
* **Battery** starts at 50–100 % and drains 2–5 %/h; it never reports less than 1 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.rng import RandomSource

R68_PER_SIGMA = math.sqrt(-2.0 * math.log(1.0 - 0.68))
"""the 68 % radius of a 2-D isotropic normal, in units of its per-axis sigma (≈ 1.5096)"""


def sigma_for_accuracy(acc_m: float) -> float:
    """Per-axis sigma of the 2-D normal whose 68 % radius is ``acc_m``."""
    return acc_m / R68_PER_SIGMA


@dataclass(frozen=True, slots=True, kw_only=True)
class GpsConfig:
    enabled: bool = True
    """False: fixes are the true positions with the typical accuracy (for tests)"""
    acc_min_m: float = 5.0
    acc_max_m: float = 50.0
    typical_acc_m: tuple[float, float] = (8.0, 20.0)
    """each device's typical reported accuracy is drawn from this range"""
    acc_log_sd: float = 0.35
    """spread of log(acc) around the device's typical value"""
    acc_tau_s: float = 300.0
    error_tau_s: float = 45.0
    multipath_probability: float = 0.02
    """chance that a fix starts a multipath episode"""
    multipath_lie_fraction: float = 0.2
    honest_multipath_acc_m: tuple[float, float] = (50.0, 150.0)
    honest_multipath_fixes: tuple[int, int] = (1, 3)
    lying_jump_m: tuple[float, float] = (40.0, 120.0)
    battery_start_pct: tuple[float, float] = (50.0, 100.0)
    battery_drain_pct_per_h: tuple[float, float] = (2.0, 5.0)

    def __post_init__(self) -> None:
        if not 0 < self.acc_min_m <= self.acc_max_m:
            raise ValueError("need 0 < acc_min_m <= acc_max_m")
        if not 0.0 <= self.multipath_probability <= 1.0 or not 0.0 <= self.multipath_lie_fraction <= 1.0:
            raise ValueError("probabilities must lie in [0, 1]")
        if self.acc_tau_s <= 0 or self.error_tau_s <= 0:
            raise ValueError("time constants must be positive")


@dataclass(slots=True)
class GpsReading:
    dx: float
    """east error, metres"""
    dy: float
    """north error, metres"""
    acc: float
    """reported accuracy, metres (68 % radius)"""
    multipath: str | None
    """None, 'honest' or 'lie'"""


class GpsModel:
    """One device's receiver. ``read(t)`` must be called with non-decreasing times."""

    __slots__ = (
        "_batt0",
        "_cfg",
        "_drain_per_s",
        "_log_acc",
        "_log_mu",
        "_mp_acc",
        "_mp_left",
        "_rng",
        "_t",
        "_t0",
        "_ux",
        "_uy",
    )

    def __init__(self, rng: RandomSource, config: GpsConfig, t0: float) -> None:
        self._rng = rng
        self._cfg = config
        self._t0 = t0
        self._t = t0
        self._log_mu = math.log(rng.uniform(*config.typical_acc_m))
        self._log_acc = self._log_mu + rng.gauss(0.0, config.acc_log_sd)
        self._ux = rng.gauss(0.0, 1.0)
        self._uy = rng.gauss(0.0, 1.0)
        self._mp_left = 0
        self._mp_acc = 0.0
        self._batt0 = rng.uniform(*config.battery_start_pct)
        self._drain_per_s = rng.uniform(*config.battery_drain_pct_per_h) / 3600.0

    def battery(self, t: float) -> int:
        return max(1, min(100, round(self._batt0 - self._drain_per_s * (t - self._t0))))

    def read(self, t: float) -> GpsReading:
        cfg = self._cfg
        rng = self._rng
        dt = max(0.0, t - self._t)
        self._t = t
        if not cfg.enabled:
            return GpsReading(0.0, 0.0, round(math.exp(self._log_mu), 1), None)
        # the reported accuracy wanders (OU in log space, exact discretisation)
        rho_acc = math.exp(-dt / cfg.acc_tau_s)
        self._log_acc = self._log_mu + rho_acc * (self._log_acc - self._log_mu)
        self._log_acc += math.sqrt(1.0 - rho_acc * rho_acc) * cfg.acc_log_sd * rng.gauss(0.0, 1.0)
        acc = min(cfg.acc_max_m, max(cfg.acc_min_m, math.exp(self._log_acc)))
        # the error behind it: a unit OU per axis, scaled so that acc is its 68 % radius
        rho = math.exp(-dt / cfg.error_tau_s)
        k = math.sqrt(1.0 - rho * rho)
        self._ux = rho * self._ux + k * rng.gauss(0.0, 1.0)
        self._uy = rho * self._uy + k * rng.gauss(0.0, 1.0)
        sigma = sigma_for_accuracy(acc)
        dx, dy = sigma * self._ux, sigma * self._uy
        if self._mp_left == 0 and rng.random() < cfg.multipath_probability:
            if rng.random() < cfg.multipath_lie_fraction:
                jump = rng.uniform(*cfg.lying_jump_m)
                angle = rng.uniform(0.0, 2.0 * math.pi)
                return GpsReading(dx + jump * math.cos(angle), dy + jump * math.sin(angle), acc, "lie")
            self._mp_left = rng.randint(*cfg.honest_multipath_fixes)
            self._mp_acc = rng.uniform(*cfg.honest_multipath_acc_m)
        if self._mp_left > 0:
            self._mp_left -= 1
            mp_sigma = sigma_for_accuracy(self._mp_acc)
            return GpsReading(rng.gauss(0.0, mp_sigma), rng.gauss(0.0, mp_sigma), self._mp_acc, "honest")
        return GpsReading(dx, dy, acc, None)
