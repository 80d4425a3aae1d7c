"""What the people of a consultation are shown about it besides its row: who is on the other
side, the appointment it is for, whether documents are still missing. One read session, so
an event to both sides costs one round of queries, not one per field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.consultation import counterpart_of
from telemed.db import Database
from telemed.models import (
    Appointment,
    Consultation,
    ConsultationDocument,
    ConsultationLeg,
    Patient,
    Staff,
)
from telemed.services.chat import Message, read_history
from telemed.services.consultations import view_of
from telemed.services.queue import booked_with


@dataclass(frozen=True)
class Facts:
    """Names (`{role, name}`) of the patient and the current counterpart, the appointment
    of a booked consultation, and R-DOCS-1's flag."""

    patient: dict[str, Any] | None
    counterpart: dict[str, Any] | None
    appointment: dict[str, object] | None
    documents_required: bool
    leg_id: str | None = None  # the open leg (who is with the patient now), if any


async def facts_of(db: Database, row: Consultation) -> Facts:
    async with db.read() as session:
        return await read_facts(session, row)


async def facts_and_history(
    db: Database, row: Consultation, after_id: int = 0
) -> tuple[Facts, list[Message]]:
    """The facts and the chat since `after_id`, in one read: what a new counterpart needs."""
    async with db.read() as session:
        return await read_facts(session, row), await read_history(session, row.id, after_id)


# Built once: every connect reads them (docs/performance.md).
_ANY_DOCUMENT = (
    select(ConsultationDocument.document_id)
    .where(ConsultationDocument.consultation_id == bindparam("consultation_id"))
    .limit(1)
)
_OPEN_LEG = select(ConsultationLeg.id).where(
    ConsultationLeg.consultation_id == bindparam("consultation_id"),
    ConsultationLeg.ended_at.is_(None),
)


async def read_facts(session: AsyncSession, row: Consultation) -> Facts:
    """facts_of within a session the caller holds (one read for a whole connect)."""
    staff_id = counterpart_of(view_of(row))
    patient = await session.get(Patient, row.patient_id)
    staff = await session.get(Staff, staff_id) if staff_id else None
    appointment = await session.get(Appointment, row.appointment_id) if row.appointment_id else None
    doctor = await session.get(Staff, appointment.doctor_id) if appointment else None
    missing = False
    if appointment is not None and appointment.requires_documents:
        added = await session.scalar(_ANY_DOCUMENT, {"consultation_id": row.id})
        missing = added is None
    leg_id = await session.scalar(_OPEN_LEG, {"consultation_id": row.id}) if staff_id else None
    return Facts(
        patient={"role": "patient", "name": patient.full_name} if patient else None,
        counterpart={"role": staff.role, "name": staff.full_name} if staff else None,
        appointment=booked_with(appointment, doctor),
        documents_required=missing,
        leg_id=leg_id,
    )
