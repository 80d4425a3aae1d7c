"""Fixtures for scale-out tests: two in-process nodes on one PostgreSQL database and one
Redis, with names of their own in Redis so tests never hear each other."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from helpers import add_patients
from redis_server import PrivateRedis
from scalekit import ADULT, CHILD, REDIS_URL, Nodes, node_config


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis namespace of this test; its keys are deleted afterwards."""
    prefix = f"telemed-test-{uuid.uuid4().hex[:10]}"
    yield prefix

    async def clean() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(clean())


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test only; reaped whatever happens. Ask for it before the
    nodes, so it outlives them (they release the scheduler lease on the way out)."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def make_nodes(
    start_app: Callable[..., Any], pg_url: str, redis_prefix: str
) -> AsyncIterator[Callable[..., Awaitable[Nodes]]]:
    """`await make_nodes(redis={...})`: nodes a and b (in this process, on their own ports)
    with an adult and a child imported; extra settings go to both."""
    made: list[Nodes] = []

    async def make(**extra: dict[str, Any]) -> Nodes:
        config = node_config(redis_prefix)
        for section, values in extra.items():
            config.setdefault(section, {}).update(values)
        a = await start_app(pg_url, **config)
        b = await start_app(pg_url, **config)
        await add_patients(a, [ADULT, CHILD])
        made.append(Nodes(a, b))
        return made[-1]

    yield make
    for both in made:
        await both.close()


@pytest.fixture
async def nodes(make_nodes: Callable[..., Awaitable[Nodes]]) -> Nodes:
    """Nodes a and b with the test settings."""
    return await make_nodes()
