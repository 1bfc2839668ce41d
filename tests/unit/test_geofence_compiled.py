"""The kernels compiled ahead of time (tracker/geofence/kernels/compiled.py) against numba's JIT.

The same functions compiled two ways must give the same bits: every array of an index built by each,
and every answer of a check. A worker running the module compiled ahead of time must never import
numba, and must call it with the types it was compiled for (it reads the bytes it is given). Which
one runs, and the fallback to the JIT when the module is absent or stale, is said at import.

The module is built by ``make kernels`` (``make venv``, hence ``make test``, runs it); where it
cannot be built (no C compiler) the tests that need it are skipped, and CI fails on a skip.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from tracker.geofence import GeofenceIndex, LocalProjection, RouteSpec, ZoneSpec, build_index, kernels
from tracker.geofence.index import zone_polygons
from tracker.geofence.kernels import compiled

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "seoul"
KERNELS = Path(compiled.__file__).resolve().parent
SEOUL = LocalProjection(126.98, 37.56)


def _ahead_of_time() -> Any:
    try:
        return compiled.ahead_of_time()
    except ImportError as exc:
        pytest.skip(f"no module compiled ahead of time for these sources ({exc}): make kernels")


@pytest.fixture
def both() -> dict[str, dict[str, Any]]:
    """Each compiler's entry points, by name."""
    aot = _ahead_of_time()
    return {
        "ahead of time": {name: getattr(aot, name) for name in compiled.ENTRY_POINTS},
        "jit": compiled.jit_entry_points(),
    }


@pytest.fixture
def using(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``using(entry_points)``: the geofence calls these entry points until the next call or the end."""

    def use(entry_points: dict[str, Any]) -> None:
        for name, fn in entry_points.items():
            monkeypatch.setattr(kernels, name, fn)

    yield use


def _seoul_city() -> tuple[list[RouteSpec], list[ZoneSpec]]:
    features = json.loads((DATA / "neighborhoods.geojson").read_text(encoding="utf-8"))["features"]
    zones = [
        ZoneSpec(int(f["properties"]["EMD_CD"]), shapely.geometry.shape(f["geometry"])) for f in features
    ]
    rng = np.random.default_rng(16)
    routes = [
        RouteSpec(i, shapely.LineString(zone_polygons(z)[0].exterior.coords), 30.0)
        for i, z in enumerate(zones[:10])
    ]
    for i in range(40):
        start = rng.uniform([126.8, 37.45], [127.15, 37.68])
        parts = [start + np.cumsum(rng.normal(0, 0.002, (rng.integers(2, 40), 2)), axis=0) for _ in range(2)]
        routes.append(RouteSpec(1000 + i, shapely.MultiLineString(parts), 50.0))
    return routes, zones


def _index_arrays(index: GeofenceIndex) -> dict[str, np.ndarray]:
    parts = {"routes": index._routes, "zones": index._zones, "grid": index._grid}
    out = {
        f"{p}.{k}": v for p, part in parts.items() for k, v in vars(part).items() if isinstance(v, np.ndarray)
    }
    return out | {"route_ids": index.route_ids, "zone_ids": index.zone_ids}


def _assert_same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name].dtype, a[name].shape) == (b[name].dtype, b[name].shape), name
        assert a[name].tobytes() == b[name].tobytes(), f"{name}: different bits"


def test_both_compilers_build_the_same_index_and_give_the_same_answers(
    both: dict[str, dict[str, Any]], using: Any
) -> None:
    routes, zones = _seoul_city()
    rng = np.random.default_rng(5)
    n = 6000  # above the big-batch size of the JIT's pass-by-pass path: the one-call path is compared
    coords = np.concatenate([shapely.get_coordinates(z.geometry) for z in zones])
    near = coords[rng.integers(0, len(coords), n // 2)] + rng.normal(0, 0.0005, (n // 2, 2))
    lon = np.concatenate([rng.uniform(126.8, 127.2, n // 2), near[:, 0]])
    lat = np.concatenate([rng.uniform(37.42, 37.7, n // 2), near[:, 1]])
    acc = rng.uniform(0, 100, n)
    acc[::17] = np.nan
    route_ids = rng.choice(np.array([r.route_id for r in routes] + [-1]), n)
    step = rng.normal(0, 0.0002, (n, 2)) * np.where(rng.random(n) < 0.1, 50.0, 1.0)[:, None]
    indexes, answers = {}, {}
    for name, entry_points in both.items():
        using(entry_points)
        index = build_index(routes, zones, projection=SEOUL, search_radius_m=150.0)
        slots = index.route_slots(route_ids)
        indexes[name] = _index_arrays(index)
        for prev in (False, True):
            kw = (
                {"prev_lon": lon + step[:, 0], "prev_lat": lat + step[:, 1], "prev_acc": acc[::-1]}
                if prev
                else {}
            )
            v = index.check(lon, lat, acc, slots, parallel=False, **kw)
            answers[name, prev] = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
    _assert_same_bits(indexes["ahead of time"], indexes["jit"])
    for prev in (False, True):
        _assert_same_bits(answers["ahead of time", prev], answers["jit", prev])
    assert answers["jit", True]["crossed_zone_ids"].size > 0  # the crossings were compared, too
    assert answers["jit", False]["certain_zone_ids"].size > 0


# A worker's calls of the entry points, in a process of their own under the JIT: after the build's
# sample calls, the view of a city (routes and zones from the files, many batches, empty indexes) must
# compile no entry point for a type the sample did not (the module compiled ahead of time has one
# signature each and does not check its arguments).
WORKER_CALLS = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from tracker.geofence.kernels import compiled
from test_geofence_compiled import _seoul_city, SEOUL
from tracker.geofence import build_index

compiled.sample_calls()
sampled = {{n: [str(s) for s in d.signatures] for n, d in compiled.jit_entry_points().items()}}
routes, zones = _seoul_city()
rng = np.random.default_rng(3)
for r, z in ((routes, zones), (routes[:1], zones[:3]), ([], zones), (routes, [])):
    index = build_index(r, z, projection=SEOUL)
    for n in (1, 7, 400):
        lon, lat = rng.uniform(126.8, 127.2, n), rng.uniform(37.42, 37.7, n)
        slots = index.route_slots(rng.integers(-1, 60, n))
        index.check(lon, lat, rng.uniform(0, 50, n), slots)
        index.check(lon.tolist(), lat.tolist(), [10.0] * n, slots.astype(np.int64),
                    prev_lon=lon, prev_lat=lat)
after = {{n: [str(s) for s in d.signatures] for n, d in compiled.jit_entry_points().items()}}
print(json.dumps({{"sampled": sampled, "after": after}}))
"""


def test_a_workers_calls_have_the_types_the_module_was_compiled_for() -> None:
    env = {**os.environ, compiled.ENV: "jit"}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_CALLS.format(tests=str(Path(__file__).parent))],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(result["sampled"]) == sorted(compiled.ENTRY_POINTS)
    for name, signatures in result["sampled"].items():
        assert len(signatures) == 1, (name, signatures)
    assert result["after"] == result["sampled"]


WORKER = """
import json, sys
import tracker.service
from tracker.geofence import kernels
from tracker.geofence.kernels.compiled import sample_calls
sample_calls()
print(json.dumps({"in_use": kernels.IN_USE, "aot": kernels.AHEAD_OF_TIME is not None,
                  "loaded": sorted(m for m in ("numba", "llvmlite") if m in sys.modules)}))
"""


@pytest.mark.parametrize(
    "setting, aot, loaded",
    [
        ("auto", True, []),  # the module is there and fresh: numba is never imported
        ("jit", False, ["llvmlite", "numba"]),  # told to use the JIT
    ],
)
def test_which_kernels_a_worker_runs(setting: str, aot: bool, loaded: list[str]) -> None:
    _ahead_of_time()
    env = {**os.environ, compiled.ENV: setting}
    done = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["aot"], result["loaded"]) == (aot, loaded), result["in_use"]
    assert result["in_use"].startswith("ahead of time" if aot else "numba's JIT")


PROBE = """
import json
import geofence_kernels as k
print(json.dumps({"aot": k.AHEAD_OF_TIME is not None, "in_use": k.IN_USE}))
"""


def _probe(root: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", compiled.ENV: "auto"}
    done = subprocess.run(
        [sys.executable, "-B", "-c", PROBE], env=env, cwd=root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_stale_or_absent_module_falls_back_to_the_jit(tmp_path: Path) -> None:
    """A copy of the package (as the cache test makes): with the module, it runs ahead of time; after a
    change to any kernel file the module is stale and the JIT runs; without the module, too."""
    built = _ahead_of_time().__file__
    assert built is not None
    copy = tmp_path / "geofence_kernels"
    shutil.copytree(KERNELS, copy, ignore=shutil.ignore_patterns("__pycache__", "_aot_*", ".aot-*"))
    absent = _probe(tmp_path)
    assert not absent["aot"]
    assert "no module compiled ahead of time" in absent["in_use"]
    shutil.copy(built, copy / Path(built).name)
    fresh = _probe(tmp_path)
    assert fresh["aot"], fresh["in_use"]
    layout = copy / "layout.py"
    layout.write_text(layout.read_text() + "\n# a change\n")
    stale = _probe(tmp_path)
    assert not stale["aot"]
    assert "stale" in stale["in_use"]
