"""The appointment's transition table (telemed/appointment.py): every state x event pair,
who may fire each event, and the guard each move's update uses."""

from __future__ import annotations

import itertools

import pytest

from telemed.appointment import (
    ACTORS,
    TRANSITIONS,
    AppointmentEvent,
    AppointmentState,
    decide,
    move_of,
)
from telemed.errors import Forbidden, InvalidState
from telemed.roles import Role

S, E = AppointmentState, AppointmentEvent
EXPECTED = {
    (S.BOOKED, E.OPEN): S.STARTED,
    (S.BOOKED, E.CANCEL): S.CANCELLED,
    (S.STARTED, E.NO_SHOW): S.NO_SHOW,
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, E)))
def test_every_state_and_event_pair(state: AppointmentState, event: AppointmentEvent) -> None:
    """R-SCH-1, R-NOSHOW-1: a booked appointment opens or is cancelled; only a started one
    ends as a no-show; nothing else moves an appointment, and the error names both."""
    role = next(iter(sorted(ACTORS[event])))
    if (state, event) in EXPECTED:
        assert decide("a1", state, event, role) is EXPECTED[(state, event)]
    else:
        with pytest.raises(InvalidState, match=f'cannot {event}.*"{state}"'):
            decide("a1", state, event, role)


def test_the_table_is_the_expected_one_and_each_event_leaves_one_state() -> None:
    assert dict(TRANSITIONS) == EXPECTED
    assert move_of(E.OPEN) == (S.BOOKED, S.STARTED)
    assert move_of(E.CANCEL) == (S.BOOKED, S.CANCELLED)
    assert move_of(E.NO_SHOW) == (S.STARTED, S.NO_SHOW)


@pytest.mark.parametrize(("event", "role"), list(itertools.product(E, Role)))
def test_only_the_listed_roles_fire_each_event(event: AppointmentEvent, role: Role) -> None:
    """Cancelling is for the patient, a consultant or an admin; a no-show only the
    scheduler's; a doctor never moves an appointment."""
    state = move_of(event)[0]
    if role in ACTORS[event]:
        assert decide("a1", state, event, role) is move_of(event)[1]
    else:
        with pytest.raises(Forbidden):
            decide("a1", state, event, role)
