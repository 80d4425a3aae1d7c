"""Web Push backend (`push.backend: webpush`): RFC 8030 delivery, RFC 8291 payload encryption
(aes128gcm) and RFC 8292 VAPID, through pywebpush; SMS when no device took the message.

Every live subscription of the patient gets the message. The outbox's idempotency key is the
notification's `tag` (a resend replaces what the phone shows) and, hashed to 32 base64url
characters, the `Topic` header (a push service holding an undelivered copy replaces it).
404 or 410 from the push service: the subscription is gone and is deleted. When no
subscription took the message (none, or all failed), the SMS fallback carries its text at
once, within the same deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid02
from pywebpush import WebPusher

from telemed.notify.base import OutboundMessage, Sender, SendFailed
from telemed.services.push import Subscription, b64url

log = logging.getLogger("telemed.push.webpush")

GONE = frozenset({404, 410})
CONCURRENCY = 64
# VAPID tokens are checked by the push services against the real time, so they are made
# from the wall clock (not the injected one) and reused per push service for a while.
VAPID_LIFETIME = 12 * 3600
VAPID_REUSE = 3600


class SubscriptionStore(Protocol):
    async def live_for(self, patient_ids: set[str]) -> dict[str, list[Subscription]]: ...

    async def gone(self, subscription_id: str) -> None: ...


def topic_of(key: str) -> str:
    """RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet."""
    return b64url(hashlib.sha256(key.encode()).digest())[:32]


def payload_of(message: OutboundMessage) -> bytes:
    """What the service worker shows: a title, a short line, the screen to open, the tag."""
    return json.dumps(
        {
            "title": message.title or "Телемедицина",
            "body": message.text,
            "url": message.url or "/",
            "tag": message.idempotency_key,
        },
        ensure_ascii=False,
    ).encode()


class WebPushSender:
    """Sends a message to every device of its patient (`message.to` is the patient id)."""

    def __init__(
        self,
        store: SubscriptionStore,
        vapid_private_key: str,
        subject: str,
        *,
        ttl_seconds: int,
        timeout: float,
        fallback: Sender | None,
        session_factory: Callable[[], aiohttp.ClientSession] = aiohttp.ClientSession,
    ) -> None:
        self.store = store
        self.vapid = Vapid02.from_string(vapid_private_key)
        self.subject = subject
        self.ttl = ttl_seconds
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.fallback = fallback
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._vapid_headers: dict[str, tuple[float, dict[str, str]]] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session

    def _authorization(self, endpoint: str) -> dict[str, str]:
        """The VAPID header for the push service of `endpoint` (aud = its origin)."""
        parts = urlsplit(endpoint)
        aud = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        cached = self._vapid_headers.get(aud)
        if cached is not None and now - cached[0] < VAPID_REUSE:
            return cached[1]
        claims = {"aud": aud, "sub": self.subject, "exp": int(now) + VAPID_LIFETIME}
        headers = {str(k): str(v) for k, v in self.vapid.sign(claims).items()}
        self._vapid_headers[aud] = (now, headers)
        return headers

    async def _post(self, sub: Subscription, message: OutboundMessage) -> int | None:
        """One push to one device: the HTTP status, or None when the service was unreachable."""
        headers = {**self._authorization(sub.endpoint), "Urgency": "high"}
        if message.idempotency_key:
            headers["Topic"] = topic_of(message.idempotency_key)
        pusher = WebPusher(sub.info(), aiohttp_session=self._get_session())
        try:
            response = await pusher.send_async(
                payload_of(message), headers, ttl=self.ttl, timeout=self.timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "push to %s failed: %s", urlsplit(sub.endpoint).hostname, type(exc).__name__
            )
            return None
        if not isinstance(response, aiohttp.ClientResponse):  # only in pywebpush's curl mode
            raise SendFailed("pywebpush gave no response")
        return response.status

    async def _one(self, message: OutboundMessage, subs: list[Subscription]) -> str | None:
        statuses = await asyncio.gather(*(self._post(sub, message) for sub in subs))
        delivered = False
        for sub, status in zip(subs, statuses, strict=True):
            if status is not None and 200 <= status < 300:
                delivered = True
            elif status in GONE:
                log.info("push subscription %s gone (HTTP %s): deleted", sub.id[:8], status)
                await self.store.gone(sub.id)
            elif status is not None:
                log.warning("push to %s: HTTP %s", urlsplit(sub.endpoint).hostname, status)
        if delivered:
            return None
        if message.fallback_to and self.fallback is not None:
            sms = OutboundMessage(
                to=message.fallback_to,
                text=message.text,
                kind="sms",
                idempotency_key=message.idempotency_key,
            )
            try:
                await self.fallback.send(sms)
            except Exception as exc:
                return f"sms fallback: {type(exc).__name__}"
            return None
        if not subs:
            return None  # nothing to push to, and the message has its own SMS row
        return "no device took the push"

    async def send_each(self, messages: list[OutboundMessage]) -> list[str | None]:
        """Deliver a batch: one read of the devices, bounded concurrency; an error per
        message (None: delivered by push or by the SMS fallback)."""
        devices = await self.store.live_for({m.to for m in messages})
        gate = asyncio.Semaphore(CONCURRENCY)

        async def guarded(message: OutboundMessage) -> str | None:
            async with gate:
                try:
                    return await self._one(message, devices.get(message.to, []))
                except Exception as exc:  # one bad subscription never fails the batch
                    log.warning("push failed: %s", type(exc).__name__)
                    return type(exc).__name__

        return list(await asyncio.gather(*(guarded(m) for m in messages)))

    async def send(self, message: OutboundMessage) -> None:
        """The `Sender` interface: raise `SendFailed` when neither push nor SMS took it."""
        (error,) = await self.send_each([message])
        if error is not None:
            raise SendFailed(f"push failed: {error}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
