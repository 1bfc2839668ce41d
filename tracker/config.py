"""One typed settings object, loaded once from the environment (prefix ``TRACKER_``).

Every setting has a default that works for ``make run`` and a doc line; README.md lists them all.
The alert rules' thresholds are not listed here: every field of the monitor's `Rules` is a setting
of the same name, its type, default and doc line taken from there (`_RuleSettings`), and
`rules_from` builds `Rules` from all of them.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, create_model, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tracker.monitor.model import Rules


def _rule_fields() -> dict[str, Any]:
    """One pydantic field per field of `Rules`: its type, its default, its doc line."""
    types = typing.get_type_hints(Rules)
    return {
        f.name: (types[f.name], Field(f.default, description=f.metadata["doc"]))
        for f in dataclasses.fields(Rules)
    }


if TYPE_CHECKING:  # mypy sees a plain base; the rule settings are read through rules_from only
    _RuleSettings = BaseSettings
else:
    _RuleSettings = create_model("_RuleSettings", __base__=BaseSettings, **_rule_fields())


class Settings(_RuleSettings):
    model_config = SettingsConfigDict(env_prefix="TRACKER_", extra="ignore", frozen=True)

    # --- servers -------------------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset: an embedded PostgreSQL in data_dir/postgres"
    )
    mqtt_url: str | None = Field(
        None, description="MQTT broker URL (mqtt://user:pass@host:port); unset: an embedded amqtt broker"
    )
    data_dir: Path = Field(Path(".tracker-data"), description="where embedded servers keep their data")
    http_host: str = Field("127.0.0.1", description="address the HTTP API and websocket listen on")
    http_port: int = Field(8000, description="port of the HTTP API and websocket")
    embedded_mqtt_port: int = Field(1884, description="port of the embedded MQTT broker")

    # --- ingest ------------------------------------------------------------------------------------
    mqtt_client_id: str = Field("tracker-ingest-1", description="MQTT client id of the persistent session")
    topic_prefix: str = Field(
        "", description="prefix before every topic, e.g. 'city-a/' (tests isolate on it)"
    )
    batch_max_messages: int = Field(2000, description="most broker messages handled in one pipeline batch")
    batch_max_bytes: int = Field(
        1_048_576,
        ge=1,
        description="most payload bytes in one pipeline batch (about 9,000 fixes in gateway batches): a "
        "batch holds the event loop while it is decided",
    )
    batch_wait_ms: float = Field(10.0, description="longest wait to fill a batch once a message is waiting")
    ingest_queue_max: int = Field(
        10_000,
        ge=1,
        description="most broker messages waiting for the pipeline; when full, the MQTT thread stops "
        "reading and the broker keeps the rest",
    )
    mqtt_version: Literal["auto", "5", "3.1.1"] = Field(
        "auto",
        description="MQTT version of the ingest: 'auto' speaks 5 where the broker does (asking for its"
        " in-flight window), else 3.1.1; '5' or '3.1.1' to insist (both cost the same per message)",
    )
    broker_probe_interval_s: float = Field(
        300.0,
        ge=0,
        description="how often the tracker probes whether the broker would drop or throttle its messages"
        " (and at start; /readyz fails naming the setting); 0: never",
    )
    broker_probe_messages: int = Field(
        5000,
        ge=1,
        le=60000,
        description="QoS 1 messages each probe has the broker queue for it beyond a batch in flight: a"
        " broker that drops any of them would drop a burst that size",
    )
    max_payload_bytes: int = Field(64 * 1024, description="larger payloads are dead-lettered as oversized")
    max_future_s: float = Field(
        300.0,
        description="fixes stamped further than this in the future are refused (a cheap watch's clock may"
        " be a minute or two fast; an SOS is stamped at receipt instead)",
    )
    http_ingest_timeout_s: float = Field(
        20.0, description="an OwnTracks / OsmAnd HTTP request waits this long for its fix to be committed"
    )
    tag_rate_per_s: float = Field(
        5.0, description="fixes per second one tag may send, sustained; more are dead-lettered (rate_limited)"
    )
    tag_burst: int = Field(300, description="fixes one tag may send at once (a buffer emptied after a gap)")

    # --- workers (issue 16: tracker.cluster; one process without them) ------------------------------
    partitions: int = Field(
        64,
        ge=1,
        le=32767,
        description="partitions of the children (child id modulo this); each worker owns some, by a lease "
        "in PostgreSQL. Every worker of a deployment must use the same number",
    )
    worker_id: str = Field(
        "", description="this worker's name in partition_leases and cluster_workers; empty: hostname-pid"
    )
    lease_ttl_s: float = Field(
        10.0,
        gt=0,
        description="a partition's lease lasts this long unless renewed (every third of it); a worker "
        "that stops renewing has its partitions taken over after this",
    )

    engine: Literal["mqtt", "nats"] = Field(
        "mqtt",
        description="where the tracker reads fixes: 'mqtt' (one tracker subscribed to the MQTT broker, the "
        "default) or 'nats' (one of several workers on a NATS JetStream cluster whose MQTT listener the "
        "devices publish to: tracker.ingest.jetstream, docs/scaling.md)",
    )
    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="the NATS cluster's client addresses, comma-separated (TRACKER_ENGINE=nats)",
    )
    nats_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="replicas of the engine's streams (TRACKER_ENGINE=nats): 3 on a three-node cluster, so "
        "that a node's loss loses nothing the devices were acknowledged",
    )

    # --- alert rules (their thresholds are the fields of Rules: _RuleSettings) ---------------------
    home_fence_m: float = Field(50.0, description="radius around a route's start (home) for arrival at home")
    tick_s: float = Field(
        5.0, description="how often the clock rules (signal lost, not arrived) and escalation run"
    )
    escalate_warning_s: float = Field(
        300.0, description="an unacknowledged warning goes to the next person after"
    )
    escalate_critical_s: float = Field(120.0, description="an unacknowledged critical alert goes on after")
    default_timezone: str = Field("Asia/Seoul", description="time zone of a school that names none")
    watch_all_day: bool = Field(
        False, description="watch routes around the clock, not only in commute windows ('make run' sets it)"
    )

    # --- delivery -----------------------------------------------------------------------------------
    sms_provider: str = Field(
        "stub", description="'stub' records SMS in PostgreSQL; 'apprise' sends through sms_apprise_url"
    )
    sms_apprise_url: str | None = Field(
        None, description="apprise URL of the SMS gateway; {phone} is replaced by the recipient's number"
    )
    rate_limit_count: int = Field(6, description="most non-critical messages per guardian and channel ...")
    rate_limit_window_s: float = Field(600.0, description="... in this many seconds; more are suppressed")
    webhook_timeout_s: float = Field(5.0, description="how long a school's webhook may take to answer")
    ws_token_check_s: float = Field(
        60.0,
        gt=0,
        description="how often the tokens of all open websockets are checked (one query): catches expiry"
        " and revocations missed; a revocation itself closes its sockets at once (NOTIFY tokens_revoked)",
    )
    school_live_min_interval_s: float = Field(
        3.0,
        gt=0,
        description="the school's live map socket (/ws/school) sends each child's position and status at"
        " most once per this many seconds (the latest wins); alerts are sent as they open and close",
    )
    delivery_max_attempts: int = Field(
        8, description="attempts per (alert, guardian, channel) before giving up"
    )
    delivery_backoff_s: float = Field(2.0, description="first retry delay; doubles with every attempt")
    delivery_claim_timeout_s: float = Field(
        60.0,
        gt=0,
        description="a delivery claimed by a process that stopped refreshing its claim (every third of "
        "this) is given to another process after this long (a killed worker's sends)",
    )
    vapid_key_file: Path | None = Field(
        None,
        description="file holding the service's VAPID private key (PEM; made, mode 0600, when missing);"
        " unset: the key pair is kept in PostgreSQL. A new key makes every push subscription useless",
    )
    vapid_subject: str = Field(
        "mailto:tracker@localhost",
        pattern=r"^(mailto:\S+@\S+|https://\S+)$",
        description="the contact push services may write to about this sender (VAPID 'sub': a mailto: or"
        " https: URL); Apple's push service refuses a localhost one",
    )
    push_services: str = Field(
        "https://fcm.googleapis.com https://updates.push.services.mozilla.com https://*.push.apple.com"
        " https://*.notify.windows.com",
        description="origins a push subscription's endpoint may have (space-separated, * for one or more"
        " host labels): the tracker POSTs to them, so no other address is accepted",
    )
    push_timeout_s: float = Field(10.0, gt=0, description="how long a push service may take to answer")
    public_url: str = Field("http://127.0.0.1:8000", description="base URL put into SMS texts")
    tile_url: str = Field(
        "",
        description="map tiles for the web pages, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png;"
        " empty: no tiles (the maps draw Seoul's districts as their own base layer)",
    )
    tile_attribution: str = Field("", description="attribution shown under the map tiles")

    # --- registry API and privacy -------------------------------------------------------------------
    max_body_bytes: int = Field(
        1024 * 1024, description="largest request body the API reads; larger ones get 413"
    )
    max_import_bytes: int = Field(
        16 * 1024 * 1024, description="largest GeoJSON or GPX file POST /api/v1/import reads"
    )
    registry_max_distance_m: float = Field(
        20_000.0,
        description="a route (or reader) may reach this far from its school, a danger zone must come this"
        " close to some school; 0: no limit",
    )
    device_token_days: float = Field(365.0, description="lifetime of the device token a GPS tag is given")
    enrolment_ttl_h: float = Field(
        72.0, gt=0, description="an enrolment link (a guardian's first sign-in) expires after this many hours"
    )
    guardian_token_days: float = Field(
        365.0, gt=0, description="lifetime of the guardian token an enrolment link is redeemed for"
    )
    positions_retention_days: float = Field(
        30.0, description="positions (and dead letters) older than this many days are purged"
    )
    retention_interval_s: float = Field(3600.0, description="how often the service purges old positions")

    # --- demo (make run) ----------------------------------------------------------------------------
    demo_children: int = Field(300, description="simulated children in the demo city")
    simulate: bool = Field(True, description="with --demo: run the device simulator beside the service")
    demo_first_incident_s: float = Field(
        40.0,
        ge=0,
        description="with --demo: the demo guardian's first child presses SOS this many seconds after the"
        " simulator starts ...",
    )
    demo_incident_every_s: float = Field(
        300.0,
        gt=0,
        description="... and then has an incident this often (a danger zone, leaving the route, SOS, in"
        " turn; later while it is still out on the last one)",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        counts = [f.name for f in dataclasses.fields(Rules) if f.name.endswith("_fixes")]
        if any(getattr(self, name) < 1 for name in counts):
            raise ValueError(f"the fix counts of the alert rules ({', '.join(counts)}) must be at least 1")
        if self.tag_rate_per_s <= 0 or self.tag_burst < 1:
            raise ValueError("tag_rate_per_s must be > 0 and tag_burst at least 1")
        if self.batch_max_messages < 1:
            raise ValueError("batch_max_messages must be at least 1")
        if self.positions_retention_days <= 0 or self.retention_interval_s <= 0:
            raise ValueError("positions_retention_days and retention_interval_s must be > 0")
        if self.sms_provider == "apprise" and not self.sms_apprise_url:
            raise ValueError("TRACKER_SMS_PROVIDER=apprise needs TRACKER_SMS_APPRISE_URL")
        if self.sms_provider not in ("stub", "apprise"):
            raise ValueError(f"TRACKER_SMS_PROVIDER must be 'stub' or 'apprise', not {self.sms_provider!r}")
        return self


def rules_from(settings: Settings) -> Rules:
    """The monitor's rules: every field of Rules, from the setting of the same name."""
    return Rules(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(Rules)})


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, the CLI) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
