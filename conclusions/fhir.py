"""FHIR R4 export (R4B models of `fhir.resources`): a booking as Appointment, a consultation
as Encounter, a conclusion as Composition, a patient's record as a Bundle.

Every resource is built as FHIR JSON and validated by the library's models
before it leaves. Who may read what is decided by the one access policy
(`telemed.access`): in `_check_patient` here, and in the conclusion rules
(`conclusions.service`) for compositions. Every FHIR read is audited by the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.composition import Composition
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.resource import Resource
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conclusions.service import ConclusionService, ReadResult, Status
from telemed.access import Decision
from telemed.clock import Clock
from telemed.config import RulesSettings
from telemed.db import Database
from telemed.errors import NotFound, TelemedError
from telemed.models import (
    Appointment,
    Conclusion,
    Consultation,
    ConsultationLeg,
    Patient,
    Staff,
)
from telemed.roles import DOCTOR_ROLES, Role
from telemed.services.audit import Who
from telemed.services.care import Grants

FHIR_JSON = "application/fhir+json"
STAFF_READERS: frozenset[Role] = DOCTOR_ROLES | {Role.CONSULTANT}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOINC = "http://loinc.org"
KIND_SYSTEM = "urn:telemed:consultation-kind"
CHANNEL_SYSTEM = "urn:telemed:channel"

_ENCOUNTER_STATUS = {
    "waiting_patient": "planned",
    "waiting_consultant": "arrived",
    "with_consultant": "triaged",
    "waiting_doctor": "triaged",
    "with_doctor": "in-progress",
}
_CLOSED_STATUS = {"no_show": "cancelled", "cancelled": "cancelled"}
_APPOINTMENT_STATUS = {
    "booked": "booked",
    "cancelled": "cancelled",
    "no_show": "noshow",
    "done": "fulfilled",
    "fulfilled": "fulfilled",
}
_SECTIONS = (
    ("findings", "Заключение", "59776-5"),  # LOINC: Procedure findings
    ("recommendations", "Рекомендации", "18776-5"),  # LOINC: Plan of care note
    ("follow_up", "Наблюдение", "18776-5"),
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _ref(kind: str, ident: str, display: str | None = None) -> dict[str, str]:
    ref = {"reference": f"{kind}/{ident}"}
    if display:
        ref["display"] = display
    return ref


def _narrative(text: str) -> dict[str, str]:
    paragraphs = "".join(f"<p>{escape(line)}</p>" for line in text.splitlines() if line.strip())
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{paragraphs or "<p></p>"}</div>',
    }


def appointment_resource(row: Appointment, doctor_name: str) -> FhirAppointment:
    """A booking (R-SCH) as a FHIR Appointment."""
    return FhirAppointment.model_validate(
        {
            "resourceType": "Appointment",
            "id": row.id,
            "status": _APPOINTMENT_STATUS.get(row.state, "booked"),
            "start": _time(row.starts_at),
            "end": _time(row.ends_at),
            "created": _time(row.created_at),
            "participant": [
                {"actor": _ref("Patient", row.patient_id), "status": "accepted"},
                {"actor": _ref("Practitioner", row.doctor_id, doctor_name), "status": "accepted"},
            ],
        }
    )


def encounter_status(state: str, close_reason: str | None) -> str:
    """A consultation state as an Encounter status: the consultant's leg is triage."""
    if state == "closed":
        return _CLOSED_STATUS.get(close_reason or "", "finished")
    return _ENCOUNTER_STATUS[state]


def encounter_resource(row: Consultation, legs: Sequence[tuple[ConsultationLeg, str]]) -> Encounter:
    """A consultation as a virtual Encounter, each consultant and doctor leg a participant."""
    participants = [
        {
            "type": [
                {
                    "coding": [
                        {
                            "system": PARTICIPATION,
                            "code": "PPRF" if leg.role != Role.CONSULTANT else "PART",
                        }
                    ]
                }
            ],
            "period": {"start": _time(leg.started_at), "end": _time(leg.ended_at)},
            "individual": _ref("Practitioner", leg.staff_id, name),
        }
        for leg, name in legs
    ]
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": row.id,
        "status": encounter_status(row.state, row.close_reason),
        "class": {"system": ACT_CODE, "code": "VR", "display": "virtual"},
        "type": [
            {"coding": [{"system": KIND_SYSTEM, "code": row.kind}]},
            {"coding": [{"system": CHANNEL_SYSTEM, "code": row.channel}]},
        ],
        "subject": _ref("Patient", row.patient_id),
        "period": {"start": _time(row.created_at), "end": _time(row.closed_at)},
    }
    if participants:
        resource["participant"] = participants
    if row.appointment_id:
        resource["appointment"] = [_ref("Appointment", row.appointment_id)]
    return Encounter.model_validate(_drop_none(resource))


def composition_status(status: str, version: int) -> str:
    """Draft -> preliminary; the first signed version final, a correction amended."""
    if status != Status.SIGNED:
        return "preliminary"
    return "amended" if version > 1 else "final"


def composition_resource(read: ReadResult) -> Composition:
    """A conclusion version as a Composition (a consult note); a correction `replaces` the
    version it supersedes, and a signed one carries the doctor's legal attestation."""
    row = read.row
    doctor = _ref("Practitioner", row.doctor_id, read.doctor_name)
    resource: dict[str, Any] = {
        "resourceType": "Composition",
        "id": row.id,
        "status": composition_status(row.status, row.version),
        "type": {"coding": [{"system": LOINC, "code": "11488-4", "display": "Consult note"}]},
        "subject": _ref("Patient", read.patient_id),
        "date": _time(row.signed_at or row.updated_at),
        "author": [doctor],
        "title": "Заключение врача",
        "section": [
            {
                "title": title,
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "text": _narrative(getattr(row, field)),
            }
            for field, title, code in _SECTIONS
            if getattr(row, field)
        ],
    }
    if row.consultation_id:
        resource["encounter"] = _ref("Encounter", row.consultation_id)
    if row.signed_at:
        resource["attester"] = [{"mode": "legal", "time": _time(row.signed_at), "party": doctor}]
    if row.supersedes_id:
        resource["relatesTo"] = [
            {"code": "replaces", "targetReference": _ref("Composition", row.supersedes_id)}
        ]
    return Composition.model_validate(_drop_none(resource))


def patient_resource(row: Patient) -> FhirPatient:
    """The insured person (R-ID-1) as a FHIR Patient."""
    return FhirPatient.model_validate(
        {
            "resourceType": "Patient",
            "id": row.id,
            "name": [{"text": row.full_name}],
            "gender": {"M": "male", "F": "female"}.get(row.sex, "unknown"),
            "birthDate": row.birth_date.isoformat(),
            "telecom": [{"system": "phone", "value": row.phone, "use": "mobile"}],
        }
    )


def bundle_resource(resources: Sequence[Resource], base_url: str) -> Bundle:
    """A search-set Bundle of resources, each with its absolute URL."""
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(resources),
            "entry": [
                {
                    "fullUrl": f"{base_url}/fhir/{r.get_resource_type()}/{r.id}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in resources
            ],
        }
    )


def outcome_resource(error: TelemedError) -> OperationOutcome:
    """An error as a FHIR OperationOutcome (what FHIR clients read)."""
    code = {401: "login", 403: "forbidden", 404: "not-found"}.get(error.status, "invalid")
    return OperationOutcome.model_validate(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": code,
                    "details": {"text": error.message},
                    "diagnostics": error.code,
                }
            ],
        }
    )


def _drop_none(value: Any) -> Any:
    """FHIR JSON has no nulls: drop absent elements (e.g. the end of an open period)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@dataclass(frozen=True)
class Reader:
    """Who reads: their role, audit identity, and what the access policy lets them read
    (`decisions` collects each check, for the audit entry of the request)."""

    role: Role
    who: Who
    grants: Grants
    decisions: list[Decision] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.who.id)


def _check_patient(reader: Reader, patient_id: str) -> None:
    """The one access policy (`telemed.access`): the patient, staff in a care relationship,
    a consultant after a break-the-glass; anyone else is told not found."""
    decision = reader.grants.decide(patient_id)
    reader.decisions.append(decision)
    if not decision.allowed:
        raise NotFound()


class FhirExport:
    """Loads rows, checks the reader, and builds validated resources."""

    def __init__(self, db: Database, clock: Clock, rules: RulesSettings) -> None:
        self.db = db
        self.conclusions = ConclusionService(db, clock, rules)

    async def appointment(self, appointment_id: str, reader: Reader) -> FhirAppointment:
        async with self.db.read() as session:
            found = (
                await session.execute(
                    select(Appointment, Staff.full_name)
                    .join(Staff, Staff.id == Appointment.doctor_id)
                    .where(Appointment.id == appointment_id)
                )
            ).first()
        if found is None:
            raise NotFound("No such appointment.")
        row, doctor_name = found
        _check_patient(reader, row.patient_id)
        return appointment_resource(row, doctor_name)

    async def encounter(self, consultation_id: str, reader: Reader) -> Encounter:
        async with self.db.read() as session:
            row = await session.get(Consultation, consultation_id)
            if row is None:
                raise NotFound("No such consultation.")
            _check_patient(reader, row.patient_id)
            legs = await _legs(session, [consultation_id])
        return encounter_resource(row, legs.get(consultation_id, []))

    async def composition(self, conclusion_id: str, reader: Reader) -> Composition:
        """Read (and audit) through the conclusion rules, then export."""
        read = await self.conclusions.read(conclusion_id, reader.role, reader.who)
        return composition_resource(read)

    async def everything(self, patient_id: str, reader: Reader, base_url: str) -> Bundle:
        """A patient's record: the Patient, their appointments, consultations and the signed
        conclusions (each version, each read audited)."""
        _check_patient(reader, patient_id)
        async with self.db.read() as session:
            patient = await session.get(Patient, patient_id)
            if patient is None:
                raise NotFound("No such patient.")
            appointments = (
                await session.execute(
                    select(Appointment, Staff.full_name)
                    .join(Staff, Staff.id == Appointment.doctor_id)
                    .where(Appointment.patient_id == patient_id)
                    .order_by(Appointment.starts_at)
                )
            ).all()
            consultations = (
                await session.scalars(
                    select(Consultation)
                    .where(Consultation.patient_id == patient_id)
                    .order_by(Consultation.created_at)
                )
            ).all()
            legs = await _legs(session, [c.id for c in consultations])
            conclusion_ids = (
                await session.scalars(
                    select(Conclusion.id)
                    .where(
                        Conclusion.consultation_id.in_([c.id for c in consultations]),
                        Conclusion.status == Status.SIGNED.value,
                    )
                    .order_by(Conclusion.consultation_id, Conclusion.version)
                )
            ).all()
        resources: list[Resource] = [patient_resource(patient)]
        resources += [appointment_resource(a, name) for a, name in appointments]
        resources += [encounter_resource(c, legs.get(c.id, [])) for c in consultations]
        for conclusion_id in conclusion_ids:
            resources.append(await self.composition(conclusion_id, reader))
        return bundle_resource(resources, base_url)


async def _legs(
    session: AsyncSession, consultation_ids: Sequence[str]
) -> dict[str, list[tuple[ConsultationLeg, str]]]:
    """The legs of these consultations with each staff member's name, in order."""
    if not consultation_ids:
        return {}
    rows = await session.execute(
        select(ConsultationLeg, Staff.full_name)
        .join(Staff, Staff.id == ConsultationLeg.staff_id)
        .where(ConsultationLeg.consultation_id.in_(consultation_ids))
        .order_by(ConsultationLeg.started_at, ConsultationLeg.id)
    )
    legs: dict[str, list[tuple[ConsultationLeg, str]]] = {}
    for leg, name in rows:
        legs.setdefault(leg.consultation_id, []).append((leg, name))
    return legs
