"""Who am I: what the caller's token speaks for (its role, and the school, guardian or tag)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from tracker.api.auth import context, principal
from tracker.api.common import READ
from tracker.api.context import AppContext
from tracker.api.models import Me
from tracker.store.tokens import Principal

router = APIRouter()


@router.get("/api/v1/me", tags=["auth"], response_model=Me, responses=READ)
async def me(who: Principal = Depends(principal), ctx: AppContext = Depends(context)) -> dict[str, Any]:
    """Who the token speaks for."""
    out: dict[str, Any] = {
        "token_id": who.token_id,
        "role": who.role,
        "label": who.label,
        "expires_at": who.expires_at,
        "school_id": who.school_id,
        "guardian_id": who.guardian_id,
        "tag_id": who.tag_id,
    }
    if who.guardian_id is not None:
        row = await ctx.pool.fetchrow("SELECT name, language FROM guardians WHERE id = $1", who.guardian_id)
        out |= {"name": row["name"], "language": row["language"]} if row else {}
    elif who.school_id is not None:
        out["name"] = await ctx.pool.fetchval("SELECT name FROM schools WHERE id = $1", who.school_id)
    return out
