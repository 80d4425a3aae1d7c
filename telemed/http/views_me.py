"""The caller's own profile and the consent (R-CONSENT-1, R-CAL-1)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from telemed.consent import consent_text, current_version
from telemed.context import Services, client_addr, services
from telemed.errors import NotFound
from telemed.http.api import TIME_ZONES, Api, Body, Call, Out
from telemed.models import Patient, Staff
from telemed.phone import mask_phone
from telemed.roles import STAFF_ROLES, Role
from telemed.services.auth import Caller

EVERYONE = STAFF_ROLES | {Role.PATIENT}


class MeOut(Out):
    user_id: str
    role: Role
    full_name: str
    phone: str | None = None
    birth_date: date | None = None
    timezone: str | None = None
    consent_version: str | None = None
    consent_accepted_at: datetime | None = None
    consent_required: bool = False


class MePatch(Body):
    timezone: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            examples=["Asia/Vladivostok"],
            json_schema_extra={"enum": TIME_ZONES},
        ),
    ]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone name, e.g. Europe/Moscow") from None
        return value


class ConsentOut(Out):
    version: str
    language: str
    text: str
    sha256: str


class ConsentQuery(Body):
    lang: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "ru"


class ConsentAccept(Body):
    version: Annotated[str, Field(min_length=1, max_length=32)]


class ConsentAccepted(Out):
    version: str
    accepted_at: datetime


async def describe(svc: Services, me: Caller) -> MeOut:
    """The profile of a patient or a staff member."""
    async with svc.db.read() as session:
        if me.role is Role.PATIENT:
            patient = await session.get(Patient, me.id)
            if patient is None:
                raise NotFound()
            accepted = await svc.consent.accepted_at(me.id)
            return MeOut(
                user_id=me.id,
                role=me.role,
                full_name=patient.full_name,
                phone=mask_phone(patient.phone),
                birth_date=patient.birth_date,
                timezone=patient.timezone,
                consent_version=current_version(),
                consent_accepted_at=accepted,
                consent_required=accepted is None,
            )
        staff = await session.get(Staff, me.id)
        if staff is None:
            raise NotFound()
        return MeOut(user_id=me.id, role=me.role, full_name=staff.full_name)


def register(api: Api) -> None:
    @api.route("GET", "/me", roles=EVERYONE, consent=False, response=MeOut, tag="me")
    async def get_me(call: Call[Body]) -> MeOut:
        """Who I am; for a patient also whether the consent must still be accepted."""
        return await describe(services(call.request), call.me)

    @api.route(
        "PATCH", "/me", roles={Role.PATIENT}, consent=False, body=MePatch, response=MeOut, tag="me"
    )
    async def patch_me(call: Call[MePatch]) -> MeOut:
        """Set my time zone; calendar times are shown in it (R-CAL-1)."""
        svc = services(call.request)
        async with svc.db.write() as session:
            patient = await session.get(Patient, call.me.id)
            if patient is None:
                raise NotFound()
            patient.timezone = call.body.timezone
            patient.updated_at = svc.clock.now()
        return await describe(svc, call.me)

    @api.route(
        "GET", "/consent", roles=None, query=ConsentQuery, response=ConsentOut, tag="consent"
    )
    async def get_consent(call: Call[ConsentQuery]) -> ConsentOut:
        """The current consent text (R-CONSENT-1), Russian by default (`?lang=en`)."""
        text = consent_text(call.body.lang)
        return ConsentOut(
            version=text.version, language=text.language, text=text.text, sha256=text.sha256
        )

    @api.route(
        "POST",
        "/me/consent",
        roles={Role.PATIENT},
        consent=False,
        body=ConsentAccept,
        response=ConsentAccepted,
        status=201,
        tag="consent",
    )
    async def accept_consent(call: Call[ConsentAccept]) -> ConsentAccepted:
        """Accept the current consent version; recorded with its text hash, time and client."""
        svc = services(call.request)
        rec = await svc.consent.accept(
            call.me.id,
            call.body.version,
            client_addr(call.request),
            call.request.headers.get("User-Agent", ""),
        )
        return ConsentAccepted(version=rec.version, accepted_at=rec.accepted_at)

    @api.route("DELETE", "/me/consent", roles={Role.PATIENT}, consent=False, tag="consent")
    async def withdraw_consent(call: Call[Body]) -> None:
        """Withdraw the consent; every patient service then answers consent_required."""
        svc = services(call.request)
        await svc.consent.withdraw(call.me.id, client_addr(call.request))
