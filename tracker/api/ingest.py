"""HTTP ingest for phone apps: the OwnTracks app in HTTP mode and Traccar Client (the OsmAnd protocol).

The device names itself (OwnTracks: ``?u=&d=`` or ``X-Limit-U`` / ``X-Limit-D``, the user defaulting
to the Basic user; OsmAnd: ``id``/``deviceid`` or ``device_id``), the registry maps that identity to a tag
(unknown: 403, counted, nothing stored), and the request proves it speaks for that tag with the tag's
MQTT password or one of its device tokens (``Authorization: Basic`` with any user name, or ``Bearer``;
for clients that cannot set a header, a ``token`` query parameter). The message then goes through the
pipeline like a broker message, and the answer comes once it is committed, and is the pipeline's own
outcome for that message (nothing here decodes or judges it a second time): 200 with the fixes
stored (a repeat of a stored fix included: retrying is safe), 429 with ``Retry-After`` when the tag is
over its rate (the fix is dead-lettered as ``rate_limited``: the app keeps it and sends it again
later), 500 when a bug met the message (kept as an ``internal_error`` dead letter), else 400 with the
reason it was dead-lettered.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tracker.api.auth import context
from tracker.api.context import AppContext
from tracker.ingest import osmand, owntracks
from tracker.ingest.decode import Reason
from tracker.ingest.devices import device_key
from tracker.ingest.http import MessageAnswer
from tracker.store.devices import device_may_send

router = APIRouter(tags=["ingest"])


class IngestError(BaseModel):
    detail: str


class Accepted(BaseModel):
    fixes: int


_CHALLENGE = {"WWW-Authenticate": 'Basic realm="tracker"'}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"model": IngestError, "description": "the message was dead-lettered; `detail` says why"},
    401: {"model": IngestError, "description": "no credentials, or not the tag's password or device token"},
    403: {"model": IngestError, "description": "the device identity is not registered to a tag"},
    413: {"model": IngestError, "description": "the request body is too large"},
    429: {
        "model": IngestError,
        "description": "the tag sent more fixes than its rate allows (dead-lettered as `rate_limited`);"
        " send the fix again after `Retry-After` seconds",
    },
    500: {"model": IngestError, "description": "a bug met the message; it is kept as a dead letter"},
    503: {"model": IngestError, "description": "the fix was not committed in time (retrying is safe)"},
}


def _secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    return request.query_params.get("token") or None


def _credentials_given(request: Request) -> None:
    """No credentials at all: 401 before anything else is looked at."""
    if _secret(request) is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the tag's MQTT password or a device token is needed",
            headers=_CHALLENGE,
        )


def _basic_user(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


async def _ingest(
    ctx: AppContext, request: Request, protocol: str, device: str, topic: str, payload: bytes
) -> int:
    """Authenticate, hand the message to the pipeline, wait for the commit; the number of fixes stored.
    Raises the HTTP error of a refused message."""
    if ctx.ingress is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "HTTP ingest is not offered by this process")
    tag = ctx.ingress.devices().get(device_key(protocol, device))
    if tag is None:
        ctx.metrics.rejected[Reason.UNKNOWN_DEVICE.value] += 1
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{protocol} device {device!r} is not registered")
    secret = _secret(request)
    if secret is None or not await device_may_send(ctx.pool, tag, secret):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the tag's MQTT password or a device token of the tag is needed",
            headers=_CHALLENGE,
        )
    try:
        answer = await ctx.ingress.submit(topic, payload)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "not committed in time; retrying is safe"
        ) from None
    _raise_refusal(ctx, answer)
    return answer.fixes


def _raise_refusal(ctx: AppContext, answer: MessageAnswer) -> None:
    """The HTTP status of a message the pipeline refused (a part of it): the dead letter's reason."""
    refused = answer.refused
    if refused is None:
        return
    detail = f"{refused.reason.value}: {refused.detail}"
    if refused.reason == Reason.RATE_LIMITED:
        # a token comes back every 1 / rate seconds: the earliest moment a retry can be admitted
        retry_after = max(1, math.ceil(1.0 / ctx.settings.tag_rate_per_s))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, detail, headers={"Retry-After": str(retry_after)}
        )
    if refused.reason == Reason.INTERNAL_ERROR:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, detail)
    raise HTTPException(status.HTTP_400_BAD_REQUEST, detail)


@router.post(
    "/ingest/owntracks",
    response_model=list[dict[str, Any]],
    responses=_ANSWERS,
    summary="OwnTracks app, HTTP mode",
)
async def owntracks_http(
    request: Request,
    u: str | None = Query(None, description="the user, as the OwnTracks Recorder's `/pub?u=&d=` takes it"),
    d: str | None = Query(None, description="the device (with `u`); else the X-Limit-U/D headers"),
    ctx: AppContext = Depends(context),
) -> Any:
    """The OwnTracks app's HTTP mode: one JSON message per POST (`_type` `location`, `transition`; an
    `encrypted` one is opened with the device's key; other types are accepted and ignored). The
    device is named as the OwnTracks Recorder's `/pub` takes it: `?u=user&d=device` in the URL, else
    the `X-Limit-U` (or the Basic user) and `X-Limit-D` headers. The answer is a JSON array of
    messages for the app (empty)."""
    _credentials_given(request)
    user = u or request.headers.get("x-limit-u") or _basic_user(request)
    device = d or request.headers.get("x-limit-d")
    if not user or not device or "/" in user + device:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "?u=user&d=device, or X-Limit-U (or a Basic user) and X-Limit-D, name the device",
        )
    payload = await request.body()
    await _ingest(
        ctx, request, owntracks.PROTOCOL, f"{user}/{device}", owntracks.http_topic(user, device), payload
    )
    return []


_OSMAND: dict[str, Any] = {"response_model": Accepted, "responses": _ANSWERS}


@router.get("/ingest/osmand", operation_id="osmand_ingest_get", summary="Traccar Client / OsmAnd", **_OSMAND)
@router.post(
    "/ingest/osmand", operation_id="osmand_ingest_post", summary="Traccar Client / OsmAnd", **_OSMAND
)
async def osmand_http(request: Request, ctx: AppContext = Depends(context)) -> Any:
    """The OsmAnd protocol of Traccar Client: query or form parameters (`id`, `lat`, `lon`,
    `timestamp`, `accuracy`, `batt`, `alarm=sos`), or Traccar Client 9's JSON body."""
    _credentials_given(request)
    body = await request.body()
    if osmand.is_json(body):
        payload = body
    else:
        # the token (if sent as a parameter) is not part of the message: it would land in dead letters
        query = b"&".join(
            p for p in request.url.query.encode().split(b"&") if p and not p.startswith(b"token=")
        )
        payload = b"&".join(p for p in (query, body) if p)
    device = osmand.device_of(payload)
    if device is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "id (or deviceid, or device_id) names the device")
    fixes = await _ingest(ctx, request, osmand.PROTOCOL, device, osmand.HTTP_TOPIC, payload)
    return JSONResponse({"fixes": fixes})
