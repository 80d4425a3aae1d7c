"""Which node runs the scheduler.

APScheduler 3.x cannot share a job store between processes, so with Redis
configured exactly one node holds a lease (a Redis key with a TTL, renewed
while alive) and runs it; when that node dies the key expires and another
node takes it. Without Redis the single node always holds it.
"""

from __future__ import annotations

import uuid
from typing import Protocol

import redis.asyncio as aioredis

# Renew or release only if we still own the key (compare-and-set in one step).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    holder: str

    async def acquire(self) -> bool:
        """Take the lease if free, or keep it if held; True while we hold it."""

    async def release(self) -> None: ...


class LocalLease:
    """One node, no Redis: always the holder."""

    def __init__(self) -> None:
        self.holder = f"local-{uuid.uuid4().hex[:8]}"

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class RedisLease:
    """A lease in Redis: `SET key holder NX PX ttl`, renewed by its holder."""

    def __init__(self, client: aioredis.Redis, key: str, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.holder = f"node-{uuid.uuid4().hex[:12]}"

    async def acquire(self) -> bool:
        if await self.client.set(self.key, self.holder, nx=True, px=self.ttl_ms):
            return True
        renewed = await self.client.eval(_RENEW, 1, self.key, self.holder, str(self.ttl_ms))
        return bool(renewed)

    async def release(self) -> None:
        await self.client.eval(_RELEASE, 1, self.key, self.holder)
