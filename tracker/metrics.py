"""Counters of the running service (exposed at /api/v1/stats; Prometheus comes with the API issue)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Metrics:
    messages_in: int = 0
    fixes_in: int = 0
    fixes_stored: int = 0
    batches: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # dead-letter reason -> count
    not_deciding: Counter[str] = field(default_factory=Counter)  # monitor verdict -> count
    events: Counter[str] = field(default_factory=Counter)  # monitor event kind -> count
    commit_retries: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "messages_in": self.messages_in,
            "fixes_in": self.fixes_in,
            "fixes_stored": self.fixes_stored,
            "batches": self.batches,
            "rejected": dict(self.rejected),
            "not_deciding": dict(self.not_deciding),
            "events": dict(self.events),
            "commit_retries": self.commit_retries,
        }
