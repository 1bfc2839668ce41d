"""Bearer tokens over HTTP: issue (shown once), list (never the text), revoke; the enrolment links that
give a guardian their first sign-in; and the log of every token issued.

A guardian belongs to the family, not to a school (tracker.store.scope says who owns what). So:

- Administrators issue any token. School staff issue tokens for their school's staff and tags, never a
  guardian's: a guardian's token in a staff member's hands reads every child of that guardian, at
  every school, as the guardian, outside the position-read audit. Staff send an enrolment link instead
  (only for a guardian who is theirs alone), and only the guardian, redeeming it, ever holds the token.
- An enrolment link is made for a guardian who has never signed in; once signed in, the guardian keeps
  their own sign-in, and a lost one is recovered through the city's administrator.
- Guardians see and revoke their own tokens (a lost phone); staff revoke those of the guardians whose
  every child is at their school.
- Every token issued (here, by an enrolment link, by ``tracker token``) is in the token-issue log,
  ``GET /api/v1/audit/tokens``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from tracker.api.auth import context, require
from tracker.api.common import CREATE, LIST, READ, IdPath, IdQuery, Limit, Offset, errors, invalid, not_found
from tracker.api.context import AppContext
from tracker.api.models import (
    EnrolmentCreated,
    EnrolmentIn,
    EnrolmentRedeemed,
    Error,
    Page,
    TokenCreated,
    TokenIn,
    TokenIssue,
    TokenOut,
)
from tracker.api.ws import close_token_sockets
from tracker.store import audit, registry_crud
from tracker.store.enrolments import EnrolmentRefused, create_enrolment, redeem_enrolment
from tracker.store.tokens import Issuer, Principal, create_token, list_tokens, revoke_token_id

router = APIRouter()


@router.get("/api/v1/tokens", tags=["auth"], response_model=Page[TokenOut], responses=LIST)
async def tokens(
    role: Literal["admin", "school", "guardian", "device"] | None = None,
    include_revoked: bool = Query(False, description="also revoked and expired tokens"),
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require("admin", "school", "guardian")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Tokens the caller may see, newest first (their text is never shown again)."""
    rows, total = await list_tokens(
        ctx.pool, who, role=role, include_revoked=include_revoked, limit=limit, offset=offset
    )
    return {"items": rows, "total": total, "limit": limit, "offset": offset}


@router.post(
    "/api/v1/tokens",
    tags=["auth"],
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    responses=CREATE,
)
async def issue(
    body: TokenIn, who: Principal = Depends(require("admin", "school")), ctx: AppContext = Depends(context)
) -> dict[str, Any]:
    """Issue a token; its text is in this answer only. School staff: staff and device tokens (a
    guardian gets their sign-in from an enrolment link, POST /api/v1/guardians/{id}/enrolment)."""
    # what each role's token is bound to; the other bindings must be left out
    needs = {"admin": None, "school": "school_id", "guardian": "guardian_id", "device": "tag_id"}[body.role]
    for key in ("school_id", "guardian_id", "tag_id"):
        value = getattr(body, key)
        if key == needs and value is None and not (key == "school_id" and who.role == "school"):
            invalid(["body", key], f"a {body.role} token needs {key}")
        if key != needs and value is not None:
            invalid(["body", key], f"a {body.role} token is not bound to a {key.removesuffix('_id')}")
    school_id = body.school_id
    async with ctx.pool.acquire() as conn, conn.transaction():
        if body.role == "admin" and who.role != "admin":
            invalid(["body", "role"], "only administrators issue administrator tokens")
        if body.role == "school":
            if who.role == "school":
                school_id = school_id or who.school_id
                if school_id != who.school_id:
                    invalid(["body", "school_id"], f"school {school_id} is not your school ({who.school_id})")
            assert school_id is not None
            if not await registry_crud.visible(conn, who, "school", school_id):
                invalid(["body", "school_id"], f"no school {school_id}")
        if body.guardian_id is not None:
            # seen first, refused after: a guardian the caller does not see is "no guardian", word for
            # word as one that does not exist
            if not await registry_crud.visible(conn, who, "guardian", body.guardian_id):
                invalid(["body", "guardian_id"], f"no guardian {body.guardian_id}")
            if who.role == "school":
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    "a school's staff cannot issue a guardian's token (it would read all of the guardian's"
                    " children, at every school, as the guardian): send the guardian an enrolment link,"
                    f" POST /api/v1/guardians/{body.guardian_id}/enrolment, which only they redeem",
                )
        if body.tag_id is not None and not await registry_crud.visible(
            conn, who, "tag", body.tag_id, write=True
        ):
            invalid(["body", "tag_id"], f"no tag {body.tag_id}")
        issued = await create_token(
            conn,
            role=body.role,
            school_id=school_id,
            guardian_id=body.guardian_id,
            tag_id=body.tag_id,
            label=body.label,
            ttl=timedelta(days=body.ttl_days),
            issued_by=Issuer.caller(who),
        )
        row = await conn.fetchrow(
            "SELECT id, role, label, school_id, guardian_id, tag_id, created_at, expires_at, revoked_at"
            " FROM api_tokens WHERE id = $1",
            issued.id,
        )
    assert row is not None
    return dict(row.items()) | {"token": issued.token}


@router.delete(
    "/api/v1/tokens/{token_id}", tags=["auth"], status_code=status.HTTP_204_NO_CONTENT, responses=READ
)
async def revoke(
    token_id: IdPath,
    who: Principal = Depends(require("admin", "school", "guardian")),
    ctx: AppContext = Depends(context),
) -> Response:
    """Revoke a token: it stops working at once, here and on the websocket."""
    if not await revoke_token_id(ctx.pool, who, token_id):
        not_found("token", token_id)
    await close_token_sockets(ctx, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- enrolment links -----------------------------------------------------------------------------------
@router.post(
    "/api/v1/guardians/{guardian_id}/enrolment",
    tags=["guardians"],
    status_code=status.HTTP_201_CREATED,
    response_model=EnrolmentCreated,
    responses=errors(401, 403, 404, 409),
)
async def enrol(
    guardian_id: IdPath,
    who: Principal = Depends(require("admin", "school")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """An enrolment link for a guardian who has never signed in: hand it to the guardian (the code is in
    this answer only; it expires after TRACKER_ENROLMENT_TTL_H hours and signs in once). School staff:
    only for a guardian whose every child is at their school."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await registry_crud.visible(conn, who, "guardian", guardian_id):
            not_found("guardian", guardian_id)
        standing = await registry_crud.guardian_standing(conn, who, guardian_id)
        if who.role == "school" and standing.children_elsewhere:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                standing.why_not(
                    guardian_id,
                    "send them an enrolment link",
                    "their sign-in is given by the city's administrator",
                ),
            )
        if standing.signed_in:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"guardian {guardian_id} has signed in already: the guardian keeps their own sign-in (and"
                " revokes a lost phone's token themselves); a lost sign-in is recovered through the city's"
                " administrator",
            )
        link = await create_enrolment(conn, who, guardian_id, timedelta(hours=ctx.settings.enrolment_ttl_h))
    return {
        "id": link.id,
        "guardian_id": guardian_id,
        "code": link.code,
        "url": f"{ctx.settings.public_url.rstrip('/')}/#enrol={link.code}",
        "expires_at": link.expires_at,
    }


_REDEEM_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Error, "description": "no such enrolment code"},
    410: {
        "model": Error,
        "description": "the code was real and is no longer: used, expired, or its guardian has signed in"
        " or now has children at another school",
    },
    413: {"model": Error, "description": "the request body is too large"},
}


@router.post(
    "/api/v1/enrolment",
    tags=["auth"],
    status_code=status.HTTP_201_CREATED,
    response_model=EnrolmentRedeemed,
    responses=_REDEEM_ERRORS,
)
async def redeem(body: EnrolmentIn, ctx: AppContext = Depends(context)) -> dict[str, Any]:
    """Redeem an enrolment link's code (no bearer token: the code is the credential) for the guardian's
    token, once; the token's text is in this answer only."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        try:
            issued, guardian_id = await redeem_enrolment(
                conn, body.code, token_ttl=timedelta(days=ctx.settings.guardian_token_days)
            )
        except EnrolmentRefused as refused:
            raise HTTPException(refused.status, refused.detail) from None
    return {
        "guardian_id": guardian_id,
        "token_id": issued.id,
        "token": issued.token,
        "expires_at": issued.expires_at,
    }


# --- the token-issue log -------------------------------------------------------------------------------
@router.get("/api/v1/audit/tokens", tags=["auth"], response_model=Page[TokenIssue], responses=LIST)
async def token_issues(
    guardian_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
    who: Principal = Depends(require("admin", "school", "guardian")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Every token issued, newest first: for whom, by whom (an API caller, an enrolment link, the
    command line), when. Administrators: all; school staff: those issued by their school's staff, for
    their school's staff and tags, or through their school's enrolment links; a guardian: those issued
    in their name."""
    rows, total = await audit.list_token_issues(
        ctx.pool, who, guardian_id=guardian_id, limit=limit, offset=offset
    )
    return {"items": rows, "total": total, "limit": limit, "offset": offset}
