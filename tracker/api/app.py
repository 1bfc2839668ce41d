"""The FastAPI application: registry views, the guardians' websocket and the parent page."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tracker import __version__
from tracker.api import routes, ws
from tracker.api.context import AppContext


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="Child-safety tracker",
        version=__version__,
        description=(
            "School routes, danger zones, and alerts to parents when a child leaves one or enters the other."
        ),
    )
    app.state.ctx = ctx
    app.include_router(routes.router)
    app.include_router(ws.router)

    page = (resources.files("tracker.api") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def parent_page() -> str:
        return page

    return app
