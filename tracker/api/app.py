"""The FastAPI application: the registry API, the guardians' websocket, metrics and the web pages."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker import __version__
from tracker.api import (
    alerts,
    devices,
    health,
    ingest,
    live,
    me,
    operator,
    pages,
    people,
    push,
    registry,
    school_ws,
    tokens,
    transfer,
    ws,
)
from tracker.api.context import AppContext
from tracker.importers.features import readable

DESCRIPTION = """
School routes, danger zones, and alerts to parents when a child leaves one or enters the other.

**Authentication**: `Authorization: Bearer <token>`. Roles: `admin` (the city: schools, danger zones,
everything), `school` (staff of one school: its routes, readers, children, tags, guardians),
`guardian` (their own children, alerts and positions), `device` (one tag). A role that may not use an
endpoint gets 403; a resource the caller may not see is 404, exactly as if it did not exist.

**GeoJSON** (RFC 7946, `[lon, lat]`) for everything with a shape; lists are paged with `limit` and
`offset` and say their `total`. Bad input gets a 4xx whose `detail` says what is wrong and where
(`loc`). Every staff read of a child's position is written to an audit log (one entry per staff
session, child, day and endpoint, with counts).

**Websockets** (not among the paths below): `/ws?token=` carries a guardian's alerts
(schemas/alert-message.v1.json); `/ws/school?token=` a school's live map, pushed
(schemas/school-live.v1.json): a snapshot of the school's children and open alerts on connect, then
each child's position and status at most once every few seconds and alerts as they open and resolve.
"""

# The routers in the order the OpenAPI document lists their paths (and a request goes to the first
# path that matches it).
ROUTERS = (
    health,
    me,
    alerts,
    push,
    operator,
    registry,
    people,
    devices,
    live,
    tokens,
    transfer,
    ws,
    school_ws,
    ingest,
)


class BodyLimit:
    """Refuse request bodies over a size (413) before they are read whole; some paths get more."""

    def __init__(self, app: ASGIApp, *, default: int, larger: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.larger = larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.default)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            too_large = f"the request body is larger than {limit} bytes"
            response = JSONResponse({"detail": too_large}, status.HTTP_413_CONTENT_TOO_LARGE)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE, f"the request body is larger than {limit} bytes"
                    )
            return message

        await self.app(scope, counted, send)


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="Child-safety tracker", version=__version__, description=DESCRIPTION)
    app.state.ctx = ctx
    for module in ROUTERS:
        app.include_router(module.router)
    app.add_middleware(
        BodyLimit,
        default=ctx.settings.max_body_bytes,
        larger={"/api/v1/import": ctx.settings.max_import_bytes},
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        detail = []
        for error in e.errors():
            loc, msg = readable(error)
            detail.append({"loc": list(loc), "msg": msg, "type": str(error.get("type", "value_error"))})
        return JSONResponse({"detail": detail}, 422)

    # A body that is not UTF-8 cannot be JSON (RFC 8259); FastAPI answers it with a bare 400 that no
    # operation documents and whose detail says neither what is wrong nor where. It is malformed JSON
    # like any other, so it gets the documented 422 of a syntax error.
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        cause = e.__cause__
        if e.status_code == status.HTTP_400_BAD_REQUEST and isinstance(cause, UnicodeDecodeError):
            msg = f"the body is not UTF-8 text ({cause.reason} at byte {cause.start})"
            return JSONResponse({"detail": [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]}, 422)
        return await http_exception_handler(request, e)

    # A write that loses a race with another (the row it refers to was deleted a moment ago, the same
    # id registered twice at once) is the caller's conflict, not a server error.
    @app.exception_handler(asyncpg.UniqueViolationError)
    async def _duplicate(_: Request, e: Any) -> JSONResponse:
        return JSONResponse({"detail": f"already registered ({e.constraint_name})"}, status.HTTP_409_CONFLICT)

    @app.exception_handler(asyncpg.ForeignKeyViolationError)
    async def _gone(_: Request, e: Any) -> JSONResponse:
        return JSONResponse(
            {"detail": f"refers to something that does not exist any more ({e.constraint_name})"},
            status.HTTP_409_CONFLICT,
        )

    pages.mount(app, ctx.settings)

    return app
