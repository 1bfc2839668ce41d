"""`tracker broker-config`: Mosquitto's password file and ACL, written from the registry.

- every GPS tag with an MQTT password (its username is the tag id) may publish to its own topics
  only: ``tracker/v1/tags/{tag}/position`` and, for each OwnTracks identity registered to it,
  ``owntracks/{user}/{device}`` and ``.../event``;
- every RFID reader with an MQTT password may publish to ``tracker/v1/readers/{reader}/sightings``;
- the tracker's own user may subscribe to all of them; nobody else may subscribe to anything;
- ``--publisher NAME:PASSWORD`` (e.g. the simulator, a gateway) may publish to any tag, gateway or
  reader topic, and subscribe to nothing.

Which names can be broker users is decided here once (:func:`broker_user_problem`), for the API that
refuses them and for this command that leaves them out: one school's bad registration must never
stop the broker's files being written for the whole city. An account that cannot be written (a bad
name, a reserved one, a name two accounts share, a topic that cannot be an ACL line) is left out and
reported; everyone else is written.

With ``--settings-file``, it also writes the broker settings the tracker needs (:func:`render_settings`),
a file for Mosquitto to include (``include_dir``): the tracker acknowledges a message only after its
commit, and Mosquitto's defaults would throttle it to 20 unacknowledged messages and drop what it
queues for it beyond 1000.

Mosquitto is started with ``password_file``, ``acl_file`` and ``allow_anonymous false`` (see
``deploy/mosquitto/mosquitto.conf``); after a rewrite, ``kill -HUP`` makes it read both files again,
and Mosquitto 2 then checks every connected client's password again and disconnects those it no
longer accepts (``mosquitto_security_apply_default`` in its ``src/security_default.c``), so a
rotated password takes effect for connected devices too. The files are replaced atomically (write,
then rename).
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tracker.store.devices import BrokerAccount
from tracker.store.tokens import mosquitto_hash

# Names a device must never take: the usual names of the broker's own users (the tracker, the
# simulator, a gateway, an operator). The tracker's own user (from TRACKER_MQTT_URL) and the
# --publisher names given to broker-config are reserved as well, whatever they are.
RESERVED_BROKER_USERS = frozenset({"tracker", "simulator", "gateway", "admin"})
MAX_BROKER_USER = 64  # the registry's own limit on tag and reader ids

# Exit status of `tracker broker-config` when it wrote both files but left some accounts out (1: it
# wrote nothing; 2: bad arguments). docker-compose starts the broker on either 0 or this.
EXIT_LEFT_OUT = 3

LeftOutReason = Literal["invalid_name", "reserved", "duplicate", "invalid_topic", "invalid_hash"]
_PASSWORD_HASH = re.compile(r"\$[67]\$[!-9;-~]+")  # Mosquitto's $6$/$7$ hashes: printable, no ':'


_NOT_ALLOWED = {
    ":": "':' is not allowed (it ends the user name in Mosquitto's password file)",
    "/": "'/' is not allowed (the name is one level of its MQTT topic)",
    "+": "'+' is not allowed (an MQTT wildcard)",
    "#": "'#' is not allowed (an MQTT wildcard)",
}


def broker_user_problem(name: str, reserved: Iterable[str] = ()) -> str | None:
    """Why ``name`` cannot be a device's broker user (None: it can): :func:`_judge`'s sentence."""
    judged = _judge(name, _folded(reserved))
    return None if judged is None else judged[1]


def _folded(reserved: Iterable[str]) -> frozenset[str]:
    return frozenset(r.casefold() for r in (*RESERVED_BROKER_USERS, *reserved))


def _name_problem(name: str) -> str | None:
    """A broker user's name is written into Mosquitto's password file (``name:hash`` lines) and ACL
    (``user name`` lines) and is one level of its topics: one printable word, without ``:`` or
    MQTT's topic characters."""
    if not name:
        return "it is empty"
    if len(name) > MAX_BROKER_USER:
        return f"it is longer than {MAX_BROKER_USER} characters"
    for c in name:
        if c in _NOT_ALLOWED:
            return _NOT_ALLOWED[c]
        if c.isspace() or unicodedata.category(c).startswith("C"):
            return f"{c!r} is not allowed (spaces and control characters break the broker's files)"
    return None


def _judge(name: str, reserved_folded: frozenset[str]) -> tuple[LeftOutReason, str] | None:
    """A device must also keep off the broker's own users' names, or it could take the tracker's
    place (compared without case, so that no device passes for one in a log either)."""
    problem = _name_problem(name)
    if problem is not None:
        return "invalid_name", problem
    if name.casefold() in reserved_folded:
        return "reserved", f"{name!r} is reserved for the broker's own users (the tracker, publishers)"
    return None


def reserved_broker_users(mqtt_url: str | None, publishers: Iterable[str] = ()) -> frozenset[str]:
    """The names no device may take besides :data:`RESERVED_BROKER_USERS`: the tracker's own broker
    user (from its MQTT URL) and the publishers' names."""
    names = set(publishers)
    if mqtt_url:
        from tracker.ingest.mqtt import BrokerAddress

        try:
            user = BrokerAddress.parse(mqtt_url).username
        except ValueError:
            user = None
        if user:
            names.add(user)
    return frozenset(names)


def broker_user_refusal(what: str, name: str, mqtt_url: str | None) -> str | None:
    """The API's 422 sentence for a device id that cannot become a broker user (None: it can), e.g.
    "tag id 'aa:bb' cannot be a broker user name: ':' is not allowed (...)"."""
    problem = broker_user_problem(name, reserved_broker_users(mqtt_url))
    return None if problem is None else f"{what} {name!r} cannot be a broker user name: {problem}"


def _topics_problem(topics: Iterable[str]) -> str | None:
    """Why one of ``topics`` cannot be an ACL ``topic write`` line for one device (None: they all
    can). Registered through the API they always can; an identity put in by hand may not."""
    for topic in topics:
        if not topic or any(c in "+#" for c in topic):
            return f"its topic {topic!r}: a wildcard or an empty topic reaches beyond its own topics"
        if any((c.isspace() and c != " ") or unicodedata.category(c).startswith("C") for c in topic):
            return f"its topic {topic!r}: a control character would break the ACL file"
    return None


@dataclass(frozen=True)
class LeftOut:
    """An account broker-config did not write, and why (``reason`` is a /metrics label)."""

    username: str
    owner: str  # "tag" or "reader"
    reason: LeftOutReason
    why: str

    def __str__(self) -> str:
        return f"{self.owner} {self.username!r} left out: {self.why}"


def usable_accounts(
    accounts: Iterable[BrokerAccount], reserved: Iterable[str] = ()
) -> tuple[list[BrokerAccount], list[LeftOut]]:
    """The accounts that can be written, and those left out. A name two device accounts share (a
    reader and a GPS tag registered before the API refused it) leaves out both: the broker can hold
    only one password and one set of topics per name, and either of the two could be the impostor
    (taking the other's place, or publishing to its topics), so neither is given the name; each of
    them is reported. A device taking a reserved name is left out and the broker's own user kept."""
    accounts = list(accounts)
    reserved_folded = _folded(reserved)
    uses = Counter(a.username for a in accounts)
    kept: list[BrokerAccount] = []
    left_out: list[LeftOut] = []
    for a in accounts:
        judged = _judge(a.username, reserved_folded)
        if judged is not None:
            left_out.append(LeftOut(a.username, a.owner, judged[0], f"not a broker user name: {judged[1]}"))
        elif uses[a.username] > 1:
            others = sorted(b.owner for b in accounts if b.username == a.username and b is not a)
            left_out.append(
                LeftOut(
                    a.username,
                    a.owner,
                    "duplicate",
                    f"the {' and '.join(others)} of the same id is a broker user of that name too"
                    " (both are left out: either could be the impostor)",
                )
            )
        elif (bad_topic := _topics_problem(a.publish)) is not None:
            left_out.append(LeftOut(a.username, a.owner, "invalid_topic", bad_topic))
        elif not _PASSWORD_HASH.fullmatch(a.password_hash):
            left_out.append(
                LeftOut(a.username, a.owner, "invalid_hash", "its stored password is not a Mosquitto hash")
            )
        else:
            kept.append(a)
    return kept, left_out


@dataclass(frozen=True)
class Reader:
    """The tracker's own broker user (it subscribes)."""

    username: str
    password: str


@dataclass(frozen=True)
class BrokerFiles:
    passwords: str
    acl: str
    written: tuple[str, ...] = ()  # the device accounts written
    left_out: tuple[LeftOut, ...] = ()


def render(
    accounts: list[BrokerAccount],
    *,
    tracker: Reader,
    prefix: str = "",
    publishers: list[Reader] | None = None,
) -> BrokerFiles:
    """The text of the password file and of the ACL file, without the device accounts that cannot be
    written (they are in ``left_out``). The tracker's and the publishers' own names are the
    operator's: one of them that is not a broker user name, or a name they share, is a ValueError
    (nothing can be written without the tracker)."""
    publishers = publishers or []
    own = [tracker.username, *(p.username for p in publishers)]
    for name in own:
        if (problem := _name_problem(name)) is not None:
            raise ValueError(f"not usable as a broker username: {name!r}: {problem}")
    if len(set(own)) != len(own):
        raise ValueError("a broker username is used twice (the tracker and a publisher, or two publishers)")
    kept, left_out = usable_accounts(accounts, own)
    pw = [f"{tracker.username}:{mosquitto_hash(tracker.password)}"]
    pw += [f"{p.username}:{mosquitto_hash(p.password)}" for p in publishers]
    pw += [f"{a.username}:{a.password_hash}" for a in kept]
    acl = [
        "# Written by `tracker broker-config` from the registry; do not edit (it is rewritten).",
        "# No `pattern` lines: a user may do only what its own lines say; anonymous clients are refused.",
        "",
        f"user {tracker.username}",
        f"topic read {prefix}tracker/v1/#",
        f"topic read {prefix}owntracks/#",
        "topic read $SYS/#",
        # the broker probe (tracker.ingest.broker_probe) publishes to itself there
        f"topic readwrite {prefix}tracker/v1/probe/#",
    ]
    for p in publishers:
        acl += [
            "",
            f"user {p.username}",
            f"topic write {prefix}tracker/v1/tags/+/position",
            f"topic write {prefix}tracker/v1/gateways/+/positions",
            f"topic write {prefix}tracker/v1/readers/+/sightings",
        ]
    for a in kept:
        acl += ["", f"user {a.username}"] + [f"topic write {prefix}{t}" for t in a.publish]
    return BrokerFiles(
        "\n".join(pw) + "\n", "\n".join(acl) + "\n", tuple(a.username for a in kept), tuple(left_out)
    )


MAX_QUEUED_MESSAGES = 1_000_000  # per client: about 100 s of a city's fixes at 10,000 a second
AUTOSAVE_INTERVAL_S = 30
PERSISTENT_CLIENT_EXPIRATION = "14d"


def render_settings(*, window: int, max_queued_messages: int = MAX_QUEUED_MESSAGES) -> str:
    """Mosquitto settings for the tracker, a file to include. ``window``: the unacknowledged messages
    the tracker can usefully hold (tracker.ingest.mqtt.receive_maximum). Every value is explained
    where an operator reads it (the file itself)."""
    if window < 1 or max_queued_messages < 0:
        raise ValueError("the in-flight window must be at least 1 and the queue not negative")
    return "\n".join(
        [
            "# Written by `tracker broker-config --settings-file`; do not edit (it is rewritten).",
            '# The broker settings the tracker needs (docs/operations.md, "The broker"): it takes QoS 1',
            "# messages on a persistent session and acknowledges each only after its commit.",
            "#",
            "# Unacknowledged messages the broker sends a client (an MQTT 3.1.1 client; an MQTT 5 client,",
            "# the tracker where the broker speaks it, gets the Receive Maximum it asks for, the same",
            "# number). Mosquitto's default, 20, cuts every batch of the tracker to 20 messages.",
            f"max_inflight_messages {window}",
            "# QoS 1 messages queued for a client beyond those in flight (while the tracker is busy, or",
            "# restarting): Mosquitto drops the rest, saying so only in its own log. Its default is 1000.",
            f"max_queued_messages {max_queued_messages}",
            "max_queued_bytes 0",
            "# The tracker's session and what is queued for it survive a broker restart; a broker killed",
            f"# loses at most the last {AUTOSAVE_INTERVAL_S} s (a clean stop saves everything).",
            "persistence true",
            f"autosave_interval {AUTOSAVE_INTERVAL_S}",
            "# Sessions of clients gone this long are removed (devices that never come back); the",
            "# tracker's outlives any outage shorter than that.",
            f"persistent_client_expiration {PERSISTENT_CLIENT_EXPIRATION}",
            "",
        ]
    )


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_account(text: str) -> Reader:
    """'NAME:PASSWORD' -> Reader."""
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise ValueError(f"expected NAME:PASSWORD, got {text!r}")
    return Reader(name, password)
