"""Hand the C heap's free pages back to the system.

Building a registry view or reading a city's checkpoints makes and drops hundreds of MB of
short-lived objects (decoded rows, JSON, shapely geometry); glibc keeps the freed pages in the
process, so its RSS stays at the peak of the build although the memory is free (bench/worker_memory.py:
a tracker ready with 400,000 children held some 130 MiB more than what its view needs). ``trim``
asks glibc to return them (``malloc_trim``); elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim() -> None:
    """Return the heap's free pages to the system, where the C library can (glibc)."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)
