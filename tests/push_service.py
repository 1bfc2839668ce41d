"""A local Web Push service for the tests: a real HTTP server that takes the tracker's push requests as
a browser vendor's push service would, and checks them with its own code (the `cryptography`
primitives, not the pywebpush / http_ece / py_vapid the tracker sends with, so that a mistake shared
by the sender's libraries is not also the check's):

- VAPID (RFC 8292): ``Authorization: vapid t=<JWT>,k=<key>``; the JWT is ES256 over the key in ``k``,
  which must be the key the subscription was made with (403 otherwise, as real push services answer);
  ``aud`` is this service's origin, ``exp`` is in the future and at most 24 hours away, ``sub`` a
  mailto: or https: contact.
- RFC 8030: a ``TTL`` header; ``Urgency`` is recorded.
- RFC 8291 / RFC 8188 (aes128gcm): the body is decrypted with the subscription's private key and
  authentication secret, which only the "browser" (the test) holds.

Each subscription answers from a script of statuses (default 201; 404 or 410 to say it is gone, 500
to make the tracker retry) and records what it received, decrypted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import FastAPI, Request, Response

from tracker.embedded import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def decrypt_aes128gcm(body: bytes, private_key: ec.EllipticCurvePrivateKey, auth_secret: bytes) -> bytes:
    """RFC 8291 section 3.4 and RFC 8188: one record, the sender's public key as the key id."""
    salt, rs, idlen = body[:16], struct.unpack(">I", body[16:20])[0], body[20]
    sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), body[21 : 21 + idlen])
    ciphertext = body[21 + idlen :]
    assert len(ciphertext) <= rs, "the tracker's message is one record"
    ua_public = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    as_public = sender.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    ecdh = private_key.exchange(ec.ECDH(), sender)
    ikm = _hkdf(auth_secret, ecdh, b"WebPush: info\x00" + ua_public + as_public, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
    plain = padded.rstrip(b"\x00")
    assert plain.endswith(b"\x02"), "the last record ends with the delimiter 2"
    return plain[:-1]


def verify_vapid(authorization: str, audience: str, expected_key: str) -> dict[str, Any]:
    """The JWT's claims, once its signature, audience, expiry and subject check out; raises otherwise."""
    scheme, _, params = authorization.partition(" ")
    if scheme.lower() != "vapid":
        raise PermissionError(f"not a vapid Authorization: {scheme!r}")
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    token, key = fields["t"], fields["k"]
    if key != expected_key:
        raise PermissionError("signed with another key than the subscription's applicationServerKey")
    head_b64, claims_b64, sig_b64 = token.split(".")
    header = json.loads(unb64url(head_b64))
    if header.get("alg") != "ES256":
        raise PermissionError(f"alg {header.get('alg')!r}")
    sig = unb64url(sig_b64)
    if len(sig) != 64:
        raise PermissionError("an ES256 signature is r and s, 32 bytes each")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    try:
        public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise PermissionError("bad JWT signature") from e
    claims: dict[str, Any] = json.loads(unb64url(claims_b64))
    now = time.time()
    if claims.get("aud") != audience:
        raise PermissionError(f"aud {claims.get('aud')!r}, not {audience!r}")
    if not now < claims["exp"] <= now + 24 * 3600:
        raise PermissionError(f"exp {claims['exp']} is not within the next 24 hours")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise PermissionError(f"sub {claims.get('sub')!r}")
    return claims


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    claims: dict[str, Any]
    message: dict[str, Any]  # the decrypted payload


@dataclass
class Browser:
    """One subscribed browser: its keys (the private one never leaves the test) and what it got."""

    endpoint: str
    application_server_key: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    auth_secret: bytes = field(repr=False)
    answers: list[int] = field(default_factory=list)  # statuses to answer, in turn; then 201
    received: list[Received] = field(default_factory=list)
    requests: int = 0
    refused: list[str] = field(default_factory=list)  # why requests were refused (VAPID, encryption)

    def subscription(self) -> dict[str, Any]:
        """What the browser's PushSubscription.toJSON() gives the page to post."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth_secret)},
        }


def subscription_at(endpoint: str) -> dict[str, Any]:
    """A browser's subscription (fresh keys) to a push service no test reaches: for requests whose
    subscription the API keeps but never pushes to."""
    return Browser(endpoint, "", ec.generate_private_key(ec.SECP256R1()), os.urandom(16)).subscription()


class PushService:
    def __init__(self, port: int) -> None:
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.browsers: dict[str, Browser] = {}

    def browser(self, application_server_key: str, answers: list[int] | None = None) -> Browser:
        """A new browser subscribed with the tracker's VAPID public key."""
        name = b64url(os.urandom(12))
        b = Browser(
            endpoint=f"{self.origin}/push/{name}",
            application_server_key=application_server_key,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=os.urandom(16),
            answers=list(answers or []),
        )
        self.browsers[name] = b
        return b

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/push/{name}")
        async def push(name: str, request: Request) -> Response:
            b = self.browsers.get(name)
            if b is None:
                return Response(status_code=404)
            b.requests += 1
            headers = {k.lower(): v for k, v in request.headers.items()}
            status = b.answers.pop(0) if b.answers else 201
            try:
                claims = verify_vapid(headers.get("authorization", ""), self.origin, b.application_server_key)
                if "ttl" not in headers or headers.get("content-encoding") != "aes128gcm":
                    raise PermissionError("no TTL, or not aes128gcm")
                plain = decrypt_aes128gcm(await request.body(), b.private_key, b.auth_secret)
            except (PermissionError, KeyError, ValueError, AssertionError) as e:
                b.refused.append(f"{type(e).__name__}: {e}")
                return Response(status_code=403 if isinstance(e, PermissionError) else 400)
            if status < 300:
                b.received.append(Received(time.time(), headers, claims, json.loads(plain)))
            return Response(status_code=status, headers={"Location": f"{self.origin}/message/{b.requests}"})

        return app


@asynccontextmanager
async def running_push_service() -> AsyncIterator[PushService]:
    service = PushService(free_port())
    server = uvicorn.Server(
        uvicorn.Config(service.app(), host="127.0.0.1", port=service.port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.02)
    try:
        yield service
    finally:
        server.should_exit = True
        await task
