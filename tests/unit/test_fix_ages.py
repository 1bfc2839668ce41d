"""How old the fixes are at each point of the pipeline (tracker.metrics.FixAges): the histogram an
operator reads where a fix's time goes, in /metrics and /api/v1/stats."""

import json
import math

import numpy as np
import pytest

from tracker.metrics import FIX_AGE_BUCKETS_S, Metrics, prometheus_text

CASES = [
    ("an age equal to a bound is in that bound's bucket", [0.1], {0.1: 1, 0.075: 0}),
    ("an age above every bound is counted in +Inf only", [100.0], {60.0: 0, math.inf: 1}),
    ("a negative age (the engine's clock ahead of the worker's) counts as 0", [-0.5], {0.0025: 1}),
    ("an age that is not a number is left out", [math.nan, 0.2], {0.2: 1, math.inf: 1}),
]


@pytest.mark.parametrize(("name", "ages", "cumulative"), CASES, ids=[c[0] for c in CASES])
def test_fix_ages_fill_the_histogram(name: str, ages: list[float], cumulative: dict[float, int]) -> None:
    m = Metrics()
    m.fix_ages.observe("prepared", np.asarray(ages))
    text = prometheus_text(m, gauges={}, database=None).decode()
    for bound, n in cumulative.items():
        le = "+Inf" if bound == math.inf else str(bound)
        line = f'tracker_fix_age_seconds_bucket{{le="{le}",point="prepared"}} {float(n)}'
        assert line in text, (line, text)
    snapshot = json.dumps(m.snapshot(), allow_nan=False)  # (a NaN sum would make /api/v1/stats fail)
    assert len(json.loads(snapshot)["fix_age"]["counts"]["prepared"]) == len(FIX_AGE_BUCKETS_S) + 1
