"""The consultation state machine: every (state, event) pair, every role, every relationship."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from datetime import timedelta
from typing import Any

import pytest

from telemed.consultation import (
    ACTORS,
    SYSTEM_ACTOR,
    TRANSITIONS,
    Actor,
    Channel,
    CloseReason,
    ConsultationView,
    Event,
    Kind,
    State,
    Transition,
    decide,
    leg_end_event,
    leg_limit,
    patient_leg_end_event,
)
from telemed.errors import AlreadyTaken, BadRequest, Forbidden, InvalidState
from telemed.roles import DOCTOR_ROLES, Role

S = State
E = Event

# Written out by hand from the brief and CONTRACT.md, so the module's table is
# checked against an independent copy rather than against itself.
EXPECTED_MOVES: dict[tuple[State, Event], State] = {
    (S.WAITING_PATIENT, E.PATIENT_CONNECTS): S.WAITING_CONSULTANT,
    (S.WAITING_CONSULTANT, E.CONSULTANT_ACCEPTS): S.WITH_CONSULTANT,
    (S.WITH_CONSULTANT, E.TRANSFER_TO_DOCTOR): S.WAITING_DOCTOR,
    (S.WITH_CONSULTANT, E.TRANSFER_TO_CONSULTANT): S.WAITING_CONSULTANT,
    (S.WAITING_DOCTOR, E.DOCTOR_ACCEPTS): S.WITH_DOCTOR,
    (S.WITH_DOCTOR, E.DOCTOR_LEG_ENDS): S.WAITING_CONSULTANT,
    (S.WITH_DOCTOR, E.DOCTOR_LEG_ENDS_TO_CONSULTANT): S.WITH_CONSULTANT,
    (S.WITH_DOCTOR, E.PATIENT_ENDS_DOCTOR_LEG): S.WAITING_CONSULTANT,
    (S.WITH_DOCTOR, E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT): S.WITH_CONSULTANT,
    (S.WITH_CONSULTANT, E.CLOSE): S.CLOSED,
    (S.WAITING_PATIENT, E.PATIENT_LEAVES): S.CLOSED,
    (S.WAITING_CONSULTANT, E.PATIENT_LEAVES): S.CLOSED,
    (S.WITH_CONSULTANT, E.PATIENT_LEAVES): S.CLOSED,
    (S.WAITING_DOCTOR, E.PATIENT_LEAVES): S.CLOSED,
    (S.WITH_DOCTOR, E.PATIENT_LEAVES): S.CLOSED,
    (S.WAITING_PATIENT, E.NO_SHOW): S.CLOSED,
    (S.WAITING_PATIENT, E.CANCEL): S.CLOSED,
}

EXPECTED_ACTORS: dict[Event, set[Role]] = {
    E.PATIENT_CONNECTS: {Role.PATIENT, Role.SYSTEM},
    E.CONSULTANT_ACCEPTS: {Role.CONSULTANT},
    E.TRANSFER_TO_DOCTOR: {Role.CONSULTANT},
    E.TRANSFER_TO_CONSULTANT: {Role.CONSULTANT},
    E.DOCTOR_ACCEPTS: {Role.THERAPIST, Role.PAEDIATRICIAN, Role.SPECIALIST, Role.PSYCHOLOGIST},
    E.DOCTOR_LEG_ENDS: {
        Role.THERAPIST,
        Role.PAEDIATRICIAN,
        Role.SPECIALIST,
        Role.PSYCHOLOGIST,
        Role.SYSTEM,
    },
    E.DOCTOR_LEG_ENDS_TO_CONSULTANT: {
        Role.THERAPIST,
        Role.PAEDIATRICIAN,
        Role.SPECIALIST,
        Role.PSYCHOLOGIST,
        Role.SYSTEM,
    },
    E.PATIENT_ENDS_DOCTOR_LEG: {Role.PATIENT},
    E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT: {Role.PATIENT},
    E.CLOSE: {Role.CONSULTANT},
    E.PATIENT_LEAVES: {Role.PATIENT, Role.SYSTEM},
    E.NO_SHOW: {Role.SYSTEM},
    E.CANCEL: {Role.CONSULTANT, Role.ADMIN, Role.SYSTEM},
}

PATIENT = Actor(Role.PATIENT, "p1")
OTHER_PATIENT = Actor(Role.PATIENT, "p2")
CONSULTANT = Actor(Role.CONSULTANT, "c1")
OTHER_CONSULTANT = Actor(Role.CONSULTANT, "c2")
THERAPIST = Actor(Role.THERAPIST, "d1")
OTHER_THERAPIST = Actor(Role.THERAPIST, "d2")
PAEDIATRICIAN = Actor(Role.PAEDIATRICIAN, "d3")
ADMIN = Actor(Role.ADMIN, "a1")

# A consistent snapshot of each state: who is with the patient, which queue they wait in.
_PEOPLE: dict[State, dict[str, Any]] = {
    S.WAITING_PATIENT: {},
    S.WAITING_CONSULTANT: {"queue_role": Role.CONSULTANT},
    S.WITH_CONSULTANT: {"consultant_id": "c1"},
    S.WAITING_DOCTOR: {"consultant_id": "c1", "queue_role": Role.THERAPIST},
    S.WITH_DOCTOR: {"consultant_id": "c1", "doctor_id": "d1"},
    S.CLOSED: {"consultant_id": "c1"},
}


def view(state: State, **overrides: Any) -> ConsultationView:
    """A consultation in `state`, with the people that state implies, plus overrides."""
    fields: dict[str, Any] = {
        "id": "k1",
        "state": state,
        "kind": Kind.URGENT,
        "channel": Channel.VIDEO,
        "patient_id": "p1",
        "consultant_id": None,
        "doctor_id": None,
        "queue_role": None,
        "target_doctor_id": None,
    }
    fields.update(_PEOPLE[state])
    fields.update(overrides)
    return ConsultationView(**fields)


# For each event, an actor allowed to fire it on the snapshots above.
ALLOWED_ACTOR: dict[Event, Actor] = {
    E.PATIENT_CONNECTS: PATIENT,
    E.CONSULTANT_ACCEPTS: CONSULTANT,
    E.TRANSFER_TO_DOCTOR: CONSULTANT,
    E.TRANSFER_TO_CONSULTANT: CONSULTANT,
    E.DOCTOR_ACCEPTS: THERAPIST,
    E.DOCTOR_LEG_ENDS: THERAPIST,
    E.DOCTOR_LEG_ENDS_TO_CONSULTANT: THERAPIST,
    E.PATIENT_ENDS_DOCTOR_LEG: PATIENT,
    E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT: PATIENT,
    E.CLOSE: CONSULTANT,
    E.PATIENT_LEAVES: PATIENT,
    E.NO_SHOW: SYSTEM_ACTOR,
    E.CANCEL: CONSULTANT,
}


def extra(event: Event) -> dict[str, Any]:
    """The keyword arguments an event needs: only the transfer to a doctor takes any."""
    return {"queue_role": Role.THERAPIST} if event is E.TRANSFER_TO_DOCTOR else {}


def fire(c: ConsultationView, event: Event, actor: Actor | None = None, **kw: Any) -> Transition:
    """Decide `event` on `c` with an allowed actor unless one is given."""
    return decide(c, event, actor or ALLOWED_ACTOR[event], **(kw or extra(event)))


def after(c: ConsultationView, t: Transition) -> ConsultationView:
    """The consultation as a service would reload it after writing `t`."""
    columns: dict[str, Any] = {k: v for k, v in t.changes.items() if k != "close_reason"}
    return dataclasses.replace(c, state=t.new, **columns)


# --- the table ---------------------------------------------------------------


def test_the_table_holds_exactly_the_moves_of_the_brief() -> None:
    """The table is the brief's list of moves, no more, no less."""
    assert dict(TRANSITIONS) == EXPECTED_MOVES


def test_the_enums_carry_the_contract_values() -> None:
    """States, kinds, channels and close reasons are spelled as CONTRACT.md spells them."""
    assert [s.value for s in State] == [
        "waiting_patient",
        "waiting_consultant",
        "with_consultant",
        "waiting_doctor",
        "with_doctor",
        "closed",
    ]
    assert {k.value for k in Kind} == {"urgent", "scheduled", "second_opinion"}
    assert {c.value for c in Channel} == {"video", "audio", "chat"}
    assert {r.value for r in CloseReason} == {"finished", "no_show", "left", "cancelled"}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_state_and_event_pair_moves_by_the_table_or_is_refused(
    state: State, event: Event
) -> None:
    """Each pair either reaches the table's target or raises an error naming state and event."""
    c = view(state)
    if (state, event) in EXPECTED_MOVES:
        t = fire(c, event)
        assert (t.event, t.old, t.new) == (event, state, EXPECTED_MOVES[state, event])
        return
    lost_a_race = event in (E.CONSULTANT_ACCEPTS, E.DOCTOR_ACCEPTS) and state not in (
        S.CLOSED,
        S.WAITING_PATIENT,
    )
    expected_error = AlreadyTaken if lost_a_race else InvalidState
    with pytest.raises(expected_error) as info:
        fire(c, event)
    assert type(info.value) is expected_error
    assert f'cannot {event} in state "{state}"' in info.value.message


def test_the_error_for_a_refused_move_names_the_event_and_the_state() -> None:
    """Errors read like aiortc's: the action and the state it met."""
    with pytest.raises(InvalidState, match=r'^cannot consultant_accepts in state "closed"$'):
        fire(view(S.CLOSED), E.CONSULTANT_ACCEPTS)


def test_a_consultant_who_lost_the_race_for_a_patient_gets_already_taken() -> None:
    """Two consultants accept the same patient; the loser reloads and is told it is taken."""
    waiting = view(S.WAITING_CONSULTANT)
    won = fire(waiting, E.CONSULTANT_ACCEPTS, CONSULTANT)
    reloaded = after(waiting, won)
    with pytest.raises(AlreadyTaken) as info:
        fire(reloaded, E.CONSULTANT_ACCEPTS, OTHER_CONSULTANT)
    assert info.value.code == "already_taken"


def test_a_doctor_who_lost_the_race_for_a_patient_gets_already_taken() -> None:
    """Two therapists accept the same patient; the loser is told it is taken."""
    waiting = view(S.WAITING_DOCTOR)
    won = fire(waiting, E.DOCTOR_ACCEPTS, THERAPIST)
    reloaded = after(waiting, won)
    with pytest.raises(AlreadyTaken):
        fire(reloaded, E.DOCTOR_ACCEPTS, OTHER_THERAPIST)


def test_accepting_a_booked_consultation_before_the_patient_connects_is_invalid() -> None:
    """No race leads back to waiting_patient, so that accept is invalid, not already taken."""
    with pytest.raises(InvalidState) as info:
        fire(view(S.WAITING_PATIENT), E.CONSULTANT_ACCEPTS)
    assert type(info.value) is InvalidState


# --- who may fire each event -------------------------------------------------


def test_the_actor_table_is_the_brief_list() -> None:
    """Who may fire each event, as the brief lists it."""
    assert {e: set(roles) for e, roles in ACTORS.items()} == EXPECTED_ACTORS


def _actor_for(role: Role) -> Actor:
    return SYSTEM_ACTOR if role is Role.SYSTEM else Actor(role, f"{role}-1")


def _source_state(event: Event) -> State:
    return next(s for (s, e) in EXPECTED_MOVES if e is event)


@pytest.mark.parametrize(("event", "role"), list(itertools.product(Event, Role)))
def test_every_role_may_fire_only_its_own_events(event: Event, role: Role) -> None:
    """An allowed role moves the consultation; any other role is forbidden, by name."""
    actor = _actor_for(role)
    # The consultation's own patient, consultant and doctor are this actor where it fits,
    # so only the role decides.
    c = view(
        _source_state(event),
        patient_id="patient-1",
        consultant_id="consultant-1",
        doctor_id=actor.id if role in DOCTOR_ROLES else "therapist-1",
        queue_role=role if role in DOCTOR_ROLES else Role.THERAPIST,
    )
    if role in EXPECTED_ACTORS[event]:
        t = fire(c, event, actor)
        assert t.new is EXPECTED_MOVES[c.state, event]
    else:
        with pytest.raises(Forbidden) as info:
            fire(c, event, actor)
        assert role.value in info.value.message
        assert event.value in info.value.message


# --- relationships -----------------------------------------------------------


@pytest.mark.parametrize("event", [E.TRANSFER_TO_DOCTOR, E.TRANSFER_TO_CONSULTANT, E.CLOSE])
def test_another_consultant_cannot_transfer_or_close_a_patient_they_do_not_have(
    event: Event,
) -> None:
    """Only the consultant with the patient transfers or closes."""
    with pytest.raises(Forbidden, match="only the consultant with the patient"):
        fire(view(S.WITH_CONSULTANT), event, OTHER_CONSULTANT)


def test_a_therapist_cannot_take_a_child() -> None:
    """R-ROUTE-1: a patient queued for a paediatrician is not a therapist's."""
    c = view(S.WAITING_DOCTOR, queue_role=Role.PAEDIATRICIAN)
    with pytest.raises(
        Forbidden, match=r"^a therapist cannot take a patient waiting for a paediatrician$"
    ):
        fire(c, E.DOCTOR_ACCEPTS, THERAPIST)
    assert fire(c, E.DOCTOR_ACCEPTS, PAEDIATRICIAN).new is S.WITH_DOCTOR


def test_a_paediatrician_cannot_take_an_adult() -> None:
    """R-ROUTE-1: a patient queued for a therapist is not a paediatrician's."""
    c = view(S.WAITING_DOCTOR, queue_role=Role.THERAPIST)
    with pytest.raises(Forbidden, match=r"paediatrician cannot take .* therapist"):
        fire(c, E.DOCTOR_ACCEPTS, PAEDIATRICIAN)


def test_only_the_named_doctor_takes_a_patient_transferred_to_them() -> None:
    """A transfer to a named doctor reserves the patient for that doctor alone."""
    c = view(S.WAITING_DOCTOR, target_doctor_id="d1")
    with pytest.raises(Forbidden, match="named doctor"):
        fire(c, E.DOCTOR_ACCEPTS, OTHER_THERAPIST)
    t = fire(c, E.DOCTOR_ACCEPTS, THERAPIST)
    assert t.changes == {"doctor_id": "d1", "queue_role": None, "target_doctor_id": None}


@pytest.mark.parametrize("event", [E.DOCTOR_LEG_ENDS, E.DOCTOR_LEG_ENDS_TO_CONSULTANT])
def test_another_doctor_cannot_end_the_leg(event: Event) -> None:
    """Only the doctor with the patient, or the system at the limit, ends the leg."""
    with pytest.raises(Forbidden, match="only the doctor with the patient"):
        fire(view(S.WITH_DOCTOR), event, OTHER_THERAPIST)
    assert (
        fire(view(S.WITH_DOCTOR), event, SYSTEM_ACTOR).new is EXPECTED_MOVES[S.WITH_DOCTOR, event]
    )


@pytest.mark.parametrize("event", [E.PATIENT_CONNECTS, E.PATIENT_LEAVES])
def test_a_patient_cannot_act_on_someone_elses_consultation(event: Event) -> None:
    """A patient connects to and leaves only their own consultation."""
    with pytest.raises(Forbidden, match="own consultation"):
        fire(view(S.WAITING_PATIENT), event, OTHER_PATIENT)


@pytest.mark.parametrize(
    "event", [E.PATIENT_ENDS_DOCTOR_LEG, E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT]
)
def test_a_patient_cannot_hang_up_on_someone_elses_doctor(event: Event) -> None:
    """R-URG-5: only the consultation's own patient ends their doctor's leg."""
    with pytest.raises(Forbidden, match="own consultation"):
        fire(view(S.WITH_DOCTOR), event, OTHER_PATIENT)


def test_a_patients_hang_up_cannot_return_to_a_consultant_when_there_is_none() -> None:
    """R-URG-5: straight back to the consultant needs a consultant on the record."""
    with pytest.raises(InvalidState, match="no consultant"):
        fire(view(S.WITH_DOCTOR, consultant_id=None), E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT)


def test_the_leg_cannot_return_to_a_consultant_when_there_is_none() -> None:
    """R-URG-5: going straight back to the consultant needs a consultant on the record."""
    with pytest.raises(InvalidState, match="no consultant"):
        fire(view(S.WITH_DOCTOR, consultant_id=None), E.DOCTOR_LEG_ENDS_TO_CONSULTANT)


# --- what each move writes ---------------------------------------------------


def test_a_connecting_patient_joins_the_consultant_queue() -> None:
    """R-URG-2: a booked patient who connects waits for a consultant."""
    t = fire(view(S.WAITING_PATIENT), E.PATIENT_CONNECTS, SYSTEM_ACTOR)
    assert t.changes == {"queue_role": Role.CONSULTANT}
    assert t.close_reason is None


def test_a_consultant_who_accepts_becomes_the_patients_consultant() -> None:
    """The accepting consultant is recorded and the patient leaves the queue."""
    t = fire(view(S.WAITING_CONSULTANT), E.CONSULTANT_ACCEPTS, OTHER_CONSULTANT)
    assert t.changes == {"consultant_id": "c2", "queue_role": None}


def test_a_transfer_to_the_duty_doctor_queues_the_patient_for_that_role() -> None:
    """R-ROUTE-1: the service passes the routed role; the consultation waits in that queue."""
    t = fire(view(S.WITH_CONSULTANT), E.TRANSFER_TO_DOCTOR, queue_role=Role.PAEDIATRICIAN)
    assert t.changes == {"queue_role": Role.PAEDIATRICIAN}


def test_a_transfer_to_a_named_doctor_records_the_doctor() -> None:
    """A booked patient goes to their doctor: the queue and the named doctor are recorded."""
    t = fire(
        view(S.WITH_CONSULTANT),
        E.TRANSFER_TO_DOCTOR,
        queue_role=Role.PSYCHOLOGIST,
        doctor_id="d9",
    )
    assert t.changes == {"queue_role": Role.PSYCHOLOGIST, "target_doctor_id": "d9"}


@pytest.mark.parametrize("queue_role", [None, Role.CONSULTANT, Role.ADMIN])
def test_a_transfer_to_a_doctor_needs_a_doctor_queue(queue_role: Role | None) -> None:
    """The queue a transfer names must be a doctor's."""
    with pytest.raises(BadRequest, match="doctor queue"):
        decide(view(S.WITH_CONSULTANT), E.TRANSFER_TO_DOCTOR, CONSULTANT, queue_role=queue_role)


def test_other_events_refuse_transfer_arguments() -> None:
    """Only transfer_to_doctor takes a queue role or a doctor: anything else is a caller's bug."""
    with pytest.raises(BadRequest):
        decide(view(S.WITH_CONSULTANT), E.CLOSE, CONSULTANT, doctor_id="d1")
    with pytest.raises(BadRequest):
        decide(
            view(S.WAITING_CONSULTANT),
            E.CONSULTANT_ACCEPTS,
            CONSULTANT,
            queue_role=Role.THERAPIST,
        )


def test_a_consultant_hands_the_patient_back_to_the_queue() -> None:
    """The consultant lets go; any consultant may accept the patient next."""
    t = fire(view(S.WITH_CONSULTANT), E.TRANSFER_TO_CONSULTANT)
    assert t.changes == {"consultant_id": None, "queue_role": Role.CONSULTANT}


def test_a_doctor_leg_ends_in_the_consultant_queue_when_the_consultant_is_away() -> None:
    """R-URG-5: after the doctor the patient goes back to the consultants' queue."""
    t = fire(view(S.WITH_DOCTOR), E.DOCTOR_LEG_ENDS)
    assert t.new is S.WAITING_CONSULTANT
    assert t.changes == {"doctor_id": None, "queue_role": Role.CONSULTANT}


def test_a_doctor_leg_ends_with_the_same_consultant_when_they_are_online() -> None:
    """R-URG-5: the patient's own consultant, still online, takes them straight back."""
    t = fire(view(S.WITH_DOCTOR), E.DOCTOR_LEG_ENDS_TO_CONSULTANT)
    assert t.new is S.WITH_CONSULTANT
    assert t.changes == {"doctor_id": None}


def test_a_patient_hanging_up_on_the_doctor_goes_back_to_the_consultant() -> None:
    """R-URG-2, R-URG-5: the patient's hang-up during the doctor's leg ends the leg, never the
    consultation: back with their online consultant, or in the consultant queue."""
    back = fire(view(S.WITH_DOCTOR), E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT)
    assert back.new is S.WITH_CONSULTANT
    assert back.changes == {"doctor_id": None}
    assert back.close_reason is None
    queued = fire(view(S.WITH_DOCTOR), E.PATIENT_ENDS_DOCTOR_LEG)
    assert queued.new is S.WAITING_CONSULTANT
    assert queued.changes == {"doctor_id": None, "queue_role": Role.CONSULTANT}
    assert patient_leg_end_event(consultant_online=True) is E.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT
    assert patient_leg_end_event(consultant_online=False) is E.PATIENT_ENDS_DOCTOR_LEG


@pytest.mark.parametrize("state", [s for s in State if s not in (S.WITH_DOCTOR, S.CLOSED)])
def test_a_patient_ends_a_doctors_leg_only_during_it(state: State) -> None:
    """Outside the doctor's leg there is no leg to end: the hang-up is refused by the table."""
    with pytest.raises(InvalidState):
        fire(view(state), E.PATIENT_ENDS_DOCTOR_LEG)


def test_leg_end_event_goes_to_the_consultant_only_when_they_are_online() -> None:
    """R-URG-5: the event picked for the end of a doctor's leg."""
    assert leg_end_event(consultant_online=True) is E.DOCTOR_LEG_ENDS_TO_CONSULTANT
    assert leg_end_event(consultant_online=False) is E.DOCTOR_LEG_ENDS


@pytest.mark.parametrize(
    ("event", "actor", "state", "reason"),
    [
        (E.CLOSE, CONSULTANT, S.WITH_CONSULTANT, CloseReason.FINISHED),
        (E.PATIENT_LEAVES, PATIENT, S.WITH_CONSULTANT, CloseReason.LEFT),
        (E.NO_SHOW, SYSTEM_ACTOR, S.WAITING_PATIENT, CloseReason.NO_SHOW),
        (E.CANCEL, ADMIN, S.WAITING_PATIENT, CloseReason.CANCELLED),
    ],
)
def test_each_closing_event_records_its_close_reason(
    event: Event, actor: Actor, state: State, reason: CloseReason
) -> None:
    """R-NOSHOW-1, R-CANCEL-1: one close reason per closing event, written with the move."""
    t = fire(view(state), event, actor)
    assert t.new is S.CLOSED
    assert t.close_reason is reason
    assert t.changes == {"close_reason": reason}


def test_a_patient_who_leaves_a_doctor_queue_leaves_the_queue_too() -> None:
    """Leaving clears the queue columns, so the patient drops out of every queue."""
    c = view(S.WAITING_DOCTOR, target_doctor_id="d1")
    t = fire(c, E.PATIENT_LEAVES, SYSTEM_ACTOR)
    assert t.changes == {
        "queue_role": None,
        "target_doctor_id": None,
        "close_reason": CloseReason.LEFT,
    }


def test_a_no_show_is_closed_only_by_the_system() -> None:
    """R-NOSHOW-1: the scheduler closes a booked consultation nobody connected to."""
    with pytest.raises(Forbidden):
        fire(view(S.WAITING_PATIENT), E.NO_SHOW, CONSULTANT)


def test_a_started_consultation_cannot_be_cancelled() -> None:
    """R-CANCEL-1: after the start a cancel is refused."""
    with pytest.raises(InvalidState, match='cannot cancel in state "waiting_consultant"'):
        fire(view(S.WAITING_CONSULTANT), E.CANCEL)


def test_a_whole_urgent_consultation_runs_through_the_table() -> None:
    """R-URG: connect, consultant, duty doctor, back to the consultant, finished."""
    c = view(S.WAITING_PATIENT)
    steps: list[tuple[Event, Actor, dict[str, Any]]] = [
        (E.PATIENT_CONNECTS, PATIENT, {}),
        (E.CONSULTANT_ACCEPTS, CONSULTANT, {}),
        (E.TRANSFER_TO_DOCTOR, CONSULTANT, {"queue_role": Role.PAEDIATRICIAN}),
        (E.DOCTOR_ACCEPTS, PAEDIATRICIAN, {}),
        (E.DOCTOR_LEG_ENDS_TO_CONSULTANT, SYSTEM_ACTOR, {}),
        (E.CLOSE, CONSULTANT, {}),
    ]
    for event, actor, kw in steps:
        c = after(c, decide(c, event, actor, **kw))
    assert c.state is S.CLOSED
    assert (c.consultant_id, c.doctor_id, c.queue_role) == ("c1", None, None)


def test_decide_logs_old_and_new_state_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Every move logs `old -> new` with ids only."""
    with caplog.at_level(logging.DEBUG, logger="telemed.consultation"):
        fire(view(S.WAITING_CONSULTANT), E.CONSULTANT_ACCEPTS)
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert "waiting_consultant -> with_consultant" in record.getMessage()
    assert "k1" in record.getMessage()


def test_a_refused_move_changes_nothing_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """The view is a frozen snapshot; a refusal leaves no trace but the error."""
    c = view(S.CLOSED)
    with caplog.at_level(logging.DEBUG, logger="telemed.consultation"), pytest.raises(InvalidState):
        fire(c, E.CLOSE)
    assert caplog.records == []
    assert c == view(S.CLOSED)


def test_only_the_system_actor_has_no_id() -> None:
    """A person acting must be identified; the system never is."""
    assert Actor(Role.SYSTEM, None) == SYSTEM_ACTOR
    with pytest.raises(ValueError):
        Actor(Role.CONSULTANT, None)
    with pytest.raises(ValueError):
        Actor(Role.SYSTEM, "s1")


# --- time limits -------------------------------------------------------------

URGENT_LIMIT = timedelta(minutes=30)
SCHEDULED_LIMIT = timedelta(minutes=15)


def test_an_urgent_leg_has_the_urgent_limit() -> None:
    """R-LIMIT-URG: the duty doctor consults for at most 30 minutes (by default)."""
    assert leg_limit(Kind.URGENT, URGENT_LIMIT, SCHEDULED_LIMIT) == URGENT_LIMIT


@pytest.mark.parametrize("kind", [Kind.SCHEDULED, Kind.SECOND_OPINION])
def test_a_booked_leg_has_the_scheduled_limit(kind: Kind) -> None:
    """R-LIMIT-SCH: a consultation by appointment lasts at most 15 minutes (by default)."""
    assert leg_limit(kind, URGENT_LIMIT, SCHEDULED_LIMIT) == SCHEDULED_LIMIT
