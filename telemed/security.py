"""Secrets: bearer tokens (stored as SHA-256), OTP HMACs and argon2 staff passwords."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when a login is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def new_token() -> str:
    """A bearer token: 256 random bits, URL safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What we store of a token: its SHA-256 (a token has enough entropy for no salt)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_otp(length: int) -> str:
    """A one-time code of `length` decimal digits from the OS random source."""
    return "".join(str(secrets.randbelow(10)) for _ in range(length))


def otp_digest(key: str, phone: str, otp_id: str, code: str) -> str:
    """HMAC of a code, bound to its phone and row, keyed by a server secret:
    a database dump alone does not reveal codes."""
    message = f"{phone}:{otp_id}:{code}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    """argon2id hash, computed off the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check a password; with no stored hash, burn the same time and fail."""

    def _verify() -> bool:
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(_verify)
