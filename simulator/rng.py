"""A small random number generator for each virtual child: 56 bytes instead of the 2.5 KB of a
``random.Random`` (a Mersenne Twister's state), so that 400,000 children with five independent streams
each fit in memory (2 GB less).

SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014): a
64-bit counter through a mixing function; it passes BigCrush, and one stream per (seed, child, purpose)
keeps the streams independent of each other, which is what reproducibility needs here (a child's walk
does not change when its GPS draws more numbers). Seeded from a string, like ``random.Random(str)``.
Only the methods the simulator uses, with ``random.Random``'s meaning.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TWO_PI = 2.0 * math.pi


class RandomSource(Protocol):
    """What the simulator draws from: ``random.Random`` or ``Rng``."""

    def random(self) -> float: ...
    def uniform(self, a: float, b: float) -> float: ...
    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float: ...
    def expovariate(self, lambd: float = 1.0) -> float: ...
    def randint(self, a: int, b: int) -> int: ...
    def choices(
        self, population: Sequence[T], weights: Sequence[float] | None = ..., *, k: int = ...
    ) -> list[T]: ...


class Rng:
    __slots__ = ("_s",)

    def __init__(self, seed: str) -> None:
        self._s = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "little")

    def random(self) -> float:
        """A float in [0, 1) with 53 random bits."""
        s = self._s = (self._s + _GOLDEN) & _MASK
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return ((z ^ (z >> 31)) >> 11) * 1.1102230246251565e-16  # 2**-53

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        """Box-Muller (one of the pair: no hidden state to carry)."""
        r = math.sqrt(-2.0 * math.log(1.0 - self.random()))
        return mu + sigma * r * math.cos(_TWO_PI * self.random())

    def expovariate(self, lambd: float = 1.0) -> float:
        return -math.log(1.0 - self.random()) / lambd

    def randint(self, a: int, b: int) -> int:
        """An integer in [a, b], both included."""
        return a + min(int(self.random() * (b - a + 1)), b - a)

    def choices(
        self, population: Sequence[T], weights: Sequence[float] | None = None, *, k: int = 1
    ) -> list[T]:
        n = len(population)
        if weights is None:
            return [population[min(int(self.random() * n), n - 1)] for _ in range(k)]
        cum = list(itertools.accumulate(weights))
        total = cum[-1]
        return [population[min(bisect.bisect_right(cum, self.random() * total), n - 1)] for _ in range(k)]
