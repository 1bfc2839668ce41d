"""A child with an IncidentSchedule (the demo's) has its incidents at the scheduled moments, kinds in
turn, and none other; the other children are untouched by it."""

from __future__ import annotations

import pytest

from simulator.core import FixGenerator, SimConfig
from simulator.incidents import IncidentConfig, IncidentSchedule, TruthRecord
from simulator.messages import Fix
from tests.unit.test_simulator_incidents import T0, tiny_world


def _run(config: SimConfig, seconds: float) -> tuple[list[Fix], list[TruthRecord]]:
    generator = FixGenerator(tiny_world(children=5), config, T0)
    fixes: list[Fix] = []
    truth: list[TruthRecord] = []
    for step in generator.steps(10.0, seconds):
        fixes += step.fixes
        truth += step.truth
    return fixes, truth + generator.finish()


def test_the_scheduled_child_has_its_incidents_at_the_moments_and_in_the_order_scheduled() -> None:
    schedule = IncidentSchedule(tag="tag-2", first_s=40.0, every_s=300.0)
    random_ones = IncidentConfig(per_child_per_hour=6.0, fraction=0.6, fraction_window_s=900.0)
    fixes, truth = _run(SimConfig(seed=3, incidents=random_ones, schedule=schedule), 1800.0)
    mine = sorted((r for r in truth if r.tag == "tag-2"), key=lambda r: r.start_ts)
    assert [r.kind for r in mine] == ["sos", "enter_zone", "leave_route", "sos", "enter_zone", "leave_route"]
    # the first at +40 s exactly (an SOS: its fix is the incident); each next one on the 5-minute grid,
    # or, when the child is still out on the one before, a minute (gap_s) after it is back
    began = [r.excursion_start_ts or r.start_ts for r in mine]
    ended = [r.excursion_end_ts or r.end_ts or r.planned_end_ts for r in mine]
    assert began[0] == pytest.approx(T0 + 40, abs=0.01)
    for n in range(1, len(mine)):
        prev_end = ended[n - 1]
        assert prev_end is not None
        assert began[n] == pytest.approx(max(T0 + 40 + 300 * n, prev_end + 60), abs=0.01)
    sos = [f for f in fixes if f.tag == "tag-2" and f.position.sos]
    assert [f.position.ts for f in sos] == pytest.approx([began[0], began[3]], abs=0.01)
    assert mine[1].zone_id == 20 and mine[2].peak_distance_m is not None
    # a scheduled excursion stays its own (short) while: within IncidentSchedule.stay_s
    assert mine[1].end_ts is not None and mine[1].end_ts - mine[1].start_ts < 90 + 2 * 50  # in, stay, out
    # the others keep their random incidents, exactly as without the schedule
    _, alone = _run(SimConfig(seed=3, incidents=random_ones), 1800.0)
    assert [r for r in truth if r.tag != "tag-2"] == [r for r in alone if r.tag != "tag-2"]


def test_a_schedule_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="every_s"):
        IncidentSchedule(tag="t", every_s=0)
    with pytest.raises(ValueError, match="kinds"):
        IncidentSchedule(tag="t", kinds=("fire",))
