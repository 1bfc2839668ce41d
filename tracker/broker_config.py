"""`tracker broker-config`: Mosquitto's password file and ACL, written from the registry.

- every GPS tag with an MQTT password (its username is the tag id) may publish to its own topics
  only: ``tracker/v1/tags/{tag}/position`` and, for each OwnTracks identity registered to it,
  ``owntracks/{user}/{device}`` and ``.../event``;
- every RFID reader with an MQTT password may publish to ``tracker/v1/readers/{reader}/sightings``;
- the tracker's own user may subscribe to all of them; nobody else may subscribe to anything;
- ``--publisher NAME:PASSWORD`` (e.g. the simulator, a gateway) may publish to any tag, gateway or
  reader topic, and subscribe to nothing.

Mosquitto is started with ``password_file``, ``acl_file`` and ``allow_anonymous false`` (see
``deploy/mosquitto/mosquitto.conf``); after a rewrite, ``kill -HUP`` makes it read both files again.
The files are replaced atomically (write, then rename).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tracker.store.devices import BrokerAccount
from tracker.store.tokens import mosquitto_hash


@dataclass(frozen=True)
class Reader:
    """The tracker's own broker user (it subscribes)."""

    username: str
    password: str


@dataclass(frozen=True)
class BrokerFiles:
    passwords: str
    acl: str


def _safe(name: str) -> str:
    if not name or any(c in name for c in ":\n\r\t +#") or len(name) > 200:
        raise ValueError(f"not usable as a broker username: {name!r}")
    return name


def render(
    accounts: list[BrokerAccount],
    *,
    tracker: Reader,
    prefix: str = "",
    publishers: list[Reader] | None = None,
) -> BrokerFiles:
    """The text of the password file and of the ACL file."""
    publishers = publishers or []
    names = [tracker.username, *(p.username for p in publishers), *(a.username for a in accounts)]
    if len(set(names)) != len(names):
        raise ValueError("a broker username is used twice (the tracker, a publisher, a tag or a reader)")
    pw = [f"{_safe(tracker.username)}:{mosquitto_hash(tracker.password)}"]
    pw += [f"{_safe(p.username)}:{mosquitto_hash(p.password)}" for p in publishers]
    pw += [f"{_safe(a.username)}:{a.password_hash}" for a in accounts]
    acl = [
        "# Written by `tracker broker-config` from the registry; do not edit (it is rewritten).",
        "# No `pattern` lines: a user may do only what its own lines say; anonymous clients are refused.",
        "",
        f"user {tracker.username}",
        f"topic read {prefix}tracker/v1/#",
        f"topic read {prefix}owntracks/#",
        "topic read $SYS/#",
    ]
    for p in publishers:
        acl += [
            "",
            f"user {p.username}",
            f"topic write {prefix}tracker/v1/tags/+/position",
            f"topic write {prefix}tracker/v1/gateways/+/positions",
            f"topic write {prefix}tracker/v1/readers/+/sightings",
        ]
    for a in accounts:
        acl += ["", f"user {a.username}"] + [f"topic write {prefix}{t}" for t in a.publish]
    return BrokerFiles("\n".join(pw) + "\n", "\n".join(acl) + "\n")


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
