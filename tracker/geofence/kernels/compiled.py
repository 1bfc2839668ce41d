"""Which compiled kernels a process runs: the ones compiled ahead of time, or numba's JIT.

Why: numba and llvmlite cost a process ~115 MiB of RSS as soon as they are imported (libllvmlite, a
170 MB library, is most of it: pages of a mapped file) and more once the kernels are loaded; a
tracker worker holding a city of 400,000 children is about 540 MiB, of which the interpreter with
numba is ~225-256 before any child (docs/scaling.md, "A worker's memory"). The kernels a worker runs
(an index's build, and a batch's check in one call) can be compiled ahead of time by numba's own AOT
compiler (``numba.pycc``) into an extension module that needs numpy alone: then numba is never
imported in the worker.

The functions are the same, written once in this package: the module is made by
``python -m tracker.geofence.kernels`` (``make kernels``; ``make venv`` runs it), which

1. makes the :data:`ENTRY_POINTS`' calls a worker makes under the JIT (:func:`sample_calls`: indexes
   of routes and zones, with and without either, checked with and without previous fixes) and reads
   the types numba compiled each one for: the signatures come from the calls, not from a second list
   of types (a worker's calls of another type would be a bug that tests/unit/test_geofence_compiled.py
   catches: the AOT module does not check its arguments' types, it reads the bytes it is given);
2. exports, for each entry point, a wrapper calling its numba dispatcher, so that every kernel is
   compiled with its own options (error model, NRT or not, inlining) exactly as the JIT compiles it;
   the wrapper releases the GIL as the JIT's ``nogil`` kernels do, and remembers what it unpickles as
   the JIT does (:func:`_compiled_as_the_jit_runs`);
3. compiles for the architecture's generic CPU (x86-64: SSE2): the module runs on any machine of the
   architecture, at some speed against the JIT, which compiles for this CPU (docs/scaling.md gives the
   ratio). The answers are the same bits: no fast-math, so no reordering of floating-point
   arithmetic (the oracle tests compare both, bit for bit).

Freshness: the module is named after :data:`SOURCES_STAMP` (``_aot_<16 hex digits>``), a hash of
every file of this package: after a change to any of them, the module built before has another name
and is not found, so the JIT runs until the module is built again (the build removes stale ones).

The choice is made once, at import (:data:`AHEAD_OF_TIME`, :data:`IN_USE`):
``TRACKER_GEOFENCE_KERNELS=jit`` forces the JIT; otherwise (``auto``) the module compiled ahead of
time when it is there and fresh, else the JIT. The parallel passes (``prange``, :mod:`.parallel`) are
JIT only (``numba.pycc`` does not compile ``parallel=True``); a worker never needs them (its batches
are far below :data:`tracker.geofence.index.PARALLEL_MIN_FIXES`), and asking for them loads numba.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "AHEAD_OF_TIME",
    "ENTRY_POINTS",
    "ENV",
    "IN_USE",
    "SOURCES_STAMP",
    "ahead_of_time",
    "build",
    "entry_points",
    "jit_entry_points",
    "module_name",
    "sample_calls",
    "sources_stamp",
]

HERE = Path(__file__).resolve().parent

ENTRY_POINTS = (
    "build_cells",
    "build_chunks",
    "cell_record_sizes",
    "check_batch_in_one_call",
    "pack_cells",
    "pack_routes",
    "route_record_sizes",
)
"""The kernels called from Python on a worker's path (the build of an index, the check of a batch);
every other kernel is one of their callees, compiled into them."""

ENV = "TRACKER_GEOFENCE_KERNELS"
"""``auto`` (default): ahead of time when the fresh module is there, else the JIT; ``jit``: the JIT."""


def sources_stamp(package_dir: Path) -> str:
    """sha256 over the names and contents of the package's ``.py`` files, in name order."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


SOURCES_STAMP = sources_stamp(HERE)
"""The stamp of this package's sources: the key of numba's cache of every kernel (:mod:`.jit`) and
the name of the module compiled ahead of time."""


def module_name(stamp: str = SOURCES_STAMP) -> str:
    """The name of the module compiled ahead of time from the sources of ``stamp``."""
    return f"_aot_{stamp[:16]}"


def ahead_of_time() -> ModuleType:
    """The module compiled ahead of time from these sources, whatever :data:`ENV` says (the tests
    compare it with the JIT); ImportError when it is absent, stale or does not load."""
    return importlib.import_module(f"{__package__}.{module_name()}")


def _load() -> tuple[ModuleType | None, str]:
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "jit"):
        raise ValueError(f"{ENV}={choice!r}: auto or jit")
    if choice == "jit":
        return None, f"numba's JIT ({ENV}=jit)"
    try:
        module = ahead_of_time()
    except ImportError as exc:
        built = sorted(p.name for p in HERE.glob("_aot_*") if p.is_file())
        if not built:
            why = "no module compiled ahead of time (make kernels builds it)"
        elif not any(name.startswith(module_name() + ".") for name in built):
            why = f"the module compiled ahead of time is stale ({built[0]}: make kernels)"
        else:
            why = f"the module compiled ahead of time does not load ({exc})"
        return None, f"numba's JIT: {why}"
    return module, f"ahead of time ({Path(module.__file__ or module_name()).name})"


AHEAD_OF_TIME, IN_USE = _load()
"""The module compiled ahead of time (None: the JIT runs), and a sentence saying which runs and why
(the service logs it at start)."""


def jit_entry_points() -> dict[str, Any]:
    """The :data:`ENTRY_POINTS` as numba's dispatchers (imports numba)."""
    from . import cells, passes, records

    return {
        name: getattr(m, name) for m in (cells, passes, records) for name in ENTRY_POINTS if hasattr(m, name)
    }


def entry_points() -> dict[str, Any]:
    """The :data:`ENTRY_POINTS` this process runs: compiled ahead of time, else numba's dispatchers."""
    if AHEAD_OF_TIME is None:
        return jit_entry_points()
    return {name: getattr(AHEAD_OF_TIME, name) for name in ENTRY_POINTS}


# --- the build ---------------------------------------------------------------------------------------------


def sample_calls() -> None:
    """Make the entry points' calls a worker makes (through :mod:`tracker.geofence`, which calls this
    package's entry points): build indexes with and without routes and zones, check batches of every
    kind. Run under the JIT, they leave each dispatcher compiled for the types a worker passes."""
    import numpy as np
    import shapely

    from tracker.geofence import LocalProjection, RouteSpec, ZoneSpec, build_index

    projection = LocalProjection(126.98, 37.56)
    square = shapely.Polygon([(126.98, 37.56), (126.99, 37.56), (126.99, 37.57), (126.98, 37.57)])
    holed = shapely.Polygon(
        square.exterior.coords, [[(126.984, 37.564), (126.986, 37.564), (126.985, 37.566)]]
    )
    far = shapely.Polygon([(127.0, 37.58), (127.01, 37.58), (127.005, 37.59)])
    zones = [ZoneSpec(1, holed), ZoneSpec(2, shapely.MultiPolygon([far, square.buffer(-0.002)]))]
    line = shapely.LineString([(126.97, 37.565), (127.02, 37.566), (127.03, 37.58)])
    routes = [
        RouteSpec(7, line, 40.0),
        RouteSpec(8, shapely.MultiLineString([line.coords, far.exterior.coords]), 30.0),
    ]
    lon = np.linspace(126.975, 127.02, 64)
    lat = np.linspace(37.555, 37.585, 64)
    acc = np.full(64, 20.0)
    for r, z in ((routes, zones), (routes, []), ([], zones), ([], [])):
        index = build_index(r, z, projection=projection, search_radius_m=150.0)
        slots = index.route_slots(np.resize([7, 8, -1], 64))
        index.check(lon, lat, acc, slots)
        index.check(lon, lat, acc, slots, prev_lon=lon[::-1], prev_lat=lat, prev_acc=acc)
        index.check(lon, lat, acc, slots, prev_lon=lon - 0.001, prev_lat=lat)


MEMOISED_UNPICKLE_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
/* numba.pycc's numba_unpickle (numba/_helperlib.c, PYCC_COMPILING) calls pickle.loads every time: a
   wrapper boxing an array unpickles the array's Python type, ~4 us an array, ~45 us a check of ten
   arrays. The JIT remembers what it unpickled, keyed on the serialized data's address and hash
   (numba.core.serialize._numba_unpickle); this does the same. Called with the GIL held. */
extern PyObject *numba_unpickle(const char *data, int n, const char *hashed);

PyObject *tracker_aot_unpickle(const char *data, int n, const char *hashed)
{
    static PyObject *memo = NULL;
    PyObject *key, *obj;
    if (memo == NULL && (memo = PyDict_New()) == NULL)
        return NULL;
    key = Py_BuildValue("(ny#)", (Py_ssize_t)data, hashed, (Py_ssize_t)20);
    if (key == NULL)
        return NULL;
    obj = PyDict_GetItemWithError(memo, key);
    if (obj != NULL) {
        Py_INCREF(obj);
    } else if (!PyErr_Occurred() && (obj = numba_unpickle(data, n, hashed)) != NULL) {
        if (PyDict_SetItem(memo, key, obj) < 0) {
            Py_CLEAR(obj);
        }
    }
    Py_DECREF(key);
    return obj;
}
"""
"""Compiled into the module: see :func:`_compiled_as_the_jit_runs`."""


@contextlib.contextmanager
def _compiled_as_the_jit_runs() -> Iterator[None]:
    """Two differences between numba.pycc's wrappers and the JIT's, undone while the module compiles:

    * pycc compiles its exports with default flags (the GIL held); the JIT's kernels are nogil, and the
      pipeline checks batches in a thread beside the event loop. ``numba.pycc.compiler.Flags`` is the
      class its compiler makes its flags from (numba 0.5x-0.6x);
    * pycc's wrappers unpickle the type of every array they return, at every call
      (:data:`MEMOISED_UNPICKLE_C`): the wrappers call ``tracker_aot_unpickle`` instead of
      ``numba_unpickle`` (``PythonAPI._get_function`` is how numba declares the C functions its
      generated code calls).

    Only the exported wrappers are compiled meanwhile (the kernels were compiled by the sample calls).
    """
    from numba.core.pythonapi import PythonAPI
    from numba.pycc import compiler

    base = compiler.Flags
    get_function = PythonAPI._get_function

    class NoGilFlags(base):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    def memoised_unpickle(self: Any, fnty: Any, name: str) -> Any:
        return get_function(self, fnty, "tracker_aot_unpickle" if name == "numba_unpickle" else name)

    setattr(compiler, "Flags", NoGilFlags)  # noqa: B010 (mypy: a class is not assignable)
    setattr(PythonAPI, "_get_function", memoised_unpickle)  # noqa: B010
    try:
        yield
    finally:
        setattr(compiler, "Flags", base)  # noqa: B010
        setattr(PythonAPI, "_get_function", get_function)  # noqa: B010


def _wrapper(name: str, dispatcher: Any) -> tuple[Any, Any]:
    """A function of the entry point's arity calling its dispatcher, and the signature to export
    (the one numba compiled the dispatcher for; an argument left to its default is left out)."""
    from numba.core import types

    if len(dispatcher.signatures) != 1:
        raise RuntimeError(
            f"{name} was compiled for {len(dispatcher.signatures)} signatures by the sample calls, "
            f"{dispatcher.signatures}: a worker's calls must have one type each"
        )
    compiled = dispatcher.overloads[dispatcher.signatures[0]].signature
    args = [t for t in compiled.args if not isinstance(t, types.Omitted)]
    params = ", ".join(f"a{i}" for i in range(len(args)))
    namespace: dict[str, Any] = {"kernel": dispatcher}
    exec(f"def {name}({params}):\n    return kernel({params})\n", namespace)  # our own source
    return namespace[name], compiled.return_type(*args)


def build(directory: Path = HERE) -> Path:
    """Compile the entry points ahead of time into ``directory`` (this package's by default); returns
    the module's path. Must run with the JIT in use (``python -m tracker.geofence.kernels`` sees to it)."""
    if AHEAD_OF_TIME is not None:
        raise RuntimeError(f"build the kernels with {ENV}=jit: the calls must run under the JIT")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc's pending deprecation
        from numba.pycc import CC

    sample_calls()
    name = module_name()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    with tempfile.TemporaryDirectory(prefix=".aot-", dir=directory) as tmp:
        cc = CC(name, source_module=__name__)
        cc.output_dir = tmp
        unpickle = Path(tmp) / "tracker_aot_unpickle.c"
        unpickle.write_text(MEMOISED_UNPICKLE_C)
        cc._mixin_sources = [*cc._mixin_sources, str(unpickle)]  # joined to numba's directory: absolute
        for entry, dispatcher in sorted(jit_entry_points().items()):
            fn, signature = _wrapper(entry, dispatcher)
            cc.export(entry, signature)(fn)
        with _compiled_as_the_jit_runs():
            cc.compile()
        built = Path(tmp) / cc.output_file
        target = directory / f"{name}{suffix}"
        os.replace(built, target)
    for stale in directory.glob("_aot_*"):
        if stale != target:
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
    return target
