"""Call quality per leg: what each side's page measured with getStats (path, median round
trip, loss, bitrate, freezes), kept per leg and reporter, for the console and the audit.

Only the two people of a leg report on it: the patient of the consultation and the staff
member who served that leg. A report while the leg runs replaces the last one (an upsert,
safe against two at once); the final one (the page closed the call) is also audited on the
consultation, so the audit shows how each call went without any medical text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from telemed.clock import Clock
from telemed.db import Database
from telemed.errors import Forbidden, NotFound
from telemed.models import CallQuality, Consultation, ConsultationLeg
from telemed.roles import Role
from telemed.services.audit import Who, record


@dataclass(frozen=True)
class QualitySummary:
    """One side's summary of one leg's call."""

    path: str  # direct | relay
    median_rtt_ms: float | None
    loss_percent: float
    bitrate_kbps: float
    freezes: int
    seconds: int


class LegNotFound(NotFound):
    code = "leg_not_found"
    default_message = "There is no such leg in this consultation."


def _may_report(who: Who, consultation: Consultation, leg: ConsultationLeg) -> bool:
    if who.role == Role.PATIENT.value:
        return consultation.patient_id == who.id
    return leg.staff_id == who.id


async def report(
    db: Database,
    clock: Clock,
    *,
    consultation_id: str,
    leg_id: str,
    who: Who,
    summary: QualitySummary,
    final: bool,
) -> tuple[CallQuality, str]:
    """Keep `who`'s summary of the leg (replacing their last one); audit a final one.
    Returns the kept row and the role of the leg's staff member."""
    now = clock.now()
    async with db.write() as session:
        leg = await session.get(ConsultationLeg, leg_id)
        consultation = await session.get(Consultation, consultation_id)
        if leg is None or consultation is None or leg.consultation_id != consultation_id:
            raise LegNotFound()
        if not _may_report(who, consultation, leg):
            raise Forbidden("Only the patient and the staff member of this leg report on it.")
        values: dict[str, Any] = {
            "consultation_id": consultation_id,
            "leg_id": leg_id,
            "reporter_id": str(who.id),
            "reporter_role": who.role,
            "reported_at": now,
            **asdict(summary),
        }
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(CallQuality).values(**values)
        keep = {k: statement.excluded[k] for k in values if k not in ("leg_id", "reporter_id")}
        await session.execute(
            statement.on_conflict_do_update(index_elements=["leg_id", "reporter_id"], set_=keep)
        )
        if final:
            detail = {"leg_id": leg_id, "leg_role": leg.role, "reporter": who.role}
            record(
                session,
                at=now,
                who=who,
                action="call_quality",
                object_type="consultation",
                object_id=consultation_id,
                detail={**detail, **asdict(summary)},
            )
        row = await session.scalar(
            select(CallQuality).where(
                CallQuality.leg_id == leg_id, CallQuality.reporter_id == str(who.id)
            )
        )
        if row is None:  # pragma: no cover - the upsert above just wrote it
            raise LegNotFound()
        return row, leg.role


async def of_consultation(
    db: Database, consultation_id: str, who: Who
) -> Sequence[tuple[CallQuality, ConsultationLeg]]:
    """Every leg's summaries, oldest leg first: for the staff who served the consultation
    (any of its legs) and administrators."""
    async with db.read() as session:
        legs = (
            await session.scalars(
                select(ConsultationLeg).where(ConsultationLeg.consultation_id == consultation_id)
            )
        ).all()
        if who.role != Role.ADMIN.value and all(leg.staff_id != who.id for leg in legs):
            raise Forbidden("Only the staff of this consultation see its call quality.")
        rows = await session.execute(
            select(CallQuality, ConsultationLeg)
            .join(ConsultationLeg, ConsultationLeg.id == CallQuality.leg_id)
            .where(CallQuality.consultation_id == consultation_id)
            .order_by(ConsultationLeg.started_at, CallQuality.reporter_role)
        )
        return [(row[0], row[1]) for row in rows.all()]
