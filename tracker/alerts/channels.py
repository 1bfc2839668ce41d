"""Delivery channels. A channel either delivers, says the guardian is not reachable on it now
('offline': final, the websocket catches up on connect), or raises (the dispatcher retries)."""

from __future__ import annotations

import json
from typing import Literal, Protocol

import asyncpg

from tracker.alerts.hub import WebSocketHub
from tracker.alerts.messages import alert_message, sms_text
from tracker.store.alerts import AlertFacts, DeliveryJob

Outcome = Literal["sent", "offline"]


class Channel(Protocol):
    name: str

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> Outcome: ...


class SmsProvider(Protocol):
    """What an SMS gateway must do; `send` raises when the gateway refuses or is unreachable."""

    name: str

    async def send(self, phone: str, body: str, *, delivery_id: int) -> None: ...


class RecordingSmsProvider:
    """The stub provider: records every message in PostgreSQL (sms_messages) instead of sending it,
    so the demo and the tests can read what a parent's phone would have shown."""

    name = "stub"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def send(self, phone: str, body: str, *, delivery_id: int) -> None:
        await self._pool.execute(
            "INSERT INTO sms_messages (delivery_id, phone, body, provider) VALUES ($1, $2, $3, $4)",
            delivery_id,
            phone,
            body,
            self.name,
        )


class WebSocketChannel:
    name = "websocket"

    def __init__(self, hub: WebSocketHub) -> None:
        self._hub = hub

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> Outcome:
        message = json.dumps(alert_message(facts, job.language), ensure_ascii=False)
        return "sent" if await self._hub.send(job.guardian_id, message) else "offline"


class SmsChannel:
    name = "sms"

    def __init__(self, provider: SmsProvider, public_url: str) -> None:
        self._provider = provider
        self._public_url = public_url

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> Outcome:
        if not job.phone:
            return "offline"
        await self._provider.send(
            job.phone, sms_text(facts, job.language, self._public_url), delivery_id=job.delivery_id
        )
        return "sent"
