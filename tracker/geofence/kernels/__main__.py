"""``python -m tracker.geofence.kernels [--force]``: compile a worker's kernels ahead of time.

What and why: :mod:`.compiled`. Nothing is done when the module for these sources is there (``--force``
builds it again). The build runs the sample calls under the JIT: when the module compiled ahead of
time is in use here, it runs itself again with ``TRACKER_GEOFENCE_KERNELS=jit``. Exits 1 when the
module cannot be built (no C compiler, no Python headers): the JIT then runs, and says so.
"""

from __future__ import annotations

import os
import sys
import time

from . import compiled


def main(argv: list[str]) -> int:
    force = "--force" in argv
    if compiled.AHEAD_OF_TIME is not None:
        if not force:
            print(f"geofence kernels: {compiled.IN_USE}: fresh, nothing to build")
            return 0
        env = {**os.environ, compiled.ENV: "jit"}
        os.execve(
            sys.executable, [sys.executable, "-m", __package__ or "tracker.geofence.kernels", *argv], env
        )
    started = time.monotonic()
    try:
        path = compiled.build()
    except Exception as exc:  # a missing compiler or header: the JIT runs instead
        print(f"geofence kernels: not compiled ahead of time ({type(exc).__name__}: {exc}); numba's JIT runs")
        return 1
    print(f"geofence kernels: compiled ahead of time into {path} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
