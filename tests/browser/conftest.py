"""A real headless Chromium (Debian's `chromium`, never a downloaded one) driven by Playwright.

The browser tests skip, saying why, when the browser or the `playwright` package is missing
(`apt-get install chromium`; `pip install -e '.[dev]'`); in CI such a skip fails the run
(tests/conftest.py). Screenshots of every page at phone and desktop
size go to TRACKER_SCREENSHOT_DIR (default test-artifacts/screenshots, ignored by git) for review.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("TRACKER_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = os.path.exists(CHROMIUM)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 768}
SHOTS = Path(os.environ.get("TRACKER_SCREENSHOT_DIR", "test-artifacts/screenshots"))
A11Y = (Path(__file__).parent / "a11y.js").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (or set TRACKER_CHROMIUM)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed: pip install -e '.[dev]'")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


class Tab:
    """A browser page that refuses every request leaving the tracker (no CDN, no tiles) and keeps
    what the page logged as errors."""

    def __init__(self, page: Any, context: Any) -> None:
        self.page = page
        self.context = context
        self.foreign: list[str] = []
        self.errors: list[str] = []  # uncaught exceptions in the page's scripts
        self.console: list[str] = []  # what the page logged as errors (failed loads among them)

    async def accessibility_problems(self) -> list[str]:
        """Controls without a name, text without enough contrast (tests/browser/a11y.js)."""
        problems: list[str] = await self.page.evaluate(A11Y)
        return problems

    async def tab_to(self, selector: str, most: int = 60) -> None:
        """Press Tab from the top of the page until the element is focused, as a keyboard user would."""
        await self.page.evaluate("document.activeElement && document.activeElement.blur()")
        for _ in range(most):
            await self.page.keyboard.press("Tab")
            if await self.page.evaluate(f"document.activeElement === document.querySelector({selector!r})"):
                return
        raise AssertionError(f"{selector} cannot be reached with the Tab key")

    async def shoot(self, name: str) -> None:
        """Screenshots of the page as it is, at phone and at desktop size."""
        os.makedirs(SHOTS, exist_ok=True)
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            await self.page.set_viewport_size(size)
            await self.page.wait_for_timeout(300)  # the map redraws at the new size
            await self.page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)


@pytest.fixture
async def open_tab(browser: Any) -> AsyncIterator[Any]:
    contexts: list[Any] = []

    async def make(size: dict[str, int] = PHONE, locale: str = "en-US", timezone: str = "Asia/Seoul") -> Tab:
        context = await browser.new_context(viewport=size, locale=locale, timezone_id=timezone)
        contexts.append(context)
        page = await context.new_page()
        tab = Tab(page, context)

        async def only_local(route: Any) -> None:
            host = urlsplit(route.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                await route.continue_()
            else:
                tab.foreign.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_local)
        page.on("pageerror", lambda e: tab.errors.append(str(e)))
        page.on("console", lambda m: tab.console.append(f"{m.type}: {m.text}"))
        return tab

    yield make
    for c in contexts:
        await c.close()
