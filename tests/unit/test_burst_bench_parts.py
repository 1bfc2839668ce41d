"""Parts of bench/burst.py that decide what it reports: which alert counts as an SOS delivered and when,
what is lost, the percentiles, the RSS per socket, and the SOS message itself."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.burst import deliveries, mid_vertex, per_socket_kib, sos_message, stages, summary_ms  # noqa: E402

NAN = math.nan


def test_an_sos_counts_from_its_publish_to_the_first_opening_of_that_childs_sos() -> None:
    sent_at = {1: 100.0, 2: 100.5, 3: 101.0, 4: 101.0}
    received = [
        (100.2, 1, "sos", "opened", NAN),  # 0.2 s
        (100.1, 1, "sos", "opened", NAN),  # a second socket of the same guardian heard it first: 0.1 s
        (100.6, 2, "left_route", "opened", NAN),  # another kind: not child 2's SOS
        (101.0, 2, "sos", "resolved", NAN),  # not an opening
        (101.4, 2, "sos", "opened", NAN),  # 0.9 s
        (100.3, 9, "sos", "opened", NAN),  # a child not in this burst
        (140.0, 3, "sos", "opened", NAN),  # 39 s: past the deadline, lost
    ]  # child 4: never heard, lost
    d = deliveries(sent_at, received, deadline_s=30.0)
    assert sorted(round(x, 3) for x in d.latencies_s) == [0.1, 0.9]
    assert d.lost == [3, 4]
    assert d.last_arrival == 101.4


def test_the_time_splits_where_the_tracker_received_the_fix() -> None:
    sent_at = {1: 100.0, 2: 100.0}
    received = [
        (100.9, 1, "sos", "opened", 100.1),  # 0.1 s to the tracker, 0.8 s from there to the socket
        (101.5, 1, "sos", "opened", 100.1),  # heard again later: the first counts
        (100.5, 2, "sos", "opened", NAN),  # says nothing of its stages: left out
    ]
    split = stages(sent_at, received)
    assert {k: [round(x, 3) for x in v] for k, v in split.items()} == {
        "to_tracker": [0.1],
        "to_websocket": [0.8],
    }


def test_nothing_received_is_everything_lost() -> None:
    d = deliveries({5: 1.0, 6: 1.0}, [], deadline_s=10.0)
    assert (d.latencies_s, d.lost, d.last_arrival) == ([], [5, 6], None)


def test_percentiles_are_in_milliseconds_and_none_when_empty() -> None:
    s = summary_ms([i / 1000 for i in range(1, 101)])  # 1 .. 100 ms
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p99_ms"] == pytest.approx(99.0, abs=0.1)
    assert s["max_ms"] == 100.0
    assert summary_ms([]) == {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}


def test_rss_per_socket_is_the_growth_in_kib_over_the_sockets_opened() -> None:
    assert per_socket_kib(200.0, 400.0, 5_120) == 40.0  # 200 MiB over 5,120 sockets
    assert per_socket_kib(200.0, 400.0, 0) is None


def test_an_sos_message_is_a_position_fix_on_its_tags_topic_with_sos_set() -> None:
    topic, payload = sos_message("p/", 42, 127.01, 37.5, 1_700_000_000.12345)
    assert topic == "p/tracker/v1/tags/b0000042/position"
    body = json.loads(payload)
    assert body["sos"] is True and body["ts"] == 1_700_000_000.123
    assert (body["lon"], body["lat"]) == (127.01, 37.5)


@pytest.mark.parametrize(
    ("geometry", "point"),
    [
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1], [2, 2]]}, (1.0, 1.0)),
        ({"type": "MultiLineString", "coordinates": [[[5, 5], [6, 6]], [[9, 9], [8, 8]]]}, (6.0, 6.0)),
    ],
)
def test_the_sos_is_pressed_on_the_childs_route(
    geometry: dict[str, object], point: tuple[float, float]
) -> None:
    assert mid_vertex(geometry) == point
