"""Consultation service: load, let the pure state machine decide, save with a guarded update.

The guarded update (`WHERE id = :id AND state = :old AND version = :v`) in
one transaction is what makes two consultants accepting the same patient end
with one success and one `already_taken`, on SQLite and PostgreSQL alike.
The same transaction records the legs (who served the patient from when to
when) and the audit entry. A move's writes are Core statements built once (no unit-of-work
flush, no statement built per call): moves are the hot path of the live queue.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from telemed.appointment import AppointmentEvent, move_of
from telemed.appointment import decide as decide_appointment
from telemed.clock import Clock
from telemed.config import RulesSettings
from telemed.consultation import (
    Actor,
    Channel,
    Event,
    Kind,
    State,
    Transition,
    counterpart_of,
    decide,
    leg_end_event,
    leg_limit,
    patient_leg_end_event,
)
from telemed.db import Database
from telemed.errors import AlreadyTaken, Conflict, InvalidState, NotFound
from telemed.events import Change, ConsultationChanged, DeadlineSet, DomainEvent, PatientAway
from telemed.events import record as record_event
from telemed.models import (
    Appointment,
    Consultation,
    ConsultationDocument,
    ConsultationLeg,
    Patient,
    Staff,
    table_of,
)
from telemed.roles import DOCTOR_ROLES, Role
from telemed.routing import duty_role_for
from telemed.services.audit import Who, record, write_entry
from telemed.services.live_facts import read_facts_and_history
from telemed.services.notifications import Note, queue_notes
from telemed.services.views import view_of

_WITH_STAFF = {State.WITH_CONSULTANT, State.WITH_DOCTOR}
_WAITING = {State.WAITING_CONSULTANT, State.WAITING_DOCTOR}

_CONSULTATIONS = table_of(Consultation)
_LEGS = table_of(ConsultationLeg)
# The columns a move sets come as parameters (their names); the guard as `b_*` ones.
_GUARDED_UPDATE = update(_CONSULTATIONS).where(
    _CONSULTATIONS.c.id == bindparam("b_id"),
    _CONSULTATIONS.c.state == bindparam("b_state"),
    _CONSULTATIONS.c.version == bindparam("b_version"),
)
_END_LEG = update(_LEGS).where(
    _LEGS.c.consultation_id == bindparam("b_consultation_id"), _LEGS.c.ended_at.is_(None)
)
_START_LEG = insert(_LEGS)
# The longest-waiting consultation of a queue that the actor may take; on PostgreSQL the
# first one no other accept has locked.
_FIRST_WAITING = (
    select(Consultation)
    .where(
        Consultation.state == bindparam("b_state"),
        Consultation.queue_role == bindparam("b_role"),
        or_(
            Consultation.target_doctor_id.is_(None),
            Consultation.target_doctor_id == bindparam("b_actor"),
        ),
    )
    .order_by(Consultation.queued_at, Consultation.id)
    .limit(1)
)
_FIRST_WAITING_NOT_LOCKED = _FIRST_WAITING.with_for_update(skip_locked=True)


class TooEarly(InvalidState):
    code = "too_early"
    default_message = "It is too early to join this appointment."


class DocumentsRequired(Conflict):
    code = "documents_required"
    default_message = (
        "This consultation needs medical documents: add them from the medical card first."
    )


class QueueEmpty(NotFound):
    code = "queue_empty"
    default_message = "Nobody is waiting in your queue."


class ConsultationService:
    """Every change of a consultation goes through `fire`."""

    def __init__(self, db: Database, clock: Clock, rules: RulesSettings) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules

    async def start(
        self,
        patient_id: str,
        channel: Channel,
        *,
        kind: Kind = Kind.URGENT,
        appointment_id: str | None = None,
        waiting_for_patient: bool = False,
    ) -> Change:
        """Open a consultation: in the consultant queue (R-URG-2), or waiting for a booked
        patient. A patient has at most one open consultation: starting again returns it."""
        now = self.clock.now()
        async with self.db.write() as session:
            existing = await session.scalar(
                select(Consultation).where(
                    Consultation.patient_id == patient_id, Consultation.state != State.CLOSED
                )
            )
            if existing is not None:  # its state is told again, as to a new start
                record_event(session, ConsultationChanged(Change(existing, None)))
                return Change(existing, None)
            row = Consultation(
                patient_id=patient_id,
                kind=kind.value,
                channel=channel.value,
                state=(State.WAITING_PATIENT if waiting_for_patient else State.WAITING_CONSULTANT),
                version=1,
                queue_role=None if waiting_for_patient else Role.CONSULTANT.value,
                queued_at=None if waiting_for_patient else now,
                appointment_id=appointment_id,
                created_at=now,
                updated_at=now,
                patient_seen_at=None if waiting_for_patient else now,
            )
            session.add(row)
            await session.flush()
            record(
                session,
                at=now,
                who=Who(Role.PATIENT, patient_id),
                action="consultation_start",
                object_type="consultation",
                object_id=row.id,
                detail={"kind": kind.value, "channel": channel.value},
            )
            record_event(session, ConsultationChanged(Change(row, None)))
        return Change(row, None)

    async def open_booked(
        self, appointment_id: str, *, patient_online: bool, by_patient: str | None = None
    ) -> Change:
        """Open the consultation of an appointment (R-SCH-3), once: at its time by the
        scheduler, or by the patient from `remind_before` ahead. It waits for the patient,
        or in the consultant queue when the patient is already there."""
        now = self.clock.now()
        async with self.db.write() as session:
            appointment = await session.get(Appointment, appointment_id)
            if appointment is None or (
                by_patient is not None and appointment.patient_id != by_patient
            ):
                raise NotFound("No such appointment.")
            if appointment.consultation_id is not None:
                existing = await session.get(Consultation, appointment.consultation_id)
                assert existing is not None
                record_event(session, ConsultationChanged(Change(existing, None)))
                return Change(existing, None)
            started = decide_appointment(
                appointment.id,
                appointment.state,
                AppointmentEvent.OPEN,
                Role.PATIENT if by_patient else Role.SYSTEM,
            )
            if now < appointment.starts_at - self.rules.remind_before:
                raise TooEarly(starts_at=appointment.starts_at.isoformat())
            present = patient_online or by_patient is not None
            row = Consultation(
                patient_id=appointment.patient_id,
                kind=appointment.kind,
                channel=appointment.channel,
                state=(State.WAITING_CONSULTANT if present else State.WAITING_PATIENT).value,
                version=1,
                queue_role=Role.CONSULTANT.value if present else None,
                queued_at=now if present else None,
                appointment_id=appointment.id,
                created_at=now,
                updated_at=now,
                patient_seen_at=now if present else None,
                no_show_at=None
                if present
                else max(appointment.starts_at, now) + self.rules.no_show_after,
            )
            session.add(row)
            await session.flush()
            opened = await session.execute(
                update(Appointment)
                .where(
                    Appointment.id == appointment.id,
                    Appointment.state == move_of(AppointmentEvent.OPEN)[0].value,
                )
                .values(state=started.value, started_at=now, consultation_id=row.id)
            )
            if opened.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict("The appointment changed meanwhile; reload it.")
            record(
                session,
                at=now,
                who=Who(Role.PATIENT if by_patient else Role.SYSTEM, by_patient),
                action="consultation_open_booked",
                object_type="consultation",
                object_id=row.id,
                detail={"appointment_id": appointment.id, "state": row.state},
            )
            record_event(session, ConsultationChanged(Change(row, None)))
            if not present:  # its time has come and the patient is not on the page
                opening = {"consultation_id": row.id, "appointment_id": appointment.id}
                note = Note(f"opening:{row.id}", row.patient_id, "consultation_open", opening)
                await queue_notes(session, now, [note])
        return Change(row, None)

    async def get(self, consultation_id: str) -> Consultation:
        async with self.db.read() as session:
            row = await session.get(Consultation, consultation_id)
        if row is None:
            raise NotFound("No such consultation.")
        return row

    async def fire(
        self,
        consultation_id: str,
        event: Event,
        actor: Actor,
        *,
        queue_role: Role | None = None,
        doctor_id: str | None = None,
        outcome: str | None = None,
        client_addr: str | None = None,
        also: Sequence[DomainEvent] = (),
    ) -> Change:
        """Apply one event in one transaction; a concurrent change makes it fail cleanly.
        `also`: events that happen only if this move does (told after the change)."""
        async with self.db.write() as session:
            row = await session.get(Consultation, consultation_id)
            if row is None:
                raise NotFound("No such consultation.")
            return await self._move(
                session,
                row,
                event,
                actor,
                queue_role=queue_role,
                doctor_id=doctor_id,
                outcome=outcome,
                client_addr=client_addr,
                also=also,
            )

    async def _move(
        self,
        session: AsyncSession,
        row: Consultation,
        event: Event,
        actor: Actor,
        *,
        queue_role: Role | None = None,
        doctor_id: str | None = None,
        outcome: str | None = None,
        client_addr: str | None = None,
        also: Sequence[DomainEvent] = (),
    ) -> Change:
        """Decide and save one move of a loaded consultation, with its legs, audit entry and
        events, inside the caller's transaction."""
        now = self.clock.now()
        before = view_of(row)
        move = decide(before, event, actor, queue_role=queue_role, doctor_id=doctor_id)
        values = self._columns(row, move, now, outcome)
        guard = {"b_id": row.id, "b_state": move.old.value, "b_version": row.version}
        result = await session.execute(_GUARDED_UPDATE, {**values, **guard})
        if result.rowcount != 1:  # type: ignore[attr-defined]
            if event in (Event.CONSULTANT_ACCEPTS, Event.DOCTOR_ACCEPTS):
                raise AlreadyTaken()
            raise Conflict("The consultation changed meanwhile; reload it.")
        # The consultant after the move: the one accepting, or the one the patient
        # returns to after the doctor (not among `values` because it did not change).
        after = values.get("consultant_id", row.consultant_id)
        consultant_id = after if isinstance(after, str) else None
        await self._record_legs(session, row.id, move, consultant_id, actor, now)
        await write_entry(
            session,
            at=now,
            who=Who(actor.role, actor.id, client_addr),
            action=f"consultation_{event.value}",
            object_type="consultation",
            object_id=row.id,
            detail={"from": move.old.value, "to": move.new.value},
        )
        for key, value in values.items():  # the row as saved, without reading it back
            set_committed_value(row, key, value)
        joins = counterpart_of(view_of(row))
        shown = None
        if joins is not None and joins != counterpart_of(before):
            shown = await read_facts_and_history(session, row)
        change = Change(row, move, before, shown)
        record_event(session, ConsultationChanged(change))
        if move.new in _WITH_STAFF and row.patient_away_since is not None:
            # A consultant or doctor is calling and the patient's page is closed: their phone.
            calling = {"consultation_id": row.id}
            key = f"calling:{row.id}:{row.version}"
            note = Note(key, row.patient_id, "doctor_calling", calling)
            await queue_notes(session, now, [note])
        for told in also:
            record_event(session, told)
        return change

    def _columns(
        self, row: Consultation, move: Transition, now: datetime, outcome: str | None
    ) -> dict[str, object]:
        values: dict[str, object] = {
            k: (v.value if isinstance(v, Role | State) else v) for k, v in move.changes.items()
        }
        values.update(state=move.new.value, version=row.version + 1, updated_at=now)
        if move.new in _WAITING:
            values["queued_at"] = now
        elif move.old in _WAITING:
            values["queued_at"] = None
        if move.event is Event.CONSULTANT_ACCEPTS and row.first_accepted_at is None:
            values["first_accepted_at"] = now
        if move.new is State.WITH_DOCTOR:
            limit = leg_limit(Kind(row.kind), self.rules.urgent_limit, self.rules.scheduled_limit)
            values["limit_ends_at"] = now + limit
            values["limit_warned_at"] = None
        elif move.old is State.WITH_DOCTOR:
            values["limit_ends_at"] = None
        if move.new is State.CLOSED:
            values["closed_at"] = now
            values["outcome"] = outcome or (move.close_reason.value if move.close_reason else None)
        if move.event is Event.PATIENT_CONNECTS:
            values["patient_seen_at"] = now
        return values

    @staticmethod
    async def _record_legs(
        session: AsyncSession,
        consultation_id: str,
        move: Transition,
        consultant_id: str | None,
        actor: Actor,
        now: datetime,
    ) -> None:
        """End the leg that the move ends; start the one it starts."""
        if move.old in _WITH_STAFF:
            ended = {"ended_at": now, "end_reason": move.event.value}
            await session.execute(_END_LEG, {**ended, "b_consultation_id": consultation_id})
        if move.new is State.WITH_CONSULTANT:
            staff_id = consultant_id
            role = Role.CONSULTANT
        elif move.new is State.WITH_DOCTOR:
            staff_id, role = actor.id, actor.role
        else:
            return
        started = {"staff_id": str(staff_id), "role": role.value, "started_at": now}
        await session.execute(_START_LEG, {**started, "consultation_id": consultation_id})

    async def _current_consultant(self, consultation_id: str) -> str | None:
        async with self.db.read() as session:
            return await session.scalar(
                select(Consultation.consultant_id).where(Consultation.id == consultation_id)
            )

    async def accept(self, actor: Actor, consultation_id: str | None = None) -> Change:
        """Take a named patient, or the longest-waiting one of the actor's queue: in one
        transaction that, on PostgreSQL, locks the first row no other accept holds
        (`FOR UPDATE SKIP LOCKED`), so racing consultants take different patients instead
        of queueing on the same row; SQLite's writers take turns anyway. The guarded update
        stays the proof of exactly once."""
        event = Event.CONSULTANT_ACCEPTS if actor.role is Role.CONSULTANT else Event.DOCTOR_ACCEPTS
        if consultation_id is not None:
            return await self.fire(consultation_id, event, actor)
        waiting = (
            State.WAITING_CONSULTANT if actor.role is Role.CONSULTANT else State.WAITING_DOCTOR
        )
        first = _FIRST_WAITING if self.db.is_sqlite else _FIRST_WAITING_NOT_LOCKED
        params = {"b_state": waiting.value, "b_role": actor.role.value, "b_actor": actor.id}
        async with self.db.write() as session:
            row = await session.scalar(first, params)
            if row is None:
                raise QueueEmpty()
            return await self._move(session, row, event, actor)

    async def transfer_to_duty_doctor(self, consultation_id: str, actor: Actor) -> Change:
        """Transfer to the duty therapist (18+) or paediatrician (1-17) by age (R-ROUTE-1)."""
        async with self.db.read() as session:
            row = await session.get(Consultation, consultation_id)
            if row is None:
                raise NotFound("No such consultation.")
            patient = await session.get(Patient, row.patient_id)
        assert patient is not None
        today = self.clock.now().astimezone(ZoneInfo(patient.timezone)).date()
        role = duty_role_for(patient.birth_date, today, self.rules.paediatric_ages)
        await self.check_documents(consultation_id)
        return await self.fire(consultation_id, Event.TRANSFER_TO_DOCTOR, actor, queue_role=role)

    async def transfer_to_doctor(
        self, consultation_id: str, actor: Actor, doctor_id: str
    ) -> Change:
        """Transfer to a named doctor (a booked consultation), in that doctor's role queue."""
        async with self.db.read() as session:
            staff = await session.get(Staff, doctor_id)
        if staff is None or not staff.active or Role(staff.role) not in DOCTOR_ROLES:
            raise NotFound("No such doctor.")
        doctor_role = Role(staff.role)
        await self.check_documents(consultation_id)
        return await self.fire(
            consultation_id,
            Event.TRANSFER_TO_DOCTOR,
            actor,
            queue_role=doctor_role,
            doctor_id=doctor_id,
        )

    async def missing_documents(self, consultation_id: str) -> bool:
        """Whether a booked consultation needs documents that the patient has not added
        (R-DOCS-1)."""
        async with self.db.read() as session:
            needs = await session.scalar(
                select(Appointment.requires_documents)
                .join(Consultation, Consultation.appointment_id == Appointment.id)
                .where(Consultation.id == consultation_id)
            )
            if not needs:
                return False
            added = await session.scalar(
                select(ConsultationDocument.document_id)
                .where(ConsultationDocument.consultation_id == consultation_id)
                .limit(1)
            )
        return added is None

    async def check_documents(self, consultation_id: str) -> None:
        """R-DOCS-1: no doctor before the documents are in."""
        if await self.missing_documents(consultation_id):
            raise DocumentsRequired()

    async def end_doctor_leg(
        self,
        consultation_id: str,
        actor: Actor,
        *,
        consultant_online: bool,
        also: Sequence[DomainEvent] = (),
    ) -> Change:
        """The doctor (or the time limit) ends the leg: back to the consultant (R-URG-5)."""
        has_consultant = await self._current_consultant(consultation_id) is not None
        event = leg_end_event(consultant_online and has_consultant)
        return await self.fire(consultation_id, event, actor, also=also)

    # --- the patient's connection (R-URG-2: keep the place while they are away) ----------

    async def open_for(self, user_id: str, role: Role) -> list[Consultation]:
        """A patient's open consultations, or those a staff member is with now: what a
        (re)connecting client is given back."""
        async with self.db.read() as session:
            return await open_in(session, user_id, role)

    async def patient_back(self, patient_id: str) -> tuple[set[str], list[Consultation]]:
        """The patient is connected again: their away deadline is cleared, and a booked
        consultation that waited for them moves into the consultant queue. Returns the
        consultations they had been away from, and their open ones as they are now. A
        patient with nothing to clear costs one read (a reconnect storm stays cheap)."""
        rows = await self.open_for(patient_id, Role.PATIENT)
        away: set[str] = set()
        if any(row.patient_away_since is not None for row in rows):
            async with self.db.write() as session:
                away = await clear_away_in(session, patient_id, self.clock.now())
            rows = await self.open_for(patient_id, Role.PATIENT)
        back = []
        for row in rows:
            if row.state == State.WAITING_PATIENT.value:
                try:
                    row = (
                        await self.fire(
                            row.id, Event.PATIENT_CONNECTS, Actor(Role.PATIENT, patient_id)
                        )
                    ).consultation
                except Conflict:  # the scheduler moved it meanwhile: take it as it is now
                    row = await self.get(row.id)
            back.append(row)
        return away, back

    async def patient_away(self, patient_id: str) -> None:
        """The patient's last connection dropped: their place is kept for `no_show_after`
        (`patient_away_since`, a deadline the scheduler acts on) and their counterparts
        are told."""
        now = self.clock.now()
        async with self.db.write() as session:
            rows = (
                await session.scalars(
                    select(Consultation).where(
                        Consultation.patient_id == patient_id,
                        Consultation.state.notin_(
                            [State.CLOSED.value, State.WAITING_PATIENT.value]
                        ),
                        Consultation.patient_away_since.is_(None),
                    )
                )
            ).all()
            for row in rows:
                row.patient_away_since = now
                record_event(session, PatientAway(row.id, counterpart_of(view_of(row))))
            if rows:
                record_event(session, DeadlineSet())

    async def everyone_away(self) -> None:
        """A single node starting: nobody is connected yet, so every patient of an open
        consultation is away from now (unless already away since earlier)."""
        async with self.db.write() as session:
            await session.execute(
                update(Consultation)
                .where(
                    Consultation.state.notin_([State.CLOSED.value, State.WAITING_PATIENT.value]),
                    Consultation.patient_away_since.is_(None),
                )
                .values(patient_away_since=self.clock.now())
            )
            record_event(session, DeadlineSet())

    async def hang_up(
        self, consultation_id: str, actor: Actor, *, consultant_online: bool
    ) -> Change:
        """The patient hangs up: during the doctor's leg they go back to the consultant
        (R-URG-2, R-URG-5), the consultation stays open; otherwise they leave it (`left`)."""
        row = await self.get(consultation_id)
        if row.state != State.WITH_DOCTOR.value:
            return await self.fire(consultation_id, Event.PATIENT_LEAVES, actor)
        event = patient_leg_end_event(consultant_online and row.consultant_id is not None)
        return await self.fire(consultation_id, event, actor)


# The statements every connect runs, built once (one built per call costs more than the
# read itself; docs/performance.md).
_CLEAR_AWAY = (  # Core: the rows are read afresh after it, no session objects to update
    update(_CONSULTATIONS)
    .where(
        _CONSULTATIONS.c.patient_id.in_(bindparam("patients", expanding=True)),
        _CONSULTATIONS.c.state != State.CLOSED.value,
        _CONSULTATIONS.c.patient_away_since.is_not(None),
    )
    .values(patient_away_since=None, patient_seen_at=bindparam("seen_at"))
    .returning(_CONSULTATIONS.c.patient_id, _CONSULTATIONS.c.id)
)
# Open consultations of patients and of staff (those they are the counterpart of now).
_OPEN_FOR_MANY = select(Consultation).where(
    (
        Consultation.patient_id.in_(bindparam("patients", expanding=True))
        & (Consultation.state != State.CLOSED.value)
    )
    | (
        (Consultation.state == State.WITH_CONSULTANT.value)
        & Consultation.consultant_id.in_(bindparam("staff", expanding=True))
    )
    | (
        (Consultation.state == State.WITH_DOCTOR.value)
        & Consultation.doctor_id.in_(bindparam("staff", expanding=True))
    )
)


async def clear_away_in(session: AsyncSession, patient_id: str, now: datetime) -> set[str]:
    """Clear the patient's away deadlines (they are connected again), within a write
    session the caller holds; the ids of the consultations they had been away from."""
    return (await clear_away_of(session, [patient_id], now)).get(patient_id, set())


async def clear_away_of(
    session: AsyncSession, patient_ids: Sequence[str], now: datetime
) -> dict[str, set[str]]:
    """clear_away_in for several patients in one statement: patient -> consultations."""
    cleared: dict[str, set[str]] = {}
    params = {"patients": list(patient_ids), "seen_at": now}
    for patient_id, consultation_id in await session.execute(_CLEAR_AWAY, params):
        cleared.setdefault(patient_id, set()).add(consultation_id)
    return cleared


async def open_in(session: AsyncSession, user_id: str, role: Role) -> list[Consultation]:
    """ConsultationService.open_for within a session the caller holds."""
    patient = role is Role.PATIENT
    found = await open_of(session, {user_id} if patient else set(), set() if patient else {user_id})
    return found.get(user_id, [])


async def open_of(
    session: AsyncSession, patients: Collection[str], staff: Collection[str]
) -> dict[str, list[Consultation]]:
    """open_in for many users in one statement: user -> their open consultations (a
    patient's, and those a staff member is the counterpart of now)."""
    found: dict[str, list[Consultation]] = {}
    if not patients and not staff:
        return found
    params = {"patients": list(patients), "staff": list(staff)}
    for row in await session.scalars(_OPEN_FOR_MANY, params):
        if row.patient_id in patients:
            found.setdefault(row.patient_id, []).append(row)
        staff_id = counterpart_of(view_of(row))
        if staff_id is not None and staff_id in staff:
            found.setdefault(staff_id, []).append(row)
    return found
