"""A move that brings the patient a new counterpart carries what that counterpart is shown
(the facts and the chat so far), read in the move's own transaction: the publisher needs no
second session for it (telemed/events.py, `Change.shown`). R-URG-3: the consultant who
takes the patient sees who they are and what was written."""

from __future__ import annotations

from test_consultations import add_patient, add_staff, service

from telemed.clock import ManualClock
from telemed.consultation import Actor, Channel
from telemed.db import Database
from telemed.roles import Role
from telemed.services.chat import ChatService
from telemed.services.live_facts import facts_and_history


async def test_r_urg_3_the_accepting_consultant_is_shown_the_patient_and_the_chat(
    any_db: Database, clock: ManualClock
) -> None:
    svc, chat = service(any_db, clock), ChatService(any_db, clock)
    consultant = await add_staff(any_db, clock, Role.CONSULTANT)
    patient = await add_patient(any_db, clock)
    started = (await svc.start(patient, Channel.CHAT)).consultation
    await chat.post(started.id, "patient", patient, "headache since morning")

    change = await svc.accept(consultant)

    assert change.shown is not None
    facts, messages = change.shown
    assert facts.patient == {"role": "patient", "name": "Иванов Иван"}
    assert facts.counterpart == {"role": "consultant", "name": f"consultant {consultant.id[:4]}"}
    assert facts.leg_id is not None  # the consultant's leg, opened by this very move
    assert [m.text for m in messages] == ["headache since morning"]
    assert change.shown == await facts_and_history(any_db, change.consultation)


async def test_a_move_with_no_new_counterpart_reads_nothing_more(
    any_db: Database, clock: ManualClock
) -> None:
    """Leaving the queue for nobody (the patient hangs up) shows nobody anything."""
    svc = service(any_db, clock)
    patient = await add_patient(any_db, clock)
    started = (await svc.start(patient, Channel.AUDIO)).consultation

    change = await svc.hang_up(started.id, Actor(Role.PATIENT, patient), consultant_online=False)

    assert change.shown is None
