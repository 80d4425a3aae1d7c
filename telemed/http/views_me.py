"""The caller's own profile and the consent (R-CONSENT-1, R-CAL-1)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from telemed.consent import Variant, consent_text, current_version, variant_for
from telemed.context import Services, client_addr, services
from telemed.errors import NotEligible, NotFound
from telemed.http.api import TIME_ZONES, Api, Body, Call, Out
from telemed.models import Patient, Staff
from telemed.phone import mask_phone
from telemed.roles import STAFF_ROLES, Role
from telemed.routing import duty_role_for
from telemed.services.auth import Caller
from telemed.services.insured import local_today

EVERYONE = STAFF_ROLES | {Role.PATIENT}


class MeOut(Out):
    user_id: str
    role: Role
    full_name: str
    phone: str | None = None
    birth_date: date | None = None
    timezone: str | None = None
    timezone_confirmed: bool = False
    consent_version: str | None = None
    consent_accepted_at: datetime | None = None
    consent_required: bool = False
    consent_variant: Variant | None = None
    duty_doctor: Role | None = None


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
    variant: Variant
    language: str
    text: str
    sha256: str


class ConsentQuery(Body):
    lang: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "ru"
    variant: Variant = Variant.SELF


class ConsentAccept(Body):
    version: Annotated[str, Field(min_length=1, max_length=32)]


class PublicConfigOut(Out):
    hotline: str
    second_opinion_working_days: int


class ConsentAccepted(Out):
    version: str
    accepted_at: datetime


def _duty_doctor(birth_date: date, today: date, svc: Services) -> Role | None:
    """Whom the home screen offers (R-ROUTE-1): the duty therapist or, for a child, the
    paediatrician; None below the paediatric ages (booked by appointment instead)."""
    try:
        return duty_role_for(birth_date, today, svc.settings.rules.paediatric_ages)
    except NotEligible:
        return None


async def describe(svc: Services, me: Caller) -> MeOut:
    """The profile of a patient or a staff member."""
    async with svc.db.read() as session:
        if me.role is Role.PATIENT:
            patient = await session.get(Patient, me.id)
            if patient is None:
                raise NotFound()
            accepted = await svc.consent.accepted_at(me.id)
            today = local_today(svc.clock)
            return MeOut(
                user_id=me.id,
                role=me.role,
                full_name=patient.full_name,
                phone=mask_phone(patient.phone),
                birth_date=patient.birth_date,
                timezone=patient.timezone,
                timezone_confirmed=patient.timezone_confirmed_at is not None,
                consent_version=current_version(),
                consent_accepted_at=accepted,
                consent_required=accepted is None,
                consent_variant=variant_for(patient.birth_date, today),
                duty_doctor=_duty_doctor(patient.birth_date, today, svc),
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
        """Set (and so confirm) my time zone; calendar times are shown in it (R-CAL-1)."""
        svc = services(call.request)
        async with svc.db.write() as session:
            patient = await session.get(Patient, call.me.id)
            if patient is None:
                raise NotFound()
            patient.timezone = call.body.timezone
            patient.updated_at = patient.timezone_confirmed_at = svc.clock.now()
        return await describe(svc, call.me)

    @api.route("GET", "/config", roles=None, response=PublicConfigOut, tag="me")
    async def get_public_config(call: Call[Body]) -> PublicConfigOut:
        """What the pages show before anyone logs in: the hotline to call when the platform
        cannot be used (R-FALLBACK-1), the working days a second opinion takes (R-SECOND)."""
        settings = services(call.request).settings
        return PublicConfigOut(
            hotline=settings.clinic.hotline,
            second_opinion_working_days=settings.rules.second_opinion_working_days,
        )

    @api.route(
        "GET", "/consent", roles=None, query=ConsentQuery, response=ConsentOut, tag="consent"
    )
    async def get_consent(call: Call[ConsentQuery]) -> ConsentOut:
        """The current consent text (R-CONSENT-1), Russian by default (`?lang=en`); the
        representative's text for a child with `?variant=representative` (see /me)."""
        text = consent_text(call.body.lang, variant=call.body.variant)
        return ConsentOut(
            version=text.version,
            variant=text.variant,
            language=text.language,
            text=text.text,
            sha256=text.sha256,
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
