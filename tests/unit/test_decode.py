"""The native decoders against the contract in schemas/: for every payload in the table, the
msgspec decoder and a JSON Schema validator (jsonschema, the reference) accept and refuse alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from tracker.ingest.decode import OVERSIZED_KEEP_BYTES, RawMessage, Reason, decode_message, parse_topic

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
OK = {"ts": 1795000000.5, "lat": 37.5, "lon": 127.05, "acc": 12.0}


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def _validator(name: str) -> jsonschema.Draft202012Validator:
    resources = [
        (s["$id"], Resource.from_contents(s))
        for s in map(_schema, ["position.v1.json", "gateway-batch.v1.json"])
    ]
    resources += [("position.v1.json", Resource.from_contents(_schema("position.v1.json")))]
    return jsonschema.Draft202012Validator(_schema(name), registry=Registry().with_resources(resources))


POSITIONS: list[tuple[str, Any]] = [
    ("minimal", OK),
    ("all fields", OK | {"batt": 55, "seq": 7, "sos": True}),
    ("integer coordinates", OK | {"lat": 37, "lon": 127}),
    ("unknown extra field is allowed", OK | {"speed": 1.2}),
    ("accuracy zero", OK | {"acc": 0}),
    ("missing ts", {k: v for k, v in OK.items() if k != "ts"}),
    ("missing acc", {k: v for k, v in OK.items() if k != "acc"}),
    ("latitude out of range", OK | {"lat": 95.0}),
    ("longitude out of range", OK | {"lon": -181}),
    ("negative accuracy", OK | {"acc": -1}),
    ("ts before 2000", OK | {"ts": 17000}),
    ("ts as string", OK | {"ts": "1795000000"}),
    ("lat as string", OK | {"lat": "37.5"}),
    ("battery above 100", OK | {"batt": 101}),
    ("battery null", OK | {"batt": None}),
    ("battery fractional", OK | {"batt": 50.5}),
    ("sos as string", OK | {"sos": "yes"}),
    ("sos as number", OK | {"sos": 1}),
    ("negative seq", OK | {"seq": -1}),
    ("an array", [OK]),
    ("a number", 5),
    ("null", None),
]


@pytest.mark.parametrize(("name", "payload"), POSITIONS, ids=[p[0] for p in POSITIONS])
def test_position_decoder_agrees_with_the_schema(name: str, payload: Any) -> None:
    schema_ok = _validator("position.v1.json").is_valid(payload)
    msg = RawMessage("tracker/v1/tags/t-1/position", json.dumps(payload).encode(), 0.0)
    fixes, rejections = decode_message(msg, prefix="", max_bytes=65536)
    assert (len(fixes) == 1) == schema_ok, rejections
    if not schema_ok:
        assert [r.reason for r in rejections] == [Reason.SCHEMA_VIOLATION]


GATEWAY_ITEMS: list[tuple[str, Any]] = [
    ("good item", OK | {"tag": "t-1"}),
    ("item without tag", OK),
    ("tag with a slash", OK | {"tag": "a/b"}),
    ("empty tag", OK | {"tag": ""}),
    ("item with bad latitude", OK | {"tag": "t-1", "lat": -91}),
]


@pytest.mark.parametrize(("name", "item"), GATEWAY_ITEMS, ids=[p[0] for p in GATEWAY_ITEMS])
def test_gateway_items_are_judged_one_by_one_like_the_schema(name: str, item: Any) -> None:
    good = OK | {"tag": "t-2"}
    item_ok = _validator("gateway-batch.v1.json").is_valid([item])
    msg = RawMessage("tracker/v1/gateways/g-1/positions", json.dumps([good, item, good]).encode(), 0.0)
    fixes, rejections = decode_message(msg, prefix="", max_bytes=65536)
    assert len(fixes) == (3 if item_ok else 2)
    assert len(rejections) == (0 if item_ok else 1)
    if rejections:
        assert rejections[0].detail.startswith("item 1:")
        assert json.loads(rejections[0].payload) == item  # the bad item alone is kept


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("tracker/v1/tags/t-1/position", b'{"ts": 1795000000, "lat": ', Reason.MALFORMED_JSON),
        ("tracker/v1/tags/t-1/position", b'{"ts": 17, "lat": oops', Reason.MALFORMED_JSON),
        ("tracker/v1/tags/t-1/position", b"\xff\xfe", Reason.MALFORMED_JSON),
        ("tracker/v1/tags/t-1/position", b"", Reason.MALFORMED_JSON),
        ("tracker/v1/tags/t-1/position", b"x" * 70000, Reason.OVERSIZED),
        ("tracker/v1/gateways/g/positions", b'{"not": "an array"}', Reason.SCHEMA_VIOLATION),
        (
            "tracker/v1/gateways/g/positions",
            json.dumps([OK | {"tag": "a"}] * 1001).encode(),
            Reason.OVERSIZED,
        ),
        ("tracker/v1/tags/t-1/elsewhere", json.dumps(OK).encode(), Reason.UNKNOWN_TOPIC),
        ("other/v1/tags/t-1/position", json.dumps(OK).encode(), Reason.UNKNOWN_TOPIC),
    ],
)
def test_bad_messages_name_their_reason(topic: str, payload: bytes, reason: Reason) -> None:
    fixes, rejections = decode_message(RawMessage(topic, payload, 0.0), prefix="", max_bytes=65536)
    assert fixes == [] and [r.reason for r in rejections] == [reason]
    kept = payload[:OVERSIZED_KEEP_BYTES] if reason == Reason.OVERSIZED else payload  # its beginning only
    assert rejections[0].payload == kept and rejections[0].detail


def test_topics_under_a_prefix() -> None:
    assert parse_topic("city/tracker/v1/tags/t.1:a/position", "city/") == ("tag", "t.1:a")
    assert parse_topic("tracker/v1/tags/t1/position", "city/") is None
    assert parse_topic("tracker/v1/gateways/gw-9/positions", "") == ("gateway", "gw-9")
    assert parse_topic("tracker/v1/tags/a+b/position", "") is None
