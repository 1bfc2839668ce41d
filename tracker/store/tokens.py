"""Bearer tokens: random, shown once, kept only as a SHA-256, revocable, with an expiry; and the MQTT
passwords of tags, kept only as Mosquitto password-file hashes.

Roles: ``admin`` (the city), ``school`` (staff of one school), ``guardian`` (one guardian),
``device`` (one tag). Who may see what is written in :mod:`tracker.store.scope`.

Every token issued, by anyone, is written to the ``token_issues`` log in the same statement that
creates it (:func:`create_token` is the only way a token is made): for whom, and by whom (an
:class:`Issuer`: an API caller, an enrolment link, the command line, or ``SYSTEM``).

A guardian token revoked or deleted, by whatever path (this module, SQL by hand, its guardian
deleted), is announced on the ``tokens_revoked`` channel by a trigger (migration 0010): every tracker
process listening closes its own websockets opened with it (:mod:`tracker.api.ws_tokens`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tracker.store import scope

ROLES = ("admin", "school", "guardian", "device")
MOSQUITTO_ITERATIONS = 1000


@dataclass(frozen=True)
class Principal:
    """Who a valid token speaks for."""

    token_id: int
    role: str  # admin | school | guardian | device
    guardian_id: int | None = None
    school_id: int | None = None
    tag_id: str | None = None
    label: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Issuer:
    """Who issued a token, as the token-issue log records it. ``via``: ``api`` (a caller of the HTTP
    API: their token, role, school and label), ``enrolment`` (a guardian redeeming an enrolment link:
    its id), ``cli`` (``tracker token``, by whoever holds the database URL) or ``system`` (code that
    issues a token as part of something else it was asked to do: the demo's sign-ins, test fixtures)."""

    via: str
    token_id: int | None = None
    role: str | None = None
    school_id: int | None = None
    label: str = ""
    enrolment_id: int | None = None

    @classmethod
    def caller(cls, who: Principal) -> Issuer:
        return cls("api", who.token_id, who.role, who.school_id, who.label)

    @classmethod
    def enrolment(cls, enrolment_id: int) -> Issuer:
        return cls("enrolment", enrolment_id=enrolment_id)


SYSTEM = Issuer("system")
CLI = Issuer("cli")


@dataclass(frozen=True)
class IssuedToken:
    id: int
    token: str  # the only time its text exists outside the caller
    expires_at: datetime | None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    role: str,
    guardian_id: int | None = None,
    school_id: int | None = None,
    tag_id: str | None = None,
    label: str = "",
    ttl: timedelta | None = timedelta(days=30),
    issued_by: Issuer = SYSTEM,
) -> IssuedToken:
    """Create a token and its entry in the token-issue log (one statement: both or neither);
    ``ttl`` None: it never expires (only revocation ends it)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    token = f"{role[:1]}_{secrets.token_urlsafe(24)}"
    row = await conn.fetchrow(
        "WITH k AS (INSERT INTO api_tokens"
        "  (token_hash, role, guardian_id, school_id, tag_id, label, expires_at)"
        "  VALUES ($1, $2, $3, $4, $5, $6, now() + $7)"
        "  RETURNING id, role, guardian_id, school_id, tag_id, label, expires_at, created_at),"
        " logged AS (INSERT INTO token_issues (at, token_id, role, school_id, guardian_id, tag_id, label,"
        "  expires_at, issued_via, issuer_token_id, issuer_role, issuer_school_id, issuer_label,"
        "  enrolment_id)"
        "  SELECT created_at, id, role, school_id, guardian_id, tag_id, label, expires_at,"
        "   $8, $9, $10, $11, $12, $13 FROM k)"
        " SELECT id, expires_at FROM k",
        token_hash(token),
        role,
        guardian_id,
        school_id,
        tag_id,
        label,
        ttl,
        issued_by.via,
        issued_by.token_id,
        issued_by.role,
        issued_by.school_id,
        issued_by.label,
        issued_by.enrolment_id,
    )
    assert row is not None
    return IssuedToken(row["id"], token, row["expires_at"])


async def issue_token(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    role: str,
    guardian_id: int | None = None,
    school_id: int | None = None,
    tag_id: str | None = None,
    label: str = "",
    ttl: timedelta | None = timedelta(days=30),
    issued_by: Issuer = SYSTEM,
) -> str:
    """Create a token and return its text."""
    issued = await create_token(
        conn,
        role=role,
        guardian_id=guardian_id,
        school_id=school_id,
        tag_id=tag_id,
        label=label,
        ttl=ttl,
        issued_by=issued_by,
    )
    return issued.token


async def resolve_token(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> Principal | None:
    """The principal of a valid token (known, not revoked, not expired), else None."""
    row = await conn.fetchrow(
        "SELECT id, role, guardian_id, school_id, tag_id, label, expires_at FROM api_tokens"
        " WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        token_hash(token),
    )
    if row is None:
        return None
    return Principal(
        row["id"],
        row["role"],
        row["guardian_id"],
        row["school_id"],
        row["tag_id"],
        row["label"],
        row["expires_at"],
    )


async def tokens_ended(conn: asyncpg.Connection | asyncpg.Pool, token_ids: list[int]) -> list[int]:
    """Which of these tokens no longer resolve (revoked, expired, or gone with their guardian): the
    same rule as :func:`resolve_token`, for every open websocket's token in one statement."""
    rows = await conn.fetch(
        "SELECT t.id FROM unnest($1::bigint[]) AS t(id) WHERE NOT EXISTS (SELECT 1 FROM api_tokens k"
        " WHERE k.id = t.id AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()))",
        token_ids,
    )
    return [r["id"] for r in rows]


async def revoke_token(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> bool:
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash(token),
    )
    return bool(status.endswith(" 1"))


_TOKEN_COLUMNS = (
    "k.id, k.role, k.label, k.guardian_id, k.school_id, k.tag_id, k.created_at, k.expires_at, k.revoked_at"
)


async def list_tokens(
    conn: asyncpg.Connection | asyncpg.Pool,
    who: Principal,
    *,
    role: str | None,
    include_revoked: bool,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Tokens the caller may see (never their text or hash), newest first, and how many there are."""
    where = (
        f"{scope.tokens(who)} AND ($4::text IS NULL OR k.role = $4)"
        " AND ($5::boolean OR (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())))"
    )
    rows = await conn.fetch(
        f"WITH {scope.ME} SELECT {_TOKEN_COLUMNS}, count(*) OVER () AS total FROM api_tokens k, me"
        f" WHERE {where} ORDER BY k.id DESC LIMIT $6 OFFSET $7",
        *scope.me_args(who),
        role,
        include_revoked,
        limit,
        offset,
    )
    if rows:
        total = rows[0]["total"]
    else:
        total = await conn.fetchval(
            f"WITH {scope.ME} SELECT count(*) FROM api_tokens k, me WHERE {where}",
            *scope.me_args(who),
            role,
            include_revoked,
        )
    return [{k: v for k, v in r.items() if k != "total"} for r in rows], int(total)


async def revoke_token_id(conn: asyncpg.Connection | asyncpg.Pool, who: Principal, token_id: int) -> bool:
    """Revoke a token the caller may see (revoking one already revoked changes nothing); False: none."""
    row = await conn.fetchrow(
        f"WITH {scope.ME} UPDATE api_tokens k SET revoked_at = coalesce(k.revoked_at, now()) FROM me"
        f" WHERE k.id = $4 AND {scope.tokens(who)} RETURNING k.id",
        *scope.me_args(who),
        token_id,
    )
    return row is not None


# --- MQTT credentials of tags --------------------------------------------------------------------------


def new_mqtt_password() -> str:
    return secrets.token_urlsafe(24)


def mosquitto_hash(password: str, *, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """The password as Mosquitto 2 keeps it in a password file: ``$7$iterations$salt$hash``
    (PBKDF2-HMAC-SHA512, base64), so a broker's password file can be written from the registry."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_check(password: str, stored: str) -> bool:
    """Does ``password`` match a ``$7$`` hash (constant time)?"""
    try:
        _, seven, iterations, salt, digest = stored.split("$")
        if seven != "7":
            return False
        mine = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64encode(mine).decode(), digest)
