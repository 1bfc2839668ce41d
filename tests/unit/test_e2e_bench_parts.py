"""Parts of bench/e2e.py that decide what it reports: the MQTT packets its publishers write, the
gateway batches it builds from the simulator's fixes, and how alerts are matched to published fixes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.e2e import RECEIPT_TO_SOCKET, Sockets, batch_messages, latencies, take, take_each  # noqa: E402
from bench.load.city import tag_of  # noqa: E402
from bench.load.rawpub import _varint, publish_packet  # noqa: E402
from simulator.messages import Fix, Position  # noqa: E402


def test_publish_packets_follow_mqtt_3_1_1() -> None:
    # fixed header 0x32 (PUBLISH, QoS 1), remaining length, topic (length-prefixed), packet id, payload
    assert publish_packet("a/b", b"x", 1, 1) == b"\x32\x08\x00\x03a/b\x00\x01x"
    assert publish_packet("a/b", b"x", 0, 7) == b"\x30\x06\x00\x03a/bx"  # QoS 0: no packet id
    assert _varint(0) == b"\x00" and _varint(127) == b"\x7f" and _varint(321) == b"\xc1\x02"
    assert _varint(16_383) == b"\xff\x7f" and _varint(16_384) == b"\x80\x80\x01"


def fix(tag: str, ts: float, gateway: str = "g1", child: int = 1) -> Fix:
    p = Position(ts=ts, lat=37.5, lon=127.0, acc=10.0, batt=80, seq=0)
    return Fix(
        tag=tag, child_id=child, route_id=1, gateway=gateway, position=p, true_lon=127.0, true_lat=37.5
    )


def test_gateway_batches_group_by_gateway_and_keep_every_fix() -> None:
    fixes = [fix(f"t{i}", 1000.0 + i, gateway=f"g{i % 3}") for i in range(25)]
    messages = batch_messages("p/", fixes, 4)
    items = [item for _, payload in messages for item in json.loads(payload)]
    assert sorted(i["tag"] for i in items) == sorted(f.tag for f in fixes)
    for topic, payload in messages:
        gateway = topic.split("/")[-2]
        assert topic == f"p/tracker/v1/gateways/{gateway}/positions"
        assert 1 <= len(json.loads(payload)) <= 4
        assert all(int(i["tag"][1:]) % 3 == int(gateway[1:]) for i in json.loads(payload))


def test_latency_is_from_the_deciding_fixs_publish_to_the_alerts_arrival() -> None:
    fixes = [fix(tag_of(7), 1000.0), fix(tag_of(7), 1015.0), fix(tag_of(8), 1003.5)]
    times = np.array([50.0, 51.0, 52.0])  # publish time of each message (one fix each)
    sockets = Sockets("http://x", [])

    def alert(child: int, ts: float, kind: str = "sos", transition: str = "opened") -> dict[str, object]:
        return {
            "transition": transition,
            "kind": kind,
            "child": {"id": child},
            "position": {"ts": ts},
            "fix_received_at": 52.05 if child == 8 else None,  # the tracker's receipt (None: not stated)
        }

    sockets.received = [
        (51.2, alert(7, 1015.0, "left_route")),  # decided by the second fix: 0.2 s
        (52.1, alert(8, 1003.5)),  # 0.1 s
        (53.0, alert(8, 1003.5, transition="resolved")),  # not an opening
        (53.0, alert(7, 1015.0, kind="arrived_school")),  # not an incident
        (53.0, alert(9, 1015.0)),  # not a fix of this phase
        (10.0, alert(7, 1000.0)),  # before the phase began
    ]
    got, kinds, _ = latencies(sockets, since=40.0, fixes=fixes, times=times, per_message=1)
    assert [round(x, 3) for _, x in got] == [0.2, 0.1]
    assert {k: [round(x, 3) for x in v] for k, v in kinds.items()} == {
        "left_route": [0.2],
        "sos": [0.1],
        RECEIPT_TO_SOCKET: [0.05],  # from the receipt the alert states (the SOS's): 52.1 - 52.05
    }


def test_a_fix_sent_twice_is_timed_from_its_first_publish() -> None:
    """The simulator sends some fixes again (duplicates, late copies): the first copy decides."""
    fixes = [fix(tag_of(7), 1000.0), fix(tag_of(8), 1003.0), fix(tag_of(7), 1000.0)]
    times = np.array([50.0, 50.5, 52.0])
    sockets = Sockets("http://x", [])
    sockets.received = [
        (50.3, {"transition": "opened", "kind": "sos", "child": {"id": 7}, "position": {"ts": 1000.0}})
    ]
    got, _, _ = latencies(sockets, since=40.0, fixes=fixes, times=times, per_message=1)
    assert [round(x, 3) for _, x in got] == [0.3]  # not 50.3 - 52.0


def test_the_warm_up_holds_a_fix_of_every_driven_child_and_comes_before_the_measured_fixes() -> None:
    from simulator.core import FixGenerator, SimConfig
    from tests.unit.test_simulator_incidents import T0, tiny_world

    generator = FixGenerator(tiny_world(children=5), SimConfig(seed=3), T0)
    warm = take_each(generator, len(generator.children))
    assert {f.tag for f in warm} == {c.tag for c in generator.children}
    measured = take(generator, 20)
    assert max(f.ts for f in warm) <= min(f.ts for f in measured)  # (the measured ones are not stale)
