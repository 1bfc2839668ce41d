"""Admission filters: named one-line predicates. The name of the one that fires is the reason in the
dead-letter table and in the metrics (Traccar's FilterHandler, one rule per line)."""

from __future__ import annotations

from collections.abc import Mapping

from tracker.ingest.decode import Fix, Reason


def unknown_tag(fix: Fix, tags: Mapping[str, int]) -> bool:
    return fix.tag not in tags


def from_the_future(fix: Fix, now: float, max_future_s: float) -> bool:
    return fix.ts > now + max_future_s


def refusal(
    fix: Fix, *, tags: Mapping[str, int], now: float, max_future_s: float
) -> tuple[Reason, str] | None:
    """The first filter a fix fails, with a detail for the dead-letter row; None if it is admitted.
    (Duplicates, stale and inaccurate fixes are stored but not allowed to decide: the monitor's job.)"""
    if unknown_tag(fix, tags):
        return Reason.UNKNOWN_TAG, f"tag {fix.tag!r} is not registered"
    if from_the_future(fix, now, max_future_s):
        return (
            Reason.FUTURE_TIMESTAMP,
            f"ts {fix.ts:.0f} is {fix.ts - now:.0f} s ahead of the tracker's clock",
        )
    return None
