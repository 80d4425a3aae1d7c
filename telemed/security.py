"""Secrets: bearer tokens (stored as SHA-256), OTP HMACs and argon2 staff passwords."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id with OWASP's minimum profile (19 MiB, 2 passes, 1 lane): each check holds 19 MiB
# and one core, so a node's password pool stays small (the library default, 64 MiB and 4
# lanes, grew the server by 130 MB under a flood of two checks at once). Hashes made with
# other parameters still verify, and are re-hashed at the next successful login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
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

    return await asyncio.to_thread(_verify, stored_hash, password)


class PasswordChecker:
    """Password checks in their own small thread pool, never the default one.

    argon2 takes its memory (64 MiB by default) and a core per check: on the default pool a
    flood of staff logins held every thread, and a patient's upload (whose writes also run
    there) waited 14 s. Here at most `workers` checks run at once, at most `in_flight` are
    running or waiting on a node, and one address has at most `per_address` of them; a
    check past a cap is refused at once (`Busy`), costing no memory and no hashing.
    """

    def __init__(self, workers: int, in_flight: int, per_address: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="password")
        self.in_flight = in_flight
        self.per_address = per_address
        self._running = 0
        self._by_address: dict[str, int] = {}

    @contextmanager
    def slot(self, address: str) -> Iterator[None]:
        """Hold one of the caps for a check from `address`, or raise `Busy` at once."""
        mine = self._by_address.get(address, 0)
        if self._running >= self.in_flight or mine >= self.per_address:
            raise Busy()
        self._running += 1
        self._by_address[address] = mine + 1
        try:
            yield
        finally:
            self._running -= 1
            left = self._by_address[address] - 1
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """`verify_password` on this checker's own threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _verify, stored_hash, password)

    async def rehash_if_needed(self, stored_hash: str, password: str) -> str | None:
        """A new hash of a verified password when its stored one has other parameters."""
        if not _hasher.check_needs_rehash(stored_hash):
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _hasher.hash, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Busy(Exception):
    """Too many password checks at once (on this node, or from one address)."""


def _verify(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
