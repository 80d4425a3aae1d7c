"""Loads the facts of a care relationship and asks the access policy (`telemed.access`).

The one place that queries who serves whom; every reader of medical data goes through
`CareAccess.decide` (inside its own transaction) or `CareAccess.check`. A break-the-glass
is an audit entry (`break_glass`, with the reader's reason): the entry is both the record
of it and the grant the policy reads back, so it cannot exist without being audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.access import (
    NO_FACTS,
    CareFacts,
    Decision,
    Relation,
    Windows,
    decide,
    may_break_glass,
)
from telemed.clock import Clock
from telemed.config import RulesSettings
from telemed.consultation import State
from telemed.db import Database
from telemed.errors import Forbidden, NotFound
from telemed.models import (
    Appointment,
    AuditEntry,
    Consultation,
    ConsultationLeg,
    Patient,
    SecondOpinion,
)
from telemed.roles import Role
from telemed.services.audit import Who, record

BREAK_GLASS = "break_glass"
REASON_MAX = 500


async def care_facts(
    session: AsyncSession, actor_id: str, patient_id: str | None, since: datetime
) -> dict[str, CareFacts]:
    """What ties this staff member to one patient (or, with `patient_id` None, to every
    patient), read in the caller's transaction. Ended legs and cases, and break-the-glass
    entries, before `since` are left out: no window of the policy reaches back further."""

    def one(column: Any) -> Any:
        return column == patient_id if patient_id is not None else true()

    facts: dict[str, dict[str, Any]] = {}

    def put(pid: str, **values: Any) -> None:
        facts.setdefault(pid, {}).update(values)

    legs = await session.execute(
        select(
            Consultation.patient_id,
            func.count(ConsultationLeg.id).filter(ConsultationLeg.ended_at.is_(None)),
            func.max(ConsultationLeg.ended_at),
        )
        .join(Consultation, Consultation.id == ConsultationLeg.consultation_id)
        .where(
            ConsultationLeg.staff_id == actor_id,
            one(Consultation.patient_id),
            or_(ConsultationLeg.ended_at.is_(None), ConsultationLeg.ended_at >= since),
        )
        .group_by(Consultation.patient_id)
    )
    for pid, open_legs, last_ended in legs:
        put(pid, leg_open=bool(open_legs), leg_last_ended=last_ended)
    assigned = await session.scalars(
        select(Consultation.patient_id)
        .where(
            one(Consultation.patient_id),
            Consultation.state != State.CLOSED.value,
            or_(
                Consultation.consultant_id == actor_id,
                Consultation.doctor_id == actor_id,
                Consultation.target_doctor_id == actor_id,
            ),
        )
        .distinct()
    )
    for pid in assigned:
        put(pid, assigned_open=True)
    booked = await session.scalars(
        select(Appointment.patient_id)
        .where(
            one(Appointment.patient_id),
            Appointment.doctor_id == actor_id,
            Appointment.state == "booked",
        )
        .distinct()
    )
    for pid in booked:
        put(pid, booked=True)
    cases = await session.execute(
        select(
            SecondOpinion.patient_id,
            func.count(SecondOpinion.id).filter(SecondOpinion.delivered_at.is_(None)),
            func.max(SecondOpinion.delivered_at),
        )
        .where(
            one(SecondOpinion.patient_id),
            SecondOpinion.specialist_id == actor_id,
            or_(SecondOpinion.delivered_at.is_(None), SecondOpinion.delivered_at >= since),
        )
        .group_by(SecondOpinion.patient_id)
    )
    for pid, open_cases, last_delivered in cases:
        put(pid, case_open=bool(open_cases), case_last_delivered=last_delivered)
    pending = await session.scalars(
        select(SecondOpinion.patient_id)
        .where(one(SecondOpinion.patient_id), SecondOpinion.delivered_at.is_(None))
        .distinct()
    )
    for pid in pending:
        put(pid, case_pending=True)
    glass = await session.execute(
        select(AuditEntry.object_id, func.max(AuditEntry.at))
        .where(
            AuditEntry.action == BREAK_GLASS,
            AuditEntry.actor_id == actor_id,
            AuditEntry.object_type == "patient",
            one(AuditEntry.object_id),
            AuditEntry.outcome == "ok",
            AuditEntry.at >= since,
        )
        .group_by(AuditEntry.object_id)
    )
    for object_id, at in glass:
        if object_id is not None:
            put(object_id, break_glass_at=at)
    return {pid: CareFacts(**values) for pid, values in facts.items()}


def access_detail(decision: Decision) -> dict[str, Any] | None:
    """What an audit entry of a read says about the access: the relation, and a flag the
    admin's audit listing shows for a break-the-glass read."""
    if decision.relation is None:
        return None
    detail: dict[str, Any] = {"access": decision.relation.value}
    if decision.break_glass:
        detail[BREAK_GLASS] = True
    return detail


@dataclass(frozen=True)
class Grants:
    """A reader's care facts for all patients, loaded once; `decide` per patient is pure."""

    role: Role
    actor_id: str
    facts: Mapping[str, CareFacts]
    now: datetime
    windows: Windows

    def decide(self, patient_id: str) -> Decision:
        facts = self.facts.get(patient_id, NO_FACTS)
        return decide(
            self.role, self.actor_id, patient_id, facts, now=self.now, windows=self.windows
        )


class CareAccess:
    """The access policy bound to this app's clock and rules."""

    def __init__(self, db: Database, clock: Clock, rules: RulesSettings) -> None:
        self.db = db
        self.clock = clock
        self.windows = Windows(rules.care_window, rules.break_glass_ttl)

    async def decide(
        self, session: AsyncSession, role: Role, actor_id: str, patient_id: str
    ) -> Decision:
        """The policy's decision, its facts read in the caller's transaction."""
        facts = NO_FACTS
        if role is not Role.PATIENT and role is not Role.ADMIN:
            found = await care_facts(session, actor_id, patient_id, self.since())
            facts = found.get(patient_id, NO_FACTS)
        return decide(role, actor_id, patient_id, facts, now=self.clock.now(), windows=self.windows)

    def since(self) -> datetime:
        """How far back any window of the policy reaches."""
        return self.clock.now() - max(self.windows.care_window, self.windows.break_glass_ttl)

    async def grants(self, role: Role, actor_id: str) -> Grants:
        """Every patient this reader may read now, for a request that checks many (FHIR):
        the same facts and the same `decide`, loaded once."""
        facts: dict[str, CareFacts] = {}
        if role is not Role.PATIENT and role is not Role.ADMIN:
            async with self.db.read() as session:
                facts = await care_facts(session, actor_id, None, self.since())
        return Grants(role, actor_id, facts, self.clock.now(), self.windows)

    async def check(self, role: Role, actor_id: str, patient_id: str) -> Decision:
        """`decide` in a read session of its own."""
        async with self.db.read() as session:
            return await self.decide(session, role, actor_id, patient_id)

    async def read_record(
        self, who: Who, role: Role, patient_id: str | None, action: str
    ) -> tuple[str, Decision]:
        """The patient whose record a call reads (the caller's own when `patient_id` is
        None), if the policy allows; the read is audited with its outcome either way, and a
        refusal answers 404 like a patient that does not exist."""
        actor = who.id or ""
        wanted = patient_id if patient_id is not None else actor
        async with self.db.write() as session:
            decision = await self.decide(session, role, actor, wanted)
            known = decision.allowed and await session.get(Patient, wanted) is not None
            record(
                session,
                at=self.clock.now(),
                who=who,
                action=action,
                object_type="patient",
                object_id=wanted[:64],
                outcome="ok" if known else ("not_found" if decision.allowed else "forbidden"),
                detail=access_detail(decision) if known else None,
            )
        if not known:
            raise NotFound("No such patient.")
        return wanted, decision

    async def break_glass(self, who: Who, role: Role, patient_id: str, reason: str) -> datetime:
        """A consultant states why they must read a record outside a care relationship; the
        audited entry grants it until the returned time. Refusals are audited too."""
        now = self.clock.now()
        error: Forbidden | NotFound | None = None
        async with self.db.write() as session:
            if not may_break_glass(role):
                error = Forbidden("Only a consultant may break the glass.")
            elif await session.get(Patient, patient_id) is None:
                error = NotFound("No such patient.")
            record(
                session,
                at=now,
                who=who,
                action=BREAK_GLASS,
                object_type="patient",
                object_id=patient_id[:64],
                outcome="ok" if error is None else error.code,
                detail={BREAK_GLASS: True, "reason": reason[:REASON_MAX]},
            )
        if error is not None:
            raise error
        return now + self.windows.break_glass_ttl


__all__ = ["BREAK_GLASS", "CareAccess", "Grants", "Relation", "access_detail", "care_facts"]
