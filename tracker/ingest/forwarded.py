"""Fixes forwarded from the front stage of one worker to the owner of their child's partition.

In a cluster (tracker.ingest.jetstream) a broker message is decoded by whichever worker fetched it (the
front), and each decoded fix goes on to the worker that owns its child (the owner), as one message per
partition and front batch. The owner's pipeline takes that message like any other: its topic says what
it is (``forwarded_topic``), and its session that it came from the engine's partition stream, never
from a device (``FORWARDED_SESSION``: a device publishing on such a topic is an unknown topic, not a
forwarded batch); stage 1 reads the fixes back (``decode_forwarded``), and stage 2 admits
them at the owner, where all of a tag's fixes meet (the tag's rate limit, a future timestamp, an SOS
stamped at its receipt: one decider, ``tracker.stages.front.admit``).
"""

from __future__ import annotations

import msgspec

from tracker.ingest.decode import Fix

FORWARDED = "_forwarded"
FORWARDED_SESSION = -2  # RawMessage.session of forwarded fixes (HTTP requests are -1, brokers' sessions >= 0)
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[Fix])


def forwarded_topic(prefix: str, partition: int) -> str:
    """The topic the owner's pipeline sees for fixes forwarded to ``partition``."""
    return f"{prefix}/{FORWARDED}/{partition}"


def encode_forwarded(fixes: list[Fix]) -> bytes:
    return _ENCODER.encode(fixes)


def decode_forwarded(payload: bytes) -> list[Fix]:
    """The fixes a front forwarded (written by this code, never by a device: a payload that does not
    decode is a bug, and the batch loop's bug path dead-letters it as ``internal_error``)."""
    return _DECODER.decode(payload)
