"""Delivery channels. A channel either delivers, says the recipient is not reachable on it now
('offline': final — the websocket catches up on connect), or raises (the dispatcher retries).

A delivery may be handed to its channel twice: a tracker killed after the channel's call and before
the dispatcher marked the delivery is given it again when it restarts (a delivery is never missed;
tracker.store.alerts.release_stuck_deliveries). What a second time does, per channel:

- SMS, the stub: nothing. Its record is its message, and there is one record per delivery by a
  constraint (migration 0006): exactly once.
- SMS through a real gateway (apprise): a gateway cannot be told "this is the message you had
  already", so the provider keeps its own record, written right after the gateway accepted the
  message and read before every call: a duplicate arises only from a kill (or a lost answer, which
  the dispatcher retries) between the gateway's acceptance and that record. At least once.
- webhook: sent again, with the same delivery id in ``Idempotency-Key`` and ``X-Tracker-Delivery``:
  a school's receiver that keeps the keys it has seen drops the repeat.
- websocket: sent again to the open pages; a message carries its alert's id, and the parent page
  keeps one card per alert and announces an alert once (tracker/api/static/parent.js), so a repeat
  changes nothing a parent sees or hears (an 'escalated' one announces again, as escalations do).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Literal, Protocol

import asyncpg
import httpx
import msgspec

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
    so the demo and the tests can read what a parent's phone would have shown. The record is the
    message: a delivery given again after a crash finds its record and adds none (exactly once).

    Records asked for together (a dispatcher round's SMS go out concurrently) are written in one
    statement, each caller returning once its own record is committed: a statement per message was
    a transaction and a WAL flush each, thousands of them beside a burst's alert commits."""

    def __init__(self, pool: asyncpg.Pool, name: str = "stub") -> None:
        self._pool = pool
        self.name = name
        self._asked: list[tuple[int, str, str, asyncio.Future[bool]]] = []
        self._writer: asyncio.Future[None] | None = None

    async def send(self, phone: str, body: str, *, delivery_id: int) -> None:
        await self.record(phone, body, delivery_id=delivery_id)

    async def record(self, phone: str, body: str, *, delivery_id: int) -> bool:
        """Record a message of a delivery; False: the delivery had its record already (one per
        delivery, by the constraint of migration 0006)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asked.append((delivery_id, phone, body, done))
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())
        return await done

    async def _write(self) -> None:
        """Write what has been asked for, a statement at a time, until nothing waits."""
        try:
            while self._asked:
                await asyncio.sleep(0)  # the round's other deliveries ask for theirs meanwhile
                asked, self._asked = self._asked, []
                try:
                    rows = await self._pool.fetch(
                        "INSERT INTO sms_messages (delivery_id, phone, body, provider)"
                        " SELECT r.delivery_id, r.phone, r.body, $4"
                        " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS r(delivery_id, phone, body)"
                        " ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id",
                        [a[0] for a in asked],
                        [a[1] for a in asked],
                        [a[2] for a in asked],
                        self.name,
                    )
                except Exception as e:  # each caller's delivery fails, and is retried, as before
                    for *_, done in asked:
                        if not done.done():
                            done.set_exception(e)
                    continue
                new = {r["delivery_id"] for r in rows}
                for delivery_id, _, _, done in asked:
                    if not done.done():
                        done.set_result(delivery_id in new)
        finally:
            self._writer = None

    async def recorded(self, delivery_id: int) -> bool:
        """Has the delivery's message been recorded (sent, for a real gateway)?"""
        return bool(
            await self._pool.fetchval("SELECT 1 FROM sms_messages WHERE delivery_id = $1", delivery_id)
        )


class AppriseSmsProvider:
    """Real gateways through apprise (Twilio, Vonage, AWS SNS, ... — most SMS providers): the URL
    template names the gateway and `{phone}` stands for the recipient, e.g.
    ``twilio://SID:TOKEN@+15550001111/{phone}``. Every message is also recorded like the stub's.

    At least once, not exactly once: apprise gives a gateway no idempotency key, and most SMS APIs
    have none. So the record does that work as far as it can: it is written right after the gateway
    accepted a message (not with the dispatcher's round, later) and read before every call, and a
    delivery that has it is not sent again. A parent gets a message twice only when the tracker is
    killed between the gateway's acceptance and the record (a statement's time), or when the gateway's
    answer is lost after it took the message (a timeout: the dispatcher retries)."""

    name = "apprise"

    def __init__(self, url_template: str, pool: asyncpg.Pool) -> None:
        if "{phone}" not in url_template:
            raise ValueError("the apprise URL must contain {phone} where the recipient's number goes")
        self._template = url_template
        self._record = RecordingSmsProvider(pool, name=self.name)

    async def send(self, phone: str, body: str, *, delivery_id: int) -> None:
        import apprise

        if await self._record.recorded(delivery_id):
            return  # the gateway took it for a process that died before marking the delivery sent
        sender = apprise.Apprise()
        if not sender.add(self._template.format(phone=phone)):
            raise ValueError("apprise does not understand the SMS gateway URL")
        if not await sender.async_notify(body=body):
            raise ConnectionError("the SMS gateway refused or could not be reached")
        # from here until the record is committed, a kill means a second message after the restart
        await self._record.record(phone, body, delivery_id=delivery_id)


_JSON = msgspec.json.Encoder()


def socket_text(facts: AlertFacts, language: str, transition: str) -> str:
    """An alert's message as a parent's socket gets it."""
    # msgspec: a fifth of json.dumps's time, and a burst encodes thousands of these at once
    return _JSON.encode(alert_message(facts, language, transition)).decode()


class Teller(Protocol):
    """Tells the other tracker processes that a websocket delivery is going out, for their sockets of
    the guardian (tracker.alerts.relay.SocketRelay); raises when it cannot."""

    async def tell(self, delivery_id: int, guardian_id: int) -> None: ...


class WebSocketChannel:
    """The parent page's live channel: 'sent' when at least one open page on this process took the
    message. A message carries its alert's id; the page keeps one card per alert and announces it
    once. ``others``: the guardian's pages on other tracker processes are told too, before the
    delivery is answered (tracker.alerts.relay); what they took is not part of the outcome."""

    name = "websocket"

    def __init__(self, hub: WebSocketHub, others: Teller | None = None) -> None:
        self._hub = hub
        self._others = others

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> Outcome:
        if job.guardian_id is None:
            return "offline"
        message = socket_text(facts, job.language, job.transition)
        if self._others is None:
            taken = await self._hub.send(job.guardian_id, message)
        else:
            told = asyncio.ensure_future(self._others.tell(job.delivery_id, job.guardian_id))
            try:
                taken = await self._hub.send(job.guardian_id, message)
            finally:
                await told  # a failure to tell is the delivery's: retried (a repeat here is harmless)
        return "sent" if taken else "offline"


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
    the signature and refuses old timestamps (replays). Any non-2xx answer is retried.

    A delivery may be POSTed more than once (a retry after a lost answer, a restart after a kill
    before its outcome was recorded): every attempt carries the delivery's id, the same each time,
    in ``Idempotency-Key`` and in ``X-Tracker-Delivery``. A receiver that keeps the keys it has seen
    (for as long as the tracker retries: minutes) acts on a delivery once."""

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
            "Idempotency-Key": str(job.delivery_id),
        }
        if job.webhook_secret:
            headers["X-Tracker-Signature"] = "sha256=" + signature(job.webhook_secret, stamp, body)
        response = await self._client.post(job.webhook_url, content=body, headers=headers)
        response.raise_for_status()
        return "sent"

    async def close(self) -> None:
        await self._client.aclose()
