"""The Socket.IO server of one node: wiring, no decisions.

`transport` wraps the library (typed emits, reserved names refused), `sessions` keeps who
is behind each socket until their access ends, `handlers` turn client events into
service calls, and `publisher` is the one way out: it turns the domain events that
services record into Socket.IO events after their commit. Events go to per-user rooms
(`u:<id>`) and per-queue rooms (`q:<role>`, `qd:<doctor>`), so any node can reach any
client once the Redis manager is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from signalling.cluster import Cluster, drain_on_shutdown
from signalling.codec import OrjsonCodec
from signalling.handlers import Handlers
from signalling.manager import cancel_all
from signalling.participants import ParticipantsCache
from signalling.presence import Participant
from signalling.publisher import Publisher
from signalling.sessions import Sessions
from signalling.transport import StrictServer, TextPacket, Transport
from telemed.config import Settings
from telemed.context import SERVICES, Services
from telemed.events import AccessEnded, DomainEvent
from telemed.roles import Role
from telemed.services.places import PlaceNotifier

log = logging.getLogger("telemed.signalling")
PARTICIPANTS_TTL = 30.0  # seconds an entry of the relay's participants cache may live


class Signalling:
    """The Socket.IO server of one node, attached to the aiohttp app."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        s = settings.signalling
        self.cluster = Cluster(settings)  # with redis.url: events and presence across nodes
        self.sio = StrictServer(
            client_manager=self.cluster.client_manager,
            async_mode="aiohttp",
            cors_allowed_origins=list(settings.server.allowed_origins) or None,
            ping_interval=s.ping_interval.total_seconds(),
            ping_timeout=s.ping_timeout.total_seconds(),
            # Events over max_event_bytes get an error ack; only far larger frames are
            # dropped by the transport.
            max_http_buffer_size=max(1024 * 1024, s.max_event_bytes * 4),
            logger=False,
            engineio_logger=False,
            json=OrjsonCodec,
            serializer=TextPacket,  # JSON only: no payload walked for bytes (transport.py)
            # One socket's events run one after another, in order, without a task each:
            # signals of a connection arrive as sent, and a burst costs no task churn.
            async_handlers=False,
        )
        self.sio.max_event_bytes = s.max_event_bytes  # refused from the frame's length
        self.sio.attach(app)
        drain_on_shutdown(app, self.sio)  # a stopping node sends its clients elsewhere
        self.presence = self.cluster.presence
        self.transport = Transport(self.sio)
        # Several nodes: a lost Redis notice heals within the lifetime; one node hears all.
        self._participants = ParticipantsCache(ttl=PARTICIPANTS_TTL if settings.redis.url else None)
        self._publisher: Publisher | None = None
        self.places: PlaceNotifier | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sessions = Sessions(
            self.sio,
            self.transport,
            self.presence,
            lambda: self.services,
            lambda: self.publisher,
            self._staff_left,
        )
        Handlers(
            self.sio,
            self.transport,
            self.presence,
            self._participants,
            self.sessions,
            lambda: self.services,
            lambda: self.publisher,
            log,
        ).register()
        if self.cluster.manager is not None:  # other nodes' changes, and a Redis outage
            self.cluster.manager.on_consultation_changed = self._changed_elsewhere
            self.cluster.manager.on_resubscribed = self._participants.clear
            self.cluster.manager.on_access_ended = self.sessions.end_here

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            raise RuntimeError("the live layer is used before its start")
        return self._publisher

    async def start(self) -> None:
        """Join the cluster, start publishing committed events and telling places."""
        services = self.services
        self.places = PlaceNotifier(
            services.queue,
            services.clock,
            self.settings.signalling.queue_refresh_interval.total_seconds(),
            here=lambda user_id: bool(self.presence.sids(user_id)),
            patients_here=lambda: self.presence.any_here(Role.PATIENT),
            staff_online=self.presence.count,
            tell=lambda user_id, state: self.transport.to_user(
                user_id, "consultation:state", state
            ),
        )
        self._publisher = Publisher(
            self.transport,
            self.presence,
            self._participants,
            services,
            end_access=self._end_access,
            queue_moved=self.places.moved,
        )
        await self.cluster.start()
        self._spawn(self.places.run_forever())

    async def stop(self) -> None:
        """Cancel this node's tasks (bounded: a task that swallowed its cancel is cancelled
        again, never waited on forever), then leave the cluster."""
        await cancel_all(list(self._tasks))
        self._tasks.clear()
        await self.sessions.stop()
        await self.cluster.stop()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- what the rest of the app sees (telemed.live.Live) -------------------------------

    async def publish(self, events: Sequence[DomainEvent]) -> None:
        """Committed domain events, from `Database.on_commit`."""
        await self.publisher.publish(events)

    def is_online(self, user_id: str | None) -> bool:
        return self.presence.online(user_id)

    # --- glue ----------------------------------------------------------------------------

    async def _end_access(self, ended: AccessEnded) -> None:
        """End the user's sockets here and, through Redis, on every other node."""
        if self.cluster.manager is None:
            await self.sessions.end_here(ended)
        else:
            await self.cluster.manager.end_access(ended)

    def _changed_elsewhere(self, consultation_id: str) -> None:
        self._participants.forget(consultation_id)
        if self.places is not None:
            self.places.moved_everywhere()

    def _staff_left(self, who: Participant) -> None:
        """A watcher left: the wait estimates of their queues change."""
        if self.places is not None:
            for role in who.watching:
                self.places.moved(role)
