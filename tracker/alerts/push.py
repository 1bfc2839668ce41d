"""Web Push: an alert on the parent's lock screen with the page closed (issue 17).

The protocol is pywebpush's (RFC 8030 push, RFC 8291 aes128gcm encryption, RFC 8292 VAPID, over
aiohttp): nothing of it is written here. What is here: the service's VAPID key pair (made once; kept
in PostgreSQL, or in the file ``TRACKER_VAPID_KEY_FILE`` names; never logged), which endpoints a
subscription may name, the message a notification is made of, and the channel.

The channel has the other channels' semantics (tracker/alerts/channels.py): "sent" when a push service
took the message for at least one of the guardian's browsers, "offline" when the guardian has no
browser that can be reached (none subscribed, or every push service refused it for good), and an
exception (the dispatcher retries it with back-off) when a push service could not take it now (a
network error, 408, 429, 5xx). A 404 or 410 says the subscription is gone: it is deleted. A retry goes
only to the browsers that have not taken the message yet (remembered in the process; after a restart
all of them get it again, and the notification's tag, one per alert, makes the repeat replace the first).

The acknowledge action needs the guardian's token in the service worker, which cannot read the page's
localStorage. The page keeps a copy in IndexedDB (tracker/api/static/token-store.js), where the worker
reads it, rather than the message carrying an acknowledge capability: a bearer credential in every push
message would be stored by every push service for as long as the message waits there (hours, for a
phone that is off), and a capability would need an acknowledge endpoint that takes no token. IndexedDB
is the same origin's storage as localStorage, so the token is nowhere it was not already; signing out
clears both, and unsubscribes the browser.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from py_vapid.utils import b64urlencode

if TYPE_CHECKING:
    import aiohttp

from tracker.alerts.channels import Outcome
from tracker.alerts.messages import acknowledge_word, text, title
from tracker.store.alerts import AlertFacts, DeliveryJob
from tracker.store.push import (
    PushSubscription,
    forget_subscriptions,
    note_attempts,
    store_vapid_key,
    stored_vapid_key,
    subscriptions_of,
)

log = logging.getLogger(__name__)

# How long a push service keeps a message for a browser that is not reachable (RFC 8030 TTL), and how
# urgently it should wake a phone for it (RFC 8030 Urgency), by the alert's severity: an SOS is worth
# telling hours later, while a parent has not acknowledged it; an arrival ten minutes late is noise.
TTL_S = {"critical": 12 * 3600, "warning": 3600, "info": 600}
URGENCY = {"critical": "high", "warning": "high", "info": "normal"}
REMEMBERED = 10_000  # deliveries whose accepting browsers are remembered for their retries


# --- the VAPID key pair ----------------------------------------------------------------------------
@dataclass(frozen=True)
class VapidKeys:
    """The service's key pair. ``public_key``: the uncompressed P-256 point, base64url, as a browser
    takes it (``applicationServerKey``). The private key is never shown (not even by repr)."""

    public_key: str
    signer: Vapid02 = field(repr=False)

    @classmethod
    def from_pem(cls, pem: str) -> VapidKeys:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("a VAPID key is a P-256 (prime256v1) EC private key")
        return cls(_public_b64(key), Vapid02(key))


def _new_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    raw = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return str(b64urlencode(raw))


async def load_vapid_keys(pool: asyncpg.Pool, key_file: Path | None) -> VapidKeys:
    """The service's VAPID keys: from ``key_file`` (made there, readable by its owner only, when it
    does not exist), or from PostgreSQL (made by the first process that asks: every process of a
    deployment gets the same pair)."""
    if key_file is not None:
        return await asyncio.to_thread(_file_keys, key_file)
    kept = await stored_vapid_key(pool)
    if kept is None:
        pem = _new_pem()
        kept = await store_vapid_key(pool, pem, _public_b64(_private(pem)))
        log.info("made the service's VAPID key pair (kept in PostgreSQL); public key %s", kept[1])
    return VapidKeys.from_pem(kept[0])


def _private(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _file_keys(path: Path) -> VapidKeys:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            log.warning("the VAPID key file %s can be read by others than its owner (chmod 600 it)", path)
        return VapidKeys.from_pem(path.read_text())
    with os.fdopen(fd, "w") as f:
        f.write(_new_pem())
    keys = VapidKeys.from_pem(path.read_text())
    log.info("made the service's VAPID key pair in %s; public key %s", path, keys.public_key)
    return keys


# --- which endpoints ------------------------------------------------------------------------------
_HOST = re.compile(r"^[a-z0-9.-]+$")


def endpoint_allowed(endpoint: str, services: str) -> str | None:
    """Why a subscription's endpoint is refused, or None. The tracker POSTs to it, so it must be a push
    service's: its origin matches one of ``services`` (TRACKER_PUSH_SERVICES; a * stands for host labels)."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return "the endpoint is not a URL"
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        return "the endpoint must be an https URL of a push service"
    if not _HOST.match(host):
        return "the endpoint's host is not a host name"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if not any(fnmatch.fnmatchcase(origin, pattern) for pattern in services.split()):
        return f"{origin} is not a push service this tracker sends to (TRACKER_PUSH_SERVICES)"
    return None


# --- the message ----------------------------------------------------------------------------------
def push_message(facts: AlertFacts, language: str, transition: str) -> dict[str, Any]:
    """What the service worker makes a notification of (schemas/push-message.v1.json): the words in
    the guardian's language, and how to show it. An alert that waits for an acknowledgement gets an
    "Acknowledge" action; a critical one asks to stay on screen until the parent acts on it; a notice
    (arrived, low battery) is shown silently. One notification per alert (its tag): an escalation or a
    resolution replaces the one shown before, and an escalation sounds again."""
    needs_ack = transition != "resolved" and facts.state == "open" and facts.severity != "info"
    actions = [{"action": "ack", "title": acknowledge_word(language)}] if needs_ack else []
    return {
        "type": "alert",
        "version": 1,
        "alert_id": facts.alert_id,
        "transition": transition,
        "state": facts.state,
        "kind": facts.kind,
        "severity": facts.severity,
        "child": {"id": facts.child_id, "name": facts.child_name},
        "notification": {
            "title": title(facts, language, transition),
            "body": text(facts, language, transition),
            "lang": language,
            "tag": f"alert-{facts.alert_id}",
            "requireInteraction": facts.severity == "critical" and needs_ack,
            "renotify": transition == "escalated",
            "silent": facts.severity == "info",
            "timestamp": int((facts.fix_ts or facts.opened_at).timestamp() * 1000),
            "actions": actions,
            "url": f"/#alert={facts.alert_id}",
        },
    }


# --- the channel ----------------------------------------------------------------------------------
class PushRefused(Exception):
    """A push service answered with an error that sending again would not change (400, 401, 403, 413)."""


class PushChannel:
    name = "push"

    def __init__(self, pool: asyncpg.Pool, keys: VapidKeys, *, subject: str, timeout_s: float = 10.0) -> None:
        self._pool = pool
        self._keys = keys
        self._subject = subject
        self._timeout_s = timeout_s
        # pywebpush and aiohttp are imported at the first push (about 25 MiB of a worker's memory, and
        # a quarter of a second of its start, where no guardian has subscribed to push)
        self._session: aiohttp.ClientSession | None = None
        self._took: dict[int, set[int]] = {}  # delivery id -> subscriptions whose push service took it

    async def deliver(self, job: DeliveryJob, facts: AlertFacts) -> Outcome:
        if job.guardian_id is None:
            return "offline"
        subscriptions = await subscriptions_of(self._pool, job.guardian_id)
        stale = [s.id for s in subscriptions if s.vapid_public_key != self._keys.public_key]
        if stale:  # made with a key this service no longer has: no push service would take them
            await forget_subscriptions(self._pool, stale)
        took = self._took.get(job.delivery_id, set())
        todo = [s for s in subscriptions if s.id not in stale and s.id not in took]
        if not todo:
            self._took.pop(job.delivery_id, None)
            return "sent" if took else "offline"
        body = json.dumps(push_message(facts, job.language, job.transition), ensure_ascii=False)
        if "pywebpush" not in sys.modules:  # the first push: imported off the event loop (~0.25 s)
            await asyncio.to_thread(importlib.import_module, "pywebpush")
        results = await asyncio.gather(*(self._send(s, body, facts.severity) for s in todo))

        gone = [s.id for s, r in zip(todo, results, strict=True) if r == "gone"]
        accepted = [s.id for s, r in zip(todo, results, strict=True) if r == "accepted"]
        failed = [(s.id, r) for s, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
        await forget_subscriptions(self._pool, gone)
        await note_attempts(self._pool, accepted, [(i, _error(e)) for i, e in failed], datetime.now(UTC))
        took = took | set(accepted)
        retry = [e for _, e in failed if not isinstance(e, PushRefused)]
        if retry:
            self._remember(job.delivery_id, took)
            why = _error(retry[0])
            raise ConnectionError(f"{len(retry)} of {len(todo)} push services could not take it now: {why}")
        self._took.pop(job.delivery_id, None)
        for _, e in failed:
            log.warning("push to guardian %s refused for good: %s", job.guardian_id, _error(e))
        return "sent" if took else "offline"

    async def _send(self, s: PushSubscription, body: str, severity: str) -> str | BaseException:
        """'accepted', 'gone', or the exception that says why the push service did not take it."""
        import aiohttp
        from pywebpush import WebPushException, webpush_async

        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            await webpush_async(
                {"endpoint": s.endpoint, "keys": {"p256dh": s.p256dh, "auth": s.auth}},
                body,
                vapid_private_key=self._keys.signer,
                vapid_claims={"sub": self._subject},  # a new dict each time: pywebpush adds aud and exp to it
                ttl=TTL_S.get(severity, 3600),
                headers={"Urgency": URGENCY.get(severity, "normal")},
                timeout=timeout,
                aiohttp_session=self._session,
            )
        except WebPushException as e:
            status = e.status_code
            if status in (404, 410):
                return "gone"
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                return PushRefused(f"the push service answered {status}")
            return e
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return e
        return "accepted"

    def _remember(self, delivery_id: int, took: set[int]) -> None:
        self._took[delivery_id] = took
        while len(self._took) > REMEMBERED:
            self._took.pop(next(iter(self._took)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error(e: BaseException) -> str:
    from pywebpush import WebPushException  # (imported by _send already)

    if isinstance(e, WebPushException) and e.status_code is not None:
        return f"the push service answered {e.status_code}"
    return f"{type(e).__name__}: {e}".split("\n")[0]
