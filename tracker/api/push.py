"""Web Push subscriptions: the service's VAPID public key, and a guardian's browsers subscribing to
alerts on their lock screen (tracker.alerts.push delivers to them; tracker.store.push keeps them)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tracker.alerts.push import VapidKeys, endpoint_allowed, load_vapid_keys
from tracker.api.auth import context, require
from tracker.api.common import CREATE, LIST, READ, invalid, not_found
from tracker.api.context import AppContext
from tracker.store.push import delete_subscription, list_subscriptions, save_subscription
from tracker.store.tokens import Principal

router = APIRouter()


def _b64url(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError("not base64url") from e


def _p256dh(value: str) -> str:
    raw = _b64url(value)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as e:
        raise ValueError("not an uncompressed P-256 public key (65 bytes, base64url)") from e
    return value


def _auth(value: str) -> str:
    if len(_b64url(value)) != 16:
        raise ValueError("the authentication secret is 16 bytes, base64url")
    return value


Base64Url = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+=*$")]


class PushKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p256dh: Annotated[Base64Url, AfterValidator(_p256dh)] = Field(
        description="the browser's P-256 public key (RFC 8291), base64url"
    )
    auth: Annotated[Base64Url, AfterValidator(_auth)] = Field(
        description="the browser's 16-byte authentication secret, base64url"
    )


class PushSubscriptionIn(BaseModel):
    """A browser's ``PushSubscription.toJSON()``, as it is."""

    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(
        min_length=8, max_length=2048, description="the push service's URL for this browser"
    )
    expirationTime: float | None = Field(None, description="as the browser gives it; not used")
    keys: PushKeys


class PushSubscriptionOut(BaseModel):
    id: int
    endpoint: str
    user_agent: str
    created_at: datetime
    updated_at: datetime
    last_success_at: datetime | None = Field(description="when a push service last took a message for it")
    last_failure_at: datetime | None
    last_error: str | None


class PushSubscriptionSaved(BaseModel):
    id: int
    created: bool = Field(description="false: this browser was subscribed already (its keys were updated)")
    channels: list[str] = Field(description="the guardian's channels now ('push' among them)")


class VapidKey(BaseModel):
    public_key: str = Field(description="the uncompressed P-256 point, base64url: applicationServerKey")


async def vapid_keys(request: Request, ctx: AppContext) -> VapidKeys:
    """The service's keys, read once per application (made on first use, as the service does at start)."""
    keys: VapidKeys | None = getattr(request.app.state, "vapid_keys", None)
    if keys is None:
        keys = await load_vapid_keys(ctx.pool, ctx.settings.vapid_key_file)
        request.app.state.vapid_keys = keys
    return keys


@router.get("/api/v1/push/key", tags=["push"], response_model=VapidKey)
async def push_key(request: Request, ctx: AppContext = Depends(context)) -> dict[str, str]:
    """The service's VAPID public key, which a browser subscribes with (no token needed: it is public)."""
    return {"public_key": (await vapid_keys(request, ctx)).public_key}


@router.post(
    "/api/v1/me/push-subscriptions",
    tags=["push"],
    response_model=PushSubscriptionSaved,
    status_code=status.HTTP_201_CREATED,
    responses=CREATE | {200: {"model": PushSubscriptionSaved, "description": "already subscribed: updated"}},
)
async def subscribe(
    body: PushSubscriptionIn,
    request: Request,
    response: Response,
    who: Principal = Depends(require("guardian")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Subscribe this browser to the caller's alerts (the guardian gets 'push' among their channels).
    The same browser again (its endpoint) updates its keys; a browser another guardian had subscribed
    is theirs no more. At most ten browsers per guardian: the oldest is dropped."""
    assert who.guardian_id is not None
    why = endpoint_allowed(body.endpoint, ctx.settings.push_services)
    if why is not None:
        invalid(["body", "endpoint"], why)
    keys = await vapid_keys(request, ctx)
    async with ctx.pool.acquire() as conn:
        saved = await save_subscription(
            conn,
            who.guardian_id,
            token_id=who.token_id,
            endpoint=body.endpoint,
            p256dh=body.keys.p256dh,
            auth=body.keys.auth,
            vapid_public_key=keys.public_key,
            user_agent=request.headers.get("user-agent", ""),
        )
        channels = await conn.fetchval("SELECT channels FROM guardians WHERE id = $1", who.guardian_id)
    if not saved.created:
        response.status_code = status.HTTP_200_OK
    return {"id": saved.subscription_id, "created": saved.created, "channels": list(channels or [])}


@router.get(
    "/api/v1/me/push-subscriptions",
    tags=["push"],
    response_model=list[PushSubscriptionOut],
    responses=LIST,
)
async def subscriptions(
    who: Principal = Depends(require("guardian")), ctx: AppContext = Depends(context)
) -> list[dict[str, object]]:
    """The caller's subscribed browsers (at most ten), newest first, with when a push last reached each
    and why the last one failed."""
    assert who.guardian_id is not None
    return await list_subscriptions(ctx.pool, who.guardian_id)


@router.delete(
    "/api/v1/me/push-subscriptions",
    tags=["push"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=READ,
)
async def unsubscribe(
    endpoint: str = Query(min_length=8, max_length=2048, description="the subscription's endpoint"),
    who: Principal = Depends(require("guardian")),
    ctx: AppContext = Depends(context),
) -> Response:
    """Unsubscribe one of the caller's browsers (with the last one, 'push' leaves their channels)."""
    assert who.guardian_id is not None
    async with ctx.pool.acquire() as conn:
        if not await delete_subscription(conn, who.guardian_id, endpoint):
            not_found("push subscription", "with that endpoint among yours")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
