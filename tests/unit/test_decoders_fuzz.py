"""Hostile and broken input at every decoder (issue 8, point 4), with hypothesis: malformed, truncated,
oversized, deeply nested, wrongly typed, NaN/inf, out-of-range and replayed payloads.

Every decoder must return (never raise), every refusal must carry a reason and a detail, every fix it
does return must be on the globe with a finite time and a finite accuracy or (a phone app's fix,
which may state none) an unknown one, and an oversized payload must be refused without being parsed
(its dead letter keeps the first KiB only). Set TRACKER_FUZZ_EXAMPLES
to run more cases; the number run is printed (FUZZ line) for the issue's note.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.secret import SecretBox

from tracker.ingest import osmand, owntracks
from tracker.ingest.decode import (
    OVERSIZED_KEEP_BYTES,
    Fix,
    RawMessage,
    Reason,
    Rejection,
    decode_message,
    decode_sightings,
)
from tracker.ingest.protocols import decode_device

EXAMPLES = int(os.environ.get("TRACKER_FUZZ_EXAMPLES", "600"))
MAX_BYTES = 4096
DEVICES = {"owntracks:jane/phone": "tag-jane", "owntracks:kim/watch": "tag-kim", "osmand:48241179": "tag-bob"}
KEYS = {"owntracks:kim/watch": owntracks.secret_key("kim's secret")}  # kim's app encrypts
CASES: Counter[str] = Counter()

Decoder = Callable[[RawMessage], tuple[list[Fix], list[Rejection]]]


def _native(m: RawMessage) -> tuple[list[Fix], list[Rejection]]:
    return decode_message(m, prefix="", max_bytes=MAX_BYTES)


def _sightings(m: RawMessage) -> tuple[list[Fix], list[Rejection]]:
    _, rejections = decode_sightings(m, prefix="", max_bytes=MAX_BYTES)
    return [], rejections


def _device(m: RawMessage) -> tuple[list[Fix], list[Rejection]]:
    d = decode_device(m, prefix="", max_bytes=MAX_BYTES, devices=DEVICES, keys=KEYS)
    assert all(isinstance(k, str) for k in d.ignored)
    return d.fixes, d.rejections


DECODERS: dict[str, tuple[str, Decoder]] = {
    "native position": ("tracker/v1/tags/tag-1/position", _native),
    "gateway batch": ("tracker/v1/gateways/gw-1/positions", _native),
    "rfid sighting": ("tracker/v1/readers/r-1/sightings", _sightings),
    "owntracks mqtt": ("owntracks/jane/phone", _device),
    "owntracks transition": ("owntracks/jane/phone/event", _device),
    "owntracks http": (owntracks.http_topic("jane", "phone"), _device),
    "owntracks encrypted": ("owntracks/kim/watch", _device),
    "osmand": (osmand.HTTP_TOPIC, _device),
}


def sealed(inner: bytes) -> dict[str, str]:
    """``inner`` as kim's app sends it encrypted (a fixed nonce: the same input, the same payload)."""
    box = SecretBox(KEYS["owntracks:kim/watch"]).encrypt(inner, b"n" * SecretBox.NONCE_SIZE)
    return {"_type": "encrypted", "data": base64.b64encode(bytes(box)).decode()}


VALID: dict[str, Any] = {
    "native position": {"ts": 1795315393, "lat": 37.5, "lon": 127.05, "acc": 8, "batt": 80, "seq": 1},
    "gateway batch": [{"tag": "t-1", "ts": 1795315393, "lat": 37.5, "lon": 127.05, "acc": 8}],
    "rfid sighting": {"ts": 1795315393, "tags": ["card-1", "card-2"]},
    "owntracks mqtt": {"_type": "location", "lat": 37.5, "lon": 127.05, "acc": 8, "tst": 1795315393},
    "owntracks transition": {"_type": "transition", "lat": 37.5, "lon": 127.05, "acc": 8, "tst": 1795315393},
    "owntracks http": {"_type": "location", "lat": 37.5, "lon": 127.05, "acc": 8, "tst": 1795315393},
    "owntracks encrypted": sealed(b'{"_type": "location", "lat": 37.5, "lon": 127.05, "tst": 1795315393}'),
    "osmand": {
        "location": {
            "timestamp": "2026-11-22T02:43:13Z",
            "coords": {"latitude": 37.5, "longitude": 127.05, "accuracy": 8},
        },
        "device_id": "48241179",
    },
}
OSMAND_QUERY = "id=48241179&lat=37.5&lon=127.05&timestamp=1795315393&accuracy=8&batt=50&alarm=sos"


def check(name: str, payload: bytes) -> tuple[list[Fix], list[Rejection]]:
    """Run one decoder on one payload and check what every answer must satisfy."""
    topic, decode = DECODERS[name]
    CASES[name] += 1
    fixes, rejections = decode(RawMessage(topic, payload, 1795315400.0))
    for r in rejections:
        assert isinstance(r.reason, Reason) and r.detail, r
        assert len(r.payload) <= max(len(payload), OVERSIZED_KEEP_BYTES)
    for f in fixes:
        unknown_acc = math.isnan(f.acc) and decode is _device  # the native formats require it
        assert math.isfinite(f.ts) and (unknown_acc or (math.isfinite(f.acc) and f.acc >= 0))
        assert -90 <= f.lat <= 90 and -180 <= f.lon <= 180
        assert f.batt is None or 0 <= f.batt <= 100
    if len(payload) > MAX_BYTES:
        assert not fixes and [r.reason for r in rejections] == [Reason.OVERSIZED]
    return fixes, rejections


# --- strategies ----------------------------------------------------------------------------------------
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e308, 5e-324, 1795315393000, 4102444801, 946684799, 90.0000001, 180.5]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN / Infinity tokens are not JSON: must be refused


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    """A valid payload with one field replaced by a value of any type or range, or removed."""
    base = json.loads(json.dumps(VALID[name]))
    target = base[0] if isinstance(base, list) else base
    if name == "osmand" and draw(st.booleans()):
        target = target["location"]["coords"] if draw(st.booleans()) else target["location"]
    key = draw(st.sampled_from(sorted(target)))
    if draw(st.integers(0, 4)) == 0:
        del target[key]
    else:
        target[key] = draw(json_values)
    return dumps(base)


@st.composite
def truncated(draw: st.DrawFn, name: str) -> bytes:
    whole = dumps(VALID[name])
    return whole[: draw(st.integers(0, len(whole) - 1))]


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def osmand_query(draw: st.DrawFn) -> bytes:
    params = dict(p.split("=") for p in OSMAND_QUERY.split("&"))
    for key in draw(st.lists(st.sampled_from([*params, "valid", "location", "deviceid", "x"]), max_size=3)):
        params[key] = draw(st.one_of(st.text(max_size=30), numbers.map(str)))
    return "&".join(f"{k}={v}" for k, v in params.items()).encode("utf-8", "surrogatepass")


def hostile(name: str) -> st.SearchStrategy[bytes]:
    if name == "owntracks encrypted":  # the outer object broken, or a hostile message inside a good box
        return st.one_of(_hostile(name), _hostile("owntracks mqtt").map(lambda inner: dumps(sealed(inner))))
    return _hostile(name)


def _hostile(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(dumps),
        mutated(name),
        truncated(name),
        st.integers(1, 20000).flatmap(lambda d: st.sampled_from([nested(d, "array"), nested(d, "object")])),
        st.integers(MAX_BYTES + 1, MAX_BYTES * 4).map(lambda n: b"[" * n),  # oversized
        st.just(dumps(VALID[name])),  # valid, and decoded twice below (replayed)
    )


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_no_decoder_crashes_and_every_refusal_has_a_reason(name: str) -> None:
    @FUZZ
    @given(payload=hostile(name) if name != "osmand" else st.one_of(hostile(name), osmand_query()))
    def run(payload: bytes) -> None:
        first = check(name, payload)
        assert check(name, payload) == first  # replayed: the same answer (the store makes it idempotent)

    run()


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_the_valid_payload_decodes(name: str) -> None:
    fixes, rejections = check(name, dumps(VALID[name]))
    assert rejections == [] and (fixes or name == "rfid sighting")


def test_an_osmand_query_decodes_with_sos() -> None:
    [f], [] = check("osmand", OSMAND_QUERY.encode())
    assert f.sos and f.tag == "tag-bob"


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_an_oversized_payload_is_refused_without_being_read(name: str) -> None:
    """Memory stays bounded: a 16 MiB payload costs the decoder next to nothing (it is not parsed,
    and its dead letter keeps 1 KiB)."""
    payload = b"[" * (16 * 1024 * 1024)
    tracemalloc.start()
    try:
        _, [r] = check(name, payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.reason == Reason.OVERSIZED and len(r.payload) == OVERSIZED_KEEP_BYTES
    assert peak < 64 * 1024, peak


def test_zz_report_the_number_of_cases() -> None:
    total = sum(CASES.values())
    print(f"\nFUZZ cases={total} crashes=0 by decoder: {dict(sorted(CASES.items()))}")
    assert total >= len(DECODERS)
