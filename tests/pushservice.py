"""A Web Push service on 127.0.0.1 for tests: it stands where FCM or Mozilla's autopush would.

It accepts POSTs on subscription endpoints as RFC 8030 says (TTL required, 201 with a
Location), checks the VAPID token (RFC 8292: `Authorization: vapid t=JWT, k=KEY`, ES256,
`aud` = the endpoint's origin, `exp` in the next 24 hours) against the application server's
public key, and decrypts the aes128gcm payload (RFC 8291) with the device's private key and
auth secret, as a browser would. Each test device is a fresh P-256 key pair and a 16-byte
auth secret made with `cryptography`; a device can be told to answer 410 (unsubscribed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_vapid(
    header: str, server_key: str, origin: str, verified: set[str] | None = None
) -> str | None:
    """None if the `Authorization: vapid t=JWT, k=KEY` header is good (RFC 8292: ES256 by
    `server_key`, `aud` = the push service's `origin`, `exp` within 24 hours, a contact in
    `sub`), else why not. `verified` remembers tokens already checked."""
    match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", header.strip())
    if not match:
        return "no vapid authorization"
    token, key = match.groups()
    if key != server_key:
        return "signed with another key"
    if verified is not None and token in verified:
        return None
    try:
        head_b64, claims_b64, sig_b64 = token.split(".")
        head = json.loads(unb64url(head_b64))
        claims = json.loads(unb64url(claims_b64))
        sig = unb64url(sig_b64)
    except ValueError:
        return "malformed jwt"
    if head.get("alg") != "ES256" or len(sig) != 64:
        return "not ES256"
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "bad signature"
    if claims.get("aud") != origin:
        return f"aud {claims.get('aud')!r} is not {origin}"
    exp = int(claims.get("exp", 0))
    if not time.time() < exp <= time.time() + 24 * 3600:
        return "exp out of range"
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        return "no sub contact"
    if verified is not None:
        verified.add(token)
    return None


@dataclass
class Received:
    """One push as the device decrypted it."""

    device: str
    payload: dict[str, Any]
    topic: str | None
    ttl: int
    urgency: str | None
    at: float = field(default_factory=time.time)  # wall clock, for the benchmark


@dataclass
class Device:
    """A browser's push subscription: its keys stay here, the server gets the JSON."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))
    answer: int = 201  # what the push service answers for this device (410: unsubscribed)

    def subscription(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives in a browser."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }


class PushService:
    """The aiohttp app of the push service, with what it received and what it refused."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.received: list[Received] = []
        self.refused: list[str] = []
        self.server_key: str | None = None  # the VAPID public key the server must sign with
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._verified: set[str] = set()
        self._arrived = asyncio.Event()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> PushService:
        app = web.Application()
        app.router.add_post("/push/{token}", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def device(self, answer: int = 201) -> Device:
        token = b64url(os.urandom(12))
        device = Device(token, f"{self.origin}/push/{token}", answer=answer)
        self.devices[token] = device
        return device

    def to(self, device: Device) -> list[Received]:
        return [r for r in self.received if r.device == device.token]

    async def wait(self, count: int, within: float = 5) -> list[Received]:
        """Until `count` pushes arrived in all (fails after `within` seconds)."""
        deadline = time.monotonic() + within
        while len(self.received) < count:
            self._arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(self.received)} pushes arrived, expected {count}")
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                continue
        return self.received

    # --- RFC 8030 / 8291 / 8292 ---------------------------------------------------------------

    def _refuse(self, why: str, status: int = 400) -> web.Response:
        self.refused.append(why)
        return web.Response(status=status, text=why)

    def _check_vapid(self, header: str) -> str | None:
        """None if the VAPID token is good, else why not."""
        if self.server_key is None:
            return "no server key to check against"
        return check_vapid(header, self.server_key, self.origin, self._verified)

    async def _push(self, request: web.Request) -> web.Response:
        device = self.devices.get(request.match_info["token"])
        if device is None:
            return self._refuse("unknown subscription", 404)
        why = self._check_vapid(request.headers.get("Authorization", ""))
        if why is not None:
            return self._refuse(why, 401)
        if "TTL" not in request.headers:
            return self._refuse("TTL is required (RFC 8030 5.2)")
        topic = request.headers.get("Topic")
        if topic is not None and not TOPIC.fullmatch(topic):
            return self._refuse("Topic must be at most 32 base64url characters")
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse("payload must be aes128gcm")
        body = await request.read()
        if device.answer >= 300:
            return web.Response(status=device.answer)
        try:
            plain = http_ece.decrypt(
                body, private_key=device.private_key, auth_secret=device.auth, version="aes128gcm"
            )
        except Exception as exc:
            return self._refuse(f"cannot decrypt: {type(exc).__name__}")
        self.received.append(
            Received(
                device=device.token,
                payload=json.loads(plain),
                topic=topic,
                ttl=int(request.headers["TTL"]),
                urgency=request.headers.get("Urgency"),
            )
        )
        self._arrived.set()
        location = f"{self.origin}/m/{len(self.received)}"
        return web.Response(status=201, headers={"Location": location})
