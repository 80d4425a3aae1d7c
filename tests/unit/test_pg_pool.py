"""The PostgreSQL pool keeps `database.pool_size` connections open and opens at most
`max_overflow` more: a burst of accepts reuses logged-in connections instead of opening and
closing SQLAlchemy's default overflow each time (docs/performance.md, section 3)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from sqlalchemy import text

from telemed.config import DatabaseSettings
from telemed.db import create_engine


async def test_a_burst_beyond_the_pool_opens_the_overflow_and_keeps_the_pool(pg_url: str) -> None:
    engine = create_engine(DatabaseSettings(url=pg_url, pool_size=3, max_overflow=2))
    try:
        async with AsyncExitStack() as held:  # a burst of five at once: three + two overflow
            for conn in await asyncio.gather(
                *(held.enter_async_context(engine.connect()) for _ in range(5))
            ):
                assert await conn.scalar(text("SELECT 1")) == 1
            assert engine.pool.checkedout() == 5  # type: ignore[attr-defined]
            assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool.checkedin() == 3  # type: ignore[attr-defined]  # the overflow closed
    finally:
        await engine.dispose()
