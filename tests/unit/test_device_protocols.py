"""The OwnTracks and OsmAnd decoders, on the protocols' own documented examples.

Sources (quoted payloads below are taken from them, with coordinates moved to Seoul where the
example had placeholders):
- OwnTracks JSON: https://owntracks.org/booklet/tech/json/ (topics, `_type` list, `location`,
  `lwt`, `transition` with `wtst`/`event`/`desc`), and the `transition` example published with
  mosquitto_pub in https://gist.github.com/88f27b904e634ae0f066
- OwnTracks HTTP mode: https://owntracks.org/booklet/tech/http/ (the Recorder's `/pub?u=user&d=device`)
- OwnTracks payload encryption: https://owntracks.org/booklet/features/encrypt (libsodium secretbox,
  the secret "an up to 32 octet long passphrase (which the apps pad with binary zeroes)"), and the
  Android app's EncryptionProvider: base64 of nonce (24 bytes) | MAC | ciphertext
- OsmAnd / Traccar Client: https://www.traccar.org/osmand/ (query form `?id=123456&lat={0}&lon={1}
  &timestamp={2}&hdop={3}&altitude={4}&speed={5}`; the JSON form of Traccar Client 9 with
  `location.timestamp` ISO 8601, `coords`, `battery.level` 0..1 and `device_id` "48241179";
  timestamps "in seconds or milliseconds since epoch, ISO 8601 format, or yyyy-MM-dd HH:mm:ss")
- The OsmAnd app's live tracking (OsmAnd's LiveSender / LiveMonitoringData): the same template,
  `{2}` the time in milliseconds, `{3}` ("hdop") the location's accuracy in metres, `{5}` m/s
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime

import nacl.utils
import pytest
from nacl.secret import SecretBox

from tracker.ingest import osmand, owntracks
from tracker.ingest.decode import RawMessage, Reason
from tracker.ingest.mqtt import ingest_topics
from tracker.ingest.protocols import decode_device, is_device_message

DEVICES = {
    "owntracks:jane/phone": "tag-jane",
    "owntracks:kim/watch": "tag-kim",
    "osmand:48241179": "tag-bob",
    "osmand:123456": "tag-ann",
}
SECRET = "correct horse battery staple"  # kim's app encrypts with this secret
KEYS = {"owntracks:kim/watch": owntracks.secret_key(SECRET)}
P = "city-a/"


def msg(topic: str, payload: bytes | str | dict[str, object]) -> RawMessage:
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return RawMessage(topic, payload, 1795315400.0)


def run(m: RawMessage):  # type: ignore[no-untyped-def]
    return decode_device(m, prefix=P, max_bytes=65536, devices=DEVICES, keys=KEYS)


def encrypted(inner: dict[str, object] | bytes, secret: str = SECRET) -> dict[str, object]:
    """What the app sends with an encryption key set, done as the app does it: the secret's UTF-8
    bytes zero-padded (or cut) to 32, libsodium's secretbox with a random 24-byte nonce, and
    base64 of nonce | MAC | ciphertext."""
    key = secret.encode()[:32].ljust(32, b"\0")
    plain = inner if isinstance(inner, bytes) else json.dumps(inner).encode()
    sealed = SecretBox(key).encrypt(plain, nacl.utils.random(SecretBox.NONCE_SIZE))
    return {"_type": "encrypted", "data": base64.b64encode(bytes(sealed)).decode()}


# --- OwnTracks ----------------------------------------------------------------------------------------
# booklet/tech/json, `_type=location` (iOS example, with batt, acc, tid, tst ...)
LOCATION = {
    "_type": "location",
    "acc": 13,
    "alt": 32,
    "batt": 77,
    "bs": 1,
    "conn": "w",
    "created_at": 1795315393,
    "lat": 37.4990,
    "lon": 127.0560,
    "m": 1,
    "t": "u",
    "tid": "JP",
    "tst": 1795315393,
    "vac": 3,
    "vel": 0,
}
# the gist's transition: {"_type":"transition","lat":..,"lon":..,"acc":26,"tst":1444818585,
#  "wtst":1444755752,"desc":"Home","event":"enter","tid":"21"}
TRANSITION = {
    "_type": "transition",
    "lat": 37.4991,
    "lon": 127.0561,
    "acc": 26,
    "tst": 1795315400,
    "wtst": 1444755752,
    "desc": "Home",
    "event": "enter",
    "tid": "21",
}


def test_owntracks_location_over_mqtt_is_a_fix_of_the_registered_tag() -> None:
    d = run(msg(f"{P}owntracks/jane/phone", LOCATION))
    assert not d.rejections
    [f] = d.fixes
    assert (f.tag, f.ts, f.lat, f.lon, f.acc, f.batt, f.sos) == (
        "tag-jane",
        1795315393.0,
        37.499,
        127.056,
        13,
        77,
        False,
    )


def test_owntracks_transition_on_the_event_topic_is_a_fix_where_it_happened() -> None:
    [f] = run(msg(f"{P}owntracks/jane/phone/event", TRANSITION)).fixes
    assert (f.tag, f.ts, f.acc) == ("tag-jane", 1795315400.0, 26)


@pytest.mark.parametrize(
    ("payload", "label"),
    [
        ({"_type": "lwt", "tst": 1795315000}, "owntracks:lwt"),  # the app's last will
        ({"_type": "card", "name": "Jane", "tid": "JP"}, "owntracks:card"),
        (
            {"_type": "waypoint", "desc": "Home", "lat": 37.5, "lon": 127.0, "rad": 50, "tst": 1795315000},
            "owntracks:waypoint",
        ),
        ({"_type": "something-new"}, "owntracks:other"),
        ("", "owntracks:empty"),  # HTTP mode: "the length of the payload may be zero ... ignore"
    ],
)
def test_owntracks_types_without_a_position_are_counted_not_dead_lettered(payload, label) -> None:  # type: ignore[no-untyped-def]
    d = run(msg(f"{P}owntracks/jane/phone", payload))
    assert (d.fixes, d.rejections, dict(d.ignored)) == ([], [], {label: 1})


def test_owntracks_over_http_uses_the_identity_of_the_request() -> None:
    [f] = run(msg(owntracks.http_topic("jane", "phone"), LOCATION)).fixes
    assert f.tag == "tag-jane" and f.topic == "http/owntracks/jane/phone"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (f"{P}owntracks/stranger/phone", LOCATION, Reason.UNKNOWN_DEVICE),  # never auto-created
        (f"{P}owntracks/jane/phone", "{not json", Reason.MALFORMED_JSON),
        (f"{P}owntracks/jane/phone", {**LOCATION, "lat": 91}, Reason.SCHEMA_VIOLATION),
        (f"{P}owntracks/jane/phone", {**LOCATION, "lat": "37.5"}, Reason.SCHEMA_VIOLATION),
        (f"{P}owntracks/jane/phone", {**LOCATION, "acc": -5}, Reason.SCHEMA_VIOLATION),
        (
            f"{P}owntracks/jane/phone",
            {k: v for k, v in LOCATION.items() if k != "_type"},
            Reason.SCHEMA_VIOLATION,
        ),
        (f"{P}owntracks/jane/phone", [LOCATION], Reason.SCHEMA_VIOLATION),
        (f"{P}owntracks/jane/phone", {**LOCATION, "tst": 10}, Reason.SCHEMA_VIOLATION),
        (f"{P}owntracks/jane/phone/cmd", LOCATION, Reason.UNKNOWN_TOPIC),
    ],
)
def test_owntracks_refusals_name_their_reason(topic, payload, reason) -> None:  # type: ignore[no-untyped-def]
    m = RawMessage(
        topic, json.dumps(payload).encode() if not isinstance(payload, str) else payload.encode(), 1.0
    )
    d = run(m)
    assert d.fixes == [] and [r.reason for r in d.rejections] == [reason]
    assert d.rejections[0].detail


@pytest.mark.parametrize(
    ("why", "payload"),
    [
        ("the app leaves acc out when it is 0", {k: v for k, v in LOCATION.items() if k != "acc"}),
        ("an acc of 0 says the phone had no estimate", {**LOCATION, "acc": 0}),
    ],
)
def test_owntracks_location_without_accuracy_is_a_fix_of_unknown_accuracy(
    why: str, payload: dict[str, object]
) -> None:
    d = run(msg(f"{P}owntracks/jane/phone", payload))
    assert d.rejections == []
    [f] = d.fixes
    assert (f.tag, f.ts, f.lat, f.lon, f.batt) == ("tag-jane", 1795315393.0, 37.499, 127.056, 77)
    assert math.isnan(f.acc)


# --- OwnTracks payload encryption ------------------------------------------------------------------------
def test_an_encrypted_location_is_opened_with_the_devices_key() -> None:
    for topic in (f"{P}owntracks/kim/watch", owntracks.http_topic("kim", "watch")):
        d = run(msg(topic, encrypted(LOCATION)))
        assert d.rejections == [], d.rejections
        [f] = d.fixes
        assert (f.tag, f.ts, f.lat, f.lon, f.acc, f.batt) == (
            "tag-kim",
            1795315393.0,
            37.499,
            127.056,
            13,
            77,
        )
        assert f.topic == topic


def test_an_encrypted_transition_and_an_encrypted_lwt_are_what_they_are_in_clear() -> None:
    [f] = run(msg(f"{P}owntracks/kim/watch/event", encrypted(TRANSITION))).fixes
    assert (f.tag, f.ts, f.acc) == ("tag-kim", 1795315400.0, 26)
    d = run(msg(f"{P}owntracks/kim/watch", encrypted({"_type": "lwt", "tst": 1795315000})))
    assert (d.fixes, d.rejections, dict(d.ignored)) == ([], [], {"owntracks:lwt": 1})


def test_a_secret_longer_than_32_bytes_counts_its_first_32_as_the_app_does() -> None:
    long = SECRET + " and more words than fit"
    keys = {"owntracks:kim/watch": owntracks.secret_key(long)}
    assert owntracks.secret_key(long) == long.encode()[:32]
    d = decode_device(
        msg(f"{P}owntracks/kim/watch", encrypted(LOCATION, long[:32])),
        prefix=P,
        max_bytes=65536,
        devices=DEVICES,
        keys=keys,
    )
    assert [f.tag for f in d.fixes] == ["tag-kim"]


def _tampered() -> dict[str, object]:
    box = encrypted(LOCATION)
    raw = bytearray(base64.b64decode(str(box["data"])))
    raw[-1] ^= 1
    return {**box, "data": base64.b64encode(bytes(raw)).decode()}


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "says"),
    [
        (f"{P}owntracks/jane/phone", encrypted(LOCATION), Reason.ENCRYPTED_NO_KEY, "no key is registered"),
        (
            f"{P}owntracks/kim/watch",
            encrypted(LOCATION, "another secret"),
            Reason.UNDECRYPTABLE,
            "key does not",
        ),
        (f"{P}owntracks/kim/watch", _tampered(), Reason.UNDECRYPTABLE, "altered"),
        (
            f"{P}owntracks/kim/watch",
            {"_type": "encrypted", "data": "not base64!"},
            Reason.UNDECRYPTABLE,
            "base64",
        ),
        (
            f"{P}owntracks/kim/watch",
            {"_type": "encrypted", "data": "c2VjcmV0"},
            Reason.UNDECRYPTABLE,
            "shorter",
        ),
        (f"{P}owntracks/kim/watch", {"_type": "encrypted"}, Reason.SCHEMA_VIOLATION, "data"),
        (f"{P}owntracks/kim/watch", encrypted(b"{not json"), Reason.MALFORMED_JSON, "decrypted payload"),
        (f"{P}owntracks/kim/watch", encrypted({**LOCATION, "lat": 91}), Reason.SCHEMA_VIOLATION, "lat"),
        (
            f"{P}owntracks/kim/watch",
            encrypted(encrypted(LOCATION)),
            Reason.SCHEMA_VIOLATION,
            "inside another",
        ),
        (f"{P}owntracks/stranger/phone", encrypted(LOCATION), Reason.UNKNOWN_DEVICE, "not registered"),
    ],
)
def test_encrypted_payloads_that_cannot_be_used_are_dead_lettered_with_a_clear_reason(
    topic: str, payload: dict[str, object], reason: Reason, says: str
) -> None:
    m = msg(topic, payload)
    d = run(m)
    assert d.fixes == [] and [r.reason for r in d.rejections] == [reason]
    assert says in d.rejections[0].detail, d.rejections[0].detail
    assert d.rejections[0].payload == m.payload  # what came, not what was inside


def test_the_tracker_subscribes_to_owntracks_locations_and_transitions() -> None:
    topics = ingest_topics(P)
    assert f"{P}owntracks/+/+" in topics and f"{P}owntracks/+/+/event" in topics
    assert is_device_message(f"{P}owntracks/jane/phone", P) and not is_device_message(
        f"{P}tracker/v1/tags/a/position", P
    )


# --- OsmAnd / Traccar Client --------------------------------------------------------------------------
def test_osmand_query_string_of_the_documented_example() -> None:
    # traccar.org/osmand: ?id=123456&lat={0}&lon={1}&timestamp={2}&hdop={3}&altitude={4}&speed={5},
    # with Traccar Client's accuracy and batt, and alarm=sos
    q = (
        "id=123456&lat=37.4990&lon=127.0560&timestamp=1795315393&hdop=1.2&altitude=40&speed=1.1"
        "&accuracy=9.5&batt=64.0"
    )
    [f] = run(msg(osmand.HTTP_TOPIC, q)).fixes
    assert (f.tag, f.ts, f.lat, f.lon, f.acc, f.batt, f.sos) == (
        "tag-ann",
        1795315393.0,
        37.499,
        127.056,
        9.5,
        64,
        False,
    )
    [s] = run(msg(osmand.HTTP_TOPIC, q + "&alarm=sos")).fixes
    assert s.sos


def test_the_osmand_apps_own_live_tracking_url() -> None:
    """OsmAnd's Trip recording > Online tracking fills its template with the time in milliseconds and
    the location's accuracy in metres as `hdop`; it has no `accuracy` and no battery unless asked."""
    template = "id=123456&lat={0}&lon={1}&timestamp={2}&hdop={3}&altitude={4}&speed={5}"
    q = template.format("37.49900", "127.05600", "1795315393000", "6.0", "40.5", "1.3888888")
    d = run(msg(osmand.HTTP_TOPIC, q))
    assert d.rejections == []
    [f] = d.fixes
    assert (f.tag, f.ts, f.lat, f.lon, f.acc, f.batt, f.sos) == (
        "tag-ann",
        1795315393.0,
        37.499,
        127.056,
        6.0,
        None,
        False,
    )
    # and with the rest of OsmAnd's fields ({6} bearing, {11} battery percent as batproc is not read)
    [g] = run(msg(osmand.HTTP_TOPIC, q + "&bearing=271.5&batt=64")).fixes
    assert (g.acc, g.batt) == (6.0, 64)


ANN_AT = "id=123456&lat=37.499&lon=127.056&timestamp=1795315393000"


@pytest.mark.parametrize(
    ("why", "more"),
    [
        ("no accuracy and no hdop", ""),
        ("hdop 0: OsmAnd's location had no accuracy", "&hdop=0.0"),
        ("an empty hdop (a template field left blank)", "&hdop="),
        ("accuracy 0", "&accuracy=0"),
    ],
)
def test_an_osmand_fix_without_a_stated_accuracy_is_kept_of_unknown_accuracy(why: str, more: str) -> None:
    d = run(msg(osmand.HTTP_TOPIC, ANN_AT + more))
    assert d.rejections == []
    [f] = d.fixes
    assert (f.tag, f.ts) == ("tag-ann", 1795315393.0) and math.isnan(f.acc)


def test_accuracy_wins_over_hdop_when_both_are_sent() -> None:
    q = "id=123456&lat=37.499&lon=127.056&timestamp=1795315393&hdop=1.2&accuracy=9.5"
    assert run(msg(osmand.HTTP_TOPIC, q)).fixes[0].acc == 9.5


@pytest.mark.parametrize(
    "stamp",
    [
        "1795315393",
        "1795315393000",
        "2026-11-22T02:43:13Z",
        "2026-11-22T02:43:13.000Z",
        "2026-11-22 02:43:13",
        "2026-11-22T11:43:13+09:00",
    ],
)
def test_osmand_timestamps_in_seconds_milliseconds_and_iso_8601(stamp: str) -> None:
    [f] = run(
        msg(
            osmand.HTTP_TOPIC,
            f"deviceid=123456&location=37.499,127.056&timestamp={stamp.replace('+', '%2B')}&accuracy=5",
        )
    ).fixes
    assert f.ts == 1795315393.0


def test_osmand_json_body_of_traccar_client_9() -> None:
    body = {
        "location": {
            "timestamp": "2026-11-22T02:43:13.000Z",
            "coords": {
                "latitude": 37.499,
                "longitude": 127.056,
                "accuracy": 7,
                "speed": 0,
                "heading": 0,
                "altitude": 0,
            },
            "is_moving": False,
            "odometer": 0,
            "event": "motionchange",
            "battery": {"level": 0.42, "is_charging": False},
            "activity": {"type": "still"},
            "extras": {},
        },
        "device_id": "48241179",
    }
    [f] = run(msg(osmand.HTTP_TOPIC, body)).fixes
    assert (f.tag, f.ts, f.acc, f.batt, f.sos) == ("tag-bob", 1795315393.0, 7, 42, False)
    body["location"]["extras"] = {"alarm": "sos"}  # type: ignore[index]
    assert run(msg(osmand.HTTP_TOPIC, body)).fixes[0].sos
    assert osmand.device_of(json.dumps(body).encode()) == "48241179"
    assert osmand.device_of(b"id=123456&lat=1") == "123456"
    del body["location"]["coords"]["accuracy"]  # type: ignore[index]
    [f] = run(msg(osmand.HTTP_TOPIC, body)).fixes
    assert f.tag == "tag-bob" and math.isnan(f.acc)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("id=999&lat=37.5&lon=127&timestamp=1795315393&accuracy=5", Reason.UNKNOWN_DEVICE),
        ("lat=37.5&lon=127&timestamp=1795315393&accuracy=5", Reason.SCHEMA_VIOLATION),
        ("id=123456&lat=nan&lon=127&timestamp=1795315393&accuracy=5", Reason.SCHEMA_VIOLATION),
        ("id=123456&lat=37.5&lon=inf&timestamp=1795315393&accuracy=5", Reason.SCHEMA_VIOLATION),
        ("id=123456&lat=37.5&lon=127&timestamp=yesterday&accuracy=5", Reason.SCHEMA_VIOLATION),
        ("id=123456&lat=37.5&lon=127&timestamp=1795315393&hdop=-1", Reason.SCHEMA_VIOLATION),
        ("id=123456&lat=37.5&lon=127&timestamp=1795315393&hdop=lots", Reason.SCHEMA_VIOLATION),
        ("id=123456&lat=37.5&lon=127&timestamp=1795315393&accuracy=5&valid=false", Reason.INVALID_FIX),
        ('{"device_id": "48241179", "location": {"timestamp": 1, "coords": {}}}', Reason.SCHEMA_VIOLATION),
        ('{"device_id": "48241179", "location": ', Reason.MALFORMED_JSON),
    ],
)
def test_osmand_refusals_name_their_reason(payload: str, reason: Reason) -> None:
    d = run(msg(osmand.HTTP_TOPIC, payload))
    assert d.fixes == [] and [r.reason for r in d.rejections] == [reason]


def test_iso_and_numeric_timestamps_agree() -> None:
    t = datetime(2026, 11, 22, 2, 43, 13, tzinfo=UTC).timestamp()
    assert osmand.parse_timestamp("2026-11-22T02:43:13Z") == t == osmand.parse_timestamp(t * 1000)
