"""The patient's calendar and "My records" (R-CAL-1, R-CONCL-1).

The calendar holds the patient's appointments (booked or cancelled), their
past consultations with the signed conclusion, and their second opinions
(R-SECOND: from the request to the delivered conclusion, linked
`/#/conclusions/ID` once delivered), all in the patient's own time
zone (`Patient.timezone`), so that a traveller does not mix up the times. It
is read from the database on every call: a conclusion shows as soon as it is
signed, and a change of time zone moves every time at once. The same events
feed the iCalendar export (`conclusions.ical`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from conclusions.service import Status
from telemed.appointment import AppointmentState
from telemed.consultation import CloseReason, State
from telemed.db import Database
from telemed.errors import NotFound, TelemedError
from telemed.models import (
    Appointment,
    Conclusion,
    Consultation,
    ConsultationFollowUp,
    Patient,
    SecondOpinion,
    Staff,
)

DEFAULT_PAST = timedelta(days=31)
DEFAULT_FUTURE = timedelta(days=92)
MAX_WINDOW = timedelta(days=400)
SHOWN_APPOINTMENT_STATES = (AppointmentState.BOOKED.value, AppointmentState.CANCELLED.value)
RECORDS_LIMIT = 500

_ROLE_TITLES = {
    "therapist": "терапевт",
    "paediatrician": "педиатр",
    "specialist": "врач-специалист",
    "psychologist": "психолог",
}
_CHANNEL_TITLES = {"video": "видео", "audio": "аудио", "chat": "чат"}
_KIND_TITLES = {
    "urgent": "Срочная консультация",
    "scheduled": "Консультация по записи",
    "second_opinion": "Консультация по второму мнению",
}
_NOT_HELD = {CloseReason.NO_SHOW.value, CloseReason.CANCELLED.value}


class BadRange(TelemedError):
    code = "bad_range"
    status = 422
    default_message = "`to` must be after `from`, at most 400 days later."


@dataclass(frozen=True)
class ConclusionSummary:
    """The signed conclusion shown with a consultation: the newest signed version."""

    id: str
    version: int
    findings: str
    recommendations: str
    follow_up: str
    signed_at: datetime
    doctor_name: str


@dataclass(frozen=True)
class Event:
    """One calendar entry; `uid`, `sequence` and `link` serve the iCalendar feed."""

    type: str
    uid: str
    starts_at: datetime
    ends_at: datetime
    title: str
    status: str
    cancelled: bool
    sequence: int
    link: str
    changed_at: datetime
    consultation_id: str | None = None
    appointment_id: str | None = None
    conclusion: ConclusionSummary | None = None
    second_opinion_id: str | None = None


@dataclass(frozen=True)
class PatientCalendar:
    """The events of a window, in the patient's time zone."""

    timezone: str
    starts_at: datetime
    ends_at: datetime
    events: list[Event]


@dataclass(frozen=True)
class Record:
    """One line of "My records": a consultation, its state and its signed conclusion."""

    consultation_id: str
    kind: str
    channel: str
    state: str
    created_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    conclusion_id: str | None
    conclusion_signed_at: datetime | None
    follow_up: RecordFollowUp | None = None
    second_opinion_id: str | None = None


@dataclass(frozen=True)
class RecordFollowUp:
    """The consultant's record after the doctor (R-URG-5): needs, outcome and note."""

    needs: list[str]
    outcome: str
    note: str
    recorded_at: datetime


def resolve_window(
    start: datetime | None, end: datetime | None, now: datetime, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """The window asked for; times without an offset are the patient's local times."""
    start = now - DEFAULT_PAST if start is None else _local(start, zone)
    end = start + DEFAULT_PAST + DEFAULT_FUTURE if end is None else _local(end, zone)
    if not start < end <= start + MAX_WINDOW:
        raise BadRange()
    return start.astimezone(zone), end.astimezone(zone)


def _local(value: datetime, zone: ZoneInfo) -> datetime:
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def appointment_title(role: str, channel: str, cancelled: bool) -> str:
    """A title without medical text: the kind of doctor and the channel."""
    title = f"Запись: {_ROLE_TITLES.get(role, 'врач')}, {_CHANNEL_TITLES.get(channel, channel)}"
    return f"Отменено. {title}" if cancelled else title


def consultation_title(kind: str, channel: str, close_reason: str | None, concluded: bool) -> str:
    """A title without medical text: the kind, the channel, whether a conclusion is ready."""
    title = f"{_KIND_TITLES.get(kind, 'Консультация')} ({_CHANNEL_TITLES.get(channel, channel)})"
    if close_reason in _NOT_HELD:
        return f"{title}: не состоялась"
    return f"{title}: заключение готово" if concluded else title


def appointment_event(row: Appointment, doctor_role: str, zone: ZoneInfo) -> Event:
    """An appointment; cancelling it bumps the iCalendar SEQUENCE (nothing else changes it),
    so its last change is the cancellation, else the booking."""
    cancelled = row.state == AppointmentState.CANCELLED
    return Event(
        type="appointment",
        uid=f"appointment-{row.id}@telemed",
        starts_at=row.starts_at.astimezone(zone),
        ends_at=row.ends_at.astimezone(zone),
        title=appointment_title(doctor_role, row.channel, cancelled),
        status=row.state,
        cancelled=cancelled,
        sequence=1 if cancelled else 0,
        link=f"/#/appointments/{row.id}",
        changed_at=row.cancelled_at or row.created_at,
        appointment_id=row.id,
        consultation_id=row.consultation_id,
    )


def consultation_event(
    row: Consultation, conclusion: ConclusionSummary | None, zone: ZoneInfo
) -> Event:
    """A past consultation with its signed conclusion; every state move and every signed
    version bumps the SEQUENCE (the row's version and the conclusion's only grow)."""
    return Event(
        type="consultation",
        uid=f"consultation-{row.id}@telemed",
        starts_at=row.created_at.astimezone(zone),
        ends_at=(row.closed_at or row.updated_at).astimezone(zone),
        title=consultation_title(
            row.kind, row.channel, row.close_reason, concluded=conclusion is not None
        ),
        status=row.state,
        cancelled=row.close_reason in _NOT_HELD,
        sequence=row.version + (conclusion.version if conclusion else 0),
        link=f"/#/records/{row.id}",
        changed_at=max(row.updated_at, conclusion.signed_at) if conclusion else row.updated_at,
        consultation_id=row.id,
        appointment_id=row.appointment_id,
        conclusion=conclusion,
    )


def second_opinion_event(
    row: SecondOpinion, conclusion: ConclusionSummary | None, zone: ZoneInfo
) -> Event:
    """A second opinion from the request to its delivery; the conclusion (and its link) only
    once the consultant has delivered it (R-SECOND)."""
    delivered = row.delivered_at is not None and conclusion is not None
    title = "Второе мнение: заключение готово" if delivered else "Второе мнение: запрос"
    return Event(
        type="second_opinion",
        uid=f"second-opinion-{row.id}@telemed",
        starts_at=row.requested_at.astimezone(zone),
        ends_at=(row.delivered_at or row.requested_at).astimezone(zone),
        title=title,
        status="delivered" if delivered else "requested",
        cancelled=False,
        sequence=(1 if row.specialist_id else 0) + (2 if delivered else 0),
        link=f"/#/conclusions/{conclusion.id}" if delivered and conclusion else "/#/opinions",
        changed_at=row.updated_at,  # DTSTAMP: the case's last change
        consultation_id=row.consultation_id,
        appointment_id=row.appointment_id,
        conclusion=conclusion if delivered else None,
        second_opinion_id=row.id,
    )


async def patient_zone(session: AsyncSession, patient_id: str) -> ZoneInfo:
    """The patient's time zone (R-CAL-1)."""
    patient = await session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("No such patient.")
    return ZoneInfo(patient.timezone)


async def signed_conclusions(
    session: AsyncSession,
    consultation_ids: Iterable[str],
    zone: ZoneInfo,
    *,
    of_second_opinions: bool = False,
) -> dict[str, ConclusionSummary]:
    """The newest signed conclusion of each of these consultations (or second opinions),
    signed in `zone` time."""
    ids = list(consultation_ids)
    if not ids:
        return {}
    subject = Conclusion.second_opinion_id if of_second_opinions else Conclusion.consultation_id
    rows = await session.execute(
        select(Conclusion, Staff.full_name)
        .join(Staff, Staff.id == Conclusion.doctor_id)
        .where(subject.in_(ids), Conclusion.status == Status.SIGNED.value)
        .order_by(Conclusion.version)
    )
    newest: dict[str, ConclusionSummary] = {}
    for row, doctor_name in rows:
        key = row.second_opinion_id if of_second_opinions else row.consultation_id
        if key is None or row.signed_at is None:
            continue
        newest[key] = ConclusionSummary(
            id=row.id,
            version=row.version,
            findings=row.findings,
            recommendations=row.recommendations,
            follow_up=row.follow_up,
            signed_at=row.signed_at.astimezone(zone),
            doctor_name=doctor_name,
        )
    return newest


async def load_calendar(
    db: Database,
    patient_id: str,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> PatientCalendar:
    """The patient's appointments and past consultations overlapping the window."""
    async with db.read() as session:
        zone = await patient_zone(session, patient_id)
        start, end = resolve_window(start, end, now, zone)
        appointments = await session.execute(
            select(Appointment, Staff.role)
            .join(Staff, Staff.id == Appointment.doctor_id)
            .where(
                Appointment.patient_id == patient_id,
                Appointment.state.in_(SHOWN_APPOINTMENT_STATES),
                Appointment.starts_at < end,
                Appointment.ends_at > start,
            )
        )
        events = [appointment_event(row, role, zone) for row, role in appointments]
        consultations = (
            await session.scalars(
                select(Consultation).where(
                    Consultation.patient_id == patient_id,
                    Consultation.created_at < end,
                    func.coalesce(Consultation.closed_at, Consultation.updated_at) > start,
                )
            )
        ).all()
        conclusions = await signed_conclusions(session, (c.id for c in consultations), zone)
        cases = (
            await session.scalars(
                select(SecondOpinion).where(
                    SecondOpinion.patient_id == patient_id,
                    SecondOpinion.requested_at < end,
                    func.coalesce(SecondOpinion.delivered_at, SecondOpinion.updated_at) > start,
                )
            )
        ).all()
        opinions = await signed_conclusions(
            session, (c.id for c in cases), zone, of_second_opinions=True
        )
    events += [
        consultation_event(c, conclusions.get(c.id), zone)
        for c in consultations
        if c.state == State.CLOSED or c.id in conclusions
    ]
    events += [second_opinion_event(c, opinions.get(c.id), zone) for c in cases]
    events.sort(key=lambda e: (e.starts_at, e.uid))
    return PatientCalendar(zone.key, start, end, events)


async def load_records(db: Database, patient_id: str) -> tuple[str, list[Record]]:
    """Every consultation of the patient, newest first, with its state ("My records")."""
    async with db.read() as session:
        zone = await patient_zone(session, patient_id)
        rows: Sequence[Consultation] = (
            await session.scalars(
                select(Consultation)
                .where(Consultation.patient_id == patient_id)
                .order_by(Consultation.created_at.desc(), Consultation.id)
                .limit(RECORDS_LIMIT)
            )
        ).all()
        conclusions = await signed_conclusions(session, (r.id for r in rows), zone)
        follow_ups = {
            f.consultation_id: f
            for f in await session.scalars(
                select(ConsultationFollowUp).where(
                    ConsultationFollowUp.consultation_id.in_([r.id for r in rows])
                )
            )
        }
        cases: Sequence[SecondOpinion] = (
            await session.scalars(
                select(SecondOpinion)
                .where(SecondOpinion.patient_id == patient_id)
                .order_by(SecondOpinion.requested_at.desc())
                .limit(RECORDS_LIMIT)
            )
        ).all()
        opinions = await signed_conclusions(
            session, (c.id for c in cases), zone, of_second_opinions=True
        )
    records = [_opinion_record(c, opinions.get(c.id), zone) for c in cases]
    for row in rows:
        conclusion = conclusions.get(row.id)
        records.append(
            Record(
                consultation_id=row.id,
                kind=row.kind,
                channel=row.channel,
                state=row.state,
                created_at=row.created_at.astimezone(zone),
                closed_at=row.closed_at.astimezone(zone) if row.closed_at else None,
                close_reason=row.close_reason,
                conclusion_id=conclusion.id if conclusion else None,
                conclusion_signed_at=conclusion.signed_at if conclusion else None,
                follow_up=_follow_up(follow_ups.get(row.id), zone),
            )
        )
    records.sort(key=lambda r: r.created_at, reverse=True)
    return zone.key, records


def _follow_up(row: ConsultationFollowUp | None, zone: ZoneInfo) -> RecordFollowUp | None:
    if row is None:
        return None
    return RecordFollowUp(list(row.needs), row.outcome, row.note, row.recorded_at.astimezone(zone))


def _opinion_record(
    case: SecondOpinion, conclusion: ConclusionSummary | None, zone: ZoneInfo
) -> Record:
    """A second opinion in "My records": its conclusion once delivered (R-SECOND)."""
    delivered = case.delivered_at is not None and conclusion is not None
    return Record(
        consultation_id=case.consultation_id,
        kind="second_opinion",
        channel="chat",
        state="delivered" if delivered else ("assigned" if case.specialist_id else "requested"),
        created_at=case.requested_at.astimezone(zone),
        closed_at=case.delivered_at.astimezone(zone) if case.delivered_at else None,
        close_reason=None,
        conclusion_id=conclusion.id if delivered and conclusion else None,
        conclusion_signed_at=conclusion.signed_at if delivered and conclusion else None,
        second_opinion_id=case.id,
    )
