"""The one way out: committed domain events become Socket.IO events here.

Services record what changed (`telemed.events`) in the transaction that changes it; after
the commit `Database.on_commit` hands the events to `Publisher.publish`, whether the
change came from a REST call, a socket event or a scheduler job. Queue watchers get
deltas (`queue:joined`, `queue:left`), never the whole queue; waiting patients get their
new places from `telemed.services.places`, coalesced.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from signalling.ice import ice_servers
from signalling.participants import ParticipantsCache
from signalling.presence import Presence
from signalling.transport import Transport, doctor_queue_room, queue_room, user_room
from telemed.consultation import ConsultationView, Event, State, counterpart_of
from telemed.context import Services
from telemed.events import (
    AccessEnded,
    Change,
    ConsultationChanged,
    DomainEvent,
    PatientAway,
    StaffMessage,
    UserMessage,
)
from telemed.models import Consultation
from telemed.roles import Role
from telemed.services.chat import Message
from telemed.services.live_facts import Facts, facts_and_history, facts_of
from telemed.services.queue import QueueItem
from telemed.services.views import view_of

log = logging.getLogger("telemed.signalling.publisher")

# Why a consultation left a queue, from the event that moved it (`queue:left.reason`).
LEFT_BECAUSE = {
    Event.CONSULTANT_ACCEPTS: "taken",
    Event.DOCTOR_ACCEPTS: "taken",
    Event.TRANSFER_TO_DOCTOR: "transferred",
    Event.TRANSFER_TO_CONSULTANT: "transferred",
    Event.PATIENT_LEAVES: "left",
    Event.NO_SHOW: "no_show",
    Event.CANCEL: "cancelled",
}


def queue_item(item: QueueItem) -> dict[str, Any]:
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
        "appointment": item.appointment,
    }


def queue_of(view: ConsultationView | None) -> tuple[Role, str | None] | None:
    """The queue a consultation waits in (role, named doctor), or None."""
    if view is None or view.queue_role is None:
        return None
    if view.state not in (State.WAITING_CONSULTANT, State.WAITING_DOCTOR):
        return None
    return view.queue_role, view.target_doctor_id


def queue_room_of(queue: tuple[Role, str | None]) -> str:
    role, doctor = queue
    return doctor_queue_room(doctor) if doctor else queue_room(role)


class Publisher:
    """Turns domain events into Socket.IO events for the people concerned."""

    def __init__(
        self,
        transport: Transport,
        presence: Presence,
        participants: ParticipantsCache,
        services: Services,
        end_access: Callable[[AccessEnded], Awaitable[None]],
        queue_moved: Callable[[Role], None],
    ) -> None:
        self.out = transport
        self.presence = presence
        self.participants = participants
        self.settings = services.settings
        self.clock = services.clock
        self.db = services.db
        self.queue = services.queue
        self.chat = services.chat
        self._end_access = end_access
        self._queue_moved = queue_moved

    async def publish(self, events: Sequence[DomainEvent]) -> None:
        """Deliver the events of one committed transaction, in order."""
        for event in events:
            match event:
                case ConsultationChanged(change=change):
                    await self.changed(change)
                case PatientAway(consultation_id=cid, counterpart_id=peer) if peer:
                    await self.out.to_user(
                        peer, "peer:away", {"consultation_id": cid, "role": "patient"}
                    )
                case UserMessage(user_id=user, name=name, data=data):
                    await self.out.to_user(user, name, data)
                case StaffMessage(role=role, name=name, data=data):
                    await self.out.to_room(queue_room(role), name, data)
                case AccessEnded():
                    await self._end_access(event)
                case _:
                    pass

    # --- a consultation changed ----------------------------------------------------------

    async def changed(self, change: Change) -> None:
        """Tell everyone concerned about a change of a consultation."""
        row = change.consultation
        self.participants.forget(row.id)
        now_view = view_of(row)
        before = change.before
        old_peer = counterpart_of(before) if before is not None else None
        new_peer = counterpart_of(now_view)
        if old_peer is not None and old_peer != new_peer:
            reason = change.transition.event.value if change.transition else "changed"
            hangup = {"consultation_id": row.id, "reason": reason}
            for user in (old_peer, row.patient_id):
                await self.out.to_user(user, "call:hangup", hangup)
        if row.state == State.CLOSED.value:
            closed = {"consultation_id": row.id, "reason": row.close_reason}
            for user_id in (row.patient_id, old_peer):
                if user_id is not None:
                    await self.out.to_user(user_id, "consultation:closed", closed)
        else:
            facts, messages = None, None
            joining = new_peer is not None and new_peer != old_peer
            if joining:  # the new counterpart also needs the chat: read with the move
                shown = change.shown or await facts_and_history(self.db, row)
                facts, messages = shown
            await self.send_state(row, facts=facts)
            if old_peer is not None and old_peer != new_peer:
                await self.send_left_state(row, old_peer)
            if new_peer is not None and joining:
                await self.send_history(row.id, user_room(new_peer), 0, messages)
        await self._queue_deltas(change, before, now_view)

    async def _queue_deltas(
        self, change: Change, before: ConsultationView | None, after: ConsultationView
    ) -> None:
        """`queue:left` to the watchers of the queue it left, `queue:joined` to those of the
        queue it entered; waiting patients of both get their new places (coalesced)."""
        old, new = queue_of(before), queue_of(after)
        now = self.clock.now().isoformat()
        if old is not None and old != new:
            event = change.transition.event if change.transition else None
            reason = LEFT_BECAUSE.get(event, "closed") if event else "closed"
            left = {
                "role": old[0].value,
                "consultation_id": after.id,
                "reason": reason,
                "server_time": now,
            }
            await self.out.to_room(queue_room_of(old), "queue:left", left)
            self._queue_moved(old[0])
        if new is not None and (new != old or change.transition is None):
            item = await self.queue.item(after.id)
            if item is not None:
                joined = {"role": new[0].value, "item": queue_item(item), "server_time": now}
                await self.out.to_room(queue_room_of(new), "queue:joined", joined)
            self._queue_moved(new[0])

    # --- state, as each side sees it --------------------------------------------------------

    async def send_state(
        self,
        row: Consultation,
        *,
        to_sid: str | None = None,
        patient: bool = True,
        facts: Facts | None = None,
    ) -> None:
        """`consultation:state` to the patient and their counterpart, or to one socket
        (`patient` says which side's view that socket gets); `facts` when already read."""
        peer = counterpart_of(view_of(row))
        if facts is None:
            facts = await facts_of(self.db, row)
        now = self.clock.now()
        base = self.base_state(row, now.isoformat())
        if row.appointment_id is not None and facts.documents_required:
            base["documents_required"] = True  # R-DOCS-1: the patient sees what is missing
        patient_view = dict(base)
        if peer is not None and facts.counterpart is not None:
            patient_view["counterpart"] = facts.counterpart
            patient_view["ice_servers"] = ice_servers(self.settings.signalling, row.patient_id, now)
            if facts.leg_id is not None:
                patient_view["leg_id"] = facts.leg_id
        place = await self._place(row)
        if place is not None:
            patient_view["queue_position"], patient_view["estimated_wait_seconds"] = place
        staff_view = dict(base)
        if facts.patient is not None:
            staff_view["counterpart"] = facts.patient
        if facts.appointment is not None:
            staff_view["appointment"] = facts.appointment
        if peer is not None:
            staff_view["ice_servers"] = ice_servers(self.settings.signalling, peer, now)
            if facts.leg_id is not None:
                staff_view["leg_id"] = facts.leg_id
        if to_sid is not None:
            await self.out.to_sid(
                to_sid, "consultation:state", patient_view if patient else staff_view
            )
            return
        await self.out.to_user(row.patient_id, "consultation:state", patient_view)
        if peer is not None:
            await self.out.to_user(peer, "consultation:state", staff_view)

    async def send_left_state(self, row: Consultation, staff_id: str) -> None:
        """The state to a staff member whose leg just ended: no counterpart any more, and no
        ICE servers for a call they are no longer part of."""
        await self.out.to_user(
            staff_id, "consultation:state", self.base_state(row, self.clock.now().isoformat())
        )

    @staticmethod
    def base_state(row: Consultation, server_time: str) -> dict[str, Any]:
        base: dict[str, Any] = {
            "consultation_id": row.id,
            "state": row.state,
            "kind": row.kind,
            "channel": row.channel,
            "server_time": server_time,  # clients count down against the server's clock
        }
        if row.limit_ends_at is not None:
            base["limit_ends_at"] = row.limit_ends_at.isoformat()
        if row.appointment_id is not None:
            base["appointment_id"] = row.appointment_id
        return base

    async def _place(self, row: Consultation) -> tuple[int, int] | None:
        if row.queue_role is None:
            return None
        online = self.presence.count(Role(row.queue_role))
        place = await self.queue.place(row, online)
        if place is None:
            return None
        return place.position, place.estimated_wait_seconds

    async def send_history(
        self, consultation_id: str, room: str, after: int, messages: list[Message] | None = None
    ) -> None:
        """The chat of a consultation since `after`, to a socket or a user's room;
        `messages` when already read."""
        if messages is None:
            messages = await self.chat.history(consultation_id, after)
        await self.out.to_room(
            room,
            "chat:history",
            {"consultation_id": consultation_id, "messages": [m.to_event() for m in messages]},
        )
