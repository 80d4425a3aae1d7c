"""The Socket.IO server: the live urgent flow (R-URG-1..5), WebRTC signalling and chat.

Handlers are thin: who is asking (from the token checked at connect), a
validated payload, one service call, an ack. Every change of a consultation
goes out from one place, `publish`, which turns a `Change` into the events
of CONTRACT.md. Events go to per-user rooms (`u:<id>`) and per-queue rooms
(`q:<role>`), so any node can reach any client once the Redis manager is on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from typing import Any, TypeVar

import socketio
from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update

from signalling import schemas
from signalling.cluster import Cluster, drain_on_shutdown
from signalling.ice import ice_servers
from signalling.manager import cancel_all, raise_if_cancelled
from signalling.participants import ParticipantsCache
from signalling.presence import Participant
from telemed import metrics
from telemed.config import Settings
from telemed.consultation import (
    SYSTEM_ACTOR,
    Actor,
    Event,
    State,
    counterpart_of,
)
from telemed.context import SERVICES, Services
from telemed.errors import (
    BadRequest,
    ConsentRequired,
    Forbidden,
    InternalError,
    InvalidState,
    NotFound,
    PayloadTooLarge,
    TelemedError,
    Unauthorized,
)
from telemed.http.api import validation_failed
from telemed.models import Consultation, Patient, Staff
from telemed.roles import DOCTOR_ROLES, STAFF_ROLES, Role
from telemed.services.consultations import Change, view_of

log = logging.getLogger("telemed.signalling")
P = TypeVar("P", bound=BaseModel)
Ack = dict[str, Any]
TOKEN_RECHECK = timedelta(seconds=60)
WATCHERS = frozenset({Role.CONSULTANT, *DOCTOR_ROLES})
EVERYONE = frozenset({Role.PATIENT, *STAFF_ROLES})


class UnknownEvent(TelemedError):
    code = "unknown_event"
    default_message = "There is no such event."


def refused(error: TelemedError) -> socketio.exceptions.ConnectionRefusedError:
    """A refused handshake: the client's `connect_error` gets `message` and
    `data: {code, message}`, like every other error of ours."""
    return socketio.exceptions.ConnectionRefusedError(error.message, error.to_dict())


def user_room(user_id: str) -> str:
    return f"u:{user_id}"


def queue_room(role: Role) -> str:
    return f"q:{role.value}"


class Signalling:
    """The Socket.IO server of one node, attached to the aiohttp app."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        s = settings.signalling
        self.cluster = Cluster(settings)  # with redis.url: events and presence across nodes
        self.sio = socketio.AsyncServer(
            client_manager=self.cluster.manager,
            async_mode="aiohttp",
            cors_allowed_origins=list(settings.server.allowed_origins) or None,
            ping_interval=s.ping_interval.total_seconds(),
            ping_timeout=s.ping_timeout.total_seconds(),
            # Events over max_event_bytes get an error ack; only far larger frames are
            # dropped by the transport.
            max_http_buffer_size=max(1024 * 1024, s.max_event_bytes * 4),
            logger=False,
            engineio_logger=False,
        )
        self.sio.attach(app)
        drain_on_shutdown(app, self.sio)  # a stopping node sends its clients elsewhere
        self.presence = self.cluster.presence
        self._dirty_queues: set[Role] = set()
        self._queue_wakeup = asyncio.Event()
        self._last_place: dict[str, tuple[int, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._away_timers: dict[str, asyncio.Task[None]] = {}
        self._participants = ParticipantsCache()
        if self.cluster.manager is not None:  # other nodes' changes, and a Redis outage
            self.cluster.manager.on_consultation_changed = self._participants.forget
            self.cluster.manager.on_resubscribed = self._participants.clear
        self._register()

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    async def start(self) -> None:
        """Start the queue refresher and resume the grace timers of absent patients."""
        await self.cluster.start()
        self._spawn(self._refresh_queues_forever())
        await self._resume_away_timers()

    async def stop(self) -> None:
        """Cancel this node's tasks (bounded: a task that swallowed its cancel is cancelled
        again, never waited on forever), then leave the cluster."""
        await cancel_all([*self._tasks, *self._away_timers.values()])
        self._tasks.clear()
        self._away_timers.clear()
        await self.cluster.stop()

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- plumbing: one wrapper for every event ----------------------------------------

    def _register(self) -> None:
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_unknown)
        self._event("consultation:start", schemas.Start, {Role.PATIENT}, self.start_consultation)
        self._event("consultation:leave", schemas.ConsultationRef, {Role.PATIENT}, self.leave)
        self._event("queue:watch", schemas.Empty, WATCHERS, self.watch_queue)
        self._event("queue:unwatch", schemas.Empty, WATCHERS, self.unwatch_queue)
        self._event("consultation:accept", schemas.Accept, WATCHERS, self.accept)
        self._event("consultation:transfer", schemas.Transfer, WATCHERS, self.transfer)
        self._event("consultation:close", schemas.Close, {Role.CONSULTANT}, self.close)
        self._event("signal", schemas.Signal, EVERYONE, self.relay_signal)
        self._event("chat:send", schemas.ChatSend, EVERYONE, self.send_chat)
        self._event("chat:history", schemas.ChatHistory, EVERYONE, self.chat_history)

    def _event(
        self,
        name: str,
        schema: type[P],
        roles: Collection[Role],
        handler: Callable[[Participant, P], Awaitable[Ack | None]],
    ) -> None:
        async def wrapped(sid: str, data: Any = None, *extra: Any) -> Ack:
            try:
                who = await self._caller(sid)
                if who.role not in roles:
                    raise Forbidden(f'"{name}" is not available to the {who.role.value} role.')
                payload = self._parse(schema, data, extra)
                return {"ok": True, **(await handler(who, payload) or {})}
            except TelemedError as exc:
                return {"ok": False, "error": exc.to_dict()}
            except Exception:
                log.exception("event %s failed", name)
                return {"ok": False, "error": InternalError().to_dict()}

        self.sio.on(name, metrics.observed(name, wrapped))

    def _parse(self, schema: type[P], data: Any, extra: tuple[Any, ...]) -> P:
        if extra:
            raise BadRequest("Send one JSON object per event.")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BadRequest("The event payload must be a JSON object.")
        try:
            size = len(json.dumps(data, separators=(",", ":")))
        except (TypeError, ValueError):
            raise BadRequest("The event payload is not JSON.") from None
        if size > self.settings.signalling.max_event_bytes:
            raise PayloadTooLarge(limit_bytes=self.settings.signalling.max_event_bytes)
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            raise validation_failed(exc) from None

    async def _caller(self, sid: str) -> Participant:
        """The participant behind a socket; their token is re-checked now and then so a
        logout or an expiry also ends the live session."""
        who = self.presence.get(sid)
        if who is None:
            raise Unauthorized()
        now = self.services.clock.now()
        if now >= who.expires_at or now - who.checked_at > TOKEN_RECHECK:
            try:
                caller = await self.services.auth.authenticate(who.token)
            except Unauthorized:
                self._spawn(self.sio.disconnect(sid))
                raise
            who.expires_at, who.checked_at = caller.expires_at, now
        return who

    async def _on_unknown(self, event: str, sid: str, *args: Any) -> Ack:
        return {"ok": False, "error": UnknownEvent(f'There is no event "{event[:64]}".').to_dict()}

    # --- connect, takeover, reconnect, disconnect ---------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            caller = await self.services.auth.authenticate(
                token if isinstance(token, str) else None
            )
        except Unauthorized as exc:
            raise refused(exc) from None
        if caller.role is Role.PATIENT and not await self.services.consent.accepted_at(caller.id):
            raise refused(ConsentRequired())
        now = self.services.clock.now()
        participant = Participant(
            sid=sid,
            user_id=caller.id,
            role=caller.role,
            token=str(token),
            expires_at=caller.expires_at,
            checked_at=now,
        )
        previous = self.presence.add(participant)  # this node's other sockets (one node)
        await self.sio.enter_room(sid, user_room(caller.id))
        await self._replace(previous)
        after = auth.get("last_message_id") if isinstance(auth, dict) else None
        self._spawn(self._welcome(participant, message_id_of(after)))

    async def _replace(self, sids: list[str]) -> None:
        """A newer connection of the same user took over: tell each old socket why and
        disconnect it, on whichever node it is (the Redis manager forwards both)."""
        for old in sids:
            await self.sio.emit(
                "session:replaced",
                {"reason": "taken_over", "message": "You opened telemed in another tab or device."},
                to=old,
            )
            self._spawn(self.sio.disconnect(old))

    async def _welcome(self, who: Participant, last_message_id: int) -> None:
        """Replace the user's older socket on any node (claimed now that this one is
        connected, so a later one can disconnect it), then tell it its session and give
        back its open consultations."""
        await self._replace(await self.presence.claim(who))
        now = self.services.clock.now()
        await self.sio.emit(
            "session",
            {
                "user_id": who.user_id,
                "role": who.role.value,
                "ice_servers": ice_servers(self.settings.signalling, who.user_id, now),
            },
            to=who.sid,
        )
        for row in await self._open_consultations_of(who):
            if who.role is Role.PATIENT:
                row = await self._patient_back(row)
            await self._send_state(row, to_sid=who.sid)
            await self._send_history(row.id, who.sid, last_message_id)
            peer = row.patient_id if who.role is not Role.PATIENT else counterpart_of(view_of(row))
            if peer and counterpart_of(view_of(row)):
                await self.sio.emit(
                    "peer:rejoined",
                    {"consultation_id": row.id, "role": who.role.value},
                    room=user_room(peer),
                )

    async def _open_consultations_of(self, who: Participant) -> list[Consultation]:
        async with self.services.db.read() as session:
            if who.role is Role.PATIENT:
                query = select(Consultation).where(
                    Consultation.patient_id == who.user_id,
                    Consultation.state != State.CLOSED.value,
                )
            else:
                query = select(Consultation).where(
                    (
                        (Consultation.state == State.WITH_CONSULTANT.value)
                        & (Consultation.consultant_id == who.user_id)
                    )
                    | (
                        (Consultation.state == State.WITH_DOCTOR.value)
                        & (Consultation.doctor_id == who.user_id)
                    )
                )
            return list((await session.scalars(query)).all())

    async def _patient_back(self, row: Consultation) -> Consultation:
        """A patient is connected again: stop the grace timer; a booked consultation that
        waited for them moves into the consultant queue."""
        timer = self._away_timers.pop(row.id, None)
        if timer is not None:
            timer.cancel()
        if row.patient_away_since is not None:
            async with self.services.db.write() as session:
                await session.execute(
                    update(Consultation)
                    .where(Consultation.id == row.id)
                    .values(patient_away_since=None, patient_seen_at=self.services.clock.now())
                )
            row.patient_away_since = None
        if row.state == State.WAITING_PATIENT.value:
            change = await self.services.consultations.fire(
                row.id, Event.PATIENT_CONNECTS, Actor(Role.PATIENT, row.patient_id)
            )
            await self.publish(change)
            return change.consultation
        return row

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        who, gone = self.presence.remove(sid)
        if who is None:
            return
        taken_over = await self.presence.release(who)  # by a connection on another node
        if not gone or taken_over:
            return
        if who.role is Role.PATIENT:
            await self._patient_away(who.user_id)
        else:
            for role in who.watching:
                self._mark_queue(role)

    async def _patient_away(self, patient_id: str) -> None:
        """The patient's last connection dropped: keep their place for `no_show_after`."""
        now = self.services.clock.now()
        async with self.services.db.write() as session:
            rows = (
                await session.scalars(
                    select(Consultation).where(
                        Consultation.patient_id == patient_id,
                        Consultation.state.notin_(
                            [State.CLOSED.value, State.WAITING_PATIENT.value]
                        ),
                    )
                )
            ).all()
            for row in rows:
                row.patient_away_since = now
        for row in rows:
            peer = counterpart_of(view_of(row))
            if peer:
                await self.sio.emit(
                    "peer:away",
                    {"consultation_id": row.id, "role": "patient"},
                    room=user_room(peer),
                )
            self._start_away_timer(row.id, self.settings.rules.no_show_after)

    def _start_away_timer(self, consultation_id: str, delay: timedelta) -> None:
        old = self._away_timers.pop(consultation_id, None)
        if old is not None:
            old.cancel()

        async def close_if_still_away() -> None:
            await asyncio.sleep(max(0.0, delay.total_seconds()))
            self._away_timers.pop(consultation_id, None)
            await self._close_if_away(consultation_id)

        self._away_timers[consultation_id] = asyncio.ensure_future(close_if_still_away())

    async def _close_if_away(self, consultation_id: str) -> None:
        """Close as `left` a consultation whose patient stayed away past `no_show_after`."""
        row = await self.services.consultations.get(consultation_id)
        grace = self.settings.rules.no_show_after
        away = row.patient_away_since
        if away is None or row.state == State.CLOSED.value:
            return
        remaining = away + grace - self.services.clock.now()
        if remaining > timedelta(0):
            self._start_away_timer(consultation_id, remaining)
            return
        try:
            change = await self.services.consultations.fire(
                consultation_id, Event.PATIENT_LEAVES, SYSTEM_ACTOR
            )
        except TelemedError as exc:  # changed meanwhile: the next sweep looks again
            log.info("consultation %s not closed as left: %s", consultation_id, exc.code)
            return
        await self.publish(change)

    async def _resume_away_timers(self) -> None:
        """After a start: patients absent before it keep their remaining grace; with one node,
        every open consultation's patient is absent until they reconnect."""
        now = self.services.clock.now()
        async with self.services.db.write() as session:
            if self.settings.redis.url is None:
                await session.execute(
                    update(Consultation)
                    .where(
                        Consultation.state.notin_(
                            [State.CLOSED.value, State.WAITING_PATIENT.value]
                        ),
                        Consultation.patient_away_since.is_(None),
                    )
                    .values(patient_away_since=now)
                )
            rows = (
                await session.execute(
                    select(Consultation.id, Consultation.patient_away_since).where(
                        Consultation.patient_away_since.is_not(None),
                        Consultation.state != State.CLOSED.value,
                    )
                )
            ).all()
        grace = self.settings.rules.no_show_after
        for consultation_id, away in rows:
            if away is not None:
                self._start_away_timer(consultation_id, away + grace - now)

    # --- patient events -----------------------------------------------------------------

    async def start_consultation(self, who: Participant, p: schemas.Start) -> Ack:
        """R-URG-1: the patient picks a channel and waits in the consultant queue."""
        if p.appointment_id is not None:  # a booked patient joins, from remind_before ahead
            change = await self.services.consultations.open_booked(
                p.appointment_id, patient_online=True, by_patient=who.user_id
            )
        else:
            change = await self.services.consultations.start(who.user_id, p.channel)
        await self.publish(change)
        await self._send_history(change.consultation.id, who.sid, 0)
        return {"consultation_id": change.consultation.id, "state": change.consultation.state}

    async def leave(self, who: Participant, p: schemas.ConsultationRef) -> Ack:
        change = await self.services.consultations.fire(
            p.consultation_id, Event.PATIENT_LEAVES, Actor(Role.PATIENT, who.user_id)
        )
        await self.publish(change)
        return {"consultation_id": p.consultation_id}

    # --- staff events -------------------------------------------------------------------

    async def watch_queue(self, who: Participant, p: schemas.Empty) -> Ack:
        await self.sio.enter_room(who.sid, queue_room(who.role))
        who.watching.add(who.role)
        self._mark_queue(who.role)
        items = await self.services.queue.items(who.role, who.user_id)
        return {"role": who.role.value, "items": [queue_item(i) for i in items]}

    async def unwatch_queue(self, who: Participant, p: schemas.Empty) -> Ack:
        await self.sio.leave_room(who.sid, queue_room(who.role))
        who.watching.discard(who.role)
        return {}

    async def accept(self, who: Participant, p: schemas.Accept) -> Ack:
        """Take the named patient, or the longest-waiting one of my queue."""
        change = await self.services.consultations.accept(
            Actor(who.role, who.user_id), p.consultation_id
        )
        await self.publish(change)
        return {"consultation_id": change.consultation.id, "state": change.consultation.state}

    async def transfer(self, who: Participant, p: schemas.Transfer) -> Ack:
        """Consultant -> duty doctor by age (R-ROUTE-1) or a named doctor; doctor -> back to
        the consultant (R-URG-5); consultant -> back to the consultant queue."""
        svc = self.services.consultations
        actor = Actor(who.role, who.user_id)
        if p.to == "duty_doctor":
            change = await svc.transfer_to_duty_doctor(p.consultation_id, actor)
        elif p.to == "doctor":
            if p.doctor_id is None:
                raise BadRequest("Name the doctor: doctor_id.")
            role = await self._doctor_role(p.doctor_id)
            change = await svc.transfer_to_doctor(p.consultation_id, actor, p.doctor_id, role)
        elif who.role in DOCTOR_ROLES:
            current = await svc.get(p.consultation_id)
            change = await svc.end_doctor_leg(
                p.consultation_id,
                actor,
                consultant_online=self.presence.online(current.consultant_id),
            )
        else:
            change = await svc.fire(p.consultation_id, Event.TRANSFER_TO_CONSULTANT, actor)
        await self.publish(change)
        return {"consultation_id": p.consultation_id, "state": change.consultation.state}

    async def _doctor_role(self, doctor_id: str) -> Role:
        async with self.services.db.read() as session:
            staff = await session.get(Staff, doctor_id)
        if staff is None or not staff.active or Role(staff.role) not in DOCTOR_ROLES:
            raise NotFound("No such doctor.")
        return Role(staff.role)

    async def close(self, who: Participant, p: schemas.Close) -> Ack:
        """The consultant closes the consultation with an outcome."""
        change = await self.services.consultations.fire(
            p.consultation_id, Event.CLOSE, Actor(who.role, who.user_id), outcome=p.outcome
        )
        await self.publish(change)
        return {"consultation_id": p.consultation_id}

    # --- media signalling and chat ------------------------------------------------------

    async def _peer_of(self, who: Participant, consultation_id: str) -> str:
        """The one participant `who` may talk to in the consultation, or forbidden. Read
        through the participants cache: the signal relay asks on every message."""
        found = self._participants.get(consultation_id)
        if found is None:
            ticket = self._participants.ticket()
            try:
                row = await self.services.consultations.get(consultation_id)
            except NotFound:
                raise Forbidden("You are not a participant of this consultation.") from None
            found = (row.patient_id, counterpart_of(view_of(row)))
            if row.state != State.CLOSED.value:
                self._participants.put(consultation_id, found, ticket)
        patient, staff = found
        if who.role is Role.PATIENT:
            if patient != who.user_id:
                raise Forbidden("You are not a participant of this consultation.")
            if staff is None:
                raise InvalidState("Nobody is with you yet; wait for the consultant.")
            return staff
        if staff != who.user_id:
            raise Forbidden("You are not with this patient now.")
        return patient

    async def relay_signal(self, who: Participant, p: schemas.Signal) -> Ack:
        """Relay SDP and ICE only to the current counterpart of the consultation."""
        peer = await self._peer_of(who, p.consultation_id)
        await self.sio.emit(
            "signal",
            {"consultation_id": p.consultation_id, "from_role": who.role.value, "data": p.data},
            room=user_room(peer),
        )
        return {}

    async def send_chat(self, who: Participant, p: schemas.ChatSend) -> Ack:
        """Persist a chat message and deliver it to the patient and the current counterpart."""
        peer = await self._chat_peer(who, p.consultation_id)
        documents = []
        if p.document_ids:
            if who.role is not Role.PATIENT:
                raise Forbidden("Only the patient attaches documents from their medical card.")
            from telemed.services.documents import check_attachable

            documents = await check_attachable(self.services.db, who.user_id, p.document_ids)
        message = await self.services.chat.post(
            p.consultation_id, who.role.value, who.user_id, p.text, documents
        )
        event = message.to_event()
        for user in {who.user_id, peer} - {""}:
            await self.sio.emit("chat:message", event, room=user_room(user))
        return {"message_id": event["message_id"]}

    async def _chat_peer(self, who: Participant, consultation_id: str) -> str:
        """Chat runs while the consultation is open; a waiting patient may already write."""
        try:
            return await self._peer_of(who, consultation_id)
        except InvalidState:
            row = await self.services.consultations.get(consultation_id)
            if row.state == State.CLOSED.value:
                raise InvalidState("The consultation is closed.") from None
            return ""

    async def chat_history(self, who: Participant, p: schemas.ChatHistory) -> Ack:
        row = await self.services.consultations.get(p.consultation_id)
        allowed = row.patient_id == who.user_id or counterpart_of(view_of(row)) == who.user_id
        if not allowed:
            raise Forbidden("You are not a participant of this consultation.")
        messages = await self.services.chat.history(row.id, p.after_message_id)
        return {"messages": [m.to_event() for m in messages]}

    async def _send_history(self, consultation_id: str, sid: str, after: int) -> None:
        messages = await self.services.chat.history(consultation_id, after)
        await self.sio.emit(
            "chat:history",
            {"consultation_id": consultation_id, "messages": [m.to_event() for m in messages]},
            to=sid,
        )

    # --- publishing: the one place that turns changes into events ------------------------

    async def to_user(self, user_id: str, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, room=user_room(user_id))

    async def to_role(self, role: Role, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, room=queue_room(role))

    def is_online(self, user_id: str | None) -> bool:
        return self.presence.online(user_id)

    async def publish(self, change: Change) -> None:
        """Tell everyone concerned about a change of a consultation."""
        row = change.consultation
        self._participants.forget(row.id)
        now_view = view_of(row)
        before = change.before
        old_peer = counterpart_of(before) if before is not None else None
        new_peer = counterpart_of(now_view)
        if old_peer is not None and old_peer != new_peer:
            hangup = {
                "consultation_id": row.id,
                "reason": change.transition.event.value if change.transition else "changed",
            }
            for user in (old_peer, row.patient_id):
                await self.sio.emit("call:hangup", hangup, room=user_room(user))
        if row.state == State.CLOSED.value:
            closed = {"consultation_id": row.id, "reason": row.close_reason}
            for user_id in (row.patient_id, old_peer):
                if user_id is not None:
                    await self.sio.emit("consultation:closed", closed, room=user_room(user_id))
        else:
            await self._send_state(row)
            if old_peer is not None and old_peer != new_peer:
                await self._send_state(row, to_user=old_peer)
            if new_peer is not None and new_peer != old_peer:
                await self._send_history(row.id, user_room(new_peer), 0)  # on any node
        for queue in {before.queue_role if before else None, now_view.queue_role} - {None}:
            assert queue is not None
            self._mark_queue(queue)

    async def _send_state(
        self, row: Consultation, *, to_sid: str | None = None, to_user: str | None = None
    ) -> None:
        """`consultation:state` to the patient and their counterpart (or one target)."""
        view = view_of(row)
        peer = counterpart_of(view)
        names = await self._names(row.patient_id, peer)
        now = self.services.clock.now()
        base: dict[str, Any] = {
            "consultation_id": row.id,
            "state": row.state,
            "kind": row.kind,
            "channel": row.channel,
            "server_time": now.isoformat(),  # clients count down against the server's clock
        }
        if row.limit_ends_at is not None:
            base["limit_ends_at"] = row.limit_ends_at.isoformat()
        if row.appointment_id is not None:
            base["appointment_id"] = row.appointment_id
            if await self.services.consultations.missing_documents(row.id):
                base["documents_required"] = True  # R-DOCS-1: the patient sees what is missing
        patient_view = dict(base)
        if peer is not None:
            patient_view["counterpart"] = names[peer]
            patient_view["ice_servers"] = ice_servers(self.settings.signalling, row.patient_id, now)
        place = await self._place(row)
        if place is not None:
            patient_view["queue_position"], patient_view["estimated_wait_seconds"] = place
        staff_view = dict(base)
        staff_view["counterpart"] = names[row.patient_id]
        if peer is not None:
            staff_view["ice_servers"] = ice_servers(self.settings.signalling, peer, now)
        if to_sid is not None:
            who = self.presence.get(to_sid)
            payload = patient_view if who and who.role is Role.PATIENT else staff_view
            await self.sio.emit("consultation:state", payload, to=to_sid)
            return
        if to_user is not None:
            await self.sio.emit("consultation:state", staff_view, room=user_room(to_user))
            return
        await self.sio.emit("consultation:state", patient_view, room=user_room(row.patient_id))
        if peer is not None:
            await self.sio.emit("consultation:state", staff_view, room=user_room(peer))

    async def _names(self, patient_id: str, staff_id: str | None) -> dict[str, dict[str, Any]]:
        async with self.services.db.read() as session:
            patient = await session.get(Patient, patient_id)
            staff = await session.get(Staff, staff_id) if staff_id else None
        names: dict[str, dict[str, Any]] = {}
        if patient is not None:
            names[patient_id] = {"role": "patient", "name": patient.full_name}
        if staff is not None and staff_id is not None:
            names[staff_id] = {"role": staff.role, "name": staff.full_name}
        return names

    async def _place(self, row: Consultation) -> tuple[int, int] | None:
        if row.queue_role is None:
            return None
        online = self.presence.count(Role(row.queue_role))
        place = await self.services.queue.place(row, online)
        if place is None:
            return None
        return place.position, place.estimated_wait_seconds

    # --- queues: coalesced refresh of watchers and waiting patients ----------------------

    def _mark_queue(self, role: Role) -> None:
        self._dirty_queues.add(role)
        self._queue_wakeup.set()

    async def _refresh_queues_forever(self) -> None:
        interval = self.settings.signalling.queue_refresh_interval.total_seconds()
        while True:
            await self._queue_wakeup.wait()
            self._queue_wakeup.clear()
            dirty, self._dirty_queues = self._dirty_queues, set()
            for role in dirty:
                try:
                    await self._refresh_queue(role)
                except Exception:
                    raise_if_cancelled()  # a driver may turn a cancel into its own error
                    log.exception("queue refresh of %s failed", role.value)
            await asyncio.sleep(interval)

    async def _refresh_queue(self, role: Role) -> None:
        """Push the queue to its watchers and new places to the waiting patients here."""
        items = await self.services.queue.items(role)
        await self.sio.emit(
            "queue:update",
            {"role": role.value, "items": [queue_item(i) for i in items]},
            room=queue_room(role),
        )
        online = self.presence.count(role)
        for item in items:
            if not self.presence.online(item.patient_id):
                continue
            place = (item.position, self.services.queue.estimate(item.position, online))
            if self._last_place.get(item.consultation_id) == place:
                continue
            self._last_place[item.consultation_id] = place
            row = await self.services.consultations.get(item.consultation_id)
            await self._send_state(row)


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


def queue_item(item: Any) -> dict[str, Any]:
    """A queue entry as JSON for the console."""
    return {
        "consultation_id": item.consultation_id,
        "position": item.position,
        "patient_id": item.patient_id,
        "patient_name": item.patient_name,
        "age": item.age,
        "channel": item.channel,
        "kind": item.kind,
        "queued_at": item.queued_at.isoformat(),
        "waited_seconds": item.waited_seconds,
        "past_target": item.past_target,
        "target_doctor_id": item.target_doctor_id,
        "device_check": item.device_check,
    }
