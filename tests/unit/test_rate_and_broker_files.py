"""The per-tag token bucket and the broker files `tracker broker-config` writes (pure parts)."""

from __future__ import annotations

import pytest

from tracker.broker_config import Reader, parse_account, render
from tracker.ingest.ratelimit import TagRateLimiter
from tracker.store.devices import BrokerAccount
from tracker.store.tokens import mosquitto_check


@pytest.mark.parametrize(
    ("arrivals", "allowed"),
    [
        ([0.0] * 10, 3),  # a burst of 10 at once: the bucket's 3
        ([0.0, 0.0, 0.0, 0.5, 1.0], 5),  # refills 2 per second: one more at t=0.5, one at t=1 ...
        ([0.0, 0.0, 0.0, 0.5, 0.6, 1.0, 10.0, 10.0, 10.0, 10.0], 8),  # ... and back to 3 after a pause
    ],
)
def test_a_tag_gets_its_burst_then_its_rate(arrivals: list[float], allowed: int) -> None:
    bucket = TagRateLimiter(rate_per_s=2.0, burst=3)
    assert sum(bucket.allow("flood", t) for t in arrivals) == allowed


def test_one_tags_flood_does_not_touch_anothers_bucket() -> None:
    bucket = TagRateLimiter(rate_per_s=1.0, burst=2)
    assert [bucket.allow("flood", 0.0) for _ in range(5)] == [True, True, False, False, False]
    assert [bucket.allow("calm", 0.0), bucket.allow("calm", 1.0)] == [True, True]


def test_the_acl_gives_each_account_its_own_topics_and_only_the_tracker_reads() -> None:
    accounts = [
        BrokerAccount(
            "tag-a", "$7$1000$c2FsdA==$aGFzaA==", ("tracker/v1/tags/tag-a/position", "owntracks/a/p")
        ),
        BrokerAccount("gate-1", "$7$1000$c2FsdA==$aGFzaA==", ("tracker/v1/readers/gate-1/sightings",)),
    ]
    files = render(
        accounts, tracker=Reader("tracker", "s3cret"), prefix="city/", publishers=[parse_account("sim:pw")]
    )
    users = dict(line.split(":", 1) for line in files.passwords.splitlines())
    assert set(users) == {"tracker", "sim", "tag-a", "gate-1"}
    assert mosquitto_check("s3cret", users["tracker"]) and mosquitto_check("pw", users["sim"])
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in files.acl.split("\n\n") if b.startswith("user ")}
    assert blocks["user tag-a"] == [
        "topic write city/tracker/v1/tags/tag-a/position",
        "topic write city/owntracks/a/p",
    ]
    assert blocks["user gate-1"] == ["topic write city/tracker/v1/readers/gate-1/sightings"]
    reads = [line for b in blocks.values() for line in b if line.startswith("topic read")]
    assert reads == blocks["user tracker"]  # nobody but the tracker reads anything
    assert "pattern" not in files.acl.replace("No `pattern` lines", "")


@pytest.mark.parametrize("bad", ["with space", "a:b", "plus+", "hash#", ""])
def test_names_that_would_break_the_files_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        render([BrokerAccount(bad, "$7$x", ())], tracker=Reader("tracker", "pw"))


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        render([BrokerAccount("tracker", "$7$x", ())], tracker=Reader("tracker", "pw"))


def test_a_batch_is_charged_only_when_it_commits() -> None:
    """A batch run again after a failed commit (PostgreSQL away) is not charged twice: a device's
    backlog retried ten times is not rate-limited for it."""
    bucket = TagRateLimiter(rate_per_s=1.0, burst=5)
    for _ in range(10):  # ten attempts, none committed
        attempt = bucket.batch()
        assert all(attempt.allow("backlog", 0.0) for _ in range(5))
    committed = bucket.batch()
    assert [committed.allow("backlog", 0.0) for _ in range(6)] == [True] * 5 + [False]
    committed.commit()
    assert not bucket.batch().allow("backlog", 0.0)  # now it is charged


def test_a_batch_prepared_while_the_one_before_commits_starts_from_its_charges() -> None:
    """The service prepares a batch while the one before it commits: the flood of the first counts
    against the second, and a batch that never commits takes its charges with it."""
    bucket = TagRateLimiter(rate_per_s=1.0, burst=5)
    first = bucket.batch()
    assert all(first.allow("flood", 0.0) for _ in range(4))
    first.hold()  # prepared, committing
    second = bucket.batch()
    assert [second.allow("flood", 0.0) for _ in range(2)] == [True, False]
    second.hold()
    first.commit()
    second.commit()
    assert not bucket.batch().allow("flood", 0.0)

    lost = bucket.batch()
    assert lost.allow("other", 0.0)
    lost.hold()
    bucket.discard_ahead()  # its commit failed for good
    fresh = bucket.batch()
    assert [fresh.allow("other", 0.0) for _ in range(6)] == [True] * 5 + [False]  # a full burst again
