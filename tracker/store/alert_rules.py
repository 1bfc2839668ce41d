"""What the alert rules read beside the registry proper: school calendars, windows and fences,
escalation contacts and webhooks (migration 0002), route arrival times and danger-zone hours (0003)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg

SCHOOL_FENCE_M = 60.0
"""Radius of a school's fence when the registry names none: the schools table's default (migration
0002 writes it in SQL; tests/unit/test_school_fence.py keeps the two equal)."""


@dataclass(frozen=True)
class SchoolRules:
    closed_days: frozenset[date] = frozenset()
    fence_m: float = SCHOOL_FENCE_M
    staff_phone: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    windows: list[dict[str, Any]] = field(default_factory=list)  # a route without windows uses these


@dataclass(frozen=True)
class ReaderRow:
    school_id: int
    role: str  # gate | checkpoint
    lon: float
    lat: float


@dataclass(frozen=True)
class AlertRuleRows:
    schools: dict[int, SchoolRules]
    route_arrivals: dict[int, list[dict[str, Any]]]  # route id -> [{"days", "time", "to"}]
    zone_hours: dict[int, list[dict[str, Any]]]  # zone id -> [{"days", "start", "end"}]
    readers: dict[str, ReaderRow] = field(default_factory=dict)  # RFID reader id -> where it stands


async def load_alert_rules(conn: asyncpg.Connection) -> AlertRuleRows:
    schools = {
        r["id"]: SchoolRules(
            frozenset(r["closed_days"]),
            float(r["fence_m"]),
            r["staff_phone"],
            r["webhook_url"],
            r["webhook_secret"],
            r["windows"],
        )
        for r in await conn.fetch(
            "SELECT id, closed_days, fence_m, staff_phone, webhook_url, webhook_secret, windows FROM schools"
        )
    }
    arrivals = {
        r["id"]: r["arrivals"]
        for r in await conn.fetch("SELECT id, arrivals FROM routes WHERE arrivals <> '[]'")
    }
    hours = {
        r["id"]: r["hours"]
        for r in await conn.fetch("SELECT id, hours FROM danger_zones WHERE active AND hours IS NOT NULL")
    }
    readers = {
        r["id"]: ReaderRow(r["school_id"], r["role"], r["lon"], r["lat"])
        for r in await conn.fetch("SELECT id, school_id, role, lon, lat FROM readers")
    }
    return AlertRuleRows(schools, arrivals, hours, readers)
