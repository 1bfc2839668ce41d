"""The per-tag token bucket and the broker files `tracker broker-config` writes (pure parts)."""

from __future__ import annotations

import pytest

from tracker.broker_config import (
    Reader,
    broker_user_problem,
    broker_user_refusal,
    parse_account,
    render,
    render_settings,
    reserved_broker_users,
)
from tracker.ingest.mqtt import receive_maximum
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


HASH = "$7$101$c2FsdA==$aGFzaA=="


@pytest.mark.parametrize(
    ("name", "reserved", "problem"),
    [
        ("tag-0042", (), None),
        ("AB.12_x-9", (), None),
        ("학교-태그", (), None),  # a printable word in any script
        ("aa:bb:cc", (), "':' is not allowed"),  # a MAC address: ':' ends the name in the password file
        ("a/b", (), "'/' is not allowed"),
        ("plus+", (), "'+' is not allowed"),
        ("hash#", (), "'#' is not allowed"),
        ("with space", (), "' ' is not allowed"),
        ("line\nuser tracker", (), "'\\n' is not allowed"),
        ("del\x7f", (), "'\\x7f' is not allowed"),
        ("", (), "it is empty"),
        ("x" * 65, (), "longer than 64"),
        ("tracker", (), "reserved"),  # the fixed list ...
        ("Simulator", (), "reserved"),  # ... without regard to case
        ("admin", (), "reserved"),
        ("gateway", (), "reserved"),
        ("svc-mqtt", ("svc-mqtt",), "reserved"),  # the tracker's own user, a publisher
        ("svc-mqtt", (), None),
    ],
)
def test_what_can_be_a_broker_user(name: str, reserved: tuple[str, ...], problem: str | None) -> None:
    found = broker_user_problem(name, reserved)
    assert found is None if problem is None else (found is not None and problem in found), found


def test_the_tracker_user_from_its_url_and_the_publishers_are_reserved() -> None:
    assert reserved_broker_users("mqtt://svc-mqtt:pw@broker:1883", ["gw-north"]) == {"svc-mqtt", "gw-north"}
    assert reserved_broker_users(None) == frozenset()
    assert reserved_broker_users("mqtt://broker:1883") == frozenset()


def test_the_api_sentence_names_the_id_and_why() -> None:
    assert broker_user_refusal("tag id", "aa:bb:cc", None) == (
        "tag id 'aa:bb:cc' cannot be a broker user name: ':' is not allowed"
        " (it ends the user name in Mosquitto's password file)"
    )
    assert broker_user_refusal("reader id", "gate-1", "mqtt://gate-1:pw@h:1") is not None
    assert broker_user_refusal("reader id", "gate-1", "mqtt://tracker:pw@h:1") is None


def account(
    name: str, owner: str = "tag", *, topics: tuple[str, ...] = (), hash_: str = HASH
) -> BrokerAccount:
    return BrokerAccount(name, hash_, topics or (f"tracker/v1/tags/{name}/position",), owner)


@pytest.mark.parametrize(
    ("accounts", "kept", "left_out"),
    [
        ([account("tag-a"), account("gate-1", "reader")], ["tag-a", "gate-1"], []),
        ([account("aa:bb:cc"), account("tag-a")], ["tag-a"], [("aa:bb:cc", "tag", "invalid_name")]),
        ([account("tracker"), account("tag-a")], ["tag-a"], [("tracker", "tag", "reserved")]),
        ([account("sim-2"), account("tag-a")], ["tag-a"], [("sim-2", "tag", "reserved")]),  # a publisher
        # a reader and a GPS tag of one id: both out, either could be the impostor
        (
            [account("x-1"), account("tag-a"), account("x-1", "reader")],
            ["tag-a"],
            [("x-1", "tag", "duplicate"), ("x-1", "reader", "duplicate")],
        ),
        (
            [account("tag-a", topics=("tracker/v1/tags/tag-a/position", "owntracks/a/p\nuser tracker"))],
            [],
            [("tag-a", "tag", "invalid_topic")],
        ),
        ([account("tag-a", topics=("owntracks/+/p",))], [], [("tag-a", "tag", "invalid_topic")]),
        ([account("tag-a", hash_="$7$x\nuser tracker")], [], [("tag-a", "tag", "invalid_hash")]),
        ([account("tag-a", hash_="plain-text")], [], [("tag-a", "tag", "invalid_hash")]),
    ],
)
def test_broker_config_writes_everyone_it_can_and_names_whom_it_left_out(
    accounts: list[BrokerAccount], kept: list[str], left_out: list[tuple[str, str, str]]
) -> None:
    files = render(accounts, tracker=Reader("tracker", "pw"), publishers=[parse_account("sim-2:pw")])
    assert list(files.written) == kept
    assert [(x.username, x.owner, x.reason) for x in files.left_out] == left_out
    users = [line.split(":", 1)[0] for line in files.passwords.splitlines()]
    assert users == ["tracker", "sim-2", *kept]  # the broker's own users always, each name once
    acl_users = [line.removeprefix("user ") for line in files.acl.splitlines() if line.startswith("user ")]
    assert acl_users == users
    assert all(line == "" or line.startswith(("#", "user ", "topic ")) for line in files.acl.splitlines())
    assert all(str(x).startswith(f"{x.owner} {x.username!r} left out: ") for x in files.left_out)


@pytest.mark.parametrize(
    ("tracker", "publishers"),
    [("a:b", []), ("with space", []), ("tracker", ["tracker:pw"]), ("tracker", ["sim:pw", "sim:pw2"])],
)
def test_without_a_usable_tracker_or_publisher_nothing_is_written(
    tracker: str, publishers: list[str]
) -> None:
    """The operator's own names: a mistake there is the whole broker's, so it stops everything."""
    with pytest.raises(ValueError, match="broker username"):
        render(
            [account("tag-a")],
            tracker=Reader(tracker, "pw"),
            publishers=[parse_account(p) for p in publishers],
        )


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


def test_the_tracker_may_publish_and_read_its_probe_topic_and_nobody_else_may() -> None:
    sim = parse_account("sim:pw")
    files = render([], tracker=Reader("tracker", "s3cret"), prefix="city/", publishers=[sim])
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in files.acl.split("\n\n") if b.startswith("user ")}
    assert "topic readwrite city/tracker/v1/probe/#" in blocks["user tracker"]
    assert not any("probe" in line for line in blocks["user sim"])


def test_the_settings_file_holds_the_window_a_large_queue_and_persistence() -> None:
    settings = dict(
        line.split(" ", 1)
        for line in render_settings(window=14000).splitlines()
        if line and not line.startswith("#")
    )
    assert settings == {
        "max_inflight_messages": "14000",  # the tracker's Receive Maximum: a 3.1.1 tracker gets the same
        "max_queued_messages": "1000000",  # Mosquitto's default, 1000, drops a burst
        "max_queued_bytes": "0",  # no byte limit beside the count
        "persistence": "true",
        "autosave_interval": "30",
        "persistent_client_expiration": "14d",
    }
    assert "max_queued_messages 0\n" in render_settings(window=1, max_queued_messages=0)
    with pytest.raises(ValueError, match="at least 1"):
        render_settings(window=0)


@pytest.mark.parametrize(
    ("ingest_queue_max", "batch_max_messages", "window"),
    [
        (10_000, 2000, 14_000),  # the defaults: the queue full, one batch committing, one prepared
        (100, 100, 300),
        (64_000, 2000, 65_535),  # MQTT 5's Receive Maximum is a two-byte integer
    ],
)
def test_the_window_the_tracker_asks_for(ingest_queue_max: int, batch_max_messages: int, window: int) -> None:
    assert receive_maximum(ingest_queue_max, batch_max_messages) == window
