"""The command line, the run options, the wire encoding and gateway batching (no broker needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from referencing import Registry, Resource

from simulator.cli import build_parser, main, options_from_args, parse_kinds, parse_start
from simulator.messages import Fix, Position, encode_batch, encode_position, gateway_topic, position_topic
from simulator.publisher import GatewayBatcher, parse_mqtt_url
from simulator.runner import SimOptions

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


def validator(name: str) -> jsonschema.Draft202012Validator:
    registry: Registry = Registry().with_resources(
        (n, Resource.from_contents(schema(n))) for n in ("position.v1.json", "gateway-batch.v1.json")
    )
    return jsonschema.Draft202012Validator(schema(name), registry=registry)


def fix(tag: str = "tag-1", gateway: str = "gw-1", seq: int = 0, sos: bool = False) -> Fix:
    position = Position(ts=1_750_000_000.123, lat=37.5, lon=127.0, acc=12.3, batt=88, seq=seq, sos=sos)
    return Fix(
        tag=tag, child_id=1, route_id=2, gateway=gateway, position=position, true_lon=127.0, true_lat=37.5
    )


def test_defaults_match_the_documented_command_line() -> None:
    args = build_parser().parse_args(["--world", "w.json"])
    opts = options_from_args(args)
    assert opts.mqtt_url == "mqtt://127.0.0.1:1883" and opts.prefix == ""
    assert (opts.children, opts.interval_s, opts.speed, opts.duration_s, opts.seed) == (
        None,
        15.0,
        1.0,
        None,
        1,
    )
    assert (opts.incidents_per_hour, opts.batch, opts.truth_path, opts.qos, opts.quiet) == (
        0.5,
        0,
        None,
        1,
        False,
    )


def test_every_flag_reaches_the_options() -> None:
    argv = [
        "--world=https://t.example/api/v1/world",
        "--token=abc",
        "--mqtt-url=mqtt://u:p@broker:1884",
        "--prefix=city-a/",
        "--children=500",
        "--interval=5",
        "--speed=10",
        "--duration=600",
        "--start=2025-03-03T08:00:00+09:00",
        "--seed=9",
        "--incidents-per-hour=2",
        "--incident-fraction=0.1",
        "--incident-kinds=leave_route=2,sos",
        "--batch=50",
        "--truth=t.jsonl",
        "--qos=0",
        "--quiet",
    ]
    opts = options_from_args(build_parser().parse_args(argv))
    assert opts.world == "https://t.example/api/v1/world" and opts.token == "abc"
    assert (opts.children, opts.interval_s, opts.speed, opts.duration_s, opts.seed) == (
        500,
        5.0,
        10.0,
        600.0,
        9,
    )
    assert opts.start_ts == 1740956400.0
    assert opts.incident_kinds == {"leave_route": 2.0, "sos": 1.0}
    assert (opts.batch, opts.truth_path, opts.qos, opts.quiet) == (50, "t.jsonl", 0, True)
    config = opts.sim_config()
    assert config.incidents.per_child_per_hour == 2.0 and config.incidents.fraction == 0.1
    assert config.incidents.fraction_window_s == pytest.approx(360.0)


def test_start_and_kinds_parsers() -> None:
    assert parse_start("1750000000") == 1750000000.0
    assert parse_start("2025-01-01T00:00:00") == 1735689600.0  # naive means UTC
    assert parse_kinds("go_silent") == {"go_silent": 1.0}
    with pytest.raises(Exception, match="unknown incident kind"):
        parse_kinds("teleport")


@pytest.mark.parametrize(
    "bad",
    [["--speed=0"], ["--batch=1001"], ["--prefix=a/+/"], ["--interval=0"], ["--incident-fraction=2"]],
)
def test_contradictions_are_refused_up_front(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--world", "w.json", *bad])
    assert exc.value.code == 2


def test_an_unreadable_world_exits_with_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--world", str(tmp_path / "missing.json")]) == 1
    assert "cannot read world file" in capsys.readouterr().err


def test_mqtt_urls() -> None:
    t = parse_mqtt_url("mqtt://sim:p%40ss@broker.local:1884")
    assert (t.host, t.port, t.username, t.password, t.tls) == ("broker.local", 1884, "sim", "p@ss", False)
    assert parse_mqtt_url("mqtts://b").port == 8883 and parse_mqtt_url("mqtts://b").tls
    assert parse_mqtt_url("mqtt://127.0.0.1").port == 1883
    with pytest.raises(ValueError):
        parse_mqtt_url("http://x:1883")
    with pytest.raises(ValueError):
        SimOptions(world="w.json", mqtt_url="ws://x")


def test_payloads_follow_the_wire_contract() -> None:
    payload = msgspec.json.decode(encode_position(fix(sos=True)))
    assert set(payload) == {"ts", "lat", "lon", "acc", "batt", "seq", "sos"}
    validator("position.v1.json").validate(payload)
    batch = msgspec.json.decode(encode_batch([fix("a"), fix("b", seq=7)]))
    validator("gateway-batch.v1.json").validate(batch)
    assert [item["tag"] for item in batch] == ["a", "b"] and batch[1]["seq"] == 7
    assert position_topic("p/", "a") == "p/tracker/v1/tags/a/position"
    assert gateway_topic("", "gw") == "tracker/v1/gateways/gw/positions"
    with pytest.raises(ValueError):
        encode_batch([fix()] * 1001)


def test_gateway_batcher_fills_batches_and_sends_stragglers_after_a_wait() -> None:
    batcher = GatewayBatcher(3, max_wait_s=1.0)
    ready = batcher.add([fix("a", "g1"), fix("b", "g2"), fix("c", "g1"), fix("d", "g1")], now=0.0)
    assert [(g, [f.tag for f in b]) for g, b in ready] == [("g1", ["a", "c", "d"])]
    assert batcher.add([], now=0.5) == []
    late = batcher.add([fix("e", "g1")], now=1.2)
    assert [(g, [f.tag for f in b]) for g, b in late] == [("g2", ["b"])]
    assert [(g, [f.tag for f in b]) for g, b in batcher.drain()] == [("g1", ["e"])]
    assert batcher.drain() == []
