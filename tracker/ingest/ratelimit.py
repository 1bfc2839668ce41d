"""Per-tag token buckets: one tag flooding the tracker (a broken device, a stolen password) is held to
a sustained rate with a burst allowance, and its excess fixes are dead-lettered as ``rate_limited``;
the other tags are not slowed by it. The clock is the time a message arrived."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TagRateLimiter:
    def __init__(self, *, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}  # only registered tags reach here: bounded by the registry

    def allow(self, tag: str, now: float) -> bool:
        """Take one token from the tag's bucket if there is one."""
        b = self._buckets.get(tag)
        if b is None:
            b = self._buckets[tag] = _Bucket(self.burst, now)
        elif now > b.at:
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate_per_s)
            b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        return False
