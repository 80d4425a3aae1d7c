"""Consultant tools: identify a caller (R-AUTH-2), register a missing one (R-AUTH-3),
and send them the login code."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field

from telemed.context import client_addr, services
from telemed.errors import NotFound
from telemed.http.api import Api, Body, Call, Out
from telemed.http.views_auth import OtpRequested, Phone
from telemed.models import Patient
from telemed.roles import Role
from telemed.services import insured
from telemed.services.audit import Who

CONSULTANTS = {Role.CONSULTANT, Role.ADMIN}
Name = Annotated[str, Field(min_length=1, max_length=200)]
PolicyNumber = Annotated[str, Field(min_length=1, max_length=64)]


class IdentifyRequest(Body):
    policy_number: PolicyNumber
    full_name: Name
    birth_date: date
    phone: Phone | None = None


class RegisterRequest(Body):
    policy_number: PolicyNumber
    full_name: Name
    birth_date: date
    sex: Literal["M", "F"]
    phone: Phone
    valid_from: date | None = None
    valid_to: date | None = None


class PatientOut(Out):
    patient_id: str
    full_name: str
    birth_date: date
    age: int
    masked_phone: str
    policy_number: str
    policy_active: bool
    valid_to: date


def _out(found: insured.IdentifiedPatient) -> PatientOut:
    return PatientOut.model_validate(found, from_attributes=True)


def register(api: Api) -> None:
    @api.route(
        "POST",
        "/patients/identify",
        roles=CONSULTANTS,
        body=IdentifyRequest,
        response=PatientOut,
        tag="patients",
    )
    async def identify_patient(call: Call[IdentifyRequest]) -> PatientOut:
        """Find the insured caller by policy number, name and date of birth (R-AUTH-2)."""
        svc = services(call.request)
        b = call.body
        found = await insured.identify(
            svc.db,
            svc.clock,
            policy_number=b.policy_number,
            full_name=b.full_name,
            birth_date=b.birth_date,
            phone=b.phone,
            who=Who(call.me.role, call.me.id, client_addr(call.request)),
        )
        return _out(found)

    @api.route(
        "POST",
        "/patients",
        roles=CONSULTANTS,
        body=RegisterRequest,
        response=PatientOut,
        status=201,
        tag="patients",
    )
    async def register_patient(call: Call[RegisterRequest]) -> PatientOut:
        """Register a caller who is missing from the insured list (R-AUTH-3)."""
        svc = services(call.request)
        b = call.body
        created = await insured.register(
            svc.db,
            svc.clock,
            policy_number=b.policy_number,
            full_name=b.full_name,
            birth_date=b.birth_date,
            sex=b.sex,
            phone=b.phone,
            valid_from=b.valid_from,
            valid_to=b.valid_to,
            who=Who(call.me.role, call.me.id, client_addr(call.request)),
        )
        return _out(created)

    @api.route(
        "POST",
        "/patients/{patient_id}/login-code",
        roles=CONSULTANTS,
        response=OtpRequested,
        status=202,
        tag="patients",
    )
    async def send_login_code(call: Call[Body]) -> OtpRequested:
        """Send the identified caller the same SMS login code they would ask for (R-AUTH-2)."""
        svc = services(call.request)
        async with svc.db.read() as session:
            patient = await session.get(Patient, call.request.match_info["patient_id"])
        if patient is None:
            raise NotFound("No such patient.")
        cooldown = await svc.auth.request_code(patient.phone, client_addr(call.request))
        return OtpRequested(resend_after_seconds=int(cooldown.total_seconds()))
