"""The HTTP contract: request and response models (they are the OpenAPI schema at /openapi.json).

Resources with a shape are GeoJSON Features (RFC 7946, [lon, lat]); lists of them are
FeatureCollections that also carry the paging members ``total``, ``limit`` and ``offset`` (foreign
members, allowed by RFC 7946 section 6.1). Other lists are ``{"items": [...], "total", "limit",
"offset"}``. Input models refuse unknown fields, so a typo is an error that names the field.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tracker.importers.geojson import PointGeometry, RouteGeometry, ZoneGeometry
from tracker.importers.models import (
    MAX_CORRIDOR_M,
    MIN_CORRIDOR_M,
    Arrival,
    CommuteWindow,
    Id,
    Name,
    RouteMode,
    RouteProps,
    Window,
    ZoneKind,
    ZoneProps,
    checked_text,
)

T = TypeVar("T")
F = TypeVar("F")

DeviceId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="the id the device uses in its MQTT topic (1-64 of A-Z a-z 0-9 _ . : -)",
        examples=["tag-0042"],
    ),
]
Phone = Annotated[
    str,
    Field(
        pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164: + and country code", examples=["+821012345678"]
    ),
]
Channel = Literal["websocket", "sms", "push"]
Language = Literal["ko", "en"]
Priority = Annotated[int, Field(ge=1, le=100, description="escalation order: 1 is told first")]
Label = Annotated[str, StringConstraints(max_length=200), AfterValidator(checked_text)]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Asia/Seoul')") from None
    return value


TimeZone = Annotated[str, Field(max_length=64, examples=["Asia/Seoul"]), AfterValidator(_timezone)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FeatureIn(BaseModel):
    """A GeoJSON Feature: ``bbox`` and other foreign members are allowed and ignored."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["Feature"]


class _FeaturePatch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["Feature"] = "Feature"


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="rows in all pages")
    limit: int
    offset: int


class FeaturePage(BaseModel, Generic[F]):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[F]
    total: int = Field(description="features in all pages")
    limit: int
    offset: int


class Error(BaseModel):
    detail: str


# --- schools -------------------------------------------------------------------------------------------
class SchoolProps(Strict):
    name: Name
    timezone: TimeZone | None = Field(None, description="IANA time zone; default TRACKER_DEFAULT_TIMEZONE")
    windows: Annotated[list[CommuteWindow], Field(max_length=20)] = Field(
        default_factory=list, description="commute windows of routes that have none of their own"
    )
    closed_days: Annotated[list[date], Field(max_length=400)] = Field(
        default_factory=list, description="days without school (no commute is watched)"
    )


class SchoolIn(_FeatureIn):
    geometry: PointGeometry = Field(description="where the school is")
    properties: SchoolProps


class SchoolPatchProps(Strict):
    name: Name | None = None
    timezone: TimeZone | None = None
    windows: Annotated[list[CommuteWindow], Field(max_length=20)] | None = None
    closed_days: Annotated[list[date], Field(max_length=400)] | None = None


class SchoolPatch(_FeaturePatch):
    geometry: PointGeometry | None = None
    properties: SchoolPatchProps | None = None


class SchoolOutProps(BaseModel):
    name: str
    timezone: str
    windows: list[CommuteWindow]
    closed_days: list[date]
    created_at: datetime


class SchoolFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: int
    geometry: PointGeometry
    properties: SchoolOutProps


# --- routes --------------------------------------------------------------------------------------------
class RouteIn(_FeatureIn):
    geometry: RouteGeometry
    properties: RouteProps


class RoutePatchProps(Strict):
    name: Name | None = None
    school_id: Id | None = None
    corridor_m: float | None = Field(None, ge=MIN_CORRIDOR_M, le=MAX_CORRIDOR_M)
    windows: Annotated[list[CommuteWindow], Field(max_length=20)] | None = None
    arrivals: Annotated[list[Arrival], Field(max_length=20)] | None = None
    mode: RouteMode | None = None


class RoutePatch(_FeaturePatch):
    geometry: RouteGeometry | None = None
    properties: RoutePatchProps | None = None


class ZoneMeeting(BaseModel):
    zone_id: int
    how: Literal["beside", "across"]
    length_m: float = Field(
        description="across: the line's length inside the zone; beside: within the corridor of it"
    )


class RouteOutProps(BaseModel):
    name: str
    school_id: int
    corridor_m: float
    mode: RouteMode = Field(description="walk, bicycle, shuttle or bus: the speeds a child on it may go")
    meets_zones: list[ZoneMeeting] = Field(
        default_factory=list,
        description="where the route's corridor overlaps a danger zone: across it (the line enters the"
        " zone: a crosswalk) or beside it (a sidewalk by a road zone); there the zone minus the corridor"
        " is what counts for the route's children in its windows",
    )
    windows: list[CommuteWindow] = Field(description="the route's own windows (empty: its school's apply)")
    arrivals: list[Arrival]
    children: list[int] = Field(description="children who walk it (those the caller may see)")
    created_at: datetime


class RouteFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: int
    geometry: RouteGeometry
    properties: RouteOutProps


# --- danger zones --------------------------------------------------------------------------------------
class ZoneIn(_FeatureIn):
    geometry: ZoneGeometry
    properties: ZoneProps


class ZonePatchProps(Strict):
    name: Name | None = None
    kind: ZoneKind | None = None
    severity: Literal["warning", "critical"] | None = None
    hours: Annotated[list[Window], Field(max_length=20)] | None = None
    active: bool | None = None


class ZonePatch(_FeaturePatch):
    geometry: ZoneGeometry | None = None
    properties: ZonePatchProps | None = None


class ZoneOutProps(BaseModel):
    name: str
    kind: str
    severity: Literal["warning", "critical"]
    hours: list[Window] | None
    active: bool
    created_at: datetime


class ZoneFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: int
    geometry: ZoneGeometry
    properties: ZoneOutProps


# --- RFID readers --------------------------------------------------------------------------------------
class ReaderProps(Strict):
    name: Name
    school_id: Id | None = Field(None, description="school staff: their own school")
    role: Literal["gate", "checkpoint"]


class ReaderIn(_FeatureIn):
    id: DeviceId = Field(description="the reader's id, as in tracker/v1/readers/{id}/sightings")
    geometry: PointGeometry
    properties: ReaderProps


class ReaderPatchProps(Strict):
    name: Name | None = None
    school_id: Id | None = None
    role: Literal["gate", "checkpoint"] | None = None


class ReaderPatch(_FeaturePatch):
    geometry: PointGeometry | None = None
    properties: ReaderPatchProps | None = None


class ReaderOutProps(BaseModel):
    name: str
    school_id: int
    role: Literal["gate", "checkpoint"]
    created_at: datetime


class ReaderFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str
    geometry: PointGeometry
    properties: ReaderOutProps


# --- children ------------------------------------------------------------------------------------------
class GuardianLink(Strict):
    guardian_id: Id
    priority: Priority = 1


def _unique_guardians(links: list[GuardianLink]) -> list[GuardianLink]:
    ids = [g.guardian_id for g in links]
    dup = next((g for g in ids if ids.count(g) > 1), None)
    if dup is not None:
        raise ValueError(f"guardian {dup} is listed twice")
    return links


GuardianLinks = Annotated[list[GuardianLink], Field(max_length=10), AfterValidator(_unique_guardians)]


class ChildIn(Strict):
    name: Name
    school_id: Id | None = Field(None, description="school staff: their own school")
    route_id: Id | None = Field(None, description="a route of the child's school")
    guardians: GuardianLinks = Field(default_factory=list, description="who is told, in escalation order")


class ChildPatch(Strict):
    name: Name | None = None
    school_id: Id | None = None
    route_id: Id | None = None
    guardians: GuardianLinks | None = None


class PositionOut(BaseModel):
    ts: datetime
    lon: float
    lat: float
    acc: float | None = Field(description="metres; null: the app stated none")
    batt: int | None = None
    tag_id: str | None = None
    route_distance_m: float | None = None


class ChildOut(BaseModel):
    id: int
    name: str
    school_id: int
    school_since: datetime | None = Field(
        None,
        description="when the child moved to this school (the start of that day there); null: since"
        " registered. Its staff see the child's positions, status and alerts from then on only",
    )
    route_id: int | None
    guardians: list[GuardianLink]
    tags: list[str]
    open_alerts: int
    last_position: PositionOut | None
    created_at: datetime


# --- positions -----------------------------------------------------------------------------------------
class FixProps(BaseModel):
    child_id: int
    ts: datetime | None
    acc: float | None = None
    batt: int | None = None
    tag_id: str | None = None
    route_distance_m: float | None = None
    received_at: datetime | None = None


class FixFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: PointGeometry | None = Field(description="null: no position known (yet, or any more)")
    properties: FixProps


class Track(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[FixFeature] = Field(description="the day's fixes, oldest first")
    date: date
    timezone: str
    total: int
    limit: int
    offset: int


class PositionRead(BaseModel):
    """One staff session's reads of one child's positions through one endpoint on one day."""

    id: int
    at: datetime = Field(description="the first of these reads")
    last_at: datetime = Field(description="the last of these reads")
    day: date | None = Field(
        description="the day of the reads, in the time zone of the child's school (null: an entry "
        "written before entries were kept per day, which stands for one read)"
    )
    reads: int = Field(description="how many answers (or socket messages) held the child's positions")
    token_id: int
    role: str
    school_id: int | None
    label: str
    child_id: int
    endpoint: str
    fixes: int = Field(description="how many of the child's positions these reads held in all")


# --- tags ----------------------------------------------------------------------------------------------
class TagIn(Strict):
    id: DeviceId
    child_id: Id
    kind: Literal["gps", "rfid"] = "gps"


class TagPatch(Strict):
    child_id: Id | None = None
    kind: Literal["gps", "rfid"] | None = None


class TagOut(BaseModel):
    id: str
    child_id: int
    kind: Literal["gps", "rfid"]
    has_mqtt_password: bool
    mqtt_topic: str | None = Field(description="where a GPS tag publishes its fixes")
    created_at: datetime


class TagCredentials(BaseModel):
    """Shown once: only hashes are kept."""

    mqtt_username: str
    mqtt_password: str
    mqtt_topic: str
    device_token: str = Field(description="bearer token of role 'device' for this tag")
    device_token_id: int
    device_token_expires_at: datetime | None


class TagCreated(TagOut):
    credentials: TagCredentials | None = Field(description="a GPS tag's credentials; null for an RFID card")


# --- guardians -----------------------------------------------------------------------------------------
class ChildLink(Strict):
    child_id: Id
    priority: Priority = 1


def _unique_channels(channels: list[Channel]) -> list[Channel]:
    if len(set(channels)) != len(channels):
        raise ValueError("a channel is listed twice")
    return channels


Channels = Annotated[list[Channel], Field(max_length=3), AfterValidator(_unique_channels)]
_BOTH: list[Channel] = ["websocket", "sms"]


class GuardianIn(Strict):
    name: Name
    phone: Phone | None = None
    language: Language = "ko"
    channels: Channels = Field(default_factory=lambda: _BOTH[:])
    school_id: Id | None = Field(None, description="the school registering the guardian (school staff: own)")
    children: Annotated[list[ChildLink], Field(max_length=20)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sms_needs_phone(self) -> GuardianIn:
        if "sms" in self.channels and self.phone is None:
            raise ValueError("the sms channel needs a phone number (or leave 'sms' out of channels)")
        return self


class GuardianPatch(Strict):
    name: Name | None = None
    phone: Phone | None = None
    language: Language | None = None
    channels: Channels | None = None
    school_id: Id | None = None


class GuardianOut(BaseModel):
    id: int
    name: str
    phone: str | None
    language: str
    channels: list[str]
    school_id: int | None
    children: list[ChildLink]
    created_at: datetime


# --- tokens --------------------------------------------------------------------------------------------
class TokenIn(Strict):
    role: Literal["admin", "school", "guardian", "device"]
    school_id: Id | None = None
    guardian_id: Id | None = None
    tag_id: DeviceId | None = None
    label: Label = ""
    ttl_days: float = Field(30.0, gt=0, le=3650, description="the token expires after this many days")


class TokenOut(BaseModel):
    id: int
    role: str
    label: str
    school_id: int | None
    guardian_id: int | None
    tag_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once: only its hash is kept")


class TokenIssue(BaseModel):
    """One entry of the token-issue log: a token, for whom, and who issued it."""

    id: int
    at: datetime
    token_id: int
    role: str
    school_id: int | None
    guardian_id: int | None
    tag_id: str | None
    label: str
    expires_at: datetime | None
    issued_via: Literal["api", "enrolment", "cli", "system", "before-audit"]
    issuer_token_id: int | None = Field(description="'api': the token of the caller who issued it")
    issuer_role: str | None
    issuer_school_id: int | None
    issuer_label: str
    enrolment_id: int | None = Field(description="'enrolment': the enrolment link redeemed")


class EnrolmentCreated(BaseModel):
    id: int
    guardian_id: int
    code: str = Field(description="shown once: only its hash is kept; redeemed once")
    url: str = Field(description="the link to hand the guardian: the parent page redeems the code")
    expires_at: datetime


class EnrolmentIn(Strict):
    code: str = Field(min_length=1, max_length=200, description="the code of an enrolment link")


class EnrolmentRedeemed(BaseModel):
    guardian_id: int
    token_id: int
    token: str = Field(description="the guardian's token, shown once: only its hash is kept")
    expires_at: datetime | None


class Me(BaseModel):
    token_id: int
    role: str
    label: str
    expires_at: datetime | None
    school_id: int | None
    guardian_id: int | None
    tag_id: str | None
    name: str | None = Field(None, description="the guardian's or the school's name")
    language: str | None = None


# --- alerts --------------------------------------------------------------------------------------------
class Ref(BaseModel):
    id: int
    name: str


class ZoneRef(Ref):
    kind: str


class AlertPosition(BaseModel):
    lon: float
    lat: float
    acc: float | None
    ts: datetime | None


class Delivery(BaseModel):
    id: int
    guardian_id: int | None = Field(description="the guardian told (null: the school)")
    school_id: int | None = Field(description="the school told, when the alert escalated to it")
    channel: str
    transition: str
    state: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


class AlertStep(BaseModel):
    at: datetime
    step: str = Field(
        description="opened, updated, delivered, unreachable, suppressed, cancelled (a guardian unlinked"
        " from the child or deleted), escalated, acknowledged, resolved"
    )
    detail: dict[str, Any] = Field(description="who was told on which channel, the escalation level, ...")


AlertKind = Literal[
    "left_route",
    "danger_zone",
    "sos",
    "signal_lost",
    "not_arrived_school",
    "not_arrived_home",
    "arrived_school",
    "arrived_home",
    "left_school",
    "low_battery",
]
"""Every kind of alert tracker.alerts.lifecycle.rules_for makes (tests/unit/test_alert_filters.py checks)."""
AlertSeverity = Literal["critical", "warning", "info"]
AlertState = Literal["open", "resolved"]


class AlertOut(BaseModel):
    id: int
    kind: AlertKind
    severity: AlertSeverity
    state: AlertState = Field(description="open until resolved; acknowledged is acknowledged_at, not a state")
    child: Ref
    zone: ZoneRef | None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: int | None
    escalation_level: int = Field(description="0: the first guardians were told; then the next ones")
    fix_count: int
    position: AlertPosition | None
    deliveries: list[Delivery]
    steps: list[AlertStep] = Field(description="what happened, in time order")


class Ack(BaseModel):
    alert_id: int
    acknowledged: bool
    acknowledged_at: datetime | None
    acknowledged_by: int | None


# --- operators -----------------------------------------------------------------------------------------
class Sms(BaseModel):
    id: int
    delivery_id: int | None
    phone: str
    body: str
    provider: str
    created_at: datetime


class DeadLetter(BaseModel):
    id: int
    received_at: datetime
    topic: str
    payload: str = Field(description="the message as text (at most 4 KiB)")
    reason: str
    detail: str


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    components: dict[str, bool]
    problems: dict[str, str] | None = Field(
        None, description="what is wrong with a component that is not ready, where it can say (absent: none)"
    )


# --- import / export -----------------------------------------------------------------------------------
class Imported(BaseModel):
    kind: Literal["route", "zone"]
    id: int | None = Field(description="null in a dry run, for what would be created")
    name: str
    loc: list[str | int] = Field(description="where the feature is in the file")


class ImportResult(BaseModel):
    dry_run: bool
    created: list[Imported]
    updated: list[Imported]


class Export(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[dict[str, Any]]
