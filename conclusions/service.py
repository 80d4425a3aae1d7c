"""Doctor conclusions (R-CONCL-1): who may write and read them, drafts, signing, corrections,
and what is pending or overdue on a doctor's console.

The rules are pure functions (`plan_write`, `may_read`, `split_due`); the
service loads rows, asks them, and writes the result with its audit entry in
one transaction. A signed version is never updated: a correction is a new
signed version with a reason that supersedes the old one, which is kept.
Medical text is never logged nor put into the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.access import DENIED, Decision
from telemed.clock import Clock
from telemed.config import RulesSettings
from telemed.db import Database
from telemed.errors import Conflict, Forbidden, NotFound, TelemedError
from telemed.models import (
    Conclusion,
    Consultation,
    ConsultationLeg,
    Patient,
    SecondOpinion,
    Staff,
)
from telemed.roles import DOCTOR_ROLES, Role
from telemed.services.audit import Who, record
from telemed.services.care import CareAccess, access_detail

OBJECT = "conclusion"
DOCTOR_ROLE_NAMES = sorted(r.value for r in DOCTOR_ROLES)
READERS: frozenset[Role] = DOCTOR_ROLES | {Role.CONSULTANT, Role.PATIENT}


class Status(StrEnum):
    """A conclusion version is a draft (changes in place) or signed (never changes)."""

    DRAFT = "draft"
    SIGNED = "signed"


class AlreadySigned(Conflict):
    code = "already_signed"
    default_message = "The conclusion is signed; send a reason to make a corrected version."


class NothingToCorrect(TelemedError):
    code = "nothing_to_correct"
    status = 422
    default_message = "Nothing is signed yet, so there is nothing to correct: send no reason."


class IncompleteConclusion(TelemedError):
    code = "incomplete_conclusion"
    status = 422
    default_message = "A conclusion is signed with both findings and recommendations."


class NotTheDoctor(Forbidden):
    default_message = "Only the doctor of this consultation can write its conclusion."


class SubjectKind(StrEnum):
    """What a conclusion concludes."""

    CONSULTATION = "consultation"
    SECOND_OPINION = "second_opinion"


@dataclass(frozen=True)
class SubjectRef:
    """A consultation or a second opinion, by id."""

    kind: SubjectKind
    id: str


@dataclass(frozen=True)
class Subject:
    """What a conclusion is about: whose it is, and who may write it with what deadline."""

    ref: SubjectRef
    patient_id: str
    writers: Mapping[str, datetime | None]
    """Staff ids allowed to write, each with their deadline (None: not due yet / none)."""


@dataclass(frozen=True)
class ConclusionText:
    findings: str
    recommendations: str
    follow_up: str = ""


@dataclass(frozen=True)
class WriteRequest:
    """One POST of a doctor: the text, whether to sign, and a reason for a correction."""

    text: ConclusionText
    sign: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class Version:
    """The columns of one stored version that the rules need."""

    id: str
    version: int
    status: Status
    doctor_id: str
    reason: str | None


@dataclass(frozen=True)
class Plan:
    """What to write: a new version, or an update of the draft `target_id`."""

    action: Literal["create", "update"]
    version: int
    target_id: str | None
    supersedes_id: str | None
    reason: str | None
    sign: bool

    @property
    def audit_action(self) -> str:
        if not self.sign:
            return "conclusion_draft"
        return "conclusion_amend" if self.supersedes_id else "conclusion_sign"


def plan_write(chain: Sequence[Version], request: WriteRequest, author_id: str) -> Plan:
    """Decide a write on a conclusion chain (oldest first): edit the draft, start the chain,
    or correct the signed version; refuse changing a signed version in place."""
    if request.sign and not (request.text.findings and request.text.recommendations):
        raise IncompleteConclusion()
    latest = chain[-1] if chain else None
    signed_before = any(v.status is Status.SIGNED for v in chain)
    if request.reason and not signed_before:
        raise NothingToCorrect()
    if latest is None:
        return Plan("create", 1, None, None, None, request.sign)
    if latest.status is Status.DRAFT:
        if latest.doctor_id != author_id:
            raise Forbidden("This draft is another doctor's.")
        reason = request.reason or latest.reason
        previous = chain[-2].id if len(chain) > 1 else None
        return Plan("update", latest.version, latest.id, previous, reason, request.sign)
    if not request.reason:
        raise AlreadySigned()
    return Plan("create", latest.version + 1, None, latest.id, request.reason, request.sign)


def may_read(
    role: Role, actor_id: str, patient_id: str, version: Version, access: Decision
) -> bool:
    """A patient reads their own signed conclusions; a draft only its author; other staff the
    signed ones of a patient the access policy lets them read (a care relationship, or a
    break-the-glass: `telemed.access`)."""
    if role is Role.PATIENT:
        return actor_id == patient_id and version.status is Status.SIGNED
    if actor_id == version.doctor_id:
        return True
    return role in READERS and version.status is Status.SIGNED and access.allowed


def version_of(row: Conclusion) -> Version:
    return Version(row.id, row.version, Status(row.status), row.doctor_id, row.reason)


@dataclass(frozen=True)
class Due:
    """A conclusion a doctor owes: for which consultation, since when, by when."""

    consultation_id: str
    patient_id: str
    patient_name: str
    leg_ended_at: datetime
    due_at: datetime
    draft_id: str | None


def split_due(items: Sequence[Due], now: datetime) -> tuple[list[Due], list[Due]]:
    """(pending, overdue), each by deadline: overdue once the deadline has passed."""
    ordered = sorted(items, key=lambda d: (d.due_at, d.consultation_id))
    return [d for d in ordered if d.due_at >= now], [d for d in ordered if d.due_at < now]


@dataclass(frozen=True)
class ReadResult:
    """A conclusion as its reader gets it, with the facts around it."""

    row: Conclusion
    patient_id: str
    doctor_name: str
    latest_signed_id: str | None


def chain_filter(ref: SubjectRef) -> ColumnElement[bool]:
    """The WHERE clause selecting the conclusion chain of a subject."""
    if ref.kind is SubjectKind.CONSULTATION:
        return Conclusion.consultation_id == ref.id
    return Conclusion.second_opinion_id == ref.id


async def load_chain(session: AsyncSession, ref: SubjectRef) -> list[Conclusion]:
    """Every version of a subject's conclusion, oldest first."""
    rows = await session.scalars(
        select(Conclusion).where(chain_filter(ref)).order_by(Conclusion.version)
    )
    return list(rows)


def latest_signed(chain: Sequence[Conclusion]) -> Conclusion | None:
    """The version a patient sees: the newest signed one."""
    signed = [c for c in chain if c.status == Status.SIGNED]
    return signed[-1] if signed else None


async def load_subject(session: AsyncSession, ref: SubjectRef, due_after: timedelta) -> Subject:
    """The subject and its writers: the doctors who led its doctor legs (each due
    `due_after` after their last leg ends), or the second opinion's specialist."""
    if ref.kind is SubjectKind.SECOND_OPINION:
        case = await session.get(SecondOpinion, ref.id)
        if case is None:
            raise NotFound("No such second opinion.")
        writers = {} if case.specialist_id is None else {case.specialist_id: None}
        return Subject(ref, case.patient_id, writers)
    consultation = await session.get(Consultation, ref.id)
    if consultation is None:
        raise NotFound("No such consultation.")
    legs = await session.execute(
        select(ConsultationLeg.staff_id, ConsultationLeg.ended_at).where(
            ConsultationLeg.consultation_id == ref.id,
            ConsultationLeg.role.in_(DOCTOR_ROLE_NAMES),
        )
    )
    ends: dict[str, list[datetime | None]] = {}
    for staff_id, ended_at in legs:
        ends.setdefault(staff_id, []).append(ended_at)
    return Subject(ref, consultation.patient_id, {s: _due(e, due_after) for s, e in ends.items()})


def _due(leg_ends: list[datetime | None], due_after: timedelta) -> datetime | None:
    """Due `due_after` after the doctor's last leg ended; not due while a leg is open."""
    if any(end is None for end in leg_ends):
        return None
    return max(end for end in leg_ends if end is not None) + due_after


class ConclusionService:
    """Write, read and list conclusions; every read and write is audited, refusals too."""

    def __init__(self, db: Database, clock: Clock, rules: RulesSettings) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules
        self.access = CareAccess(db, clock, rules)

    async def write(self, ref: SubjectRef, who: Who, request: WriteRequest) -> Conclusion:
        """Save a draft, sign, or correct a signed conclusion (R-CONCL-1)."""
        now = self.clock.now()
        try:
            async with self.db.write() as session:
                subject = await load_subject(session, ref, self.rules.conclusion_due_after)
                if who.id not in subject.writers:
                    raise NotTheDoctor()
                chain = await load_chain(session, ref)
                plan = plan_write([version_of(r) for r in chain], request, str(who.id))
                row = await self._apply(session, ref, plan, request, who, subject, now)
                record(
                    session,
                    at=now,
                    who=who,
                    action=plan.audit_action,
                    object_type=OBJECT,
                    object_id=row.id,
                    detail={ref.kind.value: ref.id, "version": row.version, "status": row.status},
                )
        except IntegrityError:
            error = Conflict("The conclusion was saved by another request meanwhile; reload it.")
            await self._refused(who, ref, error)
            raise error from None
        except TelemedError as exc:
            await self._refused(who, ref, exc)
            raise
        return row

    async def _apply(
        self,
        session: AsyncSession,
        ref: SubjectRef,
        plan: Plan,
        request: WriteRequest,
        who: Who,
        subject: Subject,
        now: datetime,
    ) -> Conclusion:
        text = request.text
        values: dict[str, object] = {
            "findings": text.findings,
            "recommendations": text.recommendations,
            "follow_up": text.follow_up,
            "reason": plan.reason,
            "status": Status.SIGNED.value if plan.sign else Status.DRAFT.value,
            "signed_at": now if plan.sign else None,
            "updated_at": now,
        }
        if plan.action == "update":
            # Guarded: a draft signed meanwhile by a concurrent request stays as signed.
            result = await session.execute(
                update(Conclusion)
                .where(Conclusion.id == plan.target_id, Conclusion.status == Status.DRAFT.value)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise AlreadySigned("The draft was signed meanwhile; reload it.")
            row = await session.get(Conclusion, plan.target_id, populate_existing=True)
            assert row is not None
            return row
        row = Conclusion(
            consultation_id=ref.id if ref.kind is SubjectKind.CONSULTATION else None,
            second_opinion_id=ref.id if ref.kind is SubjectKind.SECOND_OPINION else None,
            doctor_id=who.id,
            version=plan.version,
            supersedes_id=plan.supersedes_id,
            due_at=subject.writers.get(str(who.id)),
            created_at=now,
            **values,
        )
        session.add(row)
        await session.flush()
        return row

    async def _refused(self, who: Who, ref: SubjectRef, error: TelemedError) -> None:
        """Audit a refused write in a transaction of its own (the refused one rolled back)."""
        async with self.db.write() as session:
            record(
                session,
                at=self.clock.now(),
                who=who,
                action="conclusion_write",
                object_type=ref.kind.value,
                object_id=ref.id,
                outcome=error.code,
            )

    async def read(self, conclusion_id: str, role: Role, who: Who) -> ReadResult:
        """One conclusion version, if this reader may see it; the read is audited either way.

        A patient or doctor who may not see it is told `not_found`, so that the
        existence of another patient's conclusion, or of a draft, does not leak."""
        error: TelemedError | None = None
        decision = DENIED
        async with self.db.write() as session:
            row = await session.get(Conclusion, conclusion_id)
            result: ReadResult | None = None
            if row is None or role not in READERS:
                error = NotFound("No such conclusion.")
            else:
                ref = subject_ref(row)
                subject = await load_subject(session, ref, self.rules.conclusion_due_after)
                decision = await self.access.decide(session, role, str(who.id), subject.patient_id)
                if not may_read(role, str(who.id), subject.patient_id, version_of(row), decision):
                    error = NotFound("No such conclusion.")
                else:
                    chain = await load_chain(session, ref)
                    newest = latest_signed(chain)
                    doctor = await session.get(Staff, row.doctor_id)
                    result = ReadResult(
                        row=row,
                        patient_id=subject.patient_id,
                        doctor_name=doctor.full_name if doctor else "",
                        latest_signed_id=newest.id if newest else None,
                    )
            record(
                session,
                at=self.clock.now(),
                who=who,
                action="conclusion_read",
                object_type=OBJECT,
                object_id=conclusion_id[:64],
                outcome="ok" if error is None else error.code,
                detail=access_detail(decision) if error is None else None,
            )
        if error is not None:
            raise error
        assert result is not None
        return result

    async def pending(self, doctor_id: str) -> tuple[list[Due], list[Due]]:
        """(pending, overdue) conclusions of a doctor: consultations whose doctor leg this
        doctor led and ended, with no signed conclusion yet (R-CONCL-1)."""
        due_after = self.rules.conclusion_due_after
        signed = exists().where(
            Conclusion.consultation_id == ConsultationLeg.consultation_id,
            Conclusion.status == Status.SIGNED.value,
        )
        legs = (
            select(
                ConsultationLeg.consultation_id,
                func.max(ConsultationLeg.ended_at).label("ended_at"),
            )
            .where(
                ConsultationLeg.staff_id == doctor_id,
                ConsultationLeg.role.in_(DOCTOR_ROLE_NAMES),
                ~signed,
            )
            .group_by(ConsultationLeg.consultation_id)
            # Every leg of this doctor has ended (count(col) skips NULLs).
            .having(func.count(ConsultationLeg.ended_at) == func.count())
            .subquery()
        )
        draft = (
            select(Conclusion.id)
            .where(
                Conclusion.consultation_id == legs.c.consultation_id,
                Conclusion.status == Status.DRAFT.value,
            )
            .scalar_subquery()
        )
        async with self.db.read() as session:
            rows = await session.execute(
                select(
                    legs.c.consultation_id,
                    legs.c.ended_at,
                    Patient.id,
                    Patient.full_name,
                    draft,
                )
                .join(Consultation, Consultation.id == legs.c.consultation_id)
                .join(Patient, Patient.id == Consultation.patient_id)
            )
            items = [
                Due(
                    consultation_id=cid,
                    patient_id=pid,
                    patient_name=name,
                    leg_ended_at=ended,
                    due_at=ended + due_after,
                    draft_id=draft_id,
                )
                for cid, ended, pid, name, draft_id in rows
            ]
        return split_due(items, self.clock.now())


def subject_ref(row: Conclusion) -> SubjectRef:
    """The consultation or second opinion a conclusion concludes."""
    if row.consultation_id is not None:
        return SubjectRef(SubjectKind.CONSULTATION, row.consultation_id)
    assert row.second_opinion_id is not None
    return SubjectRef(SubjectKind.SECOND_OPINION, row.second_opinion_id)
