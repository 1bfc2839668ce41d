"""The websocket hub (tracker.alerts.hub): a page that takes its alerts gets them; one whose socket has
failed or stalled is dropped *and closed*, so that its page knows it is no longer live, reconnects and
catches up (left open, a stalled page would go on showing "live" while nothing reached it)."""

from __future__ import annotations

import asyncio

from tracker.alerts.hub import DROPPED, WebSocketHub


class Page:
    """A parent's socket as the hub sees it; ``stall``: its sends never finish; ``broken``: they fail."""

    def __init__(self, *, stall: bool = False, broken: bool = False) -> None:
        self.stall, self.broken = stall, broken
        self.got: list[str] = []
        self.closed_with: int | None = None

    async def send_text(self, data: str) -> None:
        if self.broken:
            raise ConnectionResetError("peer gone")
        if self.stall:
            await asyncio.Event().wait()
        self.got.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = code


# (what, the guardian's pages, how many take the alert, which are dropped and closed)
CASES = [
    ("one page that takes it", [Page()], 1, []),
    ("a phone and a laptop", [Page(), Page()], 2, []),
    ("a stalled page beside a live one", [Page(), Page(stall=True)], 1, [1]),
    ("a page whose socket is gone", [Page(broken=True)], 0, [0]),
]


async def test_a_failed_or_stalled_page_is_dropped_and_closed_the_others_get_the_alert() -> None:
    for what, pages, taken, dropped in CASES:
        hub = WebSocketHub(send_timeout_s=0.05)
        for p in pages:
            hub.add(7, p)
        assert await hub.send(7, "alert") == taken, what
        await asyncio.sleep(0.01)  # the closes run in their own tasks
        for i, p in enumerate(pages):
            assert p.closed_with == (DROPPED if i in dropped else None), what
            assert p.got == ([] if i in dropped else ["alert"]), what
        assert hub.connections(7) == len(pages) - len(dropped), what
        assert await hub.send(7, "next") == len(pages) - len(dropped), what  # the dropped get no more
