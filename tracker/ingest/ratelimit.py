"""Per-tag token buckets: one tag flooding the tracker (a broken device, a stolen password) is held to
a sustained rate with a burst allowance, and its excess fixes are dead-lettered as ``rate_limited``;
the other tags are not slowed by it. The clock is the time a message arrived.

A pipeline batch decides on copies of the buckets (`TagRateLimiter.batch`) and charges them only once
its transaction committed (`RateBatch.commit`), like the monitor's states: a batch run again after a
failed commit (PostgreSQL away) is not charged twice, so a retried backlog is not rate-limited. A batch
prepared while the one before it commits decides on the buckets as that one left them (`hold`)."""

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
        self._ahead: dict[str, _Bucket] = {}  # buckets of batches prepared and not committed yet

    def batch(self) -> RateBatch:
        return RateBatch(self)

    def allow(self, tag: str, now: float) -> bool:
        """Decide and charge at once (outside a pipeline batch)."""
        b = self.batch()
        ok = b.allow(tag, now)
        b.commit()
        return ok

    def discard_ahead(self) -> None:
        """Forget the charges of batches prepared and not committed (see Pipeline.discard_ahead)."""
        self._ahead.clear()


class RateBatch:
    """The decisions of one batch, on copies of the buckets it touched."""

    def __init__(self, limiter: TagRateLimiter) -> None:
        self._limiter = limiter
        self._touched: dict[str, _Bucket] = {}

    def allow(self, tag: str, now: float) -> bool:
        """Take one token from the tag's bucket (this batch's copy) if there is one."""
        lim = self._limiter
        b = self._touched.get(tag)
        if b is None:
            current = lim._ahead.get(tag) or lim._buckets.get(tag)
            b = _Bucket(current.tokens, current.at) if current else _Bucket(lim.burst, now)
            self._touched[tag] = b
        if now > b.at:
            b.tokens = min(lim.burst, b.tokens + (now - b.at) * lim.rate_per_s)
            b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        return False

    def hold(self) -> None:
        """The batch is prepared: the batches prepared after it start from its buckets."""
        self._limiter._ahead.update(self._touched)

    def commit(self) -> None:
        lim = self._limiter
        lim._buckets.update(self._touched)
        for tag, bucket in self._touched.items():
            if lim._ahead.get(tag) is bucket:
                del lim._ahead[tag]
