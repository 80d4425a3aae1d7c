"""Second expert opinion (R-SECOND).

The patient asks in a consultation's chat and sends documents of their
medical card; a consultant assigns a specialist, which starts the deadline of
`rules.second_opinion_working_days` working days (on the insurer's Moscow
calendar, holidays from config); the specialist writes the conclusion with
the same draft/sign/correct rules as any conclusion; the consultant delivers
it into the chat of the consultation it was asked in (and the patient gets a
notification); on request a consultation with that specialist is booked.
Cases past their due date and not delivered are overdue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conclusions.service import (
    ConclusionService,
    Status,
    SubjectKind,
    SubjectRef,
    WriteRequest,
)
from conclusions.workdays import WorkCalendar
from telemed.access import DENIED, Decision
from telemed.clock import Clock
from telemed.config import RulesSettings
from telemed.consultation import Channel, Kind
from telemed.db import Database
from telemed.errors import Conflict, NotFound, TelemedError
from telemed.models import (
    Appointment,
    ChatMessage,
    Conclusion,
    Consultation,
    Document,
    Patient,
    SecondOpinion,
    SecondOpinionDocument,
    Staff,
)
from telemed.roles import Role
from telemed.services.appointments import AppointmentService
from telemed.services.audit import Who, record
from telemed.services.care import CareAccess, access_detail
from telemed.services.chat import Message
from telemed.services.insured import local_today
from telemed.services.notifications import Note, queue_notes

OBJECT = "second_opinion"
READERS: frozenset[Role] = frozenset({Role.PATIENT, Role.CONSULTANT, Role.SPECIALIST})


class CaseState(StrEnum):
    """Where a second opinion is: derived from its row and its conclusion, never stored."""

    REQUESTED = "requested"
    ASSIGNED = "assigned"
    CONCLUDED = "concluded"
    DELIVERED = "delivered"


class UnknownDocuments(TelemedError):
    code = "unknown_documents"
    status = 422
    default_message = "Some documents are not in your medical card."


class NotASpecialist(TelemedError):
    code = "not_a_specialist"
    status = 422
    default_message = "Assign an active specialist."


class AlreadyDelivered(Conflict):
    code = "already_delivered"
    default_message = "This second opinion has already been delivered."


class NotConcluded(Conflict):
    code = "not_concluded"
    default_message = "The specialist has not signed the conclusion yet."


class AlreadyBooked(Conflict):
    code = "already_booked"
    default_message = "A consultation with the specialist is already booked."


def case_state(row: SecondOpinion, concluded: bool) -> CaseState:
    """The state a case is in."""
    if row.delivered_at is not None:
        return CaseState.DELIVERED
    if concluded:
        return CaseState.CONCLUDED
    if row.specialist_id is not None:
        return CaseState.ASSIGNED
    return CaseState.REQUESTED


def is_overdue(due_on: date | None, delivered: bool, today: date) -> bool:
    """Overdue once the due date has passed without delivery (the due date itself is in time)."""
    return due_on is not None and not delivered and today > due_on


@dataclass(frozen=True)
class CaseDocument:
    document_id: str
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class CaseView:
    """A second opinion as its readers see it."""

    id: str
    patient_id: str
    patient_name: str
    consultation_id: str
    question: str
    state: CaseState
    requested_at: datetime
    specialist_id: str | None
    specialist_name: str | None
    assigned_at: datetime | None
    due_on: date | None
    overdue: bool
    working_days_left: int | None
    delivered_at: datetime | None
    conclusion_id: str | None
    appointment_id: str | None
    documents: list[CaseDocument] | None


def deliver_into_chat(
    session: AsyncSession, *, consultation_id: str, sender: Who, text: str, now: datetime
) -> ChatMessage:
    """Put a message into a consultation's chat history, in the caller's transaction (the live
    chat replays history from these rows)."""
    message = ChatMessage(
        consultation_id=consultation_id,
        sender_role=sender.role,
        sender_id=str(sender.id),
        text=text,
        created_at=now,
    )
    session.add(message)
    return message


class SecondOpinionService:
    """Every step of a second opinion, each one transaction with its audit entry."""

    def __init__(self, db: Database, clock: Clock, rules: RulesSettings) -> None:
        self.db = db
        self.clock = clock
        self.rules = rules
        self.workdays = WorkCalendar.from_rules(rules)
        self.conclusions = ConclusionService(db, clock, rules)
        self.access = CareAccess(db, clock, rules)

    async def request(
        self, who: Who, consultation_id: str, question: str, document_ids: Sequence[str]
    ) -> CaseView:
        """The patient asks for a second opinion in one of their consultations and sends
        documents of their medical card with it."""
        patient_id = str(who.id)
        now = self.clock.now()
        wanted = set(document_ids)
        async with self.db.write() as session:
            consultation = await session.get(Consultation, consultation_id)
            if consultation is None or consultation.patient_id != patient_id:
                raise NotFound("No such consultation.")
            owned = set(
                (
                    await session.scalars(
                        select(Document.id).where(
                            Document.id.in_(wanted), Document.patient_id == patient_id
                        )
                    )
                ).all()
            )
            if owned != wanted:
                raise UnknownDocuments()
            case = SecondOpinion(
                patient_id=patient_id,
                consultation_id=consultation_id,
                question=question,
                requested_at=now,
                updated_at=now,
            )
            session.add(case)
            await session.flush()
            for document_id in sorted(wanted):
                session.add(
                    SecondOpinionDocument(
                        second_opinion_id=case.id, document_id=document_id, added_at=now
                    )
                )
                self._audit(session, who, "document_attach", "document", document_id, case.id)
            self._audit(session, who, "second_opinion_request", OBJECT, case.id)
        return await self.get(case.id, Role.PATIENT, who, audit=False)

    async def assign(self, case_id: str, specialist_id: str, who: Who) -> CaseView:
        """A consultant sends the package to a specialist; the first assignment starts the
        deadline, a later one (before the conclusion) keeps it."""
        now = self.clock.now()
        async with self.db.write() as session:
            case = await self._case(session, case_id)
            if case.delivered_at is not None:
                raise AlreadyDelivered()
            if await _signed(session, case_id) is not None:
                raise Conflict("The conclusion is signed; the specialist can no longer change.")
            specialist = await session.get(Staff, specialist_id)
            if specialist is None or specialist.role != Role.SPECIALIST or not specialist.active:
                raise NotASpecialist()
            if case.due_on is None:
                case.assigned_at = now
                case.due_on = self.workdays.add_working_days(
                    local_today(self.clock), self.rules.second_opinion_working_days
                )
            case.specialist_id = specialist_id
            case.consultant_id = str(who.id)
            case.updated_at = now
            self._audit(session, who, "second_opinion_assign", OBJECT, case_id)
        return await self.get(case_id, Role.CONSULTANT, who, audit=False)

    async def write_conclusion(self, case_id: str, who: Who, request: WriteRequest) -> Conclusion:
        """The assigned specialist drafts, signs or corrects the conclusion."""
        return await self.conclusions.write(
            SubjectRef(SubjectKind.SECOND_OPINION, case_id), who, request
        )

    async def deliver(self, case_id: str, who: Who) -> CaseView:
        """The consultant puts the signed conclusion into the patient's chat, exactly once,
        and the patient is notified (no medical text in either)."""
        now = self.clock.now()
        async with self.db.write() as session:
            case = await self._case(session, case_id)
            conclusion = await _signed(session, case_id)
            if case.delivered_at is not None:
                raise AlreadyDelivered()
            if conclusion is None:
                raise NotConcluded()
            message = deliver_into_chat(
                session,
                consultation_id=case.consultation_id,
                sender=who,
                text=f"Заключение врача по второму мнению готово: /#/conclusions/{conclusion.id}",
                now=now,
            )
            await session.flush()
            claimed = await session.execute(
                update(SecondOpinion)
                .where(SecondOpinion.id == case_id, SecondOpinion.delivered_at.is_(None))
                .values(
                    delivered_at=now,
                    delivered_by=who.id,
                    chat_message_id=message.id,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise AlreadyDelivered()
            ready = {"second_opinion_id": case_id, "conclusion_id": conclusion.id}
            note = Note(
                f"second_opinion_ready:{case_id}",
                case.patient_id,
                "second_opinion_ready",
                ready,
                channels=("push",),
            )
            await queue_notes(session, now, [note])
            self._audit(session, who, "second_opinion_deliver", OBJECT, case_id)
        return await self.get(case_id, Role.CONSULTANT, who, audit=False)

    async def delivered_message(self, case_id: str) -> Message | None:
        """The chat message a delivery put into the consultation, as clients receive it, so
        the transport can push it to the people in that chat."""
        async with self.db.read() as session:
            case = await session.get(SecondOpinion, case_id)
            if case is None or case.chat_message_id is None:
                return None
            row = await session.get(ChatMessage, case.chat_message_id)
        if row is None:
            return None
        return Message(
            message_id=row.id,
            consultation_id=row.consultation_id,
            sender_role=row.sender_role,
            sender_id=row.sender_id,
            text=row.text,
            created_at=row.created_at,
        )

    async def book(
        self,
        case_id: str,
        who: Who,
        starts_at: datetime,
        channel: Channel,
        appointments: AppointmentService,
    ) -> Appointment:
        """On the patient's request (by the consultant, or by the patient from the
        conclusion's screen), book a consultation with the specialist of the opinion at one of
        their free slots, through the booking service, and link it to the case."""
        by_patient = who.role == Role.PATIENT
        async with self.db.read() as session:
            case = await self._case(session, case_id)
            if by_patient and case.patient_id != who.id:
                raise NotFound("No such second opinion.")
            if case.specialist_id is None or await _signed(session, case_id) is None:
                raise NotConcluded()
            if case.appointment_id is not None:
                booked = await session.get(Appointment, case.appointment_id)
                if booked is not None and booked.state == "booked":
                    raise AlreadyBooked()
        appointment = await appointments.book_at(
            patient_id=case.patient_id,
            doctor_id=case.specialist_id,
            starts_at=starts_at,
            channel=channel,
            kind=Kind.SECOND_OPINION,
            requires_documents=True,  # its documents are in the card already (R-DOCS-1)
            notify_via="chat",
            booked_by=None if by_patient else who.id,
            who=who,
        )
        async with self.db.write() as session:
            await session.execute(
                update(SecondOpinion)
                .where(SecondOpinion.id == case_id)
                .values(appointment_id=appointment.id, updated_at=self.clock.now())
            )
            self._audit(session, who, "second_opinion_book", OBJECT, case_id)
        return appointment

    async def get(self, case_id: str, role: Role, who: Who, *, audit: bool = True) -> CaseView:
        """One case with its documents, for whom the access policy lets read the patient's
        record (its patient, its specialist, the consultants while it is open: `telemed.access`);
        the read of the case and of each document is audited, a refused one too. With
        `audit=False` it is the answer to a step the caller was just allowed to take."""
        error: NotFound | None = None
        async with self.db.write() as session:
            case = await session.get(SecondOpinion, case_id)
            decision = DENIED
            if case is not None and role in READERS:
                decision = (
                    await self.access.decide(session, role, str(who.id), case.patient_id)
                    if audit
                    else Decision(True)
                )
            if case is None or not decision.allowed:
                error = NotFound("No such second opinion.")
                self._audit(
                    session, who, "second_opinion_read", OBJECT, case_id[:64], outcome=error.code
                )
            else:
                documents = (
                    await session.scalars(
                        select(Document)
                        .join(
                            SecondOpinionDocument,
                            SecondOpinionDocument.document_id == Document.id,
                        )
                        .where(SecondOpinionDocument.second_opinion_id == case_id)
                        .order_by(Document.created_at, Document.filename, Document.id)
                    )
                ).all()
                if audit:
                    access = access_detail(decision)
                    self._audit(session, who, "second_opinion_read", OBJECT, case_id, access=access)
                    for doc in documents:
                        self._audit(
                            session,
                            who,
                            "document_read",
                            "document",
                            doc.id,
                            case_id,
                            access=access,
                        )
                (view,) = await self._views(session, [case])
        if error is not None:
            raise error
        return replace(
            view,
            documents=[CaseDocument(d.id, d.filename, d.content_type, d.size) for d in documents],
        )

    async def list_for(self, role: Role, who: Who, *, overdue_only: bool = False) -> list[CaseView]:
        """A patient's own cases; a specialist's assigned ones; for consultants every case not
        yet delivered, overdue first (R-SECOND)."""
        query = select(SecondOpinion)
        if role is Role.PATIENT:
            query = query.where(SecondOpinion.patient_id == who.id)
        elif role is Role.SPECIALIST:
            query = query.where(SecondOpinion.specialist_id == who.id)
        else:
            query = query.where(SecondOpinion.delivered_at.is_(None))
        if overdue_only:
            query = query.where(
                SecondOpinion.due_on < local_today(self.clock),
                SecondOpinion.delivered_at.is_(None),
            )
        async with self.db.read() as session:
            cases = (await session.scalars(query.order_by(SecondOpinion.requested_at))).all()
            views = await self._views(session, cases)
        return sorted(views, key=lambda v: (not v.overdue, v.due_on or date.max, v.requested_at))

    async def _views(self, session: AsyncSession, cases: Sequence[SecondOpinion]) -> list[CaseView]:
        today = local_today(self.clock)
        ids = [c.id for c in cases]
        signed: dict[str, str] = {}
        if ids:
            rows = await session.execute(
                select(Conclusion.second_opinion_id, Conclusion.id)
                .where(
                    Conclusion.second_opinion_id.in_(ids),
                    Conclusion.status == Status.SIGNED.value,
                )
                .order_by(Conclusion.version)
            )
            signed = {str(case_id): conclusion_id for case_id, conclusion_id in rows}
        people = await _names(
            session, {c.patient_id for c in cases}, {c.specialist_id for c in cases}
        )
        views = []
        for c in cases:
            delivered = c.delivered_at is not None
            views.append(
                CaseView(
                    id=c.id,
                    patient_id=c.patient_id,
                    patient_name=people.get(c.patient_id, ""),
                    consultation_id=c.consultation_id,
                    question=c.question,
                    state=case_state(c, c.id in signed),
                    requested_at=c.requested_at,
                    specialist_id=c.specialist_id,
                    specialist_name=people.get(c.specialist_id) if c.specialist_id else None,
                    assigned_at=c.assigned_at,
                    due_on=c.due_on,
                    overdue=is_overdue(c.due_on, delivered, today),
                    working_days_left=(
                        None
                        if c.due_on is None or delivered
                        else self.workdays.working_days_between(today, c.due_on)
                    ),
                    delivered_at=c.delivered_at,
                    conclusion_id=signed.get(c.id),
                    appointment_id=c.appointment_id,
                    documents=None,
                )
            )
        return views

    @staticmethod
    async def _case(session: AsyncSession, case_id: str) -> SecondOpinion:
        case = await session.get(SecondOpinion, case_id)
        if case is None:
            raise NotFound("No such second opinion.")
        return case

    def _audit(
        self,
        session: AsyncSession,
        who: Who,
        action: str,
        object_type: str,
        object_id: str,
        case_id: str | None = None,
        *,
        outcome: str = "ok",
        access: dict[str, Any] | None = None,
    ) -> None:
        detail = {**({"second_opinion_id": case_id} if case_id else {}), **(access or {})}
        record(
            session,
            at=self.clock.now(),
            who=who,
            action=action,
            object_type=object_type,
            object_id=object_id,
            outcome=outcome,
            detail=detail or None,
        )


async def _signed(session: AsyncSession, case_id: str) -> Conclusion | None:
    """The newest signed conclusion of a case."""
    return await session.scalar(
        select(Conclusion)
        .where(
            Conclusion.second_opinion_id == case_id,
            Conclusion.status == Status.SIGNED.value,
        )
        .order_by(Conclusion.version.desc())
        .limit(1)
    )


async def _names(
    session: AsyncSession, patient_ids: set[str], staff_ids: set[str | None]
) -> dict[str, str]:
    """Display names of patients and staff by id."""
    names: dict[str, str] = {}
    if patient_ids:
        rows = await session.execute(
            select(Patient.id, Patient.full_name).where(Patient.id.in_(patient_ids))
        )
        names.update({pid: name for pid, name in rows})
    wanted = {s for s in staff_ids if s}
    if wanted:
        rows = await session.execute(select(Staff.id, Staff.full_name).where(Staff.id.in_(wanted)))
        names.update({sid: name for sid, name in rows})
    return names
