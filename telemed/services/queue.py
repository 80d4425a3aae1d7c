"""The waiting queues: who waits for whom, in what order, for how long (R-URG-2).

Positions are derived from the rows (`state`, `queue_role`, `queued_at`) on
every read, so every node and every restart sees the same queue.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select

from telemed.clock import Clock
from telemed.config import RulesSettings
from telemed.consultation import State
from telemed.db import Database
from telemed.devices import queue_summary
from telemed.models import (
    Appointment,
    Consultation,
    ConsultationDocument,
    DeviceCheck,
    Patient,
    Staff,
)
from telemed.roles import Role
from telemed.routing import age_on

_WAITING = (State.WAITING_CONSULTANT.value, State.WAITING_DOCTOR.value)


@dataclass(frozen=True)
class QueueItem:
    """A waiting patient as staff watching a queue see them."""

    consultation_id: str
    position: int
    patient_id: str
    patient_name: str
    age: int
    channel: str
    kind: str
    queued_at: datetime
    waited_seconds: int
    past_target: bool
    target_doctor_id: str | None
    device_check: dict[str, object] | None = None
    appointment: dict[str, object] | None = None


@dataclass(frozen=True)
class Waiting:
    """A waiting consultation as its patient's place update needs it (no names, no joins)."""

    consultation_id: str
    patient_id: str
    state: str
    kind: str
    channel: str
    appointment_id: str | None
    documents_required: bool
    position: int


@dataclass(frozen=True)
class Place:
    """A waiting patient's place: 1-based position and an estimated wait."""

    position: int
    estimated_wait_seconds: int


def booked_with(appointment: Appointment | None, doctor: Staff | None) -> dict[str, object] | None:
    """The appointment a booked consultation is for, as the console shows it (R-SCH-3)."""
    if appointment is None:
        return None
    return {
        "appointment_id": appointment.id,
        "starts_at": appointment.starts_at.isoformat(),
        "doctor_id": appointment.doctor_id,
        "doctor_name": doctor.full_name if doctor else None,
        "doctor_role": doctor.role if doctor else None,
        "requires_documents": appointment.requires_documents,
    }


def _local_date(now: datetime, zone: str) -> date:
    return now.astimezone(ZoneInfo(zone)).date()


class QueueService:
    def __init__(self, db: Database, clock: Clock, rules: RulesSettings) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules

    async def items(self, role: Role, staff_id: str | None = None) -> list[QueueItem]:
        """Everyone waiting in a role's queue, longest-waiting first. A doctor sees only
        patients not named for another doctor."""
        return await self._items(role, staff_id)

    async def item(self, consultation_id: str) -> QueueItem | None:
        """One waiting consultation as its queue's watchers see it (a `queue:joined`), with
        its position now; None when it is not waiting in a queue."""
        found = await self._items(None, None, consultation_id)
        if not found:
            return None
        row = await self.consultation(consultation_id)
        place = await self.place(row, 1) if row is not None else None
        return replace(found[0], position=place.position if place else 1)

    async def consultation(self, consultation_id: str) -> Consultation | None:
        async with self.db.read() as session:
            return await session.get(Consultation, consultation_id)

    async def _items(
        self, role: Role | None, staff_id: str | None, consultation_id: str | None = None
    ) -> list[QueueItem]:
        now = self.clock.now()
        query = (
            select(Consultation, Patient, DeviceCheck, Appointment, Staff)
            .join(Patient, Patient.id == Consultation.patient_id)
            .outerjoin(DeviceCheck, DeviceCheck.patient_id == Consultation.patient_id)
            .outerjoin(Appointment, Appointment.id == Consultation.appointment_id)
            .outerjoin(Staff, Staff.id == Appointment.doctor_id)
            .where(Consultation.state.in_(_WAITING))
            .order_by(Consultation.queued_at, Consultation.id)
        )
        if role is not None:
            query = query.where(Consultation.queue_role == role.value)
        if consultation_id is not None:
            query = query.where(Consultation.id == consultation_id)
        if staff_id is not None and role is not Role.CONSULTANT:
            query = query.where(
                or_(
                    Consultation.target_doctor_id.is_(None),
                    Consultation.target_doctor_id == staff_id,
                )
            )
        async with self.db.read() as session:
            rows = (await session.execute(query)).all()
        target = self.rules.urgent_start_target
        items = []
        for position, (c, p, check, appointment, doctor) in enumerate(rows, start=1):
            queued_at = c.queued_at or c.created_at
            waited = now - queued_at
            items.append(
                QueueItem(
                    consultation_id=c.id,
                    position=position,
                    patient_id=p.id,
                    patient_name=p.full_name,
                    age=age_on(p.birth_date, _local_date(now, p.timezone)),
                    channel=c.channel,
                    kind=c.kind,
                    queued_at=queued_at,
                    waited_seconds=max(0, int(waited.total_seconds())),
                    past_target=c.queue_role == Role.CONSULTANT.value and waited > target,
                    target_doctor_id=c.target_doctor_id,
                    device_check=None
                    if check is None
                    else queue_summary(
                        check.ok, check.checked_at, check.channel, check.failing, c.channel
                    ),
                    appointment=booked_with(appointment, doctor),
                )
            )
        return items

    async def waiting(self, role: Role) -> list[Waiting]:
        """The waiting consultations of a role's queue in order, with their positions: one
        light query, for the place updates of waiting patients."""
        has_documents = (
            select(ConsultationDocument.document_id)
            .where(ConsultationDocument.consultation_id == Consultation.id)
            .exists()
        )
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(
                        Consultation.id,
                        Consultation.patient_id,
                        Consultation.state,
                        Consultation.kind,
                        Consultation.channel,
                        Consultation.appointment_id,
                        and_(Appointment.requires_documents.is_(True), ~has_documents),
                    )
                    .outerjoin(Appointment, Appointment.id == Consultation.appointment_id)
                    .where(Consultation.state.in_(_WAITING), Consultation.queue_role == role.value)
                    .order_by(Consultation.queued_at, Consultation.id)
                )
            ).all()
        return [
            Waiting(*row[:6], documents_required=bool(row[6]), position=n)
            for n, row in enumerate(rows, start=1)
        ]

    async def place(self, consultation: Consultation, staff_online: int) -> Place | None:
        """The place of a waiting consultation in its queue, or None if it is not waiting."""
        if consultation.state not in _WAITING or consultation.queued_at is None:
            return None
        async with self.db.read() as session:
            ahead = await session.scalar(
                select(func.count())
                .select_from(Consultation)
                .where(
                    Consultation.state.in_(_WAITING),
                    Consultation.queue_role == consultation.queue_role,
                    or_(
                        Consultation.queued_at < consultation.queued_at,
                        and_(
                            Consultation.queued_at == consultation.queued_at,
                            Consultation.id < consultation.id,
                        ),
                    ),
                )
            )
        position = int(ahead or 0) + 1
        return Place(position, self.estimate(position, staff_online))

    def estimate(self, position: int, staff_online: int) -> int:
        """Seconds until a patient at `position` is taken: `queue_service_time` per patient
        ahead and including them, shared by the staff online."""
        per_patient = self.rules.queue_service_time.total_seconds()
        return int(per_patient * position / max(1, staff_online))

    async def breaches(self, since: datetime) -> int:
        """How many consultations since `since` waited past the start target (R-URG-2)."""
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Consultation.created_at, Consultation.first_accepted_at).where(
                        Consultation.created_at >= since,
                        Consultation.kind == "urgent",
                    )
                )
            ).all()
        now = self.clock.now()
        limit: timedelta = self.rules.urgent_start_target
        return sum(1 for created, accepted in rows if (accepted or now) - created > limit)
