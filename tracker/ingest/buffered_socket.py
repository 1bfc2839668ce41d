"""A read buffer under paho-mqtt's socket: one recv() per 64 KiB instead of three or four per message.

paho reads each packet with ``recv(1)`` for its type, ``recv(1)`` per byte of its length, then
``recv(rest)``, and goes back to ``select()`` between packets: five system calls (and a turn of its
loop) per message, most of what a paho subscriber spends on a small message. paho asks a socket for
``pending()`` (an SSL socket's buffered bytes) and then reads without waiting in ``select()``; this
wrapper answers with the bytes it holds, so paho takes a whole buffer of packets in one go.
"""

from __future__ import annotations

import socket
from typing import Any

CHUNK = 65536


class BufferedSocket:
    """A TCP socket whose ``recv`` is served from a buffer filled a chunk at a time; everything else
    (send, fileno, setblocking, close, ...) is the socket's own."""

    def __init__(self, sock: socket.socket, chunk: int = CHUNK) -> None:
        self._sock = sock
        self._chunk = chunk
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(n, self._chunk))  # BlockingIOError passes through, as paho expects
            if len(data) <= n:
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + n, len(self._buf))
        return self._buf[start : self._pos]

    def buffered(self) -> tuple[bytes, int]:
        """The buffer and where its unread bytes begin (``consume`` says how far they were read)."""
        return self._buf, self._pos

    def consume(self, pos: int) -> None:
        """The buffer was read up to ``pos`` (from ``buffered``)."""
        self._pos = pos

    def pending(self) -> int:
        """Bytes received and not yet read (paho then reads again without waiting in select)."""
        return len(self._buf) - self._pos

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
