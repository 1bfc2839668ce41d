"""Device identities of tags (OwnTracks user/device, OsmAnd id), readers' MQTT passwords, and what the
broker's password file and ACL are written from."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from tracker.store.tokens import mosquitto_check, mosquitto_hash, new_mqtt_password, resolve_token

PROTOCOLS = ("owntracks", "osmand")


async def link_device(
    conn: asyncpg.Connection | asyncpg.Pool, *, tag_id: str, protocol: str, device: str
) -> None:
    """Map a device identity to a tag (again: to this tag now). ``owntracks`` devices are 'user/device'."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if protocol == "owntracks" and (device.count("/") != 1 or "" in device.split("/")):
        raise ValueError(f"an OwnTracks device is 'user/device', not {device!r}")
    if any(c in "+#" or ord(c) < 0x20 or ord(c) == 0x7F for c in device) or not 0 < len(device) <= 200:
        raise ValueError(f"not a device identity: {device!r}")
    await conn.execute(
        "INSERT INTO tag_devices (protocol, device, tag_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (protocol, device) DO UPDATE SET tag_id = EXCLUDED.tag_id",
        protocol,
        device,
        tag_id,
    )


async def unlink_device(conn: asyncpg.Connection | asyncpg.Pool, *, protocol: str, device: str) -> bool:
    status = await conn.execute(
        "DELETE FROM tag_devices WHERE protocol = $1 AND device = $2", protocol, device
    )
    return bool(status.endswith(" 1"))


async def set_reader_password(conn: asyncpg.Connection | asyncpg.Pool, reader_id: str) -> str | None:
    """A new MQTT password for an RFID reader (returned once; only its hash is kept); None: no reader."""
    password = new_mqtt_password()
    row = await conn.fetchrow(
        "UPDATE readers SET mqtt_password_hash = $2 WHERE id = $1 RETURNING id",
        reader_id,
        mosquitto_hash(password),
    )
    return password if row is not None else None


@dataclass(frozen=True)
class BrokerAccount:
    """A broker user written into the password file, and the topics (under the prefix) it may publish;
    ``owner``: what it is in the registry, a (GPS) "tag" or a "reader"."""

    username: str
    password_hash: str
    publish: tuple[str, ...]
    owner: str = "tag"


async def broker_accounts(conn: asyncpg.Connection | asyncpg.Pool) -> list[BrokerAccount]:
    """Every tag with an MQTT password (its native topic and its OwnTracks topics) and every reader with
    one (its sightings topic), sorted by username."""
    accounts = []
    for r in await conn.fetch(
        "SELECT t.id, t.mqtt_password_hash,"
        " coalesce(array_agg(d.device ORDER BY d.device) FILTER (WHERE d.protocol = 'owntracks'), '{}') AS ot"
        " FROM tags t LEFT JOIN tag_devices d ON d.tag_id = t.id"
        " WHERE t.mqtt_password_hash IS NOT NULL GROUP BY t.id ORDER BY t.id"
    ):
        topics = [f"tracker/v1/tags/{r['id']}/position"]
        for device in r["ot"]:
            topics += [f"owntracks/{device}", f"owntracks/{device}/event"]
        accounts.append(BrokerAccount(r["id"], r["mqtt_password_hash"], tuple(topics)))
    for r in await conn.fetch(
        "SELECT id, mqtt_password_hash FROM readers WHERE mqtt_password_hash IS NOT NULL ORDER BY id"
    ):
        accounts.append(
            BrokerAccount(
                r["id"], r["mqtt_password_hash"], (f"tracker/v1/readers/{r['id']}/sightings",), "reader"
            )
        )
    return accounts


async def broker_user_taken(conn: asyncpg.Connection, name: str) -> str | None:
    """Is ``name`` a tag's or a reader's id already ("tag", "reader"; None: neither)? Tags and readers
    share one namespace because both become broker users of their id. Inside the caller's
    transaction, which holds a lock on the name until it commits: two registrations of one name,
    one a tag and one a reader, cannot both pass this check."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('broker-user:' || $1, 0))", name)
    return await conn.fetchval(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM tags WHERE id = $1) THEN 'tag'"
        " WHEN EXISTS (SELECT 1 FROM readers WHERE id = $1) THEN 'reader' END",
        name,
    )


async def device_may_send(conn: asyncpg.Connection | asyncpg.Pool, tag_id: str, secret: str) -> bool:
    """Is ``secret`` the tag's MQTT password or a valid device token of this tag?"""
    if secret.startswith("d_"):
        who = await resolve_token(conn, secret)
        if who is not None and who.role == "device" and who.tag_id == tag_id:
            return True
    stored = await conn.fetchval("SELECT mqtt_password_hash FROM tags WHERE id = $1", tag_id)
    return stored is not None and mosquitto_check(secret, stored)


async def tag_devices(conn: asyncpg.Connection | asyncpg.Pool, tag_id: str) -> list[dict[str, str]]:
    rows = await conn.fetch(
        "SELECT protocol, device FROM tag_devices WHERE tag_id = $1 ORDER BY protocol, device", tag_id
    )
    return [{"protocol": r["protocol"], "device": r["device"]} for r in rows]


async def replace_devices(
    conn: asyncpg.Connection, tag_id: str, wanted: list[tuple[str, str]]
) -> tuple[str, str] | None:
    """Make ``wanted`` the tag's identities (inside the caller's transaction); if one of them belongs
    to another tag, change nothing and return it."""
    for protocol, device in wanted:
        owner = await conn.fetchval(
            "SELECT tag_id FROM tag_devices WHERE protocol = $1 AND device = $2", protocol, device
        )
        if owner is not None and owner != tag_id:
            return protocol, device
    await conn.execute("DELETE FROM tag_devices WHERE tag_id = $1", tag_id)
    if wanted:
        await conn.executemany(
            "INSERT INTO tag_devices (protocol, device, tag_id) VALUES ($1, $2, $3)",
            [(p, d, tag_id) for p, d in wanted],
        )
    return None
