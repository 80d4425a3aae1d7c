"""Live sessions: who is behind a socket, from the handshake until their access ends.

A connection is let in with a valid token (and, for a patient, the current consent).
A newer connection of the same user takes over the older one on any node. The session
ends with the socket, or when the user's access ends (`AccessEnded`: logout, expiry,
consent withdrawal, a disabled account): the socket gets `session:ended {reason}` and is
disconnected, on whichever node it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import socketio

from signalling.admission import Admission, refused
from signalling.budget import Budget
from signalling.ice import ice_expiry, ice_servers
from signalling.manager import cancel_all
from signalling.presence import Participant, Presence
from signalling.publisher import Publisher
from signalling.transport import Transport, user_room
from telemed.consultation import counterpart_of
from telemed.context import Services
from telemed.errors import ConsentRequired, Unauthorized
from telemed.events import AccessEnded
from telemed.roles import Role
from telemed.services.live_entry import Entrance, Entry, Opened
from telemed.services.views import view_of

log = logging.getLogger("telemed.signalling.sessions")
TOKEN_RECHECK = timedelta(seconds=60)
POOL_SIZE = 5  # SQLAlchemy's default, for a pool that does not say its size


def message_id_of(value: Any) -> int:
    """A client's `last_message_id`: message ids are strings of digits (as in
    `chat:message`); an int is taken too; anything else means "from the start"."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return 0


class Sessions:
    """Connect, take over, welcome, disconnect and end the sessions of this node."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        transport: Transport,
        presence: Presence,
        services: Callable[[], Services],
        publisher: Callable[[], Publisher],
        staff_left: Callable[[Participant], None],
    ) -> None:
        self.sio = sio
        self.out = transport
        self.presence = presence
        self._services = services
        self._publisher = publisher
        self._staff_left = staff_left
        self._tasks: set[asyncio.Task[None]] = set()
        self.admission = Admission(self._pool_size)
        self._entrance: Entrance | None = None

    @property
    def entrance(self) -> Entrance:
        if self._entrance is None:  # the services exist once the app has started
            self._entrance = Entrance(self.services.db, self.services.clock)
        return self._entrance

    @property
    def services(self) -> Services:
        return self._services()

    def _pool_size(self) -> int:
        size = getattr(self.services.db.engine.pool, "size", None)
        return int(size()) if callable(size) else POOL_SIZE

    async def admit(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """The connect handler: `on_connect` in turn, always answered (admission.py)."""
        await self.admission.connect(self.on_connect, sid, environ, auth)

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        await cancel_all(list(self._tasks))
        self._tasks.clear()

    # --- who is asking ----------------------------------------------------------------------

    async def caller(self, sid: str, now: datetime | None = None) -> Participant:
        """The participant behind a socket; their token is re-checked now and then (the
        pushed `AccessEnded` is the fast path, this the backstop)."""
        who = self.presence.get(sid)
        if who is None:
            raise Unauthorized()
        now = now or self.services.clock.now()
        if now >= who.expires_at or now - who.checked_at > TOKEN_RECHECK:
            try:
                caller = await self.services.auth.authenticate(who.token)
            except Unauthorized:
                self.spawn(self.out.disconnect(sid))
                raise
            who.expires_at, who.checked_at = caller.expires_at, now
        return who

    # --- connect, takeover, reconnect, disconnect ------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        after = message_id_of(auth.get("last_message_id") if isinstance(auth, dict) else None)
        try:
            entry = await self.entrance.enter(token if isinstance(token, str) else None, after)
        except Unauthorized as exc:
            raise refused(exc) from None
        if not entry.consented:
            raise refused(ConsentRequired())
        caller = entry.caller
        participant = Participant(
            sid=sid,
            user_id=caller.id,
            role=caller.role,
            token=str(token),
            token_id=caller.token_id,
            expires_at=caller.expires_at,
            checked_at=self.services.clock.now(),
            budget=Budget(self.services.settings.signalling.budgets),
        )
        previous = self.presence.add(participant)  # this node's other sockets (one node)
        await self.sio.enter_room(sid, user_room(caller.id))
        await self._replace(previous)
        welcome = self._welcome(participant, entry, after, bool(previous))
        self.spawn(self.admission.welcome(welcome))

    async def _replace(self, sids: list[str]) -> None:
        """A newer connection of the same user took over: tell each old socket why and
        disconnect it, on whichever node it is (the Redis manager forwards both)."""
        for old in sids:
            await self.out.to_sid(
                old,
                "session:replaced",
                {"reason": "taken_over", "message": "You opened telemed in another tab or device."},
            )
            self.spawn(self.out.disconnect(old))

    async def _welcome(
        self, who: Participant, entry: Entry, last_message_id: int, took_over: bool
    ) -> None:
        """Replace the user's older socket on any node (claimed now that this one is
        connected, so a later one can disconnect it), then tell it its session and give
        back its open consultations. The counterpart hears `peer:rejoined` when a patient
        comes back from being away (after a `peer:away`), and `peer:replaced` when a newer
        connection took over (another tab, or a reconnect after its node died): either
        way the staff side starts the call afresh."""
        elsewhere = await self.presence.claim(who)
        await self._replace(elsewhere)
        took_over = took_over or bool(elsewhere)
        services = self.services
        now = services.clock.now()
        await self.out.to_sid(
            who.sid,
            "session",
            {
                "user_id": who.user_id,
                "role": who.role.value,
                "ice_servers": ice_servers(services.settings.signalling, who.user_id, now),
                "ice_expires_at": _iso(ice_expiry(services.settings.signalling, now)),
            },
        )
        publisher = self._publisher()
        patient = who.role is Role.PATIENT
        away = set(entry.rejoined)
        opened = entry.opened
        if entry.back:  # a booked consultation waited for them: moved on, then read afresh
            cleared, rows = await services.consultations.patient_back(who.user_id)
            away |= cleared
            opened = [Opened(row, None, None) for row in rows]
        for row, facts, messages in ((o.row, o.facts, o.messages) for o in opened):
            await publisher.send_state(row, to_sid=who.sid, patient=patient, facts=facts)
            await publisher.send_history(row.id, who.sid, last_message_id, messages)
            staff = counterpart_of(view_of(row))
            peer = staff if patient else row.patient_id
            told = {"consultation_id": row.id, "role": who.role.value}
            if peer and staff and row.id in away:
                await self.out.to_user(peer, "peer:rejoined", told)
            elif peer and staff and took_over:
                await self.out.to_user(peer, "peer:replaced", told)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        who, gone = self.presence.remove(sid)
        if who is None:
            return
        taken_over = await self.presence.release(who)  # by a connection on another node
        if not gone or taken_over:
            return
        if who.role is Role.PATIENT:
            await self.services.consultations.patient_away(who.user_id)
        else:
            self._staff_left(who)

    # --- access ends ------------------------------------------------------------------------

    async def end_here(self, ended: AccessEnded) -> None:
        """End this node's sockets of a user whose access ended (of one token, or all)."""
        for sid in self.presence.sids(ended.user_id):
            who = self.presence.get(sid)
            if who is None or (ended.token_id is not None and who.token_id != ended.token_id):
                continue
            await self.out.to_sid(sid, "session:ended", {"reason": ended.reason.value})
            self.spawn(self.out.disconnect(sid))


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None
