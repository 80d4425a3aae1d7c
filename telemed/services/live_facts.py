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
    table_of,
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
_PATIENTS, _STAFF, _LEGS = table_of(Patient), table_of(Staff), table_of(ConsultationLeg)
# The patient's name, the counterpart's role and name (none when `staff_id` is NULL) and
# the open leg: one statement.
_NAMES = (
    select(
        _PATIENTS.c.full_name,
        _STAFF.c.role,
        _STAFF.c.full_name,
        select(_LEGS.c.id)
        .where(_LEGS.c.consultation_id == bindparam("consultation_id"), _LEGS.c.ended_at.is_(None))
        .limit(1)
        .scalar_subquery(),
    )
    .select_from(_PATIENTS.outerjoin(_STAFF, _STAFF.c.id == bindparam("staff_id")))
    .where(_PATIENTS.c.id == bindparam("patient_id"))
)


async def read_facts(session: AsyncSession, row: Consultation) -> Facts:
    """facts_of within a session the caller holds (one read for a whole connect). The names
    and the open leg come from one prebuilt statement; a booked consultation's appointment
    costs more reads."""
    staff_id = counterpart_of(view_of(row))
    params = {"patient_id": row.patient_id, "staff_id": staff_id, "consultation_id": row.id}
    names = (await session.execute(_NAMES, params)).first()
    appointment = await session.get(Appointment, row.appointment_id) if row.appointment_id else None
    doctor = await session.get(Staff, appointment.doctor_id) if appointment else None
    missing = False
    if appointment is not None and appointment.requires_documents:
        added = await session.scalar(_ANY_DOCUMENT, {"consultation_id": row.id})
        missing = added is None
    patient_name, staff_role, staff_name, leg_id = names if names else (None, None, None, None)
    return Facts(
        patient={"role": "patient", "name": patient_name} if names else None,
        counterpart={"role": staff_role, "name": staff_name} if staff_role else None,
        appointment=booked_with(appointment, doctor),
        documents_required=missing,
        leg_id=leg_id if staff_id else None,
    )
