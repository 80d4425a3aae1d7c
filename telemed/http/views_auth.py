"""Login and logout: SMS code for patients (R-AUTH-1), password for staff."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from telemed.context import client_addr, services
from telemed.http.api import Api, Body, Call, Out
from telemed.roles import STAFF_ROLES, Role
from telemed.services.audit import Who

Phone = Annotated[
    str,
    Field(
        min_length=3,
        max_length=32,
        examples=["+7 916 123-45-67"],
        pattern=r"^\+?[0-9][0-9 ()\-]+$",
        # A number of the numbering plan, in any common form: more than a pattern can say.
        json_schema_extra={"format": "phone"},
    ),
]


class OtpRequest(Body):
    phone: Phone


class OtpRequested(Out):
    status: str = "sent"
    resend_after_seconds: int


class OtpVerify(Body):
    phone: Phone
    code: Annotated[str, Field(min_length=4, max_length=10, pattern=r"^\d+$")]


class StaffLogin(Body):
    login: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class SwitchPatient(Body):
    patient_id: Annotated[str, Field(min_length=1, max_length=64)]


class PatientChoice(Out):
    patient_id: str
    full_name: str


class TokenOut(Out):
    token: str
    role: Role
    user_id: str
    expires_at: datetime
    patients: list[PatientChoice] = Field(default_factory=list)


def _token_out(issued: object) -> TokenOut:
    return TokenOut.model_validate(issued, from_attributes=True)


def register(api: Api) -> None:
    @api.route(
        "POST",
        "/auth/otp",
        roles=None,
        body=OtpRequest,
        response=OtpRequested,
        status=202,
        tag="auth",
    )
    async def request_otp(call: Call[OtpRequest]) -> OtpRequested:
        """Send a login code by SMS; the same answer whether or not the phone is known."""
        svc = services(call.request)
        cooldown = await svc.auth.request_code(call.body.phone, client_addr(call.request))
        return OtpRequested(resend_after_seconds=int(cooldown.total_seconds()))

    @api.route(
        "POST", "/auth/otp/verify", roles=None, body=OtpVerify, response=TokenOut, tag="auth"
    )
    async def verify_otp(call: Call[OtpVerify]) -> TokenOut:
        """Exchange a code for a token; `patients` lists everyone insured on this phone."""
        svc = services(call.request)
        issued = await svc.auth.verify_code(
            call.body.phone, call.body.code, client_addr(call.request)
        )
        return _token_out(issued)

    @api.route("POST", "/auth/staff", roles=None, body=StaffLogin, response=TokenOut, tag="auth")
    async def staff_login(call: Call[StaffLogin]) -> TokenOut:
        """Staff password login."""
        svc = services(call.request)
        issued = await svc.auth.staff_login(
            call.body.login, call.body.password, client_addr(call.request)
        )
        return _token_out(issued)

    @api.route(
        "POST",
        "/auth/switch",
        roles={Role.PATIENT},
        consent=False,
        body=SwitchPatient,
        response=TokenOut,
        tag="auth",
    )
    async def switch_patient(call: Call[SwitchPatient]) -> TokenOut:
        """Act for another insured person on the same phone (e.g. a parent for a child)."""
        issued = await services(call.request).auth.switch_patient(call.me, call.body.patient_id)
        return _token_out(issued)

    @api.route(
        "POST", "/auth/logout", roles=STAFF_ROLES | {Role.PATIENT}, consent=False, tag="auth"
    )
    async def logout(call: Call[Body]) -> None:
        """Revoke the current token; the push subscriptions it registered go with it."""
        await services(call.request).auth.logout(call.me)

    @api.route("POST", "/staff/{staff_id}/disable", roles={Role.ADMIN}, tag="auth")
    async def disable_staff(call: Call[Body]) -> None:
        """Disable a staff account: no more logins; its live sessions end on every node."""
        await services(call.request).auth.disable_staff(
            call.request.match_info["staff_id"],
            Who(call.me.role, call.me.id, client_addr(call.request)),
        )
