"""The guardians' websocket (/ws): live alerts, catch-up on connect, acknowledgement.

Authentication: the guardian's token, as `?token=...` (browsers cannot set headers on a websocket)
or as an `Authorization: Bearer` header. Without a valid guardian token the handshake is refused
(HTTP 403) before anything is sent. The same tokens as HTTP: an open socket is closed (code 1008)
within seconds when its token is revoked or deleted by any path (another tracker process, SQL by hand,
the guardian deleted: a notification, :mod:`tracker.api.ws_tokens`), and when it expires (the
periodic check of all open sockets' tokens in one query, every `TRACKER_WS_TOKEN_CHECK_S` and at the
earliest expiry).

Client -> server: {"type": "ack", "alert_id": N}. Server -> client: alert-message.v1 messages,
{"type": "hello", ...} first, and {"type": "ack", "alert_id": N, "ok": bool} answers.
"""

from __future__ import annotations

import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from starlette.websockets import WebSocketState

from tracker.alerts.messages import alert_message
from tracker.api.alerts import tell_school_live
from tracker.api.context import AppContext
from tracker.api.ws_tokens import CLOSE_REASON
from tracker.store.alerts import acknowledge, unacknowledged_open_alerts
from tracker.store.tokens import resolve_token

log = logging.getLogger(__name__)
router = APIRouter()


def _token(ws: WebSocket) -> str | None:
    if token := ws.query_params.get("token"):
        return token
    header = ws.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None


async def close_token_sockets(ctx: AppContext, token_id: int) -> int:
    """Close this process's websockets opened with a token (it was just revoked here: closed before
    the answer, not when the notification comes back); returns how many."""
    return await ctx.sockets.close([token_id])


async def close_guardian_sockets(ctx: AppContext, guardian_id: int) -> int:
    """Close this process's websockets of a guardian (just deleted: their tokens went with them), at
    once rather than at the sockets' next token check; returns how many."""
    sockets = ctx.hub.of(guardian_id)
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close(code=status.WS_1008_POLICY_VIOLATION, reason=CLOSE_REASON)
    return len(sockets)


@router.websocket("/ws")
async def guardian_socket(ws: WebSocket) -> None:
    ctx: AppContext = ws.app.state.ctx
    token = _token(ws)
    who = await resolve_token(ctx.pool, token) if token else None
    if token is None or who is None or who.role != "guardian" or who.guardian_id is None:
        await ws.close(code=status.WS_1008_POLICY_VIOLATION, reason="a valid guardian token is required")
        return
    guardian_id = who.guardian_id
    language = await ctx.pool.fetchval("SELECT language FROM guardians WHERE id = $1", guardian_id) or "ko"
    await ws.accept()
    ctx.hub.add(guardian_id, ws)
    ctx.sockets.add(who.token_id, who.expires_at, ws)  # no task of its own: ctx.sockets checks them all
    try:
        await ws.send_text(json.dumps({"type": "hello", "version": 1, "guardian_id": guardian_id}))
        for facts in await unacknowledged_open_alerts(ctx.pool, guardian_id):
            await ws.send_text(json.dumps(alert_message(facts, language), ensure_ascii=False))
        while True:
            raw = await ws.receive_text()
            try:
                msg = json.loads(raw)
                alert_id = int(msg["alert_id"]) if msg.get("type") == "ack" else None
            except (ValueError, TypeError, KeyError, AttributeError):
                alert_id = None
            if alert_id is None or not 1 <= alert_id < 2**63:
                await ws.send_text(
                    json.dumps({"type": "error", "error": 'expected {"type": "ack", "alert_id": N}'})
                )
                continue
            ok = await acknowledge(ctx.pool, alert_id, guardian_id)
            await ws.send_text(json.dumps({"type": "ack", "alert_id": alert_id, "ok": ok}))
            if ok:
                await tell_school_live(ctx, alert_id)
    except WebSocketDisconnect:
        pass
    except RuntimeError:
        if ws.application_state != WebSocketState.DISCONNECTED:
            raise
        # closed here (token revoked or expired) while a receive was pending
    finally:
        ctx.hub.remove(guardian_id, ws)
        ctx.sockets.discard(who.token_id, ws)
