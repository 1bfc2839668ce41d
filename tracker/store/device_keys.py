"""The secret keys of OwnTracks devices that encrypt their payloads (``tag_devices.secret_key``).

A payload key is a secret, but unlike a password it cannot be kept as a hash: the tracker must open
the device's messages with it. So it is kept as the 32-byte secretbox key the app derives from its
secret (tracker.ingest.owntracks.secret_key), and it goes one way: written by ``PUT
/api/v1/tags/{id}/devices``, read only by the registry view that decodes (tracker.store.registry_rows),
and never answered by the API, which says only whether a device has a key (``encrypted``).
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

Identity = tuple[str, str]  # (protocol, device)


async def stored_keys(conn: asyncpg.Connection, tag_id: str) -> dict[Identity, bytes]:
    """The keys of the tag's devices that have one (for the caller to carry over a replacement)."""
    rows = await conn.fetch(
        "SELECT protocol, device, secret_key FROM tag_devices WHERE tag_id = $1 AND secret_key IS NOT NULL",
        tag_id,
    )
    return {(r["protocol"], r["device"]): bytes(r["secret_key"]) for r in rows}


async def set_keys(conn: asyncpg.Connection, tag_id: str, keys: Mapping[Identity, bytes | None]) -> None:
    """Set (or, with None, remove) the keys of the tag's devices; identities the tag does not have
    are left alone (inside the caller's transaction, after the identities themselves are written)."""
    if keys:
        await conn.executemany(
            "UPDATE tag_devices SET secret_key = $4 WHERE tag_id = $1 AND protocol = $2 AND device = $3",
            [(tag_id, protocol, device, key) for (protocol, device), key in keys.items()],
        )


async def keyed(conn: asyncpg.Connection | asyncpg.Pool, tag_id: str) -> set[Identity]:
    """The tag's identities that have a key: what the API may say about keys."""
    rows = await conn.fetch(
        "SELECT protocol, device FROM tag_devices WHERE tag_id = $1 AND secret_key IS NOT NULL", tag_id
    )
    return {(r["protocol"], r["device"]) for r in rows}
