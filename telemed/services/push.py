"""Web Push (RFC 8030): the server's VAPID key (RFC 8292) and patients' subscriptions.

A subscription is the browser's PushSubscription JSON as it is. Its endpoint must be on one
of `push.endpoint_hosts` (https, or the port named in the entry), so whatever a client
registers, the server only ever POSTs to a known push service.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select

from telemed.clock import Clock
from telemed.config import PushSettings
from telemed.db import Database
from telemed.errors import ValidationFailed
from telemed.models import PushSubscription
from telemed.services.auth import ensure_server_key

VAPID_KEY_NAME = "vapid_private_key"
MAX_DEVICES = 10  # per patient; the oldest goes when an eleventh registers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_vapid_private_key() -> str:
    """A P-256 private key as the 32 raw bytes, base64url (what py-vapid reads)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def vapid_public_key(private_key: str) -> str:
    """The application server key the browsers subscribe with: the uncompressed point."""
    try:
        raw = unb64url(private_key)
    except (binascii.Error, ValueError):
        raise ValueError("push.vapid_private_key is not base64url") from None
    if len(raw) != 32:
        raise ValueError("push.vapid_private_key must be 32 raw bytes, base64url")
    key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    point = key.public_key().public_numbers()
    return b64url(b"\x04" + point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big"))


async def ensure_vapid_key(db: Database, settings: PushSettings) -> str:
    """The VAPID private key: configured, else generated once and kept like the OTP key."""
    return await ensure_server_key(
        db, VAPID_KEY_NAME, settings.vapid_private_key, new_vapid_private_key
    )


def endpoint_allowed(endpoint: str, hosts: tuple[str, ...]) -> bool:
    """Is this endpoint on a known push service? https on the default port, or an entry
    naming `host:port` (then http is allowed too: the tests' loopback service)."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        return False
    for entry in hosts:
        name, _, entry_port = entry.lower().partition(":")
        if entry_port:
            if parts.scheme in ("http", "https") and host == name and str(port) == entry_port:
                return True
            continue
        if parts.scheme != "https" or port not in (None, 443):
            continue
        if host == name or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


@dataclass(frozen=True)
class Subscription:
    """What sending needs: the endpoint and the browser's keys (base64url)."""

    id: str
    patient_id: str
    endpoint: str
    p256dh: str
    auth: str

    def info(self) -> dict[str, object]:
        """The subscription as pywebpush takes it."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _check_keys(p256dh: str, auth: str) -> None:
    try:
        point, secret = unb64url(p256dh), unb64url(auth)
    except (binascii.Error, ValueError):
        raise ValidationFailed("keys must be base64url.") from None
    if len(point) != 65 or point[0] != 4:
        raise ValidationFailed("keys.p256dh must be an uncompressed P-256 point.")
    if len(secret) != 16:
        raise ValidationFailed("keys.auth must be 16 bytes.")


class PushSubscriptions:
    """Patients' devices: register, remove, list for sending, forget a gone one."""

    def __init__(self, db: Database, clock: Clock, settings: PushSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings

    async def register(
        self,
        patient_id: str,
        endpoint: str,
        p256dh: str,
        auth: str,
        expires_ms: float | None,
        token_id: str | None = None,
    ) -> None:
        """Keep a device's subscription; the same endpoint again replaces its keys (and moves
        to this patient and session: one browser profile, one endpoint). `token_id` is the
        session registering it: its logout drops the subscription (AuthService.logout)."""
        if not endpoint_allowed(endpoint, self.settings.endpoint_hosts):
            raise ValidationFailed("The endpoint is not on a known push service.", field="endpoint")
        _check_keys(p256dh, auth)
        expires = datetime.fromtimestamp(expires_ms / 1000, UTC) if expires_ms else None
        now = self.clock.now()
        async with self.db.write() as session:
            await session.execute(
                delete(PushSubscription).where(PushSubscription.endpoint == endpoint)
            )
            session.add(
                PushSubscription(
                    patient_id=patient_id,
                    endpoint=endpoint,
                    p256dh=p256dh,
                    auth=auth,
                    expires_at=expires,
                    created_at=now,
                    token_id=token_id,
                )
            )
            await session.flush()
            ids = (
                await session.scalars(
                    select(PushSubscription.id)
                    .where(PushSubscription.patient_id == patient_id)
                    .order_by(PushSubscription.created_at.desc(), PushSubscription.id)
                    .offset(MAX_DEVICES)
                )
            ).all()
            if ids:
                await session.execute(delete(PushSubscription).where(PushSubscription.id.in_(ids)))

    async def remove(self, patient_id: str, endpoint: str) -> bool:
        """Forget one of my devices (unsubscribed or logged out)."""
        async with self.db.write() as session:
            done = await session.execute(
                delete(PushSubscription).where(
                    PushSubscription.endpoint == endpoint,
                    PushSubscription.patient_id == patient_id,
                )
            )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    async def live_for(self, patient_ids: set[str]) -> dict[str, list[Subscription]]:
        """The unexpired subscriptions of these patients, for one batch of sends."""
        if not patient_ids:
            return {}
        now = self.clock.now()
        async with self.db.read() as session:
            rows = (
                await session.scalars(
                    select(PushSubscription).where(PushSubscription.patient_id.in_(patient_ids))
                )
            ).all()
        found: dict[str, list[Subscription]] = {}
        for row in rows:
            if row.expires_at is not None and row.expires_at <= now:
                continue
            found.setdefault(row.patient_id, []).append(
                Subscription(row.id, row.patient_id, row.endpoint, row.p256dh, row.auth)
            )
        return found

    async def gone(self, subscription_id: str) -> None:
        """The push service said 404/410: the subscription is dead; never use it again."""
        async with self.db.write() as session:
            await session.execute(
                delete(PushSubscription).where(PushSubscription.id == subscription_id)
            )
