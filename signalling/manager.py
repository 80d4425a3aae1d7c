"""Socket.IO between nodes through Redis, without losing messages in a burst.

python-socketio's `AsyncRedisManager` publishes every emit on a Redis channel
that all nodes listen to. As shipped it opens one pool connection per
concurrent emit; redis-py 8 caps an async pool at 100 and raises
`MaxConnectionsError` at once when it is full, the manager then rebuilds its
client, and the messages in flight are lost (PERFORMANCE.md, trap 2). Here
publishing goes through a `BlockingConnectionPool` (a burst waits for a free
connection), the subscriber has its own connection, and a Redis outage costs
one fast failure per emit instead of retries that stall the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import redis.asyncio as aioredis
import socketio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import telemed.metrics as metrics
from signalling.transport import DirectEmit
from telemed.events import AccessEnded, EndReason

log = logging.getLogger("telemed.signalling.redis")
# After a failed publish, emits skip Redis this long instead of each waiting on it.
RETRY_AFTER = 1.0
RESUBSCRIBE_MAX = 2.0  # seconds between attempts to subscribe again after an outage
CONNECT_TIMEOUT = 2.0
# Sent on every change of a consultation (Signalling.publish): a node that sees one from
# another node forgets what it cached about that consultation.
CHANGE_EVENTS = frozenset({"consultation:state", "consultation:closed", "call:hangup"})
# A user's access ended: every node ends that user's sockets. Sent as an emit to a room no
# socket is in, so the library carries it to every node (this one included); no client
# ever receives it.
ACCESS_ENDED = "telemed:access_ended"
NOBODY = "telemed:nobody"


def raise_if_cancelled() -> None:
    """redis-py (like asyncpg) may turn a cancel into its own error while it cleans up; a
    loop that catches that error must still end when its task was cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


async def cancel_all(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait for them; one whose library swallowed the cancel (a race
    seen with redis-py under Python 3.11) is cancelled again rather than waited on forever."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(20):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.25)
    log.error("%d tasks would not stop", len(pending))


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` was set within `seconds`. Unlike `wait_for` with a suppressed
    TimeoutError, a cancel arriving as the time runs out is never swallowed (3.11)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
    return event.is_set()


def publishing_client(url: str, max_connections: int, wait: float) -> aioredis.Redis:
    """A client whose pool makes a caller wait for a free connection rather than fail,
    and retries once at once (a pooled connection may be stale after a Redis restart)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait,
        socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
    )
    return aioredis.Redis(connection_pool=pool)


async def subscribed_messages(
    url: str, channel: str, on_subscribed: Callable[[], None], on_lost: Callable[[], None]
) -> AsyncIterator[bytes]:
    """The messages of one channel, forever: after a lost connection subscribe again
    (backing off up to RESUBSCRIBE_MAX), telling the caller when it is lost and back."""
    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, retry=Retry(NoBackoff(), 0)
    )
    pause = 0.1
    try:
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                pause = 0.1
                on_subscribed()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        yield message["data"]
            except (aioredis.RedisError, OSError) as exc:
                raise_if_cancelled()
                on_lost()
                log.warning("redis channel %s lost (%s); subscribing again", channel, exc)
            finally:  # an error closing must not replace a CancelledError on its way out
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]
            await asyncio.sleep(pause)
            pause = min(RESUBSCRIBE_MAX, pause * 2)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


class RedisManager(socketio.AsyncRedisManager, DirectEmit):  # type: ignore[misc]
    """The Socket.IO client manager of a node when `redis.url` is set (local deliveries
    through `DirectEmit`, which the library's pub/sub manager calls for them)."""

    name = "telemed-redis"

    def __init__(self, url: str, channel: str, max_connections: int, wait: float) -> None:
        super().__init__(url=url, channel=channel, logger=log)
        self.publisher = publishing_client(url, max_connections, wait)
        self.subscribed = asyncio.Event()
        self.on_resubscribed: Callable[[], None] = lambda: None
        self.on_consultation_changed: Callable[[str], None] = lambda consultation_id: None
        self.on_access_ended: Callable[[AccessEnded], Awaitable[None]] | None = None
        self._initialized = False
        self._lost_once = False
        self._skip_until = 0.0

    def initialize(self) -> None:
        """Start listening once, whether the app or the first connection asks first."""
        if self._initialized:
            return
        self._initialized = True
        super().initialize()

    async def close(self) -> None:
        """Stop listening and close the connections."""
        thread = getattr(self, "thread", None)
        if isinstance(thread, asyncio.Task):
            await cancel_all([thread])
        await self.publisher.aclose()

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """An emit to one socket of this node is delivered here and not published: a
        socket id lives on one node, so no other could deliver it (PERFORMANCE.md trap 3).
        Rooms (users, queues) may span nodes and are published as before."""
        namespace = namespace or "/"
        target = to or room
        if isinstance(target, str) and self.is_connected(target, namespace):
            kwargs["ignore_queue"] = True
        await super().emit(
            event,
            data,
            namespace=namespace,
            room=target,
            skip_sid=skip_sid,
            callback=callback,
            **kwargs,
        )

    async def _publish(self, data: dict[str, Any]) -> None:
        """Send one packet to the other nodes. A burst waits for a pooled connection;
        while Redis is failing, emits reach this node's sockets only and are counted."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._skip_until:
            metrics.RELAY_DROPPED.inc()
            return
        data["sent_at"] = time.time()
        try:
            await self.publisher.publish(self.channel, self.json.dumps(data))
        except (aioredis.RedisError, OSError) as exc:
            raise_if_cancelled()
            self._skip_until = loop.time() + RETRY_AFTER
            metrics.RELAY_DROPPED.inc()
            log.warning("cannot publish to redis (%s); other nodes miss events for now", exc)
            return
        metrics.RELAY_PUBLISHED.inc()

    async def _listen(self) -> AsyncIterator[bytes]:
        async for data in subscribed_messages(
            self.redis_url, self.channel, self._subscribed, self._lost
        ):
            yield data

    def _subscribed(self) -> None:
        self.subscribed.set()
        self._skip_until = 0.0
        if self._lost_once:
            log.info("redis channel %s is back", self.channel)
            self.on_resubscribed()

    def _lost(self) -> None:
        self.subscribed.clear()
        self._lost_once = True

    async def end_access(self, ended: AccessEnded) -> None:
        """Tell every node (this one too) to end a user's sockets."""
        payload = {
            "user_id": ended.user_id,
            "reason": ended.reason.value,
            "token_id": ended.token_id,
        }
        await self.emit(ACCESS_ENDED, payload, room=NOBODY)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("event") == ACCESS_ENDED:
            args = message.get("data")
            payload = args[0] if isinstance(args, list) and args else None
            if isinstance(payload, dict) and self.on_access_ended is not None:
                token_id = payload.get("token_id")
                await self.on_access_ended(
                    AccessEnded(
                        str(payload.get("user_id")),
                        EndReason(str(payload.get("reason"))),
                        str(token_id) if token_id is not None else None,
                    )
                )
            return
        if message.get("event") in CHANGE_EVENTS:
            args = message.get("data")  # the emit's arguments, as a list
            payload = args[0] if isinstance(args, list) and args else None
            if isinstance(payload, dict):
                self.on_consultation_changed(str(payload.get("consultation_id")))
        await super()._handle_emit(message)
        sent_at = message.get("sent_at")
        if isinstance(sent_at, float):  # from another node: time the whole hop
            metrics.RELAY_SECONDS.observe(max(0.0, time.time() - sent_at))
