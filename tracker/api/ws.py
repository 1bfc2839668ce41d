"""The guardians' websocket (/ws): live alerts, catch-up on connect, acknowledgement.

Authentication: the guardian's token, as `?token=...` (browsers cannot set headers on a websocket)
or as an `Authorization: Bearer` header. Without a valid guardian token the handshake is refused
(HTTP 403) before anything is sent. The same tokens as HTTP: an open socket is closed (code 1008)
when its token expires, at once when it is revoked through this process's API, and within
`RECHECK_S` when it is revoked elsewhere (another worker, the command line, the guardian deleted).

Client -> server: {"type": "ack", "alert_id": N}. Server -> client: alert-message.v1 messages,
{"type": "hello", ...} first, and {"type": "ack", "alert_id": N, "ok": bool} answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from starlette.websockets import WebSocketState

from tracker.alerts.messages import alert_message
from tracker.api.context import AppContext
from tracker.store.alerts import acknowledge, unacknowledged_open_alerts
from tracker.store.tokens import Principal, resolve_token

log = logging.getLogger(__name__)
router = APIRouter()
RECHECK_S = 60.0
_REVOKED = "token revoked or expired"


def _token(ws: WebSocket) -> str | None:
    if token := ws.query_params.get("token"):
        return token
    header = ws.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None


async def close_token_sockets(ctx: AppContext, token_id: int) -> int:
    """Close this process's websockets opened with a token (it was just revoked); returns how many."""
    sockets = list(ctx.sockets.get(token_id, ()))
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close(code=status.WS_1008_POLICY_VIOLATION, reason=_REVOKED)
    return len(sockets)


async def close_guardian_sockets(ctx: AppContext, guardian_id: int) -> int:
    """Close this process's websockets of a guardian (just deleted: their tokens went with them), at
    once rather than at the sockets' next token check; returns how many."""
    sockets = ctx.hub.of(guardian_id)
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close(code=status.WS_1008_POLICY_VIOLATION, reason=_REVOKED)  # type: ignore[attr-defined]
    return len(sockets)


async def _watch_token(ws: WebSocket, ctx: AppContext, token: str, who: Principal) -> None:
    """Close the socket when its token expires or stops resolving (revoked, guardian deleted)."""
    while True:
        wait = RECHECK_S
        if who.expires_at is not None:
            wait = min(wait, max(0.0, (who.expires_at - datetime.now(UTC)).total_seconds()))
        await asyncio.sleep(wait)
        if await resolve_token(ctx.pool, token) is None:
            with contextlib.suppress(Exception):
                await ws.close(code=status.WS_1008_POLICY_VIOLATION, reason=_REVOKED)
            return


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
    ctx.sockets.setdefault(who.token_id, set()).add(ws)
    watcher = asyncio.create_task(_watch_token(ws, ctx, token, who))
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
    except WebSocketDisconnect:
        pass
    except RuntimeError:
        if ws.application_state != WebSocketState.DISCONNECTED:
            raise
        # closed here (token revoked or expired) while a receive was pending
    finally:
        watcher.cancel()
        ctx.hub.remove(guardian_id, ws)
        open_sockets = ctx.sockets.get(who.token_id)
        if open_sockets is not None:
            open_sockets.discard(ws)
            if not open_sockets:
                del ctx.sockets[who.token_id]
