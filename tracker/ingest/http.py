"""HTTP ingest (OwnTracks HTTP mode, OsmAnd) goes through the same pipeline as the broker's messages:
a request becomes a RawMessage on the service's ingest queue, in the same batches, with the same
decoding, dead-lettering and idempotence; the handler answers only once its batch is committed."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Mapping

from tracker.ingest.decode import RawMessage
from tracker.ingest.handoff import Handoff

HTTP_SESSION = -1  # RawMessage.session of HTTP requests: nothing to acknowledge to a broker


class HttpIngress:
    def __init__(
        self, queue: Handoff[RawMessage], devices: Callable[[], Mapping[str, str]], *, timeout_s: float
    ) -> None:
        self._queue = queue
        self.devices = devices  # "owntracks:user/device" -> tag id, from the current registry view
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[None]] = {}

    async def submit(self, topic: str, payload: bytes) -> None:
        """Queue one message and return once the batch holding it is committed (TimeoutError if that
        takes longer than the timeout: the message still goes through, and a retry changes nothing)."""
        mid = next(self._ids)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[mid] = done
        self._queue.put_nowait(RawMessage(topic, payload, time.time(), mid, 0, HTTP_SESSION))
        try:
            await asyncio.wait_for(asyncio.shield(done), self._timeout_s)
        finally:
            self._waiting.pop(mid, None)

    def committed(self, batch: Iterable[RawMessage]) -> None:
        """The batch loop committed these: wake their requests."""
        for m in batch:
            if m.session == HTTP_SESSION:
                done = self._waiting.pop(m.mid, None)
                if done is not None and not done.done():
                    done.set_result(None)
