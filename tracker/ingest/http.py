"""HTTP ingest (OwnTracks HTTP mode, OsmAnd) goes through the same pipeline as the broker's messages:
a request becomes a RawMessage on the service's ingest queue, in the same batches, with the same
decoding, dead-lettering and idempotence; the handler answers only once its batch is committed, and
with the pipeline's own outcome for that message (`MessageAnswer`): nothing here decodes or judges a
message a second time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from tracker.ingest.decode import RawMessage, Reason, Rejection
from tracker.ingest.handoff import Handoff

HTTP_SESSION = -1  # RawMessage.session of HTTP requests: nothing to acknowledge to a broker


@dataclass(frozen=True)
class MessageAnswer:
    """The pipeline's outcome for one message that waits for an answer (an HTTP request): how many of
    its fixes were admitted (stored once the batch commits; a repeat of a stored fix counts, it is
    stored already), and the first of its parts that was refused (dead-lettered, with the reason), if
    any."""

    fixes: int = 0
    refused: Rejection | None = None

    @classmethod
    def internal_error(cls, message: RawMessage, detail: str) -> MessageAnswer:
        """A bug met the message: it is kept as a dead letter (``internal_error``)."""
        return cls(
            0, Rejection(message.topic, message.payload, Reason.INTERNAL_ERROR, detail, message.received_at)
        )


class HttpIngress:
    def __init__(
        self, queue: Handoff[RawMessage], devices: Callable[[], Mapping[str, str]], *, timeout_s: float
    ) -> None:
        self._queue = queue
        self.devices = devices  # "owntracks:user/device" -> tag id, from the current registry view
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[MessageAnswer]] = {}

    async def submit(self, topic: str, payload: bytes) -> MessageAnswer:
        """Queue one message and return its outcome once the batch holding it is committed (TimeoutError
        if that takes longer than the timeout: the message still goes through, and a retry changes
        nothing)."""
        mid = next(self._ids)
        done: asyncio.Future[MessageAnswer] = asyncio.get_running_loop().create_future()
        self._waiting[mid] = done
        self._queue.put_nowait(RawMessage(topic, payload, time.time(), mid, 0, HTTP_SESSION))
        try:
            return await asyncio.wait_for(asyncio.shield(done), self._timeout_s)
        finally:
            self._waiting.pop(mid, None)

    def committed(self, batch: Iterable[RawMessage], answers: Mapping[int, MessageAnswer]) -> None:
        """The batch loop committed these: answer their requests (``answers``: by message id; a message
        the pipeline found nothing in, e.g. an OwnTracks message without a position, is answered with
        no fixes and no refusal)."""
        for m in batch:
            if m.session == HTTP_SESSION:
                done = self._waiting.pop(m.mid, None)
                if done is not None and not done.done():
                    done.set_result(answers.get(m.mid, _NOTHING))


_NOTHING = MessageAnswer()
