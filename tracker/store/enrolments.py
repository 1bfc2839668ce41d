"""Enrolment links: how a guardian gets their first sign-in without anyone else holding it.

A school's staff (for a guardian who is theirs alone, tracker.store.scope) or the city's administrator
makes a code for a guardian who has never signed in; the guardian opens ``/#enrol=CODE`` and the page
redeems it (``POST /api/v1/enrolment``) for a guardian token that only the guardian's browser ever
holds. The code is random (144 bits: guessing one is hopeless, so nothing needs to hide whether a code
was ever real), kept only as a SHA-256, redeemed at most once, and expires. Each row stays as the audit
of the invitation: who made it, when, until when, when it was redeemed and into which token (whose own
issue is in the token-issue log, ``issued_via = 'enrolment'``).

Redeeming checks again what making the link checked, as it stands now: the guardian still exists and
has not signed in by another way, and a link a school made is still for a guardian who is that school's
alone (if the guardian has since been linked to another school's child, only the administrator can
give them a sign-in).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from tracker.store.tokens import IssuedToken, Issuer, Principal, create_token


@dataclass(frozen=True)
class Enrolment:
    id: int
    code: str  # the only time its text exists outside the guardian's link
    expires_at: datetime


class EnrolmentRefused(Exception):
    """A code that cannot be redeemed: ``status`` 404 (no such code) or 410 (it was real, and is no
    longer: used, expired, or its guardian's standing changed), with a detail that says what to do."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def code_hash(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


async def create_enrolment(
    conn: asyncpg.Connection | asyncpg.Pool, who: Principal, guardian_id: int, ttl: timedelta
) -> Enrolment:
    """A new code for the guardian (the endpoint has checked that ``who`` may enrol them). Older codes
    of the same guardian stay valid until they expire: only one redemption can ever succeed, since the
    first one signs the guardian in."""
    code = secrets.token_urlsafe(18)
    row = await conn.fetchrow(
        "INSERT INTO guardian_enrolments (code_hash, guardian_id, expires_at, created_by_token_id,"
        " created_by_role, created_by_school_id, created_by_label)"
        " VALUES ($1, $2, now() + $3, $4, $5, $6, $7) RETURNING id, expires_at",
        code_hash(code),
        guardian_id,
        ttl,
        who.token_id,
        who.role,
        who.school_id,
        who.label,
    )
    assert row is not None
    return Enrolment(row["id"], code, row["expires_at"])


async def redeem_enrolment(
    conn: asyncpg.Connection, code: str, *, token_ttl: timedelta
) -> tuple[IssuedToken, int]:
    """Redeem a code once: a guardian token (and the guardian's id). Run it in a transaction: the row is
    locked, so two redemptions of one code cannot both succeed."""
    row = await conn.fetchrow(
        "SELECT e.id, e.guardian_id, e.created_by_role, e.created_by_school_id, e.redeemed_at,"
        " e.expires_at <= now() AS expired FROM guardian_enrolments e WHERE e.code_hash = $1 FOR UPDATE",
        code_hash(code),
    )
    if row is None:
        raise EnrolmentRefused(404, "no such enrolment code: check the link, or ask for a new one")
    if row["redeemed_at"] is not None:
        raise EnrolmentRefused(
            410,
            "this enrolment link was used already (a link signs in once): if that was not you, tell the"
            " school or the city's administrator",
        )
    if row["expired"]:
        raise EnrolmentRefused(410, "this enrolment link has expired: ask the school for a new one")
    # the guardian's row is locked before their standing is read (in a statement of its own, so that it
    # sees what a redemption of another of their links committed meanwhile): one sign-in, not two
    if await conn.fetchval("SELECT id FROM guardians WHERE id = $1 FOR UPDATE", row["guardian_id"]) is None:
        raise EnrolmentRefused(410, "the guardian this link was for is no longer registered")
    standing = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM api_tokens k WHERE k.role = 'guardian' AND k.guardian_id = $1)"
        "  AS signed_in,"
        " EXISTS (SELECT 1 FROM child_guardians cg JOIN children c ON c.id = cg.child_id"
        "  WHERE cg.guardian_id = $1 AND c.school_id IS DISTINCT FROM $2) AS elsewhere",
        row["guardian_id"],
        row["created_by_school_id"],
    )
    assert standing is not None
    if standing["signed_in"]:
        raise EnrolmentRefused(
            410,
            "this guardian has signed in already: a lost sign-in is recovered through the city's"
            " administrator",
        )
    if row["created_by_role"] == "school" and standing["elsewhere"]:
        raise EnrolmentRefused(
            410,
            "this guardian now also has children at another school: their sign-in is given by the"
            " city's administrator",
        )
    issued = await create_token(
        conn,
        role="guardian",
        guardian_id=row["guardian_id"],
        label="enrolment",
        ttl=token_ttl,
        issued_by=Issuer.enrolment(row["id"]),
    )
    await conn.execute(
        "UPDATE guardian_enrolments SET redeemed_at = now(), token_id = $2 WHERE id = $1",
        row["id"],
        issued.id,
    )
    return issued, int(row["guardian_id"])
