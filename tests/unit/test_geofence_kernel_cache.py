"""The kernels' compilation cache is keyed on every kernel file (tracker/geofence/kernels/jit.py).

numba's own ``cache=True`` only notices a change to the file of the function it compiled; a kernel
inlines or links callees from other files. These tests change a callee in another file and check that
the caller is compiled again, and that an unchanged kernel is loaded from the cache, each run in a
fresh process, as a restarted service would.
"""

from __future__ import annotations

import inspect
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import numba.core.dispatcher

import tracker.geofence
from tracker.geofence import kernels
from tracker.geofence.kernels.jit import SOURCES_STAMP, SourceKeyedCache, sources_stamp

KERNELS = Path(kernels.__file__).resolve().parent

# A route with one chunk of one segment, (0, 0) - (10, 0), laid out as its record (layout.py); the
# distance from (5, 3) to it is 3 m. route_dist (routes.py) calls seg_dist2 (geometry.py): the edit
# below changes that callee only, so that the distance becomes 6 m.
PROBE = """
import json
import numpy as np
from geofence_kernels import layout, routes

record = [1.0, 0.0, 0.0, 10.0, 0.0, 1.0 + layout.RC, 2.0, 0.0, 0.0, 10.0, 0.0]
distance = routes.route_dist(5.0, 3.0, 0, 0, np.array(record))
stats = routes.route_dist.stats
print(json.dumps({
    "distance": distance,
    "hits": sum(stats.cache_hits.values()),
    "misses": sum(stats.cache_misses.values()),
    "cache_path": stats.cache_path,
}))
"""
SEG_DIST2_RETURN = "        return (cr * cr + m * m) / len2\n"


def _run_probe(root: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",  # a same-size edit within a second must not reuse bytecode
        "NUMBA_CACHE_DIR": str(root / "numba-cache"),
    }
    done = subprocess.run(
        [sys.executable, "-B", "-c", PROBE], env=env, cwd=root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_changed_callee_in_another_file_is_compiled_again(tmp_path: Path) -> None:
    copy = tmp_path / "geofence_kernels"
    shutil.copytree(KERNELS, copy, ignore=shutil.ignore_patterns("__pycache__"))

    first = _run_probe(tmp_path)
    assert first["distance"] == 3.0
    assert (first["misses"], first["hits"]) == (1, 0)  # compiled, and written to the cache
    assert str(first["cache_path"]).startswith(str(tmp_path / "numba-cache"))

    again = _run_probe(tmp_path)
    assert again["distance"] == 3.0
    assert (again["misses"], again["hits"]) == (0, 1)  # unchanged: loaded from the cache

    geometry = copy / "geometry.py"
    source = geometry.read_text()
    assert source.count(SEG_DIST2_RETURN) == 1, "seg_dist2 changed: update SEG_DIST2_RETURN"
    geometry.write_text(source.replace(SEG_DIST2_RETURN, "        return 4.0 * (cr * cr + m * m) / len2\n"))

    changed = _run_probe(tmp_path)
    assert changed["distance"] == 6.0  # the caller in routes.py was compiled with the new callee
    assert (changed["misses"], changed["hits"]) == (1, 0)

    cached = _run_probe(tmp_path)
    assert cached["distance"] == 6.0
    assert (cached["misses"], cached["hits"]) == (0, 1)


def test_every_geofence_kernel_is_cached_under_the_stamp_of_the_kernel_files() -> None:
    """Every numba function of tracker.geofence is defined in the kernel package (whose files the
    stamp covers) and uses the source-keyed cache, not numba's cache=True."""
    dispatchers = []
    for info in pkgutil.walk_packages(tracker.geofence.__path__, "tracker.geofence."):
        module = import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, numba.core.dispatcher.Dispatcher) and value.py_func.__module__ == info.name:
                dispatchers.append(value)
    assert len(dispatchers) > 40  # every kernel, from every file of the package
    for dispatcher in dispatchers:
        name = dispatcher.py_func.__qualname__
        assert Path(inspect.getfile(dispatcher.py_func)).resolve().parent == KERNELS, name
        assert isinstance(dispatcher._cache, SourceKeyedCache), name  # type: ignore[attr-defined]
    assert sources_stamp(KERNELS) == SOURCES_STAMP
