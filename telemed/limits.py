"""Counters of login limits that hold under concurrency, on every node.

A limit is a fixed window per key: the first hit opens the window, each hit adds one
and answers the new count, so of N racing callers exactly `limit` see a count within the
limit. The count is changed atomically where it is kept:

- in the database (`limit_counters`): one `INSERT ... ON CONFLICT DO UPDATE ...
  RETURNING`, a single statement that PostgreSQL runs under the row's lock and SQLite
  under its one writer; a window that has ended restarts in the same statement;
- in Redis when `redis.url` is set: `INCR` and `PEXPIRE ... NX` in one MULTI.

Keys are hashed before they are stored, so no phone number or address sits in the table
or in Redis. A check-then-act (count the rows, then insert one) let 15 of 20 concurrent
code requests through on PostgreSQL; these counters are what replaced it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from redis.exceptions import RedisError
from sqlalchemy import case, delete, literal, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from telemed.db import Database
from telemed.models import LimitCounter, UTCDateTime

log = logging.getLogger("telemed.limits")

PURGE_EVERY = 1000  # hits between two deletions of long-ended windows
PURGE_AFTER = timedelta(days=1)


def counter_key(kind: str, *parts: str) -> str:
    """The stored key: the kind in clear (for an operator), the rest as a digest."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]
    return f"{kind[:32]}:{digest}"


@dataclass(frozen=True)
class Hit:
    """A counter after a hit: its count in the current window and when the window ends."""

    count: int
    resets_at: datetime

    def over(self, limit: int) -> bool:
        return self.count > limit

    def retry_after(self, now: datetime) -> int:
        """Whole seconds until the window ends (at least 1), for `Retry-After`."""
        return max(1, int(-(-(self.resets_at - now).total_seconds() // 1)))


class Counters(Protocol):
    """Where limit counters live: the database, or Redis when configured."""

    async def hit(self, key: str, window: timedelta, now: datetime) -> Hit: ...

    async def refund(self, key: str) -> None: ...

    async def clear(self, key: str) -> None: ...


class DbCounters:
    """Counters in the `limit_counters` table, changed by one atomic upsert each."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._hits = 0

    async def hit(self, key: str, window: timedelta, now: datetime) -> Hit:
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        ends = now + window
        ended = LimitCounter.resets_at <= now
        statement = (
            insert(LimitCounter)
            .values(key=key, count=1, resets_at=ends)
            .on_conflict_do_update(
                index_elements=[LimitCounter.key],
                set_={
                    "count": case((ended, 1), else_=LimitCounter.count + 1),
                    "resets_at": case(
                        (ended, literal(ends, UTCDateTime())), else_=LimitCounter.resets_at
                    ),
                },
            )
            .returning(LimitCounter.count, LimitCounter.resets_at)
        )
        async with self.db.write() as session:
            count, resets_at = (await session.execute(statement)).one()
            self._hits += 1
            if self._hits % PURGE_EVERY == 0:
                await session.execute(
                    delete(LimitCounter).where(LimitCounter.resets_at < now - PURGE_AFTER)
                )
        return Hit(int(count), _aware(resets_at))

    async def refund(self, key: str) -> None:
        """Take one hit back (a success that must not count as a failure)."""
        async with self.db.write() as session:
            await session.execute(
                update(LimitCounter)
                .where(LimitCounter.key == key, LimitCounter.count > 0)
                .values(count=LimitCounter.count - 1)
            )

    async def clear(self, key: str) -> None:
        async with self.db.write() as session:
            await session.execute(delete(LimitCounter).where(LimitCounter.key == key))


class RedisCounters:
    """Counters in Redis: `INCR` and `PEXPIRE NX` in one transaction, shared by all nodes.

    Redis ends the window on its own clock; `resets_at` is told from the key's TTL. While
    Redis cannot be reached the database counters stand in, so logins go on (with limits)
    through an outage instead of failing."""

    def __init__(self, redis: Any, prefix: str, fallback: Counters) -> None:
        self.redis = redis
        self.prefix = prefix
        self.fallback = fallback

    def _key(self, key: str) -> str:
        return f"{self.prefix}:limit:{key}"

    async def hit(self, key: str, window: timedelta, now: datetime) -> Hit:
        name = self._key(key)
        millis = max(1, int(window.total_seconds() * 1000))
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.pexpire(name, millis, nx=True)
                pipe.pttl(name)
                count, _, ttl = await pipe.execute()
        except RedisError:
            log.warning("redis unreachable: login limits counted in the database")
            return await self.fallback.hit(key, window, now)
        left = timedelta(milliseconds=ttl if ttl and ttl > 0 else millis)
        return Hit(int(count), now + left)

    async def refund(self, key: str) -> None:
        name = self._key(key)
        try:
            # Only a key that still exists is decremented (a lapsed window stays gone).
            await self.redis.eval(
                "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1])"
                " end return 0",
                1,
                name,
            )
        except RedisError:
            await self.fallback.refund(key)

    async def clear(self, key: str) -> None:
        try:
            await self.redis.delete(self._key(key))
        except RedisError:
            await self.fallback.clear(key)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
