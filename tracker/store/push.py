"""Web Push rows: a guardian's push subscriptions (one per browser) and the service's VAPID key pair.

A subscription is what a browser's ``PushSubscription.toJSON()`` says: the push service's endpoint for
that browser and the keys that encrypt for it (RFC 8291). A guardian who subscribes gets 'push' among
their channels, so that the outbox has push rows for them; one who removes their last subscription
loses it. A browser is told only while the sign-in that subscribed it is valid (its token neither
revoked nor expired): a parent who revokes a lost phone's token silences its notifications too. A
subscription the push service says is gone (404, 410) is deleted by the channel, and
the channel stays chosen: the parent page subscribes again the next time it is opened with the
permission still granted (tracker/api/static/push.js).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

MAX_PER_GUARDIAN = 10
"""Subscriptions kept per guardian (the newest): each alert is a request per subscription, so a
guardian cannot make one alert cost thousands of them."""


@dataclass(frozen=True)
class PushSubscription:
    id: int
    guardian_id: int
    endpoint: str
    p256dh: str
    auth: str
    vapid_public_key: str


@dataclass(frozen=True)
class Saved:
    subscription_id: int
    created: bool  # False: the browser was subscribed already (its keys are refreshed)
    moved_from: int | None  # the guardian the browser was subscribed for before, when another


async def save_subscription(
    conn: asyncpg.Connection,
    guardian_id: int,
    *,
    token_id: int,
    endpoint: str,
    p256dh: str,
    auth: str,
    vapid_public_key: str,
    user_agent: str,
) -> Saved:
    """Keep a browser's subscription for the guardian (the same endpoint again: its keys and owner are
    updated), keep the guardian's newest ``MAX_PER_GUARDIAN``, and add 'push' to their channels."""
    async with conn.transaction():
        before = await conn.fetchval(
            "SELECT guardian_id FROM push_subscriptions WHERE endpoint = $1 FOR UPDATE", endpoint
        )
        row = await conn.fetchrow(
            "INSERT INTO push_subscriptions"
            " (guardian_id, endpoint, p256dh, auth, vapid_public_key, user_agent, token_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (endpoint) DO UPDATE SET guardian_id = excluded.guardian_id,"
            " token_id = excluded.token_id,"
            " p256dh = excluded.p256dh, auth = excluded.auth, vapid_public_key = excluded.vapid_public_key,"
            " user_agent = excluded.user_agent, updated_at = now(), last_error = NULL"
            " RETURNING id, (xmax = 0) AS created",
            guardian_id,
            endpoint,
            p256dh,
            auth,
            vapid_public_key,
            user_agent[:300],
            token_id,
        )
        assert row is not None
        await conn.execute(
            "DELETE FROM push_subscriptions WHERE guardian_id = $1 AND id NOT IN ("
            " SELECT id FROM push_subscriptions WHERE guardian_id = $1"
            " ORDER BY updated_at DESC, id DESC LIMIT $2)",
            guardian_id,
            MAX_PER_GUARDIAN,
        )
        channels = await conn.fetchval("SELECT channels FROM guardians WHERE id = $1", guardian_id)
        # only when it changes: every statement on guardians wakes the registry's rebuild
        if channels is not None and "push" not in channels:
            await conn.execute(
                "UPDATE guardians SET channels = array_append(channels, 'push') WHERE id = $1", guardian_id
            )
    moved = before if before is not None and before != guardian_id else None
    return Saved(int(row["id"]), bool(row["created"]), moved)


async def delete_subscription(conn: asyncpg.Connection, guardian_id: int, endpoint: str) -> bool:
    """Remove one of the guardian's subscriptions (the page turned notifications off, or signed out);
    with the last one gone, 'push' leaves their channels. False: no such subscription of theirs."""
    async with conn.transaction():
        deleted = await conn.fetchval(
            "DELETE FROM push_subscriptions WHERE guardian_id = $1 AND endpoint = $2 RETURNING id",
            guardian_id,
            endpoint,
        )
        if deleted is None:
            return False
        left = await conn.fetchval(
            "SELECT count(*) FROM push_subscriptions WHERE guardian_id = $1", guardian_id
        )
        channels = await conn.fetchval("SELECT channels FROM guardians WHERE id = $1", guardian_id)
        if not left and channels is not None and "push" in channels:
            await conn.execute(
                "UPDATE guardians SET channels = array_remove(channels, 'push') WHERE id = $1", guardian_id
            )
    return True


async def list_subscriptions(
    conn: asyncpg.Connection | asyncpg.Pool, guardian_id: int
) -> list[dict[str, object]]:
    """The guardian's subscribed browsers, newest first (what the API shows them: no keys)."""
    rows = await conn.fetch(
        "SELECT id, endpoint, user_agent, created_at, updated_at, last_success_at, last_failure_at,"
        " last_error FROM push_subscriptions WHERE guardian_id = $1 ORDER BY updated_at DESC, id DESC",
        guardian_id,
    )
    return [dict(r.items()) for r in rows]


async def subscriptions_of(pool: asyncpg.Pool, guardian_id: int) -> list[PushSubscription]:
    """The guardian's browsers that may be told now: subscribed with a token still valid."""
    rows = await pool.fetch(
        "SELECT p.id, p.guardian_id, p.endpoint, p.p256dh, p.auth, p.vapid_public_key"
        " FROM push_subscriptions p JOIN api_tokens t ON t.id = p.token_id"
        " WHERE p.guardian_id = $1 AND t.revoked_at IS NULL"
        " AND (t.expires_at IS NULL OR t.expires_at > now())"
        " ORDER BY p.id",
        guardian_id,
    )
    return [PushSubscription(*r) for r in rows]


async def forget_subscriptions(pool: asyncpg.Pool, ids: Sequence[int]) -> int:
    """Delete subscriptions the push service says are gone (404, 410) or that were made with another
    VAPID key; returns how many."""
    if not ids:
        return 0
    status = await pool.execute("DELETE FROM push_subscriptions WHERE id = ANY($1::bigint[])", list(ids))
    return int(status.split()[-1])


async def note_attempts(
    pool: asyncpg.Pool, succeeded: Sequence[int], failed: Sequence[tuple[int, str]], at: datetime
) -> None:
    """Record on each subscription when a push last reached it, or last failed and why (one statement)."""
    if not succeeded and not failed:
        return
    await pool.execute(
        "UPDATE push_subscriptions p SET"
        " last_success_at = CASE WHEN o.ok THEN $4 ELSE p.last_success_at END,"
        " last_failure_at = CASE WHEN o.ok THEN p.last_failure_at ELSE $4 END,"
        " last_error = CASE WHEN o.ok THEN NULL ELSE o.error END"
        " FROM unnest($1::bigint[], $2::boolean[], $3::text[]) AS o(id, ok, error) WHERE p.id = o.id",
        [*succeeded, *(i for i, _ in failed)],
        [True] * len(succeeded) + [False] * len(failed),
        [None] * len(succeeded) + [e[:500] for _, e in failed],
        at,
    )


async def stored_vapid_key(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[str, str] | None:
    """(private key PEM, public key) kept in PostgreSQL, or None before the first start."""
    row = await conn.fetchrow("SELECT private_pem, public_key FROM vapid_keys WHERE id = 1")
    return None if row is None else (row["private_pem"], row["public_key"])


async def store_vapid_key(
    conn: asyncpg.Connection | asyncpg.Pool, private_pem: str, public_key: str
) -> tuple[str, str]:
    """Keep a new key pair unless another process kept one first; returns the one kept (so that every
    tracker process of a deployment signs with the same key)."""
    await conn.execute(
        "INSERT INTO vapid_keys (id, private_pem, public_key) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
        private_pem,
        public_key,
    )
    kept = await stored_vapid_key(conn)
    assert kept is not None
    return kept
