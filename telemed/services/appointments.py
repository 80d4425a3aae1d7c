"""Consultations by appointment (R-SCH): doctors' hours, slots, booking and cancelling.

A slot is booked with a guarded update (`WHERE appointment_id IS NULL`), so
of two patients racing for it one wins and the other gets `slot_taken`.
Times are stored in UTC; each booking writes its deadlines (`remind_at`) into
the row, where the scheduler finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update

from telemed.appointment import AppointmentEvent, AppointmentState, decide, move_of
from telemed.clock import Clock
from telemed.config import RulesSettings
from telemed.consultation import Channel, Kind
from telemed.db import Database
from telemed.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed
from telemed.events import DeadlineSet, StaffMessage, UserMessage
from telemed.events import record as record_event
from telemed.models import Appointment, Notification, Patient, Slot, Staff, WorkingHours
from telemed.notify.messages import booking_text as booking_text  # re-exported
from telemed.roles import DOCTOR_ROLES, Role
from telemed.services.audit import Who, record
from telemed.services.notifications import Note, queue_notes

SELF_BOOKABLE = frozenset({Role.PSYCHOLOGIST, Role.SPECIALIST})  # seed 000
# How the consultant informs the patient of the date and time (R-SCH-1, seed 001): a message
# in the consultation's chat, a push notification with an SMS, or a call on the platform or
# to the phone that the consultant makes and then confirms.
NOTIFY_VIA = ("chat", "call", "phone", "push")
SENT_BY_PLATFORM = frozenset({"chat", "push"})


class SlotTaken(Conflict):
    code = "slot_taken"
    default_message = "This time has just been booked by someone else; pick another."


class NoSuchSlot(NotFound):
    code = "no_such_slot"
    default_message = "The doctor has no free slot at that time."


class ChatNeedsConsultation(Conflict):
    code = "chat_needs_consultation"
    default_message = (
        "Informing by chat needs the patient on the line with you: name your consultation with "
        "them (consultation_id), or choose push, call or phone."
    )


class AlreadyStarted(Conflict):
    code = "already_started"
    default_message = "The consultation has already started; it can no longer be cancelled."


@dataclass(frozen=True)
class Hours:
    """One block of weekly working hours, local to the doctor."""

    weekday: int
    starts: time
    ends: time


def cut_slots(
    hours: list[Hours], zone: str, slot_minutes: int, first_day: date, days: int
) -> list[tuple[datetime, datetime]]:
    """The slots (UTC start, end) that the weekly hours give over `days` days (pure)."""
    tz = ZoneInfo(zone)
    step = timedelta(minutes=slot_minutes)
    slots = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for block in hours:
            if block.weekday != day.weekday():
                continue
            start = datetime.combine(day, block.starts, tz)
            end = datetime.combine(day, block.ends, tz)
            while start + step <= end:
                slots.append((start.astimezone(UTC), (start + step).astimezone(UTC)))
                start += step
    return slots


class AppointmentService:
    def __init__(self, db: Database, clock: Clock, rules: RulesSettings) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules

    # --- hours and slots --------------------------------------------------------------------

    async def set_working_hours(
        self,
        doctor_id: str,
        hours: list[Hours],
        *,
        zone: str,
        slot_minutes: int,
        days_ahead: int,
        who: Who,
    ) -> int:
        """Replace a doctor's weekly hours and re-cut their free future slots; returns how
        many slots are open. Booked slots are never touched."""
        await self._doctor(doctor_id)
        now = self.clock.now()
        async with self.db.write() as session:
            await session.execute(delete(WorkingHours).where(WorkingHours.doctor_id == doctor_id))
            for h in hours:
                session.add(
                    WorkingHours(
                        doctor_id=doctor_id,
                        weekday=h.weekday,
                        starts=h.starts.strftime("%H:%M"),
                        ends=h.ends.strftime("%H:%M"),
                        slot_minutes=slot_minutes,
                        time_zone=zone,
                    )
                )
            await session.execute(
                delete(Slot).where(
                    Slot.doctor_id == doctor_id,
                    Slot.appointment_id.is_(None),
                    Slot.starts_at > now,
                )
            )
            record(
                session,
                at=now,
                who=who,
                action="working_hours_set",
                object_type="staff",
                object_id=doctor_id,
            )
        return await self.open_slots(doctor_id, days_ahead)

    async def open_slots(self, doctor_id: str, days_ahead: int) -> int:
        """Cut slots from the working hours for the coming days (idempotent)."""
        now = self.clock.now()
        async with self.db.write() as session:
            rows = (
                await session.scalars(
                    select(WorkingHours).where(WorkingHours.doctor_id == doctor_id)
                )
            ).all()
            if not rows:
                return 0
            zone = rows[0].time_zone
            hours = [
                Hours(r.weekday, time.fromisoformat(r.starts), time.fromisoformat(r.ends))
                for r in rows
            ]
            today = now.astimezone(ZoneInfo(zone)).date()
            wanted = [
                (s, e)
                for s, e in cut_slots(hours, zone, rows[0].slot_minutes, today, days_ahead)
                if s > now
            ]
            existing = set(
                (
                    await session.scalars(
                        select(Slot.starts_at).where(
                            Slot.doctor_id == doctor_id, Slot.starts_at > now
                        )
                    )
                ).all()
            )
            for start, end in wanted:
                if start not in existing:
                    session.add(
                        Slot(doctor_id=doctor_id, starts_at=start, ends_at=end, created_at=now)
                    )
        return len(wanted)

    async def free_slots(
        self, role: Role, starts: datetime, ends: datetime, doctor_id: str | None = None
    ) -> list[tuple[Slot, Staff]]:
        """Free future slots of doctors of a role between two times, earliest first."""
        now = self.clock.now()
        query = (
            select(Slot, Staff)
            .join(Staff, Staff.id == Slot.doctor_id)
            .where(
                Staff.role == role.value,
                Staff.active.is_(True),
                Slot.appointment_id.is_(None),
                Slot.starts_at >= max(starts, now),
                Slot.starts_at < ends,
            )
            .order_by(Slot.starts_at, Staff.full_name)
            .limit(500)
        )
        if doctor_id is not None:
            query = query.where(Slot.doctor_id == doctor_id)
        async with self.db.read() as session:
            return [(slot, staff) for slot, staff in (await session.execute(query)).all()]

    # --- booking -------------------------------------------------------------------------------

    async def book_for_patient(
        self, *, patient_id: str, slot_id: str, channel: Channel, who: Who
    ) -> Appointment:
        """A patient books a psychologist or specialist from a free slot (seed 000)."""
        async with self.db.read() as session:
            found = (
                await session.execute(
                    select(Slot, Staff)
                    .join(Staff, Staff.id == Slot.doctor_id)
                    .where(Slot.id == slot_id)
                )
            ).first()
        if found is None:
            raise NotFound("No such slot.")
        slot, doctor = found
        if Role(doctor.role) not in SELF_BOOKABLE:
            raise Forbidden("Book this doctor through the medical consultant.")
        return await self._book(
            slot=slot,
            patient_id=patient_id,
            channel=channel,
            kind=Kind.SCHEDULED,
            requires_documents=False,
            notify_via="chat",
            booked_by=None,
            who=who,
        )

    async def book_by_consultant(
        self,
        *,
        patient_id: str,
        doctor_id: str,
        starts_at: datetime,
        channel: Channel,
        kind: Kind,
        requires_documents: bool,
        notify_via: str,
        who: Who,
    ) -> Appointment:
        """The consultant books a doctor at a free time and says how to tell the patient
        (R-SCH-1)."""
        return await self.book_at(
            patient_id=patient_id,
            doctor_id=doctor_id,
            starts_at=starts_at,
            channel=channel,
            kind=kind,
            requires_documents=requires_documents,
            notify_via=notify_via,
            booked_by=who.id,
            who=who,
        )

    async def book_at(
        self,
        *,
        patient_id: str,
        doctor_id: str,
        starts_at: datetime,
        channel: Channel,
        kind: Kind,
        requires_documents: bool,
        notify_via: str,
        booked_by: str | None,
        who: Who,
    ) -> Appointment:
        """Book a doctor's free slot at a time; `booked_by` is the staff member who booked,
        None when the patient did (the booking of a second opinion's specialist, R-SECOND)."""
        if kind is Kind.URGENT:
            raise ValidationFailed("An appointment is scheduled or second_opinion.", field="kind")
        if notify_via not in NOTIFY_VIA:
            raise ValidationFailed(f"notify_via is one of {', '.join(NOTIFY_VIA)}.")
        await self._doctor(doctor_id)
        async with self.db.read() as session:
            if await session.get(Patient, patient_id) is None:
                raise NotFound("No such patient.")
            slot = await session.scalar(
                select(Slot).where(Slot.doctor_id == doctor_id, Slot.starts_at == starts_at)
            )
        if slot is None:
            raise NoSuchSlot()
        return await self._book(
            slot=slot,
            patient_id=patient_id,
            channel=channel,
            kind=kind,
            requires_documents=requires_documents,
            notify_via=notify_via,
            booked_by=booked_by,
            who=who,
        )

    async def _book(
        self,
        *,
        slot: Slot,
        patient_id: str,
        channel: Channel,
        kind: Kind,
        requires_documents: bool,
        notify_via: str,
        booked_by: str | None,
        who: Who,
    ) -> Appointment:
        now = self.clock.now()
        if slot.starts_at <= now:
            raise SlotTaken("This time has passed; pick another.")
        async with self.db.write() as session:
            appointment = Appointment(
                patient_id=patient_id,
                doctor_id=slot.doctor_id,
                booked_by=booked_by,
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                channel=channel.value,
                kind=kind.value,
                requires_documents=requires_documents,
                notify_via=notify_via,
                state=AppointmentState.BOOKED.value,
                remind_at=slot.starts_at - self.rules.remind_before,
                created_at=now,
                slot_id=slot.id,
            )
            session.add(appointment)
            await session.flush()
            taken = await session.execute(
                update(Slot)
                .where(Slot.id == slot.id, Slot.appointment_id.is_(None))
                .values(appointment_id=appointment.id)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise SlotTaken()
            if notify_via == "push":  # the outbox sends it; chat and calls are not outbox work
                doctor = await session.get(Staff, slot.doctor_id)
                payload: dict[str, object] = {
                    "appointment_id": appointment.id,
                    "starts_at": slot.starts_at.isoformat(),
                    "doctor_name": doctor.full_name if doctor else "",
                    "doctor_role": doctor.role if doctor else "",
                }
                note = Note(
                    f"booked:{appointment.id}",
                    patient_id,
                    "appointment_booked",
                    payload,
                    channels=("push", "sms"),
                )
                await queue_notes(session, now, [note])
            told = {"appointment_id": appointment.id, "starts_at": slot.starts_at.isoformat()}
            record_event(session, UserMessage(patient_id, "appointment:booked", told))
            record_event(session, DeadlineSet())  # its reminder and start
            record(
                session,
                at=now,
                who=who,
                action="appointment_book",
                object_type="appointment",
                object_id=appointment.id,
                detail={"doctor_id": slot.doctor_id},
            )
        return appointment

    # --- cancelling (R-CANCEL-1) ------------------------------------------------------------

    async def cancel(self, appointment_id: str, who: Who, role: Role) -> Appointment:
        """Cancel before the start (the slot opens again, the consultant is told); after the
        start: `already_started`."""
        now = self.clock.now()
        async with self.db.write() as session:
            appointment = await session.get(Appointment, appointment_id)
            if appointment is None or (role is Role.PATIENT and appointment.patient_id != who.id):
                raise NotFound("No such appointment.")
            if role is not Role.PATIENT and role not in {Role.CONSULTANT, Role.ADMIN}:
                raise Forbidden()
            if appointment.state == AppointmentState.CANCELLED:
                return appointment  # cancelling twice is cancelling once
            if appointment.starts_at <= now:
                raise AlreadyStarted()
            try:
                cancelled = decide(appointment.id, appointment.state, AppointmentEvent.CANCEL, role)
            except InvalidState:
                raise AlreadyStarted() from None
            done = await session.execute(
                update(Appointment)
                .where(
                    Appointment.id == appointment.id,
                    Appointment.state == move_of(AppointmentEvent.CANCEL)[0].value,
                )
                .values(state=cancelled.value, cancelled_at=now)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise AlreadyStarted()
            await session.execute(
                update(Slot)
                .where(Slot.appointment_id == appointment.id)
                .values(appointment_id=None)
            )
            notes = [
                Note(
                    f"cancelled:{appointment.id}",
                    appointment.booked_by or "consultants",
                    "appointment_cancelled",
                    {"appointment_id": appointment.id, "by": role.value},
                    channels=("console",),
                    role=Role.CONSULTANT,
                )
            ]
            if role is not Role.PATIENT:  # cancelled by the clinic: the patient must know
                told_patient = {
                    "appointment_id": appointment.id,
                    "starts_at": appointment.starts_at.isoformat(),
                }
                notes.append(
                    Note(
                        f"cancelled:{appointment.id}:patient",
                        appointment.patient_id,
                        "appointment_cancelled",
                        told_patient,
                        channels=("push",),
                    )
                )
            await queue_notes(session, now, notes)
            told = {"appointment_id": appointment.id, "by": role.value}
            record_event(session, StaffMessage(Role.CONSULTANT, "appointment:cancelled", told))
            record(
                session,
                at=now,
                who=who,
                action="appointment_cancel",
                object_type="appointment",
                object_id=appointment.id,
            )
            await session.refresh(appointment)
        return appointment

    # --- informing the patient (R-SCH-1) ------------------------------------------------------

    async def mark_informed(self, appointment_id: str, who: Who) -> Appointment:
        """The patient has been told (the chat message went out, or the consultant confirms
        the call they made); the first time counts, a repeat changes nothing."""
        now = self.clock.now()
        async with self.db.write() as session:
            appointment = await session.get(Appointment, appointment_id)
            if appointment is None:
                raise NotFound("No such appointment.")
            if appointment.informed_at is None:
                appointment.informed_at = now
                appointment.informed_by = who.id
                record(
                    session,
                    at=now,
                    who=who,
                    action="appointment_informed",
                    object_type="appointment",
                    object_id=appointment.id,
                    detail={"via": appointment.notify_via},
                )
            await session.flush()
            await session.refresh(appointment)
        return appointment

    async def informed_by_outbox(self, appointment_ids: list[str]) -> set[str]:
        """Of these push/SMS bookings, those whose push or SMS the outbox has sent."""
        if not appointment_ids:
            return set()
        keys = [f"booked:{i}:{channel}" for i in appointment_ids for channel in ("push", "sms")]
        async with self.db.read() as session:
            sent = (
                await session.scalars(
                    select(Notification.dedupe_key).where(
                        Notification.dedupe_key.in_(keys), Notification.sent_at.is_not(None)
                    )
                )
            ).all()
        return {key.split(":")[1] for key in sent}

    async def for_patient(self, patient_id: str) -> list[Appointment]:
        async with self.db.read() as session:
            return list(
                (
                    await session.scalars(
                        select(Appointment)
                        .where(Appointment.patient_id == patient_id)
                        .order_by(Appointment.starts_at.desc())
                        .limit(200)
                    )
                ).all()
            )

    async def get(self, appointment_id: str) -> Appointment:
        async with self.db.read() as session:
            found = await session.get(Appointment, appointment_id)
        if found is None:
            raise NotFound("No such appointment.")
        return found

    async def _doctor(self, doctor_id: str) -> Staff:
        async with self.db.read() as session:
            staff = await session.get(Staff, doctor_id)
        if staff is None or not staff.active or Role(staff.role) not in DOCTOR_ROLES:
            raise NotFound("No such doctor.")
        return staff
