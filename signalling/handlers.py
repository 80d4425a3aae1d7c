"""Client events: who is asking, within budget, a validated payload, one service call, an ack.

No handler announces anything: the services record what changed and the publisher tells
everyone concerned after the commit. The signal relay and chat delivery are the
exception: they are messages between two people, not changes of state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import socketio
from pydantic import BaseModel, ValidationError

from signalling import schemas
from signalling.ice import ice_expiry, ice_servers
from signalling.participants import ParticipantsCache
from signalling.presence import Participant, Presence
from signalling.publisher import Publisher, queue_item
from signalling.sessions import Sessions
from signalling.transport import Transport, doctor_queue_room, queue_room
from telemed import metrics
from telemed.consultation import Actor, Event, State, counterpart_of
from telemed.context import Services
from telemed.errors import (
    BadRequest,
    Forbidden,
    InternalError,
    InvalidState,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TelemedError,
)
from telemed.http.api import validation_failed
from telemed.roles import DOCTOR_ROLES, STAFF_ROLES, Role
from telemed.services.audit import Who
from telemed.services.care import CareAccess
from telemed.services.documents import check_attachable
from telemed.services.views import view_of

P = TypeVar("P", bound=BaseModel)
Ack = dict[str, Any]
WATCHERS = frozenset({Role.CONSULTANT, *DOCTOR_ROLES})
EVERYONE = frozenset({Role.PATIENT, *STAFF_ROLES})
UNTIMED = frozenset({"signal"})  # the relay's hot path: counted, not timed (telemed/metrics.py)


class UnknownEvent(TelemedError):
    code = "unknown_event"
    default_message = "There is no such event."


class PeerAway(InvalidState):
    code = "peer_away"
    default_message = "The other side is not connected now; wait for them to come back."


def error_ack(error: TelemedError) -> Ack:
    return {"ok": False, "error": error.to_dict()}


class Handlers:
    """The client events of the default namespace."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        transport: Transport,
        presence: Presence,
        participants: ParticipantsCache,
        sessions: Sessions,
        services: Callable[[], Services],
        publisher: Callable[[], Publisher],
        log: Any,
    ) -> None:
        self.sio = sio
        self.out = transport
        self.presence = presence
        self.participants = participants
        self.sessions = sessions
        self._services = services
        self._publisher = publisher
        self.log = log

    @property
    def services(self) -> Services:
        return self._services()

    def register(self) -> None:
        self.sio.on("connect", self.sessions.admit)
        self.sio.on("disconnect", self.sessions.on_disconnect)
        self.sio.on("*", metrics.observed("unknown", self.unknown))
        self.sio.on_reserved = metrics.observed("unknown", self.reserved)
        self.sio.on_binary = metrics.observed("unknown", self.binary)
        self.sio.on_too_large = metrics.observed("unknown", self.too_large)
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
        self._event("ice:renew", schemas.Empty, EVERYONE, self.renew_ice)

    def _event(
        self,
        name: str,
        schema: type[P],
        roles: Collection[Role],
        handler: Callable[[Participant, P], Awaitable[Ack | None]],
    ) -> None:
        async def wrapped(sid: str, data: Any = None, *extra: Any) -> Ack:
            try:
                now = self.services.clock.now()
                who = await self.sessions.caller(sid, now)
                if not who.budget.allows(name, now):
                    raise RateLimited(f'Too many "{name}" events; slow down.')
                if who.role not in roles:
                    raise Forbidden(f'"{name}" is not available to the {who.role.value} role.')
                payload = self._parse(schema, data, extra)
                return {"ok": True, **(await handler(who, payload) or {})}
            except TelemedError as exc:
                return error_ack(exc)
            except Exception:
                self.log.exception("event %s failed", name)
                return error_ack(InternalError())

        self.sio.on(name, metrics.observed(name, wrapped, timed=name not in UNTIMED))

    def _parse(self, schema: type[P], data: Any, extra: tuple[Any, ...]) -> P:
        if extra:
            raise BadRequest("Send one JSON object per event.")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BadRequest("The event payload must be a JSON object.")
        try:  # its size was checked on the frame (StrictServer), before it was decoded
            return schema.model_validate(data)
        except ValidationError as exc:
            raise validation_failed(exc) from None

    async def unknown(self, event: str, sid: str, *args: Any) -> Ack:
        return error_ack(UnknownEvent(f'There is no event "{event[:64]}".'))

    async def reserved(self, event: str, sid: str) -> Ack:
        """`connect`, `disconnect` and the library's other names, sent by a client."""
        return error_ack(UnknownEvent(f'"{event}" is reserved; it is not a client event.'))

    def _max_event_bytes(self) -> int:
        return self.services.settings.signalling.max_event_bytes

    async def too_large(self, sid: str) -> Ack:
        """An event frame over `signalling.max_event_bytes`, refused before decoding."""
        return error_ack(PayloadTooLarge(limit_bytes=self._max_event_bytes()))

    async def binary(self, sid: str) -> Ack:
        """A Socket.IO binary event: every telemed event is JSON (documents go over REST)."""
        return error_ack(BadRequest("Binary payloads are not accepted; send JSON."))

    async def renew_ice(self, who: Participant, p: schemas.Empty) -> Ack:
        """Fresh ICE servers (new TURN credentials) for a call that outlives the old ones."""
        settings = self.services.settings.signalling
        now = self.services.clock.now()
        expires = ice_expiry(settings, now)
        return {
            "ice_servers": ice_servers(settings, who.user_id, now),
            "expires_at": expires.isoformat() if expires else None,
        }

    # --- patient events -----------------------------------------------------------------

    async def start_consultation(self, who: Participant, p: schemas.Start) -> Ack:
        """R-URG-1: the patient picks a channel and waits in the consultant queue."""
        consultations = self.services.consultations
        if p.appointment_id is not None:  # a booked patient joins, from remind_before ahead
            change = await consultations.open_booked(
                p.appointment_id, patient_online=True, by_patient=who.user_id
            )
        else:
            change = await consultations.start(who.user_id, p.channel)
        await self._publisher().send_history(change.consultation.id, who.sid, 0)
        return {"consultation_id": change.consultation.id, "state": change.consultation.state}

    async def leave(self, who: Participant, p: schemas.ConsultationRef) -> Ack:
        await self.services.consultations.fire(
            p.consultation_id, Event.PATIENT_LEAVES, Actor(Role.PATIENT, who.user_id)
        )
        return {"consultation_id": p.consultation_id}

    # --- staff events -------------------------------------------------------------------

    async def watch_queue(self, who: Participant, p: schemas.Empty) -> Ack:
        """A snapshot of the caller's queue; deltas (`queue:joined`, `queue:left`) follow."""
        await self.sio.enter_room(who.sid, queue_room(who.role))
        if who.role in DOCTOR_ROLES:
            await self.sio.enter_room(who.sid, doctor_queue_room(who.user_id))
        who.watching |= {who.role}
        items = await self.services.queue.items(who.role, who.user_id)
        return {
            "role": who.role.value,
            "items": [queue_item(i) for i in items],
            "server_time": self.services.clock.now().isoformat(),
        }

    async def unwatch_queue(self, who: Participant, p: schemas.Empty) -> Ack:
        await self.sio.leave_room(who.sid, queue_room(who.role))
        await self.sio.leave_room(who.sid, doctor_queue_room(who.user_id))
        who.watching -= {who.role}
        return {}

    async def accept(self, who: Participant, p: schemas.Accept) -> Ack:
        """Take the named patient, or the longest-waiting one of my queue."""
        change = await self.services.consultations.accept(
            Actor(who.role, who.user_id), p.consultation_id
        )
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
            change = await svc.transfer_to_doctor(p.consultation_id, actor, p.doctor_id)
        elif who.role in DOCTOR_ROLES:
            current = await svc.get(p.consultation_id)
            change = await svc.end_doctor_leg(
                p.consultation_id,
                actor,
                consultant_online=self.presence.online(current.consultant_id),
            )
        else:
            change = await svc.fire(p.consultation_id, Event.TRANSFER_TO_CONSULTANT, actor)
        return {"consultation_id": p.consultation_id, "state": change.consultation.state}

    async def close(self, who: Participant, p: schemas.Close) -> Ack:
        """The consultant closes the consultation with an outcome."""
        await self.services.consultations.fire(
            p.consultation_id, Event.CLOSE, Actor(who.role, who.user_id), outcome=p.outcome
        )
        return {"consultation_id": p.consultation_id}

    # --- media signalling and chat ------------------------------------------------------

    async def _peer_of(self, who: Participant, consultation_id: str) -> str:
        """The one participant `who` may talk to in the consultation, or forbidden. Read
        through the participants cache: the signal relay asks on every message."""
        found = self.participants.get(consultation_id)
        if found is None:
            ticket = self.participants.ticket()
            try:
                row = await self.services.consultations.get(consultation_id)
            except NotFound:
                raise Forbidden("You are not a participant of this consultation.") from None
            found = (row.patient_id, counterpart_of(view_of(row)))
            if row.state != State.CLOSED.value:
                self.participants.put(consultation_id, found, ticket)
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
        """Relay SDP and ICE only to the current counterpart, and only while connected:
        a signal to someone away would be lost, so the sender is told (`peer_away`)."""
        peer = await self._peer_of(who, p.consultation_id)
        if not self.presence.online(peer):
            raise PeerAway()
        await self.out.to_user(
            peer,
            "signal",
            {"consultation_id": p.consultation_id, "from_role": who.role.value, "data": p.data},
        )
        return {}

    async def send_chat(self, who: Participant, p: schemas.ChatSend) -> Ack:
        """Persist a chat message and deliver it to the patient and the current counterpart."""
        peer = await self._chat_peer(who, p.consultation_id)
        documents = []
        if p.document_ids:
            if who.role is not Role.PATIENT:
                raise Forbidden("Only the patient attaches documents from their medical card.")
            documents = await check_attachable(self.services.db, who.user_id, p.document_ids)
        message = await self.services.chat.post(
            p.consultation_id, who.role.value, who.user_id, p.text, documents
        )
        event = message.to_event()
        for user in {who.user_id, peer} - {""}:
            await self.out.to_user(user, "chat:message", event)
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
        if who.role is not Role.PATIENT:  # staff reading medical text: the policy audits it
            services = self.services
            care = CareAccess(services.db, services.clock, services.settings.rules)
            await care.read_record(
                Who(who.role, who.user_id), who.role, row.patient_id, "chat_history_read"
            )
        messages = await self.services.chat.history(row.id, p.after_message_id)
        return {"messages": [m.to_event() for m in messages]}
