"""Monte-Carlo behind the left-route rule: false alarms and detection of a departure, per rule.

The simulator's error model (simulator/gps.py): the error across the route is a normal whose sigma
makes the reported accuracy its 68 % radius (sigma = acc / 1.51), drifting as an Ornstein-Uhlenbeck
process (tau 45 s), plus a multipath fix thrown 40-120 m in 0.4 % of fixes; fixes every 15 s.

* false alarms: children on the centreline of a 30 m corridor for a school day of commute windows
  (1,370 fixes), devices of typical accuracy 8-20 m; alerts per 1,000 child-days.
* detection: a child walking out at 1.4 m/s to 60 m beyond the corridor, staying 30 s, walking
  back (the smallest departure the recall target speaks of); share detected and median delay
  from the moment it is 60 m out, for a few accuracies.

Rules: "K sigma on N fixes in a row" and the monitor's capped CUSUM (reference k, score h, cap per
fix, at least n fixes of evidence). Run: ``python bench/route_rule_mc.py`` (about a minute).
"""

from __future__ import annotations

import argparse

import numpy as np

R68 = 1.5096
DT, TAU = 15.0, 45.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child-days", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rho = np.exp(-DT / TAU)
    kk = np.sqrt(1 - rho * rho)

    def ou(n: int, m: int) -> np.ndarray:
        x = np.empty((n, m))
        x[:, 0] = rng.standard_normal(n)
        for i in range(1, m):
            x[:, i] = rho * x[:, i - 1] + kk * rng.standard_normal(n)
        return x

    def lies(n: int, m: int) -> np.ndarray:
        hit = rng.random((n, m)) < 0.004
        jump = rng.uniform(40, 120, (n, m)) * np.sin(rng.uniform(0, 2 * np.pi, (n, m)))
        return np.where(hit, jump, 0.0)

    def in_a_row(x: np.ndarray, k: float, n_fixes: int) -> np.ndarray:
        e = x >= k
        run = np.ones_like(e[:, : e.shape[1] - n_fixes + 1])
        for j in range(n_fixes):
            run &= e[:, j : e.shape[1] - n_fixes + 1 + j]
        first = np.where(run.any(axis=1), run.argmax(axis=1) + n_fixes - 1, -1)
        return first

    def cusum(x: np.ndarray, reset: np.ndarray, k: float, h: float, cap: float, nmin: int) -> np.ndarray:
        n, m = x.shape
        score, count = np.zeros(n), np.zeros(n)
        first = np.full(n, -1)
        for i in range(m):
            score = np.maximum(0.0, score + np.minimum(x[:, i] - k, cap))
            count = np.where(x[:, i] >= k, count + 1, count)
            zero = reset[:, i] | (score <= 0)
            score, count = np.where(zero, 0, score), np.where(zero, 0, count)
            new = (score >= h) & (count >= nmin) & (first < 0)
            first[new] = i
        return first

    rules = {
        "4 sigma x 3 in a row": lambda x, r: in_a_row(x, 4.0, 3),
        "CUSUM k2 h4 cap3 n3 (default)": lambda x, r: cusum(x, r, 2.0, 4.0, 3.0, 3),
        "CUSUM k2 h6 cap3 n3": lambda x, r: cusum(x, r, 2.0, 6.0, 3.0, 3),
        "CUSUM k2 h6 cap3 n2": lambda x, r: cusum(x, r, 2.0, 6.0, 3.0, 2),
    }
    n, m = args.child_days, 1370
    acc = np.clip(rng.uniform(8, 20, (n, 1)) * np.exp(0.35 * rng.standard_normal((n, 1))), 5, 50)
    sigma = acc / R68
    d = np.abs(ou(n, m) * sigma + lies(n, m))
    x, reset = (d - 30.0) / sigma, d <= 30.0
    print(f"false alarms per 1,000 child-days ({n} child-days, corridor 30 m):")
    for name, rule in rules.items():
        print(f"  {name:32s} {1000 * float((rule(x, reset) >= 0).mean()):8.2f}")
    print("a departure to 60 m beyond for 30 s: detected / median delay from 60 m out")
    for a in (10.0, 20.0, 28.0, 35.0):
        s, nn = a / R68, 4000
        t = np.arange(0, 20) * DT + rng.uniform(0, DT, (nn, 1))
        t60, back = 60 / 1.4, 60 / 1.4 + 30
        true = np.where(t < t60, t * 1.4, np.where(t < back, 60.0, np.maximum(0.0, 60 - (t - back) * 1.4)))
        rep = true + ou(nn, 20) * s + lies(nn, 20)
        row = []
        for rule in rules.values():
            first = rule(rep / s, rep < 0)
            hit = first >= 0
            delay = t[np.arange(nn), np.clip(first, 0, 19)] - t60
            med = float(np.median(delay[hit])) if hit.any() else float("nan")
            row.append(f"{hit.mean():5.0%} {med:5.1f} s")
        print(f"  accuracy {a:4.0f} m: " + " | ".join(row))


if __name__ == "__main__":
    main()
