"""What the people of a consultation are shown about it besides its row: who is on the other
side, the appointment it is for, whether documents are still missing. One read session, so
an event to both sides costs one round of queries, not one per field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, bindparam, cast, literal, null, select, union_all
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
from telemed.services.queue import booked_with
from telemed.services.views import view_of


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
        return await read_facts_and_history(session, row, after_id)


async def read_facts_and_history(
    session: AsyncSession, row: Consultation, after_id: int = 0
) -> tuple[Facts, list[Message]]:
    """facts_and_history within a session the caller holds (a move that brings the patient
    a new counterpart reads them in its own transaction: telemed/events.py's `Change.shown`)."""
    return await read_facts(session, row), await read_history(session, row.id, after_id)


# Built once: every connect reads them (docs/performance.md).
_ANY_DOCUMENT = (
    select(ConsultationDocument.document_id)
    .where(ConsultationDocument.consultation_id == bindparam("consultation_id"))
    .limit(1)
)
_PATIENTS, _STAFF, _LEGS = table_of(Patient), table_of(Staff), table_of(ConsultationLeg)
_NO_ROLE = cast(null(), String)
# The patients' names, the counterparts' roles and names and the open legs of any number of
# consultations: one statement, each row (kind, key, name or leg id, role). Who the
# counterpart is stays decided in one place (counterpart_of), not in SQL.
_NAMES = union_all(
    select(literal("patient"), _PATIENTS.c.id, _PATIENTS.c.full_name, _NO_ROLE).where(
        _PATIENTS.c.id.in_(bindparam("patients", expanding=True))
    ),
    select(literal("staff"), _STAFF.c.id, _STAFF.c.full_name, _STAFF.c.role).where(
        _STAFF.c.id.in_(bindparam("staff", expanding=True))
    ),
    select(literal("leg"), _LEGS.c.consultation_id, _LEGS.c.id, _NO_ROLE).where(
        _LEGS.c.consultation_id.in_(bindparam("consultations", expanding=True)),
        _LEGS.c.ended_at.is_(None),
    ),
)


async def read_facts(session: AsyncSession, row: Consultation) -> Facts:
    """facts_of within a session the caller holds (one read for a whole connect)."""
    return (await read_facts_of(session, [row]))[row.id]


async def read_facts_of(session: AsyncSession, rows: Sequence[Consultation]) -> dict[str, Facts]:
    """read_facts for several consultations (connects arriving together): the names and
    open legs of all of them in one statement; a booked consultation's appointment costs
    more reads."""
    if not rows:
        return {}
    staff_of = {row.id: counterpart_of(view_of(row)) for row in rows}
    params = {
        "patients": sorted({row.patient_id for row in rows}),
        "staff": sorted({s for s in staff_of.values() if s is not None}),
        "consultations": [row.id for row in rows],
    }
    names: dict[tuple[str, str], tuple[str, str | None]] = {}
    for kind, key, value, role in await session.execute(_NAMES, params):
        names.setdefault((kind, key), (value, role))  # (a second open leg: the first kept)
    facts: dict[str, Facts] = {}
    for row in rows:
        staff_id = staff_of[row.id]
        patient = names.get(("patient", row.patient_id))
        staff = names.get(("staff", staff_id)) if staff_id else None
        leg = names.get(("leg", row.id))
        appointment, doctor, missing = await _booking_of(session, row)
        facts[row.id] = Facts(
            patient={"role": "patient", "name": patient[0]} if patient else None,
            counterpart={"role": staff[1], "name": staff[0]} if staff else None,
            appointment=booked_with(appointment, doctor),
            documents_required=missing,
            leg_id=leg[0] if leg and staff_id else None,
        )
    return facts


async def _booking_of(
    session: AsyncSession, row: Consultation
) -> tuple[Appointment | None, Staff | None, bool]:
    """A booked consultation's appointment, its doctor, and whether the documents it
    requires are still missing (R-DOCS-1)."""
    if not row.appointment_id:
        return None, None, False
    appointment = await session.get(Appointment, row.appointment_id)
    if appointment is None:
        return None, None, False
    doctor = await session.get(Staff, appointment.doctor_id)
    missing = False
    if appointment.requires_documents:
        missing = await session.scalar(_ANY_DOCUMENT, {"consultation_id": row.id}) is None
    return appointment, doctor, missing
