"""Bearer tokens: random, shown once, kept only as a SHA-256, revocable, with an expiry."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import asyncpg


@dataclass(frozen=True)
class Principal:
    """Who a valid token speaks for."""

    token_id: int
    role: str  # admin | school | guardian | device
    guardian_id: int | None = None
    school_id: int | None = None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue_token(
    conn: asyncpg.Connection,
    *,
    role: str,
    guardian_id: int | None = None,
    school_id: int | None = None,
    label: str = "",
    ttl: timedelta | None = timedelta(days=30),
) -> str:
    """Create a token and return it; this is the only time its text exists outside the caller."""
    token = f"{role[:1]}_{secrets.token_urlsafe(24)}"
    await conn.execute(
        "INSERT INTO api_tokens (token_hash, role, guardian_id, school_id, label, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, now() + $6)",
        token_hash(token),
        role,
        guardian_id,
        school_id,
        label,
        ttl,
    )
    return token


async def resolve_token(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> Principal | None:
    """The principal of a valid token (known, not revoked, not expired), else None."""
    row = await conn.fetchrow(
        "SELECT id, role, guardian_id, school_id FROM api_tokens"
        " WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        token_hash(token),
    )
    if row is None:
        return None
    return Principal(row["id"], row["role"], row["guardian_id"], row["school_id"])


async def revoke_token(conn: asyncpg.Connection, token: str) -> bool:
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash(token),
    )
    return bool(status.endswith(" 1"))
