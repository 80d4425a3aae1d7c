"""The consultant's follow-up after the doctor (R-URG-5, seed 001: "уточнение потребности в
организации услуг по результатам телемедицинской консультации").

The consultant sees the doctor's recommendations (the signed conclusion; of a draft only
that it exists) and records the services the patient needs (a closed list), the outcome and
a short note. One record per consultation, saved again in place; the patient sees it in
"My records". The note is medical text: it is never logged or audited, only stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from telemed.clock import Clock
from telemed.db import Database
from telemed.errors import Forbidden, NotFound, ValidationFailed
from telemed.models import (
    Conclusion,
    Consultation,
    ConsultationFollowUp,
    ConsultationLeg,
    Staff,
)
from telemed.roles import DOCTOR_ROLES, Role
from telemed.services.audit import Who, record

NEEDS = (
    "none",
    "specialist",
    "tests",
    "clinic_visit",
    "home_visit",
    "hospital",
    "medicines",
    "second_opinion",
)
OUTCOMES = ("finished", "booked", "referred", "emergency", "declined")
MAX_NOTE = 2000


@dataclass(frozen=True)
class Advice:
    """Where the doctor's conclusion stands: signed (with its text), draft, none (a doctor
    leg was held, nothing written yet) or no_doctor."""

    state: str
    doctor_name: str = ""
    conclusion_id: str | None = None
    text: str = ""
    recommendations: str = ""
    signed_at: datetime | None = None


def check_follow_up(needs: list[str], outcome: str, note: str) -> list[str]:
    """The record's fields against the closed lists (pure); returns the needs, deduplicated
    in list order."""
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        raise ValidationFailed(f"needs are from: {', '.join(NEEDS)}.", field="needs")
    if outcome not in OUTCOMES:
        raise ValidationFailed(f"outcome is one of: {', '.join(OUTCOMES)}.", field="outcome")
    if len(note) > MAX_NOTE:
        raise ValidationFailed(f"The note holds at most {MAX_NOTE} characters.", field="note")
    if "none" in needs and len(set(needs)) > 1:
        raise ValidationFailed("'none' cannot go with other needs.", field="needs")
    return [n for n in NEEDS if n in needs]


class FollowUpService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def _mine(self, consultation_id: str, who: Who) -> Consultation:
        async with self.db.read() as session:
            row = await session.get(Consultation, consultation_id)
        if row is None:
            raise NotFound("No such consultation.")
        if who.role != Role.ADMIN and row.consultant_id != who.id:
            raise Forbidden("Only the consultation's consultant records its follow-up.")
        return row

    async def advice(self, consultation_id: str, who: Who) -> Advice:
        """The doctor's recommendations as the consultant may see them; reading a signed
        conclusion is audited like any conclusion read."""
        await self._mine(consultation_id, who)
        async with self.db.write() as session:
            chain = (
                await session.scalars(
                    select(Conclusion)
                    .where(Conclusion.consultation_id == consultation_id)
                    .order_by(Conclusion.version.desc())
                )
            ).all()
            signed = next((c for c in chain if c.status == "signed"), None)
            leg_doctor = await session.scalar(
                select(ConsultationLeg.staff_id)
                .where(
                    ConsultationLeg.consultation_id == consultation_id,
                    ConsultationLeg.role.in_([r.value for r in DOCTOR_ROLES]),
                )
                .order_by(ConsultationLeg.started_at.desc())
                .limit(1)
            )
            latest = signed or (chain[0] if chain else None)
            doctor_id = latest.doctor_id if latest else leg_doctor
            doctor = await session.get(Staff, doctor_id) if doctor_id else None
            name = doctor.full_name if doctor else ""
            if signed is not None:
                record(
                    session,
                    at=self.clock.now(),
                    who=who,
                    action="conclusion_read",
                    object_type="conclusion",
                    object_id=signed.id,
                )
                return Advice(
                    "signed",
                    name,
                    signed.id,
                    signed.findings,
                    signed.recommendations,
                    signed.signed_at,
                )
        if chain:
            return Advice("draft", name)
        return Advice("none" if leg_doctor else "no_doctor", name)

    async def get(self, consultation_id: str, who: Who) -> ConsultationFollowUp | None:
        await self._mine(consultation_id, who)
        async with self.db.read() as session:
            return await session.get(ConsultationFollowUp, consultation_id)

    async def save(
        self, consultation_id: str, who: Who, *, needs: list[str], outcome: str, note: str
    ) -> ConsultationFollowUp:
        """Record (or correct) the follow-up of a consultation I am or was the consultant of."""
        needs = check_follow_up(needs, outcome, note)
        await self._mine(consultation_id, who)
        assert who.id is not None
        now = self.clock.now()
        async with self.db.write() as session:
            row = await session.get(ConsultationFollowUp, consultation_id)
            if row is None:
                row = ConsultationFollowUp(consultation_id=consultation_id)
                session.add(row)
            row.needs = needs
            row.outcome = outcome
            row.note = note.strip()
            row.recorded_by = who.id
            row.recorded_at = now
            record(
                session,
                at=now,
                who=who,
                action="follow_up_recorded",
                object_type="consultation",
                object_id=consultation_id,
                detail={"needs": needs, "outcome": outcome},
            )
            await session.flush()
            await session.refresh(row)
        return row
