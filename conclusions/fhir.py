"""FHIR R4 (4.0.1) facade: a booking as Appointment, a consultation as Encounter, a
conclusion as Composition, the insured person as Patient, staff as Practitioner and
PractitionerRole, a patient's record as the `$everything` Bundle, searches by patient, and
the CapabilityStatement that lists exactly that.

Resources are built as FHIR JSON here (fhir.resources ships R5 and R4B models, not R4);
the tests validate every resource served against the official R4 JSON schema. Who may read
a patient's resources is decided by the one access policy (`telemed.access`): in
`_check_patient` here, and in the conclusion rules (`conclusions.service`) for
compositions. Every FHIR read is audited by the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from conclusions.service import ConclusionService, ReadResult, Status
from telemed import __version__
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

Resource = dict[str, Any]
"""A FHIR resource as JSON."""

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
STAFF_READERS: frozenset[Role] = DOCTOR_ROLES | {Role.CONSULTANT}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOINC = "http://loinc.org"
KIND_SYSTEM = "urn:telemed:consultation-kind"
CHANNEL_SYSTEM = "urn:telemed:channel"
ROLE_SYSTEM = "urn:telemed:staff-role"
# SNOMED CT occupations for the staff roles (PractitionerRole.code's example binding).
_ROLE_CODES = {
    "consultant": ("309446002", "Medical consultant"),  # informal: the triage consultant
    "therapist": ("158965000", "Medical practitioner"),
    "paediatrician": ("309415009", "Paediatrician"),
    "specialist": ("309390008", "Medical specialist"),
    "psychologist": ("59944000", "Psychologist"),
    "admin": ("224608005", "Administrative healthcare staff"),
}

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


def appointment_resource(row: Appointment, doctor_name: str) -> Resource:
    """A booking (R-SCH) as a FHIR Appointment."""
    return _drop_none(
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


def encounter_resource(row: Consultation, legs: Sequence[tuple[ConsultationLeg, str]]) -> Resource:
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
    return _drop_none(resource)


def composition_status(status: str, version: int) -> str:
    """Draft -> preliminary; the first signed version final, a correction amended."""
    if status != Status.SIGNED:
        return "preliminary"
    return "amended" if version > 1 else "final"


def composition_resource(read: ReadResult) -> Resource:
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
    return _drop_none(resource)


def patient_resource(row: Patient) -> Resource:
    """The insured person (R-ID-1) as a FHIR Patient."""
    return _drop_none(
        {
            "resourceType": "Patient",
            "id": row.id,
            "name": [{"text": row.full_name}],
            "gender": {"M": "male", "F": "female"}.get(row.sex, "unknown"),
            "birthDate": row.birth_date.isoformat(),
            "telecom": [{"system": "phone", "value": row.phone, "use": "mobile"}],
        }
    )


def practitioner_resource(row: Staff) -> Resource:
    """A staff member as a FHIR Practitioner: the name only (no login, no contact)."""
    return {
        "resourceType": "Practitioner",
        "id": row.id,
        "active": row.active,
        "name": [{"text": row.full_name}],
    }


def practitioner_role_resource(row: Staff) -> Resource:
    """What a staff member does here, as a PractitionerRole with the same id."""
    snomed, display = _ROLE_CODES.get(row.role, ("223366009", "Healthcare professional"))
    return {
        "resourceType": "PractitionerRole",
        "id": row.id,
        "active": row.active,
        "practitioner": _ref("Practitioner", row.id, row.full_name),
        "code": [
            {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": snomed, "display": display},
                    {"system": ROLE_SYSTEM, "code": row.role},
                ]
            }
        ],
    }


SEARCHABLE = ("Appointment", "Encounter", "Composition")


CAPABILITIES_DATE = "2026-11-26"  # when what this statement lists last changed


def capability_statement(base_url: str) -> Resource:
    """What this server does, exactly: reads, `$everything` and the `patient` searches."""
    read = [{"code": "read"}]
    resources: list[Resource] = [
        {
            "type": "Patient",
            "interaction": read,
            "operation": [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }
            ],
        },
        {"type": "Practitioner", "interaction": read},
        {"type": "PractitionerRole", "interaction": read},
    ]
    resources += [
        {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {
                    "name": "patient",
                    "type": "reference",
                    "documentation": "Required. `_count` (at most 200) and `_offset` page.",
                }
            ],
        }
        for kind in SEARCHABLE
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": CAPABILITIES_DATE,
        "publisher": "telemed",
        "kind": "instance",
        "software": {"name": "telemed", "version": __version__},
        "implementation": {"description": "telemed FHIR facade", "url": f"{base_url}/fhir"},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "description": "Authorization: Bearer <token> from /api/v1/auth/*; a "
                    "patient reads their own record, consultants and doctors any."
                },
                "resource": resources,
            }
        ],
    }


def bundle_resource(
    resources: Sequence[Resource],
    base_url: str,
    *,
    total: int | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> Resource:
    """A search-set Bundle of resources, each with its absolute URL, and its paging links."""
    bundle: Resource = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources) if total is None else total,
    }
    if links:
        bundle["link"] = [{"relation": rel, "url": url} for rel, url in links]
    bundle["entry"] = [
        {
            "fullUrl": f"{base_url}/fhir/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    if not bundle["entry"]:
        del bundle["entry"]
    return bundle


def outcome_resource(error: TelemedError) -> Resource:
    """An error as a FHIR OperationOutcome (what FHIR clients read)."""
    code = {
        401: "login",
        403: "forbidden",
        404: "not-found",
        405: "not-supported",
        406: "not-supported",
        413: "too-costly",
        429: "throttled",
    }.get(error.status, "invalid" if error.status < 500 else "exception")
    return {
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


def _drop_none(resource: Resource) -> Resource:
    """FHIR JSON has no nulls: drop absent elements (e.g. the end of an open period)."""
    cleaned: Resource = _without_nulls(resource)
    return cleaned


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
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
    """Loads rows, checks the reader, and builds the resources."""

    def __init__(self, db: Database, clock: Clock, rules: RulesSettings) -> None:
        self.db = db
        self.conclusions = ConclusionService(db, clock, rules)

    async def appointment(self, appointment_id: str, reader: Reader) -> Resource:
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

    async def encounter(self, consultation_id: str, reader: Reader) -> Resource:
        async with self.db.read() as session:
            row = await session.get(Consultation, consultation_id)
            if row is None:
                raise NotFound("No such consultation.")
            _check_patient(reader, row.patient_id)
            legs = await _legs(session, [consultation_id])
        return encounter_resource(row, legs.get(consultation_id, []))

    async def composition(self, conclusion_id: str, reader: Reader) -> Resource:
        """Read (and audit) through the conclusion rules, then export."""
        read = await self.conclusions.read(conclusion_id, reader.role, reader.who)
        return composition_resource(read)

    async def patient(self, patient_id: str, reader: Reader) -> Resource:
        _check_patient(reader, patient_id)
        async with self.db.read() as session:
            row = await session.get(Patient, patient_id)
        if row is None:
            raise NotFound("No such patient.")
        return patient_resource(row)

    async def practitioner(self, staff_id: str, reader: Reader) -> Resource:
        """Staff are directory data (a name), shown to everyone who reads FHIR here."""
        return practitioner_resource(await self._staff(staff_id))

    async def practitioner_role(self, staff_id: str, reader: Reader) -> Resource:
        return practitioner_role_resource(await self._staff(staff_id))

    async def _staff(self, staff_id: str) -> Staff:
        async with self.db.read() as session:
            row = await session.get(Staff, staff_id)
        if row is None:
            raise NotFound("No such practitioner.")
        return row

    async def search(
        self, kind: str, patient_id: str, reader: Reader, count: int, offset: int
    ) -> tuple[list[Resource], int]:
        """One page of a patient's Appointments, Encounters or signed Compositions, oldest
        first, and how many there are in all."""
        _check_patient(reader, patient_id)
        async with self.db.read() as session:
            if await session.get(Patient, patient_id) is None:
                return [], 0
            if kind == "Appointment":
                where = Appointment.patient_id == patient_id
                total = await _count(session, select(Appointment.id).where(where))
                rows = await session.execute(
                    select(Appointment, Staff.full_name)
                    .join(Staff, Staff.id == Appointment.doctor_id)
                    .where(where)
                    .order_by(Appointment.starts_at, Appointment.id)
                    .offset(offset)
                    .limit(count)
                )
                return [appointment_resource(a, name) for a, name in rows], total
            if kind == "Encounter":
                where = Consultation.patient_id == patient_id
                total = await _count(session, select(Consultation.id).where(where))
                found = (
                    await session.scalars(
                        select(Consultation)
                        .where(where)
                        .order_by(Consultation.created_at, Consultation.id)
                        .offset(offset)
                        .limit(count)
                    )
                ).all()
                legs = await _legs(session, [c.id for c in found])
                return [encounter_resource(c, legs.get(c.id, [])) for c in found], total
            signed = _signed_of(patient_id)
            total = await _count(session, signed)
            ids = (await session.scalars(signed.offset(offset).limit(count))).all()
        return [await self.composition(i, reader) for i in ids], total

    async def everything(self, patient_id: str, reader: Reader, base_url: str) -> Resource:
        """A patient's record: the Patient, their appointments, consultations, the signed
        conclusions (each version, each read audited) and the Practitioners they name."""
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
            conclusion_ids = (await session.scalars(_signed_of(patient_id))).all()
        resources: list[Resource] = [patient_resource(patient)]
        resources += [appointment_resource(a, name) for a, name in appointments]
        resources += [encounter_resource(c, legs.get(c.id, [])) for c in consultations]
        for conclusion_id in conclusion_ids:
            resources.append(await self.composition(conclusion_id, reader))
        named = list(dict.fromkeys(_practitioners_named(resources)))
        if named:
            async with self.db.read() as session:
                staff = {
                    s.id: s for s in await session.scalars(select(Staff).where(Staff.id.in_(named)))
                }
            resources += [practitioner_resource(staff[i]) for i in named if i in staff]
        return bundle_resource(resources, base_url)


def _signed_of(patient_id: str) -> Any:
    """The ids of the signed conclusions of a patient's consultations, in order."""
    return (
        select(Conclusion.id)
        .join(Consultation, Consultation.id == Conclusion.consultation_id)
        .where(Consultation.patient_id == patient_id, Conclusion.status == Status.SIGNED.value)
        .order_by(Consultation.created_at, Conclusion.consultation_id, Conclusion.version)
    )


async def _count(session: AsyncSession, query: Any) -> int:
    return int(
        await session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    )


def _practitioners_named(value: Any) -> list[str]:
    """Every `Practitioner/{id}` reference inside these resources, in order."""
    found: list[str] = []
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref.startswith("Practitioner/"):
            found.append(ref.removeprefix("Practitioner/"))
        for item in value.values():
            found += _practitioners_named(item)
    elif isinstance(value, list):
        for item in value:
            found += _practitioners_named(item)
    return found


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
