"""What the nodes of one deployment share: with `redis.url`, the Socket.IO manager and
presence go through Redis; without it, both stay in this process."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from signalling.manager import RedisManager, wait_for_event
from signalling.presence import Presence
from signalling.redis_presence import RedisPresence
from signalling.transport import DirectEmit
from telemed.config import Settings

log = logging.getLogger("telemed.signalling.cluster")
PUBLISH_WAIT = 10.0  # seconds an emit waits for a pooled connection before giving up
DRAIN_WAIT = 2.0  # seconds a stopping node waits for its sockets to close


class Cluster:
    """The Socket.IO client manager and the presence of this node."""

    def __init__(self, settings: Settings) -> None:
        config = settings.redis
        self.manager: RedisManager | None = None
        self.presence: Presence = Presence()
        self.shared: RedisPresence | None = None
        if config.url is not None:
            self.manager = RedisManager(
                config.url, f"{config.prefix}:socketio", config.max_connections, PUBLISH_WAIT
            )
            self.shared = RedisPresence(
                config.url, config.prefix, config.presence_ttl.total_seconds()
            )
            self.presence = self.shared
        # What python-socketio delivers through: Redis between nodes, or this node alone.
        self.client_manager: DirectEmit = self.manager or DirectEmit()

    async def start(self) -> None:
        """Subscribe before the first client comes, so nothing sent to it is missed."""
        if self.manager is not None:
            self.manager.initialize()
            if not await wait_for_event(self.manager.subscribed, 5):
                log.warning("redis not reachable at start: serving this node's clients only")
        if self.shared is not None:
            await self.shared.start()

    async def stop(self) -> None:
        if self.shared is not None:
            await self.shared.stop()
        if self.manager is not None:
            await self.manager.close()

    async def redis_up(self) -> bool | None:
        """Whether Redis answers now; None when it is not configured."""
        if self.shared is None:
            return None
        return await self.shared.redis_up()


def drain_on_shutdown(app: web.Application, sio: Any) -> None:
    """On shutdown close this node's sockets at the Engine.IO level: clients reconnect
    (through the load balancer) to another node at once, and aiohttp need not wait up to
    its shutdown timeout for them to leave."""

    async def drain(app: web.Application) -> None:
        if not sio.eio.sockets:  # engineio's disconnect() fails on an empty set
            return
        try:  # a socket whose connection already died never drains its queue
            async with asyncio.timeout(DRAIN_WAIT):
                await sio.eio.disconnect()
        except TimeoutError:
            log.info("some sockets did not close within %.0f s", DRAIN_WAIT)

    app.on_shutdown.append(drain)
