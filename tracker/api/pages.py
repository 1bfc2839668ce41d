"""The web pages: parent (/), school (/school), city (/city), served by the tracker itself.

Scripts, styles, the map library (Leaflet + Leaflet-Geoman, vendored from npm by `make vendor`) and
Seoul's districts (the maps' own base layer when no tiles are configured) come from /static: the pages
fetch nothing from elsewhere but the map tiles of ``TRACKER_TILE_URL``, and the Content-Security-Policy
says so to the browser.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from tracker.config import Settings

STATIC = resources.files("tracker.api") / "static"
PAGES = {"/": "index.html", "/school": "school.html", "/city": "city.html"}


def _tile_origin(url: str) -> str:
    parts = urlsplit(url.replace("{s}", "a"))
    if not parts.scheme or not parts.netloc:
        return ""
    host = parts.netloc
    if "{s}" in url:  # tiles spread over subdomains a.b.c.
        host = "*." + host.split(".", 1)[1]
    return f"{parts.scheme}://{host}"


def security_headers(settings: Settings) -> dict[str, str]:
    tiles = _tile_origin(settings.tile_url)
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        f" img-src 'self' data: blob:{' ' + tiles if tiles else ''}; connect-src 'self';"
        " object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def mount(app: FastAPI, settings: Settings) -> None:
    headers = security_headers(settings)
    config = {"tileUrl": settings.tile_url, "tileAttribution": settings.tile_attribution}
    config_js = f"window.TRACKER_CONFIG = {json.dumps(config)};\n"

    def serve(html: str) -> Callable[[], Awaitable[HTMLResponse]]:
        async def page() -> HTMLResponse:
            return HTMLResponse(html, headers=headers)

        return page

    for path, name in PAGES.items():
        html = (STATIC / name).read_text(encoding="utf-8")
        app.add_api_route(
            path, serve(html), methods=["GET"], include_in_schema=False, response_class=HTMLResponse
        )

    async def page_config() -> Response:
        return Response(config_js, media_type="text/javascript", headers=headers)

    app.add_api_route("/config.js", page_config, methods=["GET"], include_in_schema=False)

    # The parent page as an installable app (issue 17): its manifest, and its service worker, which
    # must be served from the root to control "/" (a worker's scope is at most its own directory).
    worker_js = (STATIC / "sw.js").read_bytes()
    manifest = (STATIC / "manifest.webmanifest").read_bytes()

    async def service_worker() -> Response:
        return Response(worker_js, media_type="text/javascript", headers=headers)

    async def web_manifest() -> Response:
        return Response(manifest, media_type="application/manifest+json", headers=headers)

    app.add_api_route("/sw.js", service_worker, methods=["GET"], include_in_schema=False)
    app.add_api_route("/manifest.webmanifest", web_manifest, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
