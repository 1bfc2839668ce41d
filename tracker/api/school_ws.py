"""The school's live map socket (/ws/school): its children's positions and statuses, and its alerts,
pushed (schemas/school-live.v1.json).

Authentication: a school staff token (the staff's own school), or an administrator's with
``?school_id=N``; as ``?token=...`` or an ``Authorization: Bearer`` header. Without one the handshake
is refused (HTTP 403). Like the guardians' /ws, an open socket is closed (1008) within seconds when
its token is revoked, deleted or expires (tracker.api.ws_tokens).

Server -> client, in this order on connect: ``hello``; ``snapshot`` (every child of the school as GET
/api/v1/live shows it); ``alerts`` (the school's open alerts, as GET /api/v1/alerts shows them).
Then ``children`` (the children whose position or status changed: each at most once per
TRACKER_SCHOOL_LIVE_MIN_INTERVAL_S, the latest wins) and ``alert`` (an alert opened, resolved,
acknowledged or escalated, or a notice), as they come (tracker.api.live_feed). The client sends
nothing; what it sends is ignored.

Every position sent is a staff read of it, audited (tracker.store.audit) as one row per token, child,
day and endpoint (``WS /ws/school``): the first of a child's reads in a day is written before it is
sent, the count of the later ones added every minute and when the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from starlette.websockets import WebSocketState

from tracker.api.alerts import alert_out
from tracker.api.context import AppContext
from tracker.api.live import live_item
from tracker.api.live_feed import Subscriber
from tracker.store import audit
from tracker.store.db import DB_ERRORS
from tracker.store.history import AlertFilter, list_alerts
from tracker.store.live import live_children
from tracker.store.tokens import Principal, resolve_token

log = logging.getLogger(__name__)
router = APIRouter()
ENDPOINT = "WS /ws/school"  # what the audit log names these reads
VERSION = 1
SEND_TIMEOUT_S = 5.0  # a send that takes longer closes the socket (the page polls, then reconnects)
AUDIT_FLUSH_S = 60.0  # how often the counts of a socket's later reads are added to its audit rows
PAGE = 1000  # the snapshot is read in pages of this many children
TOO_SLOW = 1013  # "try again later": the socket fell behind; a reconnect starts from a new snapshot


def _token(ws: WebSocket) -> str | None:
    if token := ws.query_params.get("token"):
        return token
    header = ws.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_encode)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


class SocketReads:
    """A socket's position reads, as the audit log keeps them: the first read of each child in a day
    written before it is sent; the later ones counted here and added every AUDIT_FLUSH_S and at the
    end. The day is the school's (the children's school's time zone)."""

    def __init__(self, who: Principal, tz: ZoneInfo) -> None:
        self._who = who
        self._tz = tz
        self._day = datetime.now(tz).date()
        self._written: set[int] = set()  # children with a row for the day
        self._counts: Counter[int] = Counter()
        self._flushed = time.monotonic()

    async def before_sending(self, pool: asyncpg.Pool, fixes: Counter[int]) -> None:
        """Log these reads (child -> positions about to be sent, one a message: as many reads); raises
        if the log cannot be written."""
        if not fixes:
            return
        today = datetime.now(self._tz).date()
        if today != self._day:
            await self.flush(pool)
            self._day, self._written = today, set()
        first = {c: n for c, n in fixes.items() if c not in self._written}
        if first:
            await audit.record_position_reads(
                pool, self._who, first, ENDPOINT, day=self._day, reads_by_child=first
            )
            self._written.update(first)
        self._counts.update({c: n for c, n in fixes.items() if c not in first})
        if time.monotonic() - self._flushed >= AUDIT_FLUSH_S:
            await self.flush(pool)

    async def flush(self, pool: asyncpg.Pool) -> None:
        self._flushed = time.monotonic()
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        await audit.record_position_reads(
            pool, self._who, counts, ENDPOINT, day=self._day, reads_by_child=counts
        )


async def _school_of(ctx: AppContext, ws: WebSocket, who: Principal) -> tuple[int, str] | str:
    """The school the socket watches and its time zone, or why it may not."""
    asked = ws.query_params.get("school_id")
    try:
        wanted = int(asked) if asked else None
    except ValueError:
        return "school_id must be a number"
    if who.role == "school":
        if wanted is not None and wanted != who.school_id:
            return "a school's staff watch their own school only"
        wanted = who.school_id
    if wanted is None or who.role not in ("school", "admin"):
        return "a school staff token is required (an administrator's with ?school_id=N)"
    tz = await ctx.pool.fetchval("SELECT timezone FROM schools WHERE id = $1", wanted)
    if tz is None:
        return "no such school"
    return int(wanted), str(tz)


def _school_scope(who: Principal, school_id: int) -> Principal:
    """Whose access rules the socket's reads follow: the school's (an administrator watching a school
    sees what its staff see; the audit log still names the administrator)."""
    if who.role == "school":
        return who
    return Principal(token_id=who.token_id, role="school", school_id=school_id, label=who.label)


async def _snapshot(ctx: AppContext, scope: Principal, school_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    async with ctx.pool.acquire() as conn:
        while True:
            rows, total = await live_children(
                conn, scope, school_id=school_id, child_id=None, limit=PAGE, offset=len(items)
            )
            items.extend(live_item(r) for r in rows)
            if not rows or len(items) >= total:
                return items


async def _open_alerts(ctx: AppContext, scope: Principal) -> list[dict[str, Any]]:
    async with ctx.pool.acquire() as conn:
        rows, _ = await list_alerts(conn, scope, AlertFilter(state="open"), limit=PAGE, offset=0)
    return [alert_out(r) for r in rows]


async def _send(ws: WebSocket, text: str) -> None:
    await asyncio.wait_for(ws.send_text(text), SEND_TIMEOUT_S)


def _positions_in(children: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> Counter[int]:
    """child -> how many of its positions these messages hold (what the audit log counts)."""
    fixes: Counter[int] = Counter(c["child_id"] for c in children if c.get("position") is not None)
    fixes.update(a["child"]["id"] for a in alerts if a.get("position") is not None)
    return fixes


async def _pushing(ws: WebSocket, ctx: AppContext, sub: Subscriber, reads: SocketReads) -> None:
    """Send what the feed puts in the socket's mailbox, as it comes; close the socket if it falls
    behind (a send times out, or its alerts overflow)."""
    code, reason = TOO_SLOW, "too far behind: reconnect"
    try:
        while not sub.overflowed:
            await sub.ready.wait()
            if sub.overflowed:
                break
            children, alerts = sub.take()
            await reads.before_sending(ctx.pool, _positions_in(children, alerts))  # no log, no read
            if children:
                await _send(ws, _json({"type": "children", "children": children}))
            for alert in alerts:
                await _send(ws, _json({"type": "alert", "alert": alert}))
    except TimeoutError:
        log.info("school live map socket too slow; closing it")
    except DB_ERRORS as e:
        log.warning("school live map socket closed: its reads cannot be audited (%s)", e)
        code, reason = status.WS_1011_INTERNAL_ERROR, "database unavailable"
    except (WebSocketDisconnect, RuntimeError):
        return  # closed meanwhile
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=reason)


@router.websocket("/ws/school")
async def school_socket(ws: WebSocket) -> None:
    ctx: AppContext = ws.app.state.ctx
    token = _token(ws)
    who = await resolve_token(ctx.pool, token) if token else None
    if who is None or who.role not in audit.STAFF_ROLES:
        await ws.close(code=status.WS_1008_POLICY_VIOLATION, reason="a valid school staff token is required")
        return
    school = await _school_of(ctx, ws, who)
    if isinstance(school, str):
        await ws.close(code=status.WS_1008_POLICY_VIOLATION, reason=school)
        return
    feed = ctx.school_live
    if feed is None:
        await ws.close(code=status.WS_1011_INTERNAL_ERROR, reason="no live feed in this process")
        return
    school_id, tz = school
    await ws.accept()
    ctx.sockets.add(who.token_id, who.expires_at, ws)  # closed when the token is revoked or expires
    sub = feed.subscribe(school_id)  # before the snapshot: nothing committed after it is missed
    reads = SocketReads(who, ZoneInfo(tz))
    pushing: asyncio.Task[None] | None = None
    try:
        hello = {"type": "hello", "version": VERSION, "school_id": school_id}
        await _send(ws, _json(hello | {"min_interval_s": ctx.settings.school_live_min_interval_s}))
        scope = _school_scope(who, school_id)
        children = await _snapshot(ctx, scope, school_id)
        alerts = await _open_alerts(ctx, scope)
        await reads.before_sending(ctx.pool, _positions_in(children, alerts))
        await _send(ws, _json({"type": "snapshot", "children": children}))
        await _send(ws, _json({"type": "alerts", "alerts": alerts}))
        pushing = asyncio.create_task(_pushing(ws, ctx, sub, reads))
        while True:
            await ws.receive_text()  # nothing is expected; this notices the close
    except (WebSocketDisconnect, TimeoutError):
        pass
    except RuntimeError:
        if ws.application_state != WebSocketState.DISCONNECTED:
            raise
        # closed here (token revoked or expired, too slow) while a receive was pending
    except DB_ERRORS as e:
        log.warning("school live map socket closed: PostgreSQL trouble (%s)", e)
        with contextlib.suppress(Exception):
            await ws.close(code=status.WS_1011_INTERNAL_ERROR, reason="database unavailable")
    finally:
        feed.unsubscribe(sub)
        ctx.sockets.discard(who.token_id, ws)
        if pushing is not None:
            pushing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pushing
        try:
            await reads.flush(ctx.pool)
        except DB_ERRORS as e:
            log.warning("school live map: the counts of a closed socket's reads were lost (%s)", e)
