"""Consent to personal data processing (R-CONSENT-1): accept, check, withdraw."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.clock import Clock
from telemed.consent import consent_text, current_version, variant_for
from telemed.db import Database
from telemed.errors import Conflict
from telemed.events import AccessEnded, EndReason
from telemed.events import record as record_event
from telemed.models import ConsentRecord, Patient, PushSubscription
from telemed.roles import Role
from telemed.services.audit import Who, record
from telemed.services.insured import local_today


class ConsentOutdated(Conflict):
    code = "consent_outdated"
    default_message = "This consent version is no longer current; read the current text."


class ConsentService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def accepted_at(self, patient_id: str) -> datetime | None:
        """When the patient accepted the current version (and has not withdrawn), else None."""
        async with self.db.read() as session:
            return await accepted_in(session, patient_id)

    async def accept(
        self, patient_id: str, version: str, client_addr: str, user_agent: str
    ) -> ConsentRecord:
        """Record acceptance of the current text with its hash, time, address and browser; for
        a child, the text a representative accepts for them."""
        if version != current_version():
            raise ConsentOutdated(current_version=current_version())
        now = self.clock.now()
        async with self.db.read() as session:
            patient = await session.get(Patient, patient_id)
        variant = variant_for(patient.birth_date, local_today(self.clock)) if patient else None
        text = consent_text(variant=variant) if variant else consent_text()
        rec = ConsentRecord(
            patient_id=patient_id,
            version=version,
            text_sha256=text.sha256,
            accepted_at=now,
            client_addr=client_addr,
            user_agent=user_agent[:512],
        )
        async with self.db.write() as session:
            session.add(rec)
            record(
                session,
                at=now,
                who=Who(Role.PATIENT, patient_id, client_addr),
                action="consent_accept",
                object_type="consent",
                object_id=version,
                detail={"variant": text.variant.value},
            )
        return rec

    async def withdraw(self, patient_id: str, client_addr: str) -> None:
        """Withdraw every acceptance; from now on services answer consent_required, and the
        patient's devices get no more pushes (their subscriptions are data kept under the
        consent; a new acceptance and the profile's switch turn them on again)."""
        now = self.clock.now()
        async with self.db.write() as session:
            await session.execute(
                update(ConsentRecord)
                .where(ConsentRecord.patient_id == patient_id, ConsentRecord.withdrawn_at.is_(None))
                .values(withdrawn_at=now)
            )
            await session.execute(
                delete(PushSubscription).where(PushSubscription.patient_id == patient_id)
            )
            record(
                session,
                at=now,
                who=Who(Role.PATIENT, patient_id, client_addr),
                action="consent_withdraw",
                object_type="consent",
                object_id=None,
            )
            # R-CONSENT-1: no service without consent, the live one included.
            record_event(session, AccessEnded(patient_id, EndReason.CONSENT_WITHDRAWN))


# The current consent, not withdrawn: built once, every patient's connect asks it.
_CURRENT = (ConsentRecord.version == bindparam("version"), ConsentRecord.withdrawn_at.is_(None))
_ACCEPTED = (
    select(ConsentRecord.accepted_at)
    .where(ConsentRecord.patient_id == bindparam("patient_id"), *_CURRENT)
    .order_by(ConsentRecord.accepted_at.desc())
    .limit(1)
)
_CONSENTED = (
    select(ConsentRecord.patient_id)
    .where(ConsentRecord.patient_id.in_(bindparam("patients", expanding=True)), *_CURRENT)
    .distinct()
)


async def accepted_in(session: AsyncSession, patient_id: str) -> datetime | None:
    """ConsentService.accepted_at within a session the caller holds."""
    return await session.scalar(_ACCEPTED, {"patient_id": patient_id, "version": current_version()})


async def consented_in(session: AsyncSession, patient_ids: Collection[str]) -> set[str]:
    """Which of these patients have accepted the current consent (one statement for the
    patients connecting together)."""
    if not patient_ids:
        return set()
    params = {"patients": list(patient_ids), "version": current_version()}
    return set(await session.scalars(_CONSENTED, params))
