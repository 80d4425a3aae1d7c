"""Fixtures for Socket.IO tests: the real app on a real port, real clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from appkit import Running
from helpers import add_patients
from live import Live

ADULT = "A-1,2026-01-01,2026-01-01,2027-12-31,Иванов Иван,1980-03-01,M,+79161234567"
CHILD = "C-1,2026-01-01,2026-01-01,2027-12-31,Петрова Аня,2015-06-01,F,+79167654321"
FAST = {"signalling": {"queue_refresh_interval": "10ms"}}


@pytest.fixture
def live_config() -> dict[str, Any]:
    return dict(FAST)


@pytest.fixture
async def live(
    start_app: Callable[..., Any], sqlite_url: str, live_config: dict[str, Any]
) -> AsyncIterator[Any]:
    """The app with an adult and a child imported; `await live.join(token)` connects a
    Socket.IO client. Override `live_config` in a test module for other settings."""
    app: Running = await start_app(sqlite_url, **live_config)
    await add_patients(app, [ADULT, CHILD])
    clients: list[Live] = []

    class Ctx:
        running = app
        url = str(app.client.make_url("/"))

        @staticmethod
        async def join(token: str, name: str = "", **auth: Any) -> Live:
            client = Live(Ctx.url, token, name)
            clients.append(client)
            return await client.connect(**auth)

    yield Ctx
    for client in clients:
        await client.close()
