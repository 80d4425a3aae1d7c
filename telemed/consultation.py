"""The consultation state machine: a pure table of moves and who may make them.

`decide` is the one function that applies the table. It does no I/O: a
service loads a `ConsultationView`, asks `decide` for a `Transition`, writes
`Transition.changes` with a guarded update (`WHERE state = old`) and
publishes what changed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from telemed.errors import AlreadyTaken, BadRequest, Forbidden, InvalidState
from telemed.roles import DOCTOR_ROLES, Role

logger = logging.getLogger("telemed.consultation")


class State(StrEnum):
    """Where a consultation is (CONTRACT: consultation states)."""

    WAITING_PATIENT = "waiting_patient"
    WAITING_CONSULTANT = "waiting_consultant"
    WITH_CONSULTANT = "with_consultant"
    WAITING_DOCTOR = "waiting_doctor"
    WITH_DOCTOR = "with_doctor"
    CLOSED = "closed"


class Kind(StrEnum):
    """What the consultation is for; it picks the doctor's time limit."""

    URGENT = "urgent"
    SCHEDULED = "scheduled"
    SECOND_OPINION = "second_opinion"


class Channel(StrEnum):
    """How the patient talks to staff (R-URG-1)."""

    VIDEO = "video"
    AUDIO = "audio"
    CHAT = "chat"


class CloseReason(StrEnum):
    """Why a consultation closed: the one enum behind `consultation:closed` reasons."""

    FINISHED = "finished"
    NO_SHOW = "no_show"
    LEFT = "left"
    CANCELLED = "cancelled"


class Event(StrEnum):
    """Everything that can move a consultation; see `TRANSITIONS` and `ACTORS`."""

    PATIENT_CONNECTS = "patient_connects"
    CONSULTANT_ACCEPTS = "consultant_accepts"
    TRANSFER_TO_DOCTOR = "transfer_to_doctor"
    TRANSFER_TO_CONSULTANT = "transfer_to_consultant"
    DOCTOR_ACCEPTS = "doctor_accepts"
    DOCTOR_LEG_ENDS = "doctor_leg_ends"
    DOCTOR_LEG_ENDS_TO_CONSULTANT = "doctor_leg_ends_to_consultant"
    PATIENT_ENDS_DOCTOR_LEG = "patient_ends_doctor_leg"
    PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT = "patient_ends_doctor_leg_to_consultant"
    CLOSE = "close"
    PATIENT_LEAVES = "patient_leaves"
    NO_SHOW = "no_show"
    CANCEL = "cancel"


_S = State
_E = Event

TRANSITIONS: Final[Mapping[tuple[State, Event], State]] = MappingProxyType(
    {
        (_S.WAITING_PATIENT, _E.PATIENT_CONNECTS): _S.WAITING_CONSULTANT,
        (_S.WAITING_CONSULTANT, _E.CONSULTANT_ACCEPTS): _S.WITH_CONSULTANT,
        (_S.WITH_CONSULTANT, _E.TRANSFER_TO_DOCTOR): _S.WAITING_DOCTOR,
        (_S.WITH_CONSULTANT, _E.TRANSFER_TO_CONSULTANT): _S.WAITING_CONSULTANT,
        (_S.WAITING_DOCTOR, _E.DOCTOR_ACCEPTS): _S.WITH_DOCTOR,
        (_S.WITH_DOCTOR, _E.DOCTOR_LEG_ENDS): _S.WAITING_CONSULTANT,
        (_S.WITH_DOCTOR, _E.DOCTOR_LEG_ENDS_TO_CONSULTANT): _S.WITH_CONSULTANT,
        # R-URG-2, R-URG-5: the patient hanging up on the doctor goes back to the consultant
        # (like the doctor's own end of the leg) instead of leaving the consultation.
        (_S.WITH_DOCTOR, _E.PATIENT_ENDS_DOCTOR_LEG): _S.WAITING_CONSULTANT,
        (_S.WITH_DOCTOR, _E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT): _S.WITH_CONSULTANT,
        (_S.WITH_CONSULTANT, _E.CLOSE): _S.CLOSED,
        **{(s, _E.PATIENT_LEAVES): _S.CLOSED for s in State if s is not _S.CLOSED},
        (_S.WAITING_PATIENT, _E.NO_SHOW): _S.CLOSED,
        (_S.WAITING_PATIENT, _E.CANCEL): _S.CLOSED,
    }
)
"""The table: `(state, event) -> new state`. A pair that is absent is refused."""

_LEG_ENDERS: Final = frozenset(DOCTOR_ROLES | {Role.SYSTEM})

ACTORS: Final[Mapping[Event, frozenset[Role]]] = MappingProxyType(
    {
        _E.PATIENT_CONNECTS: frozenset({Role.PATIENT, Role.SYSTEM}),
        _E.CONSULTANT_ACCEPTS: frozenset({Role.CONSULTANT}),
        _E.TRANSFER_TO_DOCTOR: frozenset({Role.CONSULTANT}),
        _E.TRANSFER_TO_CONSULTANT: frozenset({Role.CONSULTANT}),
        _E.DOCTOR_ACCEPTS: DOCTOR_ROLES,
        _E.DOCTOR_LEG_ENDS: _LEG_ENDERS,
        _E.DOCTOR_LEG_ENDS_TO_CONSULTANT: _LEG_ENDERS,
        _E.PATIENT_ENDS_DOCTOR_LEG: frozenset({Role.PATIENT}),
        _E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT: frozenset({Role.PATIENT}),
        _E.CLOSE: frozenset({Role.CONSULTANT}),
        _E.PATIENT_LEAVES: frozenset({Role.PATIENT, Role.SYSTEM}),
        _E.NO_SHOW: frozenset({Role.SYSTEM}),
        _E.CANCEL: frozenset({Role.CONSULTANT, Role.ADMIN, Role.SYSTEM}),
    }
)
"""Which roles may fire each event; relationship checks in `decide` narrow it further."""

CLOSE_REASONS: Final[Mapping[Event, CloseReason]] = MappingProxyType(
    {
        _E.CLOSE: CloseReason.FINISHED,
        _E.PATIENT_LEAVES: CloseReason.LEFT,
        _E.NO_SHOW: CloseReason.NO_SHOW,
        _E.CANCEL: CloseReason.CANCELLED,
    }
)
"""The close reason each closing event records."""

# An accept that meets any open state but its own waiting state lost a race
# (or came late), so it is `already_taken`; `waiting_patient` is left out
# because no race leads back there: that accept is simply invalid.
_ACCEPTS: Final = frozenset({_E.CONSULTANT_ACCEPTS, _E.DOCTOR_ACCEPTS})

_CONSULTANT_ONLY: Final = frozenset({_E.TRANSFER_TO_DOCTOR, _E.TRANSFER_TO_CONSULTANT, _E.CLOSE})
_PATIENT_LEG_ENDS: Final = frozenset(
    {_E.PATIENT_ENDS_DOCTOR_LEG, _E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT}
)
_OWN_PATIENT_ONLY: Final = frozenset({_E.PATIENT_CONNECTS, _E.PATIENT_LEAVES}) | _PATIENT_LEG_ENDS
_OWN_DOCTOR_ONLY: Final = frozenset({_E.DOCTOR_LEG_ENDS, _E.DOCTOR_LEG_ENDS_TO_CONSULTANT})
_TO_CONSULTANT: Final = frozenset(
    {_E.DOCTOR_LEG_ENDS_TO_CONSULTANT, _E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT}
)


@dataclass(frozen=True)
class Actor:
    """Who fires an event: a role and a user id (None only for the system)."""

    role: Role
    id: str | None

    def __post_init__(self) -> None:
        if (self.role is Role.SYSTEM) != (self.id is None):
            raise ValueError("the system actor has no id; every other actor needs one")


SYSTEM_ACTOR: Final = Actor(Role.SYSTEM, None)
"""The scheduler acting on deadlines (no-shows, time limits)."""


@dataclass(frozen=True)
class ConsultationView:
    """The columns of a consultation that `decide` needs: a snapshot, never written to."""

    id: str
    state: State
    kind: Kind
    channel: Channel
    patient_id: str
    consultant_id: str | None
    doctor_id: str | None
    queue_role: Role | None
    target_doctor_id: str | None


@dataclass(frozen=True)
class Transition:
    """An allowed move and the column values to write for it (only those that change)."""

    event: Event
    old: State
    new: State
    changes: Mapping[str, object]
    close_reason: CloseReason | None


def counterpart_of(c: ConsultationView) -> str | None:
    """The staff member the patient talks to now: the only peer of their signalling and chat."""
    if c.state is State.WITH_CONSULTANT:
        return c.consultant_id
    if c.state is State.WITH_DOCTOR:
        return c.doctor_id
    return None


def leg_end_event(consultant_online: bool) -> Event:
    """Pick how a doctor's leg ends: back to an online consultant (R-URG-5) or to the queue."""
    if consultant_online:
        return Event.DOCTOR_LEG_ENDS_TO_CONSULTANT
    return Event.DOCTOR_LEG_ENDS


def patient_leg_end_event(consultant_online: bool) -> Event:
    """Pick where the patient's hang-up on the doctor leads: their online consultant, or the
    consultant queue (R-URG-2, R-URG-5); never a close."""
    if consultant_online:
        return Event.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT
    return Event.PATIENT_ENDS_DOCTOR_LEG


def leg_limit(kind: Kind, urgent_limit: timedelta, scheduled_limit: timedelta) -> timedelta:
    """How long a doctor's leg may last: urgent (R-LIMIT-URG) or by appointment (R-LIMIT-SCH)."""
    if kind is Kind.URGENT:
        return urgent_limit
    return scheduled_limit


def decide(
    c: ConsultationView,
    event: Event,
    actor: Actor,
    *,
    queue_role: Role | None = None,
    doctor_id: str | None = None,
) -> Transition:
    """Apply the table to one consultation: the move and its changes, or an error saying why not."""
    if actor.role not in ACTORS[event]:
        raise Forbidden(f'the role "{actor.role}" may not fire "{event}"')
    _check_arguments(event, queue_role, doctor_id)

    new = TRANSITIONS.get((c.state, event))
    if new is None:
        if event in _ACCEPTS and c.state not in (State.CLOSED, State.WAITING_PATIENT):
            raise AlreadyTaken(
                f'cannot {event} in state "{c.state}": somebody else has already taken this patient'
            )
        raise InvalidState(f'cannot {event} in state "{c.state}"')

    _check_relationship(c, event, actor)

    after = _columns_after(c, event, new, actor, queue_role, doctor_id)
    changes: dict[str, object] = {
        name: value for name, value in after.items() if getattr(c, name) != value
    }
    close_reason = CLOSE_REASONS.get(event)
    if close_reason is not None:
        changes["close_reason"] = close_reason

    logger.debug(
        "consultation %s: %s -> %s on %s by %s %s",
        c.id,
        c.state,
        new,
        event,
        actor.role,
        actor.id,
    )
    return Transition(
        event=event,
        old=c.state,
        new=new,
        changes=MappingProxyType(changes),
        close_reason=close_reason,
    )


def _check_arguments(event: Event, queue_role: Role | None, doctor_id: str | None) -> None:
    """Refuse a call whose extra arguments do not fit the event (a caller's bug or bad input)."""
    if event is Event.TRANSFER_TO_DOCTOR:
        if queue_role not in DOCTOR_ROLES:
            raise BadRequest(
                f"transfer_to_doctor needs the doctor queue to wait in, not {queue_role}"
            )
    elif queue_role is not None or doctor_id is not None:
        raise BadRequest(f"{event} takes no queue_role or doctor_id")


def _check_relationship(c: ConsultationView, event: Event, actor: Actor) -> None:
    """Narrow the role check to this consultation's own patient, consultant or doctor."""
    if event in _OWN_PATIENT_ONLY and actor.role is Role.PATIENT and actor.id != c.patient_id:
        raise Forbidden("a patient can act only on their own consultation")
    if event in _CONSULTANT_ONLY and (c.consultant_id is None or actor.id != c.consultant_id):
        raise Forbidden(f"only the consultant with the patient can {event}")
    if event in _OWN_DOCTOR_ONLY and actor.role is not Role.SYSTEM and actor.id != c.doctor_id:
        raise Forbidden(f"only the doctor with the patient can {event}")
    if event is Event.DOCTOR_ACCEPTS:
        if actor.role != c.queue_role:
            waiting_for = f"a {c.queue_role}" if c.queue_role else "no doctor queue"
            raise Forbidden(f"a {actor.role} cannot take a patient waiting for {waiting_for}")
        if c.target_doctor_id is not None and actor.id != c.target_doctor_id:
            raise Forbidden("the patient is waiting for another, named doctor")
    if event in _TO_CONSULTANT and c.consultant_id is None:
        raise InvalidState(f"cannot {event}: the consultation has no consultant to return to")


def _columns_after(
    c: ConsultationView,
    event: Event,
    new: State,
    actor: Actor,
    queue_role: Role | None,
    doctor_id: str | None,
) -> dict[str, object]:
    """The people and queue columns as they should be after the move."""
    consultant_id = c.consultant_id
    current_doctor_id = c.doctor_id
    if event is Event.CONSULTANT_ACCEPTS:
        consultant_id = actor.id
    elif event is Event.TRANSFER_TO_CONSULTANT:
        consultant_id = None
    elif event is Event.DOCTOR_ACCEPTS:
        current_doctor_id = actor.id
    elif event in _OWN_DOCTOR_ONLY or event in _PATIENT_LEG_ENDS:
        current_doctor_id = None

    # The queue columns describe waiting only: the queue a waiting patient is
    # in, and the named doctor they wait for; both clear once nobody waits.
    new_queue_role: Role | None = None
    target_doctor_id: str | None = None
    if new is State.WAITING_CONSULTANT:
        new_queue_role = Role.CONSULTANT
    elif new is State.WAITING_DOCTOR:
        new_queue_role = queue_role
        target_doctor_id = doctor_id
    return {
        "consultant_id": consultant_id,
        "doctor_id": current_doctor_id,
        "queue_role": new_queue_role,
        "target_doctor_id": target_doctor_id,
    }
