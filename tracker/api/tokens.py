"""Bearer tokens over HTTP: issue (shown once), list (never the text), revoke.

Administrators issue any token. School staff issue tokens for their school's staff, for the
guardians they see (the sign-in a parent is handed) and for their school's tags. Guardians see and
revoke their own tokens (a lost phone).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from tracker.api.auth import context, require
from tracker.api.common import CREATE, LIST, READ, IdPath, Limit, Offset, invalid, not_found
from tracker.api.context import AppContext
from tracker.api.models import Page, TokenCreated, TokenIn, TokenOut
from tracker.api.ws import close_token_sockets
from tracker.store import registry_crud
from tracker.store.tokens import Principal, create_token, list_tokens, revoke_token_id

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
    """Issue a token; its text is in this answer only."""
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
        if body.guardian_id is not None and not await registry_crud.visible(
            conn, who, "guardian", body.guardian_id
        ):
            invalid(["body", "guardian_id"], f"no guardian {body.guardian_id}")
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
