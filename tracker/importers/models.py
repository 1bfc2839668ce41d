"""What a route and a danger zone carry besides their shape: the typed properties the API takes and an
import file's features are read into (one set of rules for both), and the small value types they use.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tracker.monitor.schedule import Window as MonitorWindow

__all__ = [
    "MAX_CORRIDOR_M",
    "MAX_ID",
    "MIN_CORRIDOR_M",
    "Arrival",
    "CommuteWindow",
    "Id",
    "Name",
    "RouteProps",
    "Text",
    "Window",
    "ZoneKind",
    "ZoneProps",
    "checked_text",
]

MAX_ID = 2**63 - 1  # bigint
# A route's corridor (half-width, metres): narrower than a metre is narrower than any GPS fix's error
# (the school page's form asks for 1 at least), and a PostgreSQL ``real`` rounds a tiny width to 0,
# which the table's check refuses.
MIN_CORRIDOR_M = 1.0
MAX_CORRIDOR_M = 1000.0


def checked_text(value: str) -> str:
    """Text PostgreSQL can store and a person can read: no control characters, valid Unicode."""
    bad = next((c for c in value if (ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(f"contains the control character U+{ord(bad):04X}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"is not valid Unicode text ({e.reason} at character {e.start})") from None
    return value


Text = Annotated[str, AfterValidator(checked_text)]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(checked_text)
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
ZoneKind = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="what makes the place dangerous: construction, river, arterial_road, ...",
        examples=["construction"],
    ),
]
Weekday = Annotated[int, Field(ge=0, le=6, description="0 = Monday")]
HHMM = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["07:30"])]
HHMM_OR_24 = Annotated[str, Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", examples=["09:00"])]
WEEKDAYS = [0, 1, 2, 3, 4]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Window(_Strict):
    """A commute window (or a zone's dangerous hours) in local time: [start, end) on the given weekdays."""

    days: Annotated[list[Weekday], Field(min_length=1, max_length=7)] = Field(
        default_factory=lambda: list(WEEKDAYS)
    )
    start: HHMM
    end: HHMM_OR_24

    @model_validator(mode="after")
    def _parses(self) -> Window:
        MonitorWindow.parse(self.model_dump())  # the monitor's own reading: start before end
        return self


RouteMode = Literal["walk", "bicycle", "shuttle", "bus"]


class CommuteWindow(Window):
    """A route's (or its school's) commute window, which may say how the route is travelled in it."""

    mode: RouteMode | None = Field(
        None,
        exclude_if=lambda mode: mode is None,  # (a window without one reads as before)
        description="how the route is travelled in this window (its speeds), where that is not the"
        " route's own mode: a child who walks to school in the morning and rides the academy's shuttle"
        " home has a shuttle route whose morning window says walk; null: the route's mode",
    )


class Arrival(_Strict):
    """By ``time`` (local, on ``days``) the child should have reached ``to``: the route's end (the
    school) or its start (home); otherwise the guardians are told the child has not arrived."""

    days: Annotated[list[Weekday], Field(min_length=1, max_length=7)] = Field(
        default_factory=lambda: list(WEEKDAYS)
    )
    time: HHMM
    to: Literal["school", "home"] = "school"


class RouteProps(_Strict):
    name: Name
    school_id: Id | None = Field(None, description="the school the route leads to (school staff: their own)")
    corridor_m: float = Field(
        ge=MIN_CORRIDOR_M, le=MAX_CORRIDOR_M, description="half-width of the route's corridor, metres"
    )
    windows: Annotated[list[CommuteWindow], Field(max_length=20)] = Field(
        default_factory=list,
        description="commute windows in the school's time zone; empty: the school's windows",
    )
    arrivals: Annotated[list[Arrival], Field(max_length=20)] = Field(default_factory=list)
    mode: RouteMode = Field(
        "walk", description="how the route is travelled: its speeds (a child faster is not on it)"
    )


class ZoneProps(_Strict):
    name: Name
    kind: ZoneKind
    severity: Literal["warning", "critical"] = "critical"
    hours: Annotated[list[Window], Field(max_length=20)] | None = Field(
        None, description="hours when the zone is dangerous, in the city's time zone; null: always"
    )
    active: bool = True
