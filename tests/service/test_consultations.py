"""The consultation service on a real database: the urgent flow (R-URG), age routing
(R-ROUTE-1), the doctors' time limits (R-LIMIT-URG, R-LIMIT-SCH), the queue, every
state x event pair through the service, and the races the guarded update decides."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from telemed.clock import ManualClock
from telemed.config import RulesSettings
from telemed.consultation import (
    CLOSE_REASONS,
    SYSTEM_ACTOR,
    TRANSITIONS,
    Actor,
    Channel,
    Event,
    Kind,
    State,
)
from telemed.db import Database
from telemed.errors import AlreadyTaken, Conflict, Forbidden, InvalidState, NotEligible
from telemed.models import AuditEntry, Consultation, ConsultationLeg, Patient, Staff, new_id
from telemed.roles import Role
from telemed.services.consultations import ConsultationService, QueueEmpty

TODAY = date(2026, 1, 15)  # the ManualClock's default day (09:00 UTC, 12:00 in Moscow)
ADULT_BIRTH = date(1980, 3, 1)
MINUTE = timedelta(minutes=1)

# --- people and rows, written directly with the ORM -------------------------------------


async def add_patient(db: Database, clock: ManualClock, birth_date: date = ADULT_BIRTH) -> str:
    """A patient row; the phone is unique per call so many patients can coexist."""
    now = clock.now()
    patient_id = new_id()
    async with db.write() as session:
        session.add(
            Patient(
                id=patient_id,
                phone=f"+7916{patient_id[:7]}",
                full_name="Иванов Иван",
                birth_date=birth_date,
                sex="M",
                timezone="Europe/Moscow",
                source="demo",
                created_at=now,
                updated_at=now,
            )
        )
    return patient_id


async def add_staff(db: Database, clock: ManualClock, role: Role) -> Actor:
    """A staff row of `role`, returned as the actor that fires events."""
    staff_id = new_id()
    async with db.write() as session:
        session.add(
            Staff(
                id=staff_id,
                login=f"{role.value}-{staff_id[:8]}",
                password_hash="not-a-real-hash",
                role=role.value,
                full_name=f"{role.value} {staff_id[:4]}",
                active=True,
                created_at=clock.now(),
            )
        )
    return Actor(role, staff_id)


def service(db: Database, clock: ManualClock, **rules: Any) -> ConsultationService:
    return ConsultationService(db, clock, RulesSettings(**rules))


async def load(db: Database, consultation_id: str) -> Consultation:
    async with db.read() as session:
        row = await session.get(Consultation, consultation_id)
    assert row is not None
    return row


async def legs_of(db: Database, consultation_id: str) -> list[ConsultationLeg]:
    async with db.read() as session:
        rows = await session.scalars(
            select(ConsultationLeg)
            .where(ConsultationLeg.consultation_id == consultation_id)
            .order_by(ConsultationLeg.started_at, ConsultationLeg.ended_at.is_(None))
        )
        return list(rows)


async def audit_of(db: Database, consultation_id: str) -> list[AuditEntry]:
    async with db.read() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.object_type == "consultation",
                AuditEntry.object_id == consultation_id,
            )
            .order_by(AuditEntry.id)
        )
        return list(rows)


def columns(row: Consultation) -> dict[str, object]:
    """Every column of a consultation row, to compare before and after a refused move."""
    return {c.key: getattr(row, c.key) for c in Consultation.__table__.columns}


# --- 1. the urgent flow -------------------------------------------------------------------


async def test_an_urgent_consultation_goes_consultant_therapist_consultant_and_closes(
    any_db: Database, clock: ManualClock
) -> None:
    """R-URG-2, R-ROUTE-1, R-LIMIT-URG, R-URG-5: the whole urgent flow, on both backends."""
    svc = service(any_db, clock, urgent_limit="30m")
    patient = await add_patient(any_db, clock)
    consultant = await add_staff(any_db, clock, Role.CONSULTANT)
    therapist = await add_staff(any_db, clock, Role.THERAPIST)

    t_start = clock.now()
    started = await svc.start(patient, Channel.VIDEO)
    cid = started.consultation.id
    row = await load(any_db, cid)
    assert row.state == State.WAITING_CONSULTANT
    assert row.queue_role == Role.CONSULTANT
    assert row.queued_at == t_start
    assert row.kind == Kind.URGENT and row.channel == Channel.VIDEO
    assert row.version == 1

    t_accept = clock.advance(2 * MINUTE)
    await svc.accept(consultant, cid)
    row = await load(any_db, cid)
    assert row.state == State.WITH_CONSULTANT
    assert row.consultant_id == consultant.id
    assert row.first_accepted_at == t_accept
    assert row.queue_role is None and row.queued_at is None
    (leg,) = await legs_of(any_db, cid)
    assert (leg.staff_id, leg.role, leg.started_at, leg.ended_at) == (
        consultant.id,
        Role.CONSULTANT,
        t_accept,
        None,
    )

    t_transfer = clock.advance(3 * MINUTE)
    await svc.transfer_to_duty_doctor(cid, consultant)
    row = await load(any_db, cid)
    assert row.state == State.WAITING_DOCTOR
    assert row.queue_role == Role.THERAPIST  # an adult goes to the duty therapist
    assert row.queued_at == t_transfer
    assert row.consultant_id == consultant.id

    t_doctor = clock.advance(1 * MINUTE)
    await svc.accept(therapist, cid)
    row = await load(any_db, cid)
    assert row.state == State.WITH_DOCTOR
    assert row.doctor_id == therapist.id
    assert row.limit_ends_at == t_doctor + timedelta(minutes=30)
    assert row.queue_role is None and row.queued_at is None

    t_back = clock.advance(20 * MINUTE)
    await svc.end_doctor_leg(cid, therapist, consultant_online=True)
    row = await load(any_db, cid)
    assert row.state == State.WITH_CONSULTANT
    assert row.consultant_id == consultant.id
    assert row.doctor_id is None
    assert row.limit_ends_at is None
    assert row.first_accepted_at == t_accept  # the first accept is kept, not overwritten

    t_close = clock.advance(4 * MINUTE)
    closed = await svc.fire(cid, Event.CLOSE, consultant)
    assert closed.consultation.state == State.CLOSED
    row = await load(any_db, cid)
    assert row.state == State.CLOSED
    assert row.close_reason == "finished"
    assert row.closed_at == t_close
    assert row.version == 6  # created at 1, then five moves

    legs = [
        (leg.staff_id, leg.role, leg.started_at, leg.ended_at, leg.end_reason)
        for leg in await legs_of(any_db, cid)
    ]
    assert legs == [
        (consultant.id, Role.CONSULTANT, t_accept, t_transfer, Event.TRANSFER_TO_DOCTOR),
        (therapist.id, Role.THERAPIST, t_doctor, t_back, Event.DOCTOR_LEG_ENDS_TO_CONSULTANT),
        (consultant.id, Role.CONSULTANT, t_back, t_close, Event.CLOSE),
    ]

    audit = [
        (a.action, a.actor_role, a.actor_id, a.at, a.detail) for a in await audit_of(any_db, cid)
    ]
    assert audit == [
        (
            "consultation_start",
            Role.PATIENT,
            patient,
            t_start,
            {"kind": "urgent", "channel": "video"},
        ),
        (
            "consultation_consultant_accepts",
            Role.CONSULTANT,
            consultant.id,
            t_accept,
            {"from": "waiting_consultant", "to": "with_consultant"},
        ),
        (
            "consultation_transfer_to_doctor",
            Role.CONSULTANT,
            consultant.id,
            t_transfer,
            {"from": "with_consultant", "to": "waiting_doctor"},
        ),
        (
            "consultation_doctor_accepts",
            Role.THERAPIST,
            therapist.id,
            t_doctor,
            {"from": "waiting_doctor", "to": "with_doctor"},
        ),
        (
            "consultation_doctor_leg_ends_to_consultant",
            Role.THERAPIST,
            therapist.id,
            t_back,
            {"from": "with_doctor", "to": "with_consultant"},
        ),
        (
            "consultation_close",
            Role.CONSULTANT,
            consultant.id,
            t_close,
            {"from": "with_consultant", "to": "closed"},
        ),
    ]


async def test_the_time_limit_ends_the_doctors_leg_back_to_the_consultant(
    any_db: Database, clock: ManualClock
) -> None:
    """R-LIMIT-URG, R-URG-5: the system (the scheduler at the limit) ends the leg; the patient
    returns to the consultant who transferred them, and that consultant's leg is opened."""
    svc = service(any_db, clock)
    patient = await add_patient(any_db, clock)
    consultant = await add_staff(any_db, clock, Role.CONSULTANT)
    therapist = await add_staff(any_db, clock, Role.THERAPIST)
    cid = (await svc.start(patient, Channel.AUDIO)).consultation.id
    await svc.accept(consultant, cid)
    await svc.transfer_to_duty_doctor(cid, consultant)
    await svc.accept(therapist, cid)

    t_limit = clock.advance(timedelta(minutes=30))
    await svc.end_doctor_leg(cid, SYSTEM_ACTOR, consultant_online=True)

    row = await load(any_db, cid)
    assert row.state == State.WITH_CONSULTANT
    assert row.consultant_id == consultant.id
    open_legs = [leg for leg in await legs_of(any_db, cid) if leg.ended_at is None]
    assert [(leg.staff_id, leg.role, leg.started_at) for leg in open_legs] == [
        (consultant.id, Role.CONSULTANT, t_limit)
    ]
    last = (await audit_of(any_db, cid))[-1]
    assert (last.action, last.actor_role, last.actor_id) == (
        "consultation_doctor_leg_ends_to_consultant",
        Role.SYSTEM,
        None,
    )


# --- 2. age routing -------------------------------------------------------------------------


async def _with_consultant(
    svc: ConsultationService, db: Database, clock: ManualClock, birth_date: date
) -> tuple[str, Actor]:
    patient = await add_patient(db, clock, birth_date)
    consultant = await add_staff(db, clock, Role.CONSULTANT)
    cid = (await svc.start(patient, Channel.VIDEO)).consultation.id
    await svc.accept(consultant, cid)
    return cid, consultant


async def test_a_child_waits_for_the_paediatrician_and_a_therapist_cannot_take_them(
    db: Database, clock: ManualClock
) -> None:
    """R-ROUTE-1: a 10-year-old is transferred to the duty paediatrician; a therapist's
    accept is forbidden and changes nothing; the paediatrician's accept succeeds."""
    svc = service(db, clock)
    cid, consultant = await _with_consultant(svc, db, clock, date(2015, 6, 1))
    therapist = await add_staff(db, clock, Role.THERAPIST)
    paediatrician = await add_staff(db, clock, Role.PAEDIATRICIAN)

    await svc.transfer_to_duty_doctor(cid, consultant)
    before = columns(await load(db, cid))
    assert before["state"] == State.WAITING_DOCTOR
    assert before["queue_role"] == Role.PAEDIATRICIAN

    with pytest.raises(Forbidden) as refused:
        await svc.accept(therapist, cid)
    assert refused.value.code == "forbidden"
    assert "paediatrician" in refused.value.message
    assert columns(await load(db, cid)) == before
    with pytest.raises(QueueEmpty):  # nor does the child show up in the therapists' queue
        await svc.accept(therapist)

    await svc.accept(paediatrician, cid)
    row = await load(db, cid)
    assert (row.state, row.doctor_id) == (State.WITH_DOCTOR, paediatrician.id)


async def test_a_patient_under_one_is_not_eligible_for_the_duty_transfer(
    db: Database, clock: ManualClock
) -> None:
    """R-ROUTE-1: under 1 year nobody is on duty; the consultant gets a clear reason and the
    consultation stays with them."""
    svc = service(db, clock)
    cid, consultant = await _with_consultant(svc, db, clock, date(2025, 6, 1))
    before = columns(await load(db, cid))

    with pytest.raises(NotEligible) as refused:
        await svc.transfer_to_duty_doctor(cid, consultant)
    assert refused.value.code == "not_eligible"
    assert "under 1 year" in refused.value.message
    assert "appointment" in refused.value.message
    assert columns(await load(db, cid)) == before
    assert [a.action for a in await audit_of(db, cid)][-1] == "consultation_consultant_accepts"


@pytest.mark.parametrize(
    ("birth_date", "queue"),
    [
        pytest.param(date(2008, 1, 16), Role.PAEDIATRICIAN, id="17y364d-paediatrician"),
        pytest.param(date(2008, 1, 15), Role.THERAPIST, id="18-today-therapist"),
        pytest.param(date(2025, 1, 15), Role.PAEDIATRICIAN, id="1-today-paediatrician"),
    ],
)
async def test_the_age_is_taken_on_the_consultation_date(
    db: Database, clock: ManualClock, birth_date: date, queue: Role
) -> None:
    """R-ROUTE-1: the duty role follows the age on the consultation date (2026-01-15)."""
    assert clock.now().date() == TODAY
    svc = service(db, clock)
    cid, consultant = await _with_consultant(svc, db, clock, birth_date)
    await svc.transfer_to_duty_doctor(cid, consultant)
    row = await load(db, cid)
    assert (row.state, row.queue_role) == (State.WAITING_DOCTOR, queue)


async def test_the_consultation_date_is_the_patients_local_date(
    db: Database, clock: ManualClock
) -> None:
    """R-ROUTE-1: at 22:00 UTC on Jan 15 it is already Jan 16 in Moscow, the 18th birthday."""
    clock.set(datetime.fromisoformat("2026-01-15T22:00:00+00:00"))
    svc = service(db, clock)
    cid, consultant = await _with_consultant(svc, db, clock, date(2008, 1, 16))
    await svc.transfer_to_duty_doctor(cid, consultant)
    assert (await load(db, cid)).queue_role == Role.THERAPIST


# --- 3. the scheduled limit -----------------------------------------------------------------


async def test_a_scheduled_doctors_leg_is_limited_to_fifteen_minutes(
    any_db: Database, clock: ManualClock
) -> None:
    """R-LIMIT-SCH: a booked consultation's doctor leg ends at most 15 minutes after the accept;
    only the named doctor may take it."""
    svc = service(any_db, clock)
    patient = await add_patient(any_db, clock)
    consultant = await add_staff(any_db, clock, Role.CONSULTANT)
    booked = await add_staff(any_db, clock, Role.THERAPIST)
    other = await add_staff(any_db, clock, Role.THERAPIST)
    cid = (await svc.start(patient, Channel.CHAT, kind=Kind.SCHEDULED)).consultation.id
    await svc.accept(consultant, cid)
    assert booked.id is not None
    await svc.transfer_to_doctor(cid, consultant, booked.id)

    with pytest.raises(Forbidden):
        await svc.accept(other, cid)
    with pytest.raises(QueueEmpty):
        await svc.accept(other)

    t_accept = clock.advance(MINUTE)
    await svc.accept(booked, cid)
    row = await load(any_db, cid)
    assert row.state == State.WITH_DOCTOR
    assert row.limit_ends_at == t_accept + timedelta(minutes=15)
    assert row.target_doctor_id is None


# --- 4. back to the queue -------------------------------------------------------------------


async def test_with_no_consultant_online_the_patient_goes_back_to_the_consultant_queue(
    db: Database, clock: ManualClock
) -> None:
    """R-URG-5: after the doctor, with no consultant online, the patient waits in the
    consultant queue again (queued now), and any consultant can take them."""
    svc = service(db, clock)
    cid, consultant = await _with_consultant(svc, db, clock, ADULT_BIRTH)
    therapist = await add_staff(db, clock, Role.THERAPIST)
    await svc.transfer_to_duty_doctor(cid, consultant)
    await svc.accept(therapist, cid)

    t_end = clock.advance(10 * MINUTE)
    await svc.end_doctor_leg(cid, therapist, consultant_online=False)
    row = await load(db, cid)
    assert row.state == State.WAITING_CONSULTANT
    assert row.queue_role == Role.CONSULTANT
    assert row.queued_at == t_end
    assert row.doctor_id is None and row.limit_ends_at is None
    assert all(leg.ended_at is not None for leg in await legs_of(db, cid))

    another = await add_staff(db, clock, Role.CONSULTANT)
    taken = await svc.accept(another)
    assert taken.consultation.id == cid
    assert (await load(db, cid)).consultant_id == another.id


# --- 5. the queue order ---------------------------------------------------------------------


async def test_accept_without_an_id_takes_the_longest_waiting_patient(
    db: Database, clock: ManualClock
) -> None:
    """R-URG-2: the consultant queue is first come, first served; an empty queue says so."""
    svc = service(db, clock)
    consultant = await add_staff(db, clock, Role.CONSULTANT)
    ids = []
    for _ in range(3):
        patient = await add_patient(db, clock)
        ids.append((await svc.start(patient, Channel.AUDIO)).consultation.id)
        clock.advance(MINUTE)

    taken = [(await svc.accept(consultant)).consultation.id for _ in range(3)]
    assert taken == ids

    with pytest.raises(QueueEmpty) as empty:
        await svc.accept(consultant)
    assert empty.value.code == "queue_empty"


async def test_a_patient_sent_back_to_the_queue_waits_behind_those_already_waiting(
    db: Database, clock: ManualClock
) -> None:
    """R-URG-2: `queued_at` restarts when a patient re-enters the queue."""
    svc = service(db, clock)
    consultant = await add_staff(db, clock, Role.CONSULTANT)
    first = (await svc.start(await add_patient(db, clock), Channel.AUDIO)).consultation.id
    clock.advance(MINUTE)
    second = (await svc.start(await add_patient(db, clock), Channel.AUDIO)).consultation.id
    clock.advance(MINUTE)

    await svc.accept(consultant, first)
    clock.advance(MINUTE)
    await svc.fire(first, Event.TRANSFER_TO_CONSULTANT, consultant)

    order = [(await svc.accept(consultant)).consultation.id for _ in range(2)]
    assert order == [second, first]


# --- 6. one open consultation per patient -----------------------------------------------------


async def test_starting_twice_returns_the_same_open_consultation(
    any_db: Database, clock: ManualClock
) -> None:
    """R-URG-2: a patient who reconnects finds their place in the queue, not a second one;
    after the close a new start opens a new consultation."""
    svc = service(any_db, clock)
    patient = await add_patient(any_db, clock)
    consultant = await add_staff(any_db, clock, Role.CONSULTANT)
    first = await svc.start(patient, Channel.VIDEO)
    clock.advance(MINUTE)
    again = await svc.start(patient, Channel.CHAT)

    assert again.consultation.id == first.consultation.id
    assert again.consultation.channel == Channel.VIDEO
    assert again.consultation.queued_at == first.consultation.queued_at
    async with any_db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(Consultation).where(Consultation.patient_id == patient)
        )
    assert count == 1
    assert [a.action for a in await audit_of(any_db, first.consultation.id)] == [
        "consultation_start"
    ]

    await svc.accept(consultant, first.consultation.id)
    await svc.fire(first.consultation.id, Event.CLOSE, consultant)
    later = await svc.start(patient, Channel.CHAT)
    assert later.consultation.id != first.consultation.id
    assert later.consultation.state == State.WAITING_CONSULTANT


# --- 7. every state x event pair through the service ----------------------------------------


@dataclass(frozen=True)
class Cast:
    patient: str
    consultant: Actor
    therapist: Actor


async def _cast(db: Database, clock: ManualClock) -> Cast:
    return Cast(
        patient=await add_patient(db, clock),
        consultant=await add_staff(db, clock, Role.CONSULTANT),
        therapist=await add_staff(db, clock, Role.THERAPIST),
    )


async def _put_in_state(db: Database, clock: ManualClock, cast: Cast, state: State) -> str:
    """A consultation row in `state`, its people and queue columns as that state implies."""
    now = clock.now()
    consultant = cast.consultant.id
    doctor = cast.therapist.id
    people: dict[State, dict[str, Any]] = {
        State.WAITING_PATIENT: {},
        State.WAITING_CONSULTANT: {"queue_role": Role.CONSULTANT.value, "queued_at": now},
        State.WITH_CONSULTANT: {"consultant_id": consultant, "first_accepted_at": now},
        State.WAITING_DOCTOR: {
            "consultant_id": consultant,
            "first_accepted_at": now,
            "queue_role": Role.THERAPIST.value,
            "queued_at": now,
        },
        State.WITH_DOCTOR: {
            "consultant_id": consultant,
            "doctor_id": doctor,
            "first_accepted_at": now,
            "limit_ends_at": now + timedelta(minutes=30),
        },
        State.CLOSED: {
            "consultant_id": consultant,
            "first_accepted_at": now,
            "close_reason": "finished",
            "outcome": "finished",
            "closed_at": now,
        },
    }
    row = Consultation(
        id=new_id(),
        patient_id=cast.patient,
        kind=Kind.URGENT.value,
        channel=Channel.VIDEO.value,
        state=state.value,
        version=7,
        created_at=now,
        updated_at=now,
        **people[state],
    )
    async with db.write() as session:
        session.add(row)
    return row.id


def _firing(event: Event, cast: Cast) -> tuple[Actor, dict[str, Any]]:
    """An actor allowed to fire `event` and related to the consultation as it must be."""
    patient = Actor(Role.PATIENT, cast.patient)
    by_event: dict[Event, Actor] = {
        Event.PATIENT_CONNECTS: patient,
        Event.CONSULTANT_ACCEPTS: cast.consultant,
        Event.TRANSFER_TO_DOCTOR: cast.consultant,
        Event.TRANSFER_TO_CONSULTANT: cast.consultant,
        Event.DOCTOR_ACCEPTS: cast.therapist,
        Event.DOCTOR_LEG_ENDS: cast.therapist,
        Event.DOCTOR_LEG_ENDS_TO_CONSULTANT: cast.therapist,
        Event.PATIENT_ENDS_DOCTOR_LEG: patient,
        Event.PATIENT_ENDS_DOCTOR_LEG_TO_CONSULTANT: patient,
        Event.CLOSE: cast.consultant,
        Event.PATIENT_LEAVES: patient,
        Event.NO_SHOW: SYSTEM_ACTOR,
        Event.CANCEL: cast.consultant,
    }
    kwargs = {"queue_role": Role.THERAPIST} if event is Event.TRANSFER_TO_DOCTOR else {}
    return by_event[event], kwargs


_QUEUE_OF = {State.WAITING_CONSULTANT: Role.CONSULTANT, State.WAITING_DOCTOR: Role.THERAPIST}


_PAIRS = [
    pytest.param(state, event, id=f"{state}-{event}")
    for state, event in itertools.product(State, Event)
]


@pytest.mark.parametrize(("state", "event"), _PAIRS)
async def test_every_state_and_event_through_the_service(
    db: Database, clock: ManualClock, state: State, event: Event
) -> None:
    """STYLE habit 1 (R-URG, R-SCH): a pair in the table moves the row to its target and bumps
    the version, with one audit entry and consistent legs; any other pair is refused with
    invalid_state (already_taken for a late accept) and writes nothing."""
    cast = await _cast(db, clock)
    cid = await _put_in_state(db, clock, cast, state)
    before = columns(await load(db, cid))
    actor, kwargs = _firing(event, cast)
    now = clock.advance(MINUTE)
    svc = service(db, clock)

    target = TRANSITIONS.get((state, event))
    if target is None:
        late_accept = event in (Event.CONSULTANT_ACCEPTS, Event.DOCTOR_ACCEPTS) and state not in (
            State.WAITING_PATIENT,
            State.CLOSED,
        )
        with pytest.raises(Conflict) as refused:
            await svc.fire(cid, event, actor, **kwargs)
        expected = AlreadyTaken if late_accept else InvalidState
        assert type(refused.value) is expected
        assert columns(await load(db, cid)) == before
        assert await audit_of(db, cid) == []
        assert await legs_of(db, cid) == []
        return

    change = await svc.fire(cid, event, actor, **kwargs)
    assert change.transition is not None and change.transition.new is target
    row = await load(db, cid)
    assert row.state == target
    old_version = before["version"]
    assert isinstance(old_version, int)
    assert row.version == old_version + 1
    assert row.updated_at == now
    assert row.queue_role == _QUEUE_OF.get(target)
    assert row.queued_at == (now if target in _QUEUE_OF else None)
    assert (row.limit_ends_at is not None) == (target is State.WITH_DOCTOR)
    if target is State.CLOSED:
        assert row.close_reason == CLOSE_REASONS[event]
        assert row.closed_at == now
    (entry,) = await audit_of(db, cid)
    assert (entry.action, entry.actor_role, entry.actor_id) == (
        f"consultation_{event}",
        actor.role,
        actor.id,
    )
    open_legs = [(leg.staff_id, leg.role) for leg in await legs_of(db, cid) if not leg.ended_at]
    if target is State.WITH_CONSULTANT:
        assert open_legs == [(row.consultant_id, Role.CONSULTANT)]
    elif target is State.WITH_DOCTOR:
        assert open_legs == [(row.doctor_id, Role.THERAPIST)]
    else:
        assert open_legs == []


# --- 8. the concurrent accept -----------------------------------------------------------------


def _outcomes(results: list[Any]) -> tuple[int, list[BaseException]]:
    wins = sum(1 for r in results if not isinstance(r, BaseException))
    errors = [r for r in results if isinstance(r, BaseException)]
    return wins, errors


async def _race_consultants(db: Database, clock: ManualClock, racers: int, rounds: int) -> None:
    svc = service(db, clock)
    consultants = [await add_staff(db, clock, Role.CONSULTANT) for _ in range(racers)]
    winners: dict[str, str] = {}
    for _ in range(rounds):
        patient = await add_patient(db, clock)
        cid = (await svc.start(patient, Channel.VIDEO)).consultation.id
        results = await asyncio.gather(
            *(svc.accept(c, cid) for c in consultants), return_exceptions=True
        )
        wins, errors = _outcomes(results)
        assert wins == 1, results
        assert len(errors) == racers - 1
        for error in errors:
            assert isinstance(error, AlreadyTaken), repr(error)
            assert error.code == "already_taken"
        winners[cid] = next(
            str(c.id)
            for c, r in zip(consultants, results, strict=True)
            if not isinstance(r, BaseException)
        )

    async with db.read() as session:
        rows = (
            await session.scalars(select(Consultation).where(Consultation.id.in_(winners)))
        ).all()
        legs = (
            await session.execute(
                select(ConsultationLeg.consultation_id, ConsultationLeg.staff_id).where(
                    ConsultationLeg.consultation_id.in_(winners)
                )
            )
        ).all()
        accepts = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.action == "consultation_consultant_accepts",
                AuditEntry.object_id.in_(winners),
            )
        )
    assert len(rows) == rounds
    for row in rows:
        assert (row.state, row.version, row.consultant_id) == (
            State.WITH_CONSULTANT,
            2,
            winners[row.id],
        )
    assert sorted(legs) == sorted(winners.items())  # exactly one consultant leg each
    assert accepts == rounds


async def test_two_consultants_accepting_at_once_one_wins_one_is_told_already_taken(
    any_db: Database, clock: ManualClock
) -> None:
    """R-URG-3: a waiting patient is taken by exactly one consultant, 100 times over, on
    SQLite (BEGIN IMMEDIATE) and PostgreSQL (the guarded update)."""
    await _race_consultants(any_db, clock, racers=2, rounds=100)


async def test_five_consultants_racing_for_one_patient_leave_one_winner(
    any_db: Database, clock: ManualClock
) -> None:
    """R-URG-3: five at once, 100 times: one winner, four already_taken, one leg."""
    await _race_consultants(any_db, clock, racers=5, rounds=100)


async def test_two_therapists_racing_for_one_waiting_patient_leave_one_winner(
    any_db: Database, clock: ManualClock
) -> None:
    """R-ROUTE-1, R-URG-4: one duty therapist takes the transferred patient; the other is
    told already_taken; one doctor leg, 50 times over."""
    svc = service(any_db, clock)
    consultant = await add_staff(any_db, clock, Role.CONSULTANT)
    therapists = [await add_staff(any_db, clock, Role.THERAPIST) for _ in range(2)]
    for _ in range(50):
        patient = await add_patient(any_db, clock)
        cid = (await svc.start(patient, Channel.VIDEO)).consultation.id
        await svc.accept(consultant, cid)
        await svc.transfer_to_duty_doctor(cid, consultant)

        results = await asyncio.gather(
            *(svc.accept(t, cid) for t in therapists), return_exceptions=True
        )
        wins, errors = _outcomes(results)
        assert wins == 1, results
        (error,) = errors
        assert isinstance(error, AlreadyTaken), repr(error)
        winner = next(
            t for t, r in zip(therapists, results, strict=True) if not isinstance(r, BaseException)
        )
        row = await load(any_db, cid)
        assert (row.state, row.doctor_id) == (State.WITH_DOCTOR, winner.id)
        doctor_legs = [leg for leg in await legs_of(any_db, cid) if leg.role == Role.THERAPIST]
        assert [leg.staff_id for leg in doctor_legs] == [winner.id]


async def test_consultants_taking_from_the_queue_at_once_each_get_a_different_patient(
    any_db: Database, clock: ManualClock
) -> None:
    """R-URG-2: `accept()` without an id skips a patient lost to a race and takes the next,
    so five consultants and five waiting patients end as five distinct pairs."""
    svc = service(any_db, clock)
    consultants = [await add_staff(any_db, clock, Role.CONSULTANT) for _ in range(5)]
    for _ in range(5):
        await svc.start(await add_patient(any_db, clock), Channel.CHAT)
        clock.advance(MINUTE)

    results = await asyncio.gather(*(svc.accept(c) for c in consultants))
    taken = {change.consultation.id for change in results}
    assert len(taken) == 5
    holders = {(await load(any_db, cid)).consultant_id for cid in taken}
    assert holders == {c.id for c in consultants}


# --- 9. a stale write -----------------------------------------------------------------------


class StaleDatabase(Database):
    """The service's next write transaction sees `snapshot` instead of the row in the
    database: as if it had loaded the row just before another actor changed it."""

    def __init__(self, db: Database, snapshot: Consultation) -> None:
        super().__init__(db.engine)
        self.snapshot: Consultation | None = snapshot

    def write(self) -> Any:
        outer = super().write()
        snapshot, self.snapshot = self.snapshot, None

        class _Stale:
            merged: Consultation | None = None

            async def __aenter__(self) -> Any:
                session = await outer.__aenter__()
                if snapshot is not None:
                    # An identity-map entry older than the row, which `session.get` returns;
                    # held here because the identity map keeps only weak references.
                    self.merged = await session.merge(snapshot, load=False)
                return session

            async def __aexit__(self, *exc: Any) -> Any:
                return await outer.__aexit__(*exc)

        return _Stale()


async def test_a_move_decided_on_a_stale_row_is_refused_and_writes_nothing(
    any_db: Database, clock: ManualClock
) -> None:
    """STYLE habit 2: the guarded update checks the version, not only the state: consultant A
    read the consultation, then it went back to the queue and consultant B took it (the
    same state again), so A's transfer is refused and nothing is written."""
    svc = service(any_db, clock)
    patient = await add_patient(any_db, clock)
    a = await add_staff(any_db, clock, Role.CONSULTANT)
    b = await add_staff(any_db, clock, Role.CONSULTANT)
    cid = (await svc.start(patient, Channel.VIDEO)).consultation.id
    await svc.accept(a, cid)
    stale = await load(any_db, cid)

    clock.advance(MINUTE)
    await svc.fire(cid, Event.TRANSFER_TO_CONSULTANT, a)
    await svc.accept(b, cid)
    current = columns(await load(any_db, cid))
    assert (current["state"], current["consultant_id"]) == (State.WITH_CONSULTANT, b.id)
    assert current["version"] == stale.version + 2
    audit_before = len(await audit_of(any_db, cid))
    legs_before = [(leg.id, leg.ended_at) for leg in await legs_of(any_db, cid)]

    clock.advance(MINUTE)
    stale_svc = ConsultationService(StaleDatabase(any_db, stale), clock, RulesSettings())
    with pytest.raises(Conflict) as refused:
        await stale_svc.fire(cid, Event.TRANSFER_TO_DOCTOR, a, queue_role=Role.THERAPIST)
    assert refused.value.code == "conflict"

    assert columns(await load(any_db, cid)) == current
    assert len(await audit_of(any_db, cid)) == audit_before
    assert [(leg.id, leg.ended_at) for leg in await legs_of(any_db, cid)] == legs_before


async def test_a_stale_accept_is_told_already_taken_and_writes_nothing(
    any_db: Database, clock: ManualClock
) -> None:
    """R-URG-3: consultant A saw the patient waiting, B took them first: A's accept on the
    old row is refused by the guarded update with already_taken."""
    svc = service(any_db, clock)
    patient = await add_patient(any_db, clock)
    a = await add_staff(any_db, clock, Role.CONSULTANT)
    b = await add_staff(any_db, clock, Role.CONSULTANT)
    cid = (await svc.start(patient, Channel.VIDEO)).consultation.id
    stale = await load(any_db, cid)
    await svc.accept(b, cid)
    current = columns(await load(any_db, cid))

    stale_svc = ConsultationService(StaleDatabase(any_db, stale), clock, RulesSettings())
    with pytest.raises(AlreadyTaken) as refused:
        await stale_svc.accept(a, cid)
    assert refused.value.code == "already_taken"
    assert columns(await load(any_db, cid)) == current
    assert [leg.staff_id for leg in await legs_of(any_db, cid)] == [b.id]
