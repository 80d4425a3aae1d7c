"""The appointment's states as a table, like the consultation's (telemed/consultation.py).

A booked appointment starts (its consultation opens, by the patient or at its time),
is cancelled before its start (by the patient, a consultant or an admin), and a started
one whose patient never came ends as a no-show (R-NOSHOW-1, by the scheduler). Nothing
else moves it. Services ask `decide()` for the move and save it with a guarded update
(`WHERE state = <the state it leaves>`, see `move_of()`), so a race changes it once.
No I/O here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from telemed.errors import Forbidden, InvalidState
from telemed.roles import Role

logger = logging.getLogger("telemed.appointment")


class AppointmentState(StrEnum):
    BOOKED = "booked"
    STARTED = "started"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


class AppointmentEvent(StrEnum):
    """Everything that can move an appointment; see `TRANSITIONS` and `ACTORS`."""

    OPEN = "open"  # its consultation opens
    CANCEL = "cancel"  # called off before its start
    NO_SHOW = "no_show"  # its consultation closed: the patient never came


S, E = AppointmentState, AppointmentEvent

TRANSITIONS: Final[Mapping[tuple[AppointmentState, AppointmentEvent], AppointmentState]] = (
    MappingProxyType(
        {
            (S.BOOKED, E.OPEN): S.STARTED,
            (S.BOOKED, E.CANCEL): S.CANCELLED,
            (S.STARTED, E.NO_SHOW): S.NO_SHOW,
        }
    )
)

ACTORS: Final[Mapping[AppointmentEvent, frozenset[Role]]] = MappingProxyType(
    {
        E.OPEN: frozenset({Role.PATIENT, Role.SYSTEM}),
        E.CANCEL: frozenset({Role.PATIENT, Role.CONSULTANT, Role.ADMIN}),
        E.NO_SHOW: frozenset({Role.SYSTEM}),
    }
)


def move_of(event: AppointmentEvent) -> tuple[AppointmentState, AppointmentState]:
    """The one state `event` moves an appointment out of (the guard of its update) and
    the state it moves it to."""
    ((old, new),) = {(o, n) for (o, fired), n in TRANSITIONS.items() if fired is event}
    return old, new


def decide(
    appointment_id: str, state: AppointmentState | str, event: AppointmentEvent, role: Role
) -> AppointmentState:
    """The state after `event`, or why not: Forbidden for a role that may not fire it,
    InvalidState naming the state and the event."""
    if role not in ACTORS[event]:
        raise Forbidden(f'the role "{role}" may not {event} an appointment')
    old = AppointmentState(state)
    new = TRANSITIONS.get((old, event))
    if new is None:
        raise InvalidState(f'cannot {event} an appointment in state "{old}"')
    logger.debug("appointment %s: %s -> %s on %s by %s", appointment_id, old, new, event, role)
    return new
