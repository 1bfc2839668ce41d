"""The numba decorators of the geofence kernels, and their compilation cache keyed on every kernel file.

numba's ``cache=True`` reuses a compiled function while *its own file* is unchanged: the cache index
of a function is stamped with a hash of the file that defines it (and each entry is keyed on the
function's bytecode). But a kernel is compiled together with its callees (inlined, or linked into the
same machine code), and here the callees live in other files: with ``cache=True`` alone, a change to
:func:`~tracker.geofence.kernels.geometry.seg_dist2` would leave every cached pass that calls it
running the old arithmetic, silently, until the file of each pass happens to change too.

So every kernel of this package is cached under one stamp, :data:`SOURCES_STAMP`: a hash of the
names and contents of every ``.py`` file in this package (computed once, at import). A change to any
kernel file makes every cached kernel of the package stale; each is compiled again on first use and
cached again. Everything numba compiles for the geofence lives in this package (a test checks that
every dispatcher of ``tracker.geofence`` uses :class:`SourceKeyedCache`), so the stamp covers every
callee. The price is a recompilation of the whole package after a change to any of it, which is rare
and is what a change to a primitive needs anyway.

How, without changing anything for other numba users in the process: :class:`SourceKeyedCache` is
numba's own function cache (files in the place numba chooses: ``NUMBA_CACHE_DIR`` when set, else the
``__pycache__`` beside the file when writable, else the user-wide cache directory) whose locator reports
:data:`SOURCES_STAMP` as the source stamp. The decorators below compile without ``cache=True`` and
give each dispatcher that cache, as ``Dispatcher.enable_caching`` does with numba's. Not taken:

* an environment variable (``NUMBA_CACHE_DIR`` pointing at a directory named by the hash): numba
  reads its ``NUMBA_*`` variables when it is imported and again whenever it compiles, so setting one
  here would move the cache of every library in the process, from a moment that depends on import
  order;
* numba's ``NUMBA_CACHE_LOCATOR_CLASSES`` (recent numba only): global as well;
* the stamp in each entry's key instead of in the index: every change would add entries beside the
  stale ones, which numba never removes; a changed stamp makes numba rewrite the index from scratch
  (the stale data files are overwritten in turn).

The cache relies on names of numba's that numba has kept through its 0.6x releases
(``numba.core.caching.FunctionCache``, ``CompileResultCacheImpl`` and its ``_locator``, and
``Dispatcher._cache``); tests/unit/test_geofence_kernel_cache.py would catch a numba that changed
them (a changed kernel that is not recompiled, or an unchanged one that is not loaded from the cache).

Kernels that allocate (and so need numba's reference-counted runtime, NRT) are :func:`jit`; every
other one is :func:`hot`: compiled without NRT, so passing arrays to it costs no atomic increments and
decrements (with NRT they cost ~14 ns per call even when inlined, more than the work of a call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
from numba.core.caching import CompileResultCacheImpl, FunctionCache

from .compiled import SOURCES_STAMP, sources_stamp

__all__ = ["SOURCES_STAMP", "SourceKeyedCache", "hot", "inline", "jit", "parallel", "sources_stamp"]
# SOURCES_STAMP (see the module docstring) is computed in .compiled, which imports no numba: it also
# names the module compiled ahead of time.


class _StampedLocator:
    """numba's locator for a function (where its cache lives), reporting the package's stamp."""

    def __init__(self, locator: Any, stamp: str) -> None:
        self._locator = locator
        self._stamp = stamp

    def ensure_cache_path(self) -> None:
        self._locator.ensure_cache_path()

    def get_cache_path(self) -> str:
        return str(self._locator.get_cache_path())

    def get_disambiguator(self) -> str:
        return str(self._locator.get_disambiguator())

    def get_source_stamp(self) -> str:
        return self._stamp


class _SourceKeyedImpl(CompileResultCacheImpl):
    def __init__(self, py_func: Callable[..., Any]) -> None:
        super().__init__(py_func)
        self._locator = _StampedLocator(self._locator, SOURCES_STAMP)


class SourceKeyedCache(FunctionCache):
    """numba's function cache, stamped with :data:`SOURCES_STAMP` instead of the function's own file."""

    _impl_class = _SourceKeyedImpl


def _cached(dispatcher: Any) -> Any:
    py_func = getattr(dispatcher, "py_func", None)
    if py_func is not None:  # not a plain function (NUMBA_DISABLE_JIT=1)
        dispatcher._cache = SourceKeyedCache(py_func)
    return dispatcher


_OPTIONS: dict[str, Any] = {"nogil": True, "error_model": "numpy"}
_NO_NRT: dict[str, Any] = {"_nrt": False}  # a private option of numba's, stable for years

# The decorators return numba dispatchers, typed Any: mypy does not check the calls of kernels.


def jit(fn: Callable[..., Any]) -> Any:
    """A kernel that allocates (with NRT)."""
    return _cached(numba.njit(**_OPTIONS)(fn))


def hot(fn: Callable[..., Any]) -> Any:
    """A kernel that allocates nothing (without NRT)."""
    return _cached(numba.njit(**_OPTIONS, **_NO_NRT)(fn))


def inline(fn: Callable[..., Any]) -> Any:
    """A small :func:`hot` kernel inlined into its callers (numba IR inlining)."""
    return _cached(numba.njit(**_OPTIONS, **_NO_NRT, inline="always")(fn))


def parallel(fn: Callable[..., Any]) -> Any:
    """A kernel whose ``numba.prange`` loops run on every numba thread."""
    return _cached(numba.njit(**_OPTIONS, parallel=True)(fn))
