"""Delivery channels. A channel either delivers, says the recipient is not reachable on it now
('offline': final — the websocket catches up on connect), or raises (the dispatcher retries)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Literal, Protocol

import asyncpg
import httpx

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


class AppriseSmsProvider:
    """Real gateways through apprise (Twilio, Vonage, AWS SNS, ... — most SMS providers): the URL
    template names the gateway and `{phone}` stands for the recipient, e.g.
    ``twilio://SID:TOKEN@+15550001111/{phone}``. Every message is also recorded like the stub's."""

    name = "apprise"

    def __init__(self, url_template: str, pool: asyncpg.Pool) -> None:
        if "{phone}" not in url_template:
            raise ValueError("the apprise URL must contain {phone} where the recipient's number goes")
        self._template = url_template
        self._record = RecordingSmsProvider(pool)
        self._record.name = self.name

    async def send(self, phone: str, body: str, *, delivery_id: int) -> None:
        import apprise

        sender = apprise.Apprise()
        if not sender.add(self._template.format(phone=phone)):
            raise ValueError("apprise does not understand the SMS gateway URL")
        if not await sender.async_notify(body=body):
            raise ConnectionError("the SMS gateway refused or could not be reached")
        await self._record.send(phone, body, delivery_id=delivery_id)


class WebSocketChannel:
    name = "websocket"

    def __init__(self, hub: WebSocketHub) -> None:
        self._hub = hub

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> Outcome:
        if job.guardian_id is None:
            return "offline"
        message = json.dumps(alert_message(facts, job.language, job.transition), ensure_ascii=False)
        return "sent" if await self._hub.send(job.guardian_id, message) else "offline"


class SmsChannel:
    name = "sms"

    def __init__(self, provider: SmsProvider, public_url: str) -> None:
        self._provider = provider
        self._public_url = public_url

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> Outcome:
        if not job.phone:
            return "offline"
        body = sms_text(facts, job.language, self._public_url, job.transition)
        await self._provider.send(job.phone, body, delivery_id=job.delivery_id)
        return "sent"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex: what X-Tracker-Signature carries (as sha256=...)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookChannel:
    """POSTs the alert message to a school's own system, signed: headers X-Tracker-Timestamp (Unix
    seconds) and X-Tracker-Signature: sha256=HMAC(secret, timestamp + "." + body). A receiver checks
    the signature and refuses old timestamps (replays). Any non-2xx answer is retried."""

    name = "webhook"

    def __init__(self, timeout_s: float = 5.0) -> None:
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> Outcome:
        if not job.webhook_url:
            return "offline"
        body = json.dumps(alert_message(facts, "en", job.transition), ensure_ascii=False).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Tracker-Timestamp": stamp,
            "X-Tracker-Delivery": str(job.delivery_id),
        }
        if job.webhook_secret:
            headers["X-Tracker-Signature"] = "sha256=" + signature(job.webhook_secret, stamp, body)
        response = await self._client.post(job.webhook_url, content=body, headers=headers)
        response.raise_for_status()
        return "sent"

    async def close(self) -> None:
        await self._client.aclose()
