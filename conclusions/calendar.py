"""The patient's calendar and "My records" (R-CAL-1, R-CONCL-1).

The calendar holds the patient's appointments (booked or cancelled) and their
past consultations with the signed conclusion, all in the patient's own time
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
from telemed.consultation import CloseReason, State
from telemed.db import Database
from telemed.errors import NotFound, TelemedError
from telemed.models import Appointment, Conclusion, Consultation, Patient, Staff

DEFAULT_PAST = timedelta(days=31)
DEFAULT_FUTURE = timedelta(days=92)
MAX_WINDOW = timedelta(days=400)
SHOWN_APPOINTMENT_STATES = ("booked", "cancelled")
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
    cancelled = row.state == "cancelled"
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


async def patient_zone(session: AsyncSession, patient_id: str) -> ZoneInfo:
    """The patient's time zone (R-CAL-1)."""
    patient = await session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("No such patient.")
    return ZoneInfo(patient.timezone)


async def signed_conclusions(
    session: AsyncSession, consultation_ids: Iterable[str], zone: ZoneInfo
) -> dict[str, ConclusionSummary]:
    """The newest signed conclusion of each of these consultations, signed in `zone` time."""
    ids = list(consultation_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Conclusion, Staff.full_name)
        .join(Staff, Staff.id == Conclusion.doctor_id)
        .where(Conclusion.consultation_id.in_(ids), Conclusion.status == Status.SIGNED.value)
        .order_by(Conclusion.version)
    )
    newest: dict[str, ConclusionSummary] = {}
    for row, doctor_name in rows:
        assert row.consultation_id is not None and row.signed_at is not None
        newest[row.consultation_id] = ConclusionSummary(
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
    events += [
        consultation_event(c, conclusions.get(c.id), zone)
        for c in consultations
        if c.state == State.CLOSED or c.id in conclusions
    ]
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
    records = []
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
            )
        )
    return zone.key, records
