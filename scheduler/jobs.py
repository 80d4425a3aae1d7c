"""What is due, and acting on it exactly once.

Every deadline lives in a row; each action here is a guarded update that
only one caller can win (`WHERE reminded_at IS NULL`, `WHERE state = ...`),
so a sweep after a restart, a timer and a second node can all look at the
same row and the action still happens once. The outbox gets one row per
message (unique dedupe key) in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update

from telemed.appointment import AppointmentEvent, AppointmentState, move_of
from telemed.clock import Clock
from telemed.config import Settings
from telemed.consultation import SYSTEM_ACTOR, Event, State
from telemed.db import Database
from telemed.errors import TelemedError
from telemed.events import StaffMessage, UserMessage
from telemed.events import record as record_event
from telemed.live import Live
from telemed.models import (
    Appointment,
    Consultation,
    Notification,
    Patient,
    WorkingHours,
)
from telemed.notify import OutboundMessage, Sender
from telemed.notify.messages import compose
from telemed.phone import mask_phone
from telemed.roles import Role
from telemed.services.appointments import AppointmentService
from telemed.services.consultations import ConsultationService
from telemed.services.notifications import Note, queue_notes
from telemed.services.token_ends import announce_ended_tokens, next_token_end

log = logging.getLogger("telemed.scheduler")
MAX_ATTEMPTS = 5
SLOT_REFRESH = timedelta(hours=1)
SEND_CONCURRENCY = 32


@dataclass
class Fired:
    """How many actions of each kind one pass took, and how late reminders were."""

    counts: dict[str, int] = field(default_factory=dict)
    reminder_lateness: list[float] = field(default_factory=list)

    def add(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


class DueWork:
    """The scheduled actions of telemed; `run()` does everything due now."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        consultations: ConsultationService,
        live: Live,
        senders: Mapping[str, Sender],
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.rules = settings.rules
        self.consultations = consultations
        self.live = live
        self.senders = senders
        self.batch = settings.scheduler.batch_size
        # Checked between batches: a node that lost the lease stops at once.
        self.keep_going: Callable[[], bool] = lambda: True
        self.appointments = AppointmentService(db, clock, settings.rules)
        self._slots_cut_at: datetime | None = None

    async def run(self) -> Fired:
        """One pass over every kind of deadline, in the order a day unfolds."""
        fired = Fired()
        now = self.clock.now()
        for step in (
            self._reminders,
            self._starts,
            self._no_shows,
            self._limit_warnings,
            self._limits,
            self._away_patients,
            self._ended_sessions,
            self._slots,
        ):
            try:
                await step(now, fired)
            except Exception:
                log.exception("scheduled step %s failed; the next pass retries", step.__name__)
        try:
            await self._dispatch(fired)
        except Exception:
            log.exception("outbox dispatch failed; the next pass retries")
        return fired

    async def next_due(self) -> datetime | None:
        """The earliest deadline still pending: when the next pass is worth running."""
        warn = self.rules.limit_warning_before
        grace = self.rules.no_show_after
        async with self.db.read() as session:
            candidates = [
                await session.scalar(
                    select(func.min(Appointment.remind_at)).where(
                        Appointment.state == AppointmentState.BOOKED.value,
                        Appointment.reminded_at.is_(None),
                    )
                ),
                await session.scalar(
                    select(func.min(Appointment.starts_at)).where(
                        Appointment.state == AppointmentState.BOOKED.value
                    )
                ),
                await session.scalar(
                    select(func.min(Consultation.no_show_at)).where(
                        Consultation.state == State.WAITING_PATIENT.value
                    )
                ),
                await session.scalar(
                    select(func.min(Consultation.limit_ends_at)).where(
                        Consultation.state == State.WITH_DOCTOR.value
                    )
                ),
                await session.scalar(
                    select(func.min(Consultation.patient_away_since)).where(
                        Consultation.state != State.CLOSED.value
                    )
                ),
            ]
            unwarned = await session.scalar(
                select(func.min(Consultation.limit_ends_at)).where(
                    Consultation.state == State.WITH_DOCTOR.value,
                    Consultation.limit_warned_at.is_(None),
                )
            )
        if candidates[4] is not None:
            candidates[4] = candidates[4] + grace
        if unwarned is not None:
            candidates.append(unwarned - warn)
        candidates.append(await next_token_end(self.db))
        due = [c for c in candidates if c is not None]
        return min(due) if due else None

    # --- R-REMIND-1 ---------------------------------------------------------------------

    async def _reminders(self, now: datetime, fired: Fired) -> None:
        """Claim due reminders a batch at a time: one guarded UPDATE ... RETURNING marks
        them sent and the same transaction queues them in the outbox."""
        channels = self.settings.scheduler.reminder_channels
        due_by = now  # this pass takes what was due when it began; the next pass the rest
        while True:
            now = self.clock.now()  # each batch is stamped when it is claimed
            due = (
                select(Appointment.id)
                .where(
                    Appointment.state == AppointmentState.BOOKED.value,
                    Appointment.reminded_at.is_(None),
                    Appointment.remind_at <= due_by,
                )
                .order_by(Appointment.remind_at)
                .limit(self.batch)
            )
            async with self.db.write() as session:
                claimed = (
                    await session.execute(
                        update(Appointment)
                        .where(
                            Appointment.id.in_(due.scalar_subquery()),
                            Appointment.reminded_at.is_(None),
                        )
                        .values(reminded_at=now)
                        .returning(
                            Appointment.id,
                            Appointment.patient_id,
                            Appointment.starts_at,
                            Appointment.remind_at,
                        )
                        .execution_options(synchronize_session=False)
                    )
                ).all()
                # After the start a reminder only confuses: marked, not sent.
                useful = [row for row in claimed if row.starts_at > now]
                await queue_notes(
                    session,
                    now,
                    [
                        Note(
                            key=f"reminder:{row.id}",
                            recipient_id=row.patient_id,
                            kind="reminder",
                            payload={
                                "appointment_id": row.id,
                                "starts_at": row.starts_at.isoformat(),
                            },
                            channels=channels,
                        )
                        for row in useful
                    ],
                )
                for row in useful:
                    told = {"appointment_id": row.id, "starts_at": row.starts_at.isoformat()}
                    record_event(session, UserMessage(row.patient_id, "reminder", told))
            for row in useful:
                fired.add("reminder")
                if row.remind_at is not None:
                    fired.reminder_lateness.append((now - row.remind_at).total_seconds())
            if len(claimed) < self.batch or not self.keep_going():
                return

    # --- R-SCH-3: the appointment's time has come ------------------------------------------

    async def _starts(self, now: datetime, fired: Fired) -> None:
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Appointment.id, Appointment.patient_id)
                    .where(
                        Appointment.state == AppointmentState.BOOKED.value,
                        Appointment.starts_at <= now,
                    )
                    .order_by(Appointment.starts_at)
                    .limit(self.batch)
                )
            ).all()
        for appointment_id, patient_id in rows:
            try:
                change = await self.consultations.open_booked(
                    appointment_id, patient_online=self.live.is_online(patient_id)
                )
            except TelemedError as exc:
                log.info("appointment %s not opened: %s", appointment_id, exc.code)
                continue
            if change.transition is None and change.consultation.created_at == now:
                fired.add("start")

    # --- R-NOSHOW-1 -------------------------------------------------------------------------

    async def _no_shows(self, now: datetime, fired: Fired) -> None:
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Consultation.id, Consultation.appointment_id)
                    .where(
                        Consultation.state == State.WAITING_PATIENT.value,
                        Consultation.no_show_at <= now,
                    )
                    .limit(self.batch)
                )
            ).all()
        for consultation_id, appointment_id in rows:
            try:
                await self.consultations.fire(consultation_id, Event.NO_SHOW, SYSTEM_ACTOR)
            except TelemedError:
                continue  # the patient came, or another runner closed it
            booked_by = None
            async with self.db.write() as session:
                if appointment_id:
                    came_from, no_show = move_of(AppointmentEvent.NO_SHOW)
                    await session.execute(
                        update(Appointment)
                        .where(
                            Appointment.id == appointment_id, Appointment.state == came_from.value
                        )
                        .values(state=no_show.value)
                    )
                    booked_by = await session.scalar(
                        select(Appointment.booked_by).where(Appointment.id == appointment_id)
                    )
                await queue_notes(
                    session,
                    now,
                    [
                        Note(
                            key=f"no_show:{consultation_id}",
                            recipient_id=booked_by or "consultants",
                            kind="no_show",
                            payload={
                                "consultation_id": consultation_id,
                                "appointment_id": appointment_id,
                            },
                            channels=("console",),
                            role=Role.CONSULTANT,
                        )
                    ],
                )
                told = {"consultation_id": consultation_id, "appointment_id": appointment_id}
                record_event(session, StaffMessage(Role.CONSULTANT, "appointment:no_show", told))
            fired.add("no_show")

    # --- R-LIMIT-URG / R-LIMIT-SCH -----------------------------------------------------------

    async def _limit_warnings(self, now: datetime, fired: Fired) -> None:
        warn_at = now + self.rules.limit_warning_before
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Consultation.id, Consultation.limit_ends_at)
                    .where(
                        Consultation.state == State.WITH_DOCTOR.value,
                        Consultation.limit_warned_at.is_(None),
                        Consultation.limit_ends_at <= warn_at,
                        Consultation.limit_ends_at > now,
                    )
                    .limit(self.batch)
                )
            ).all()
        for consultation_id, ends_at in rows:
            async with self.db.write() as session:
                won = await session.execute(
                    update(Consultation)
                    .where(
                        Consultation.id == consultation_id,
                        Consultation.state == State.WITH_DOCTOR.value,
                        Consultation.limit_warned_at.is_(None),
                        Consultation.limit_ends_at == ends_at,
                    )
                    .values(limit_warned_at=now)
                )
                row = await session.get(Consultation, consultation_id)
                if won.rowcount != 1 or row is None or ends_at is None:  # type: ignore[attr-defined]
                    continue
                payload = {
                    "consultation_id": consultation_id,
                    "ends_at": ends_at.isoformat(),
                    "server_time": now.isoformat(),  # the clock this tick read
                }
                for user in (row.patient_id, row.doctor_id):
                    if user:
                        record_event(session, UserMessage(user, "limit:warning", payload))
            fired.add("limit_warning")

    async def _limits(self, now: datetime, fired: Fired) -> None:
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(
                        Consultation.id,
                        Consultation.consultant_id,
                        Consultation.doctor_id,
                        Consultation.patient_id,
                    )
                    .where(
                        Consultation.state == State.WITH_DOCTOR.value,
                        Consultation.limit_ends_at <= now,
                    )
                    .limit(self.batch)
                )
            ).all()
        for consultation_id, consultant_id, doctor_id, patient_id in rows:
            reached = {"consultation_id": consultation_id, "server_time": now.isoformat()}
            try:
                await self.consultations.end_doctor_leg(
                    consultation_id,
                    SYSTEM_ACTOR,
                    consultant_online=self.live.is_online(consultant_id),
                    also=[
                        UserMessage(user, "limit:reached", reached)
                        for user in (patient_id, doctor_id)
                        if user
                    ],
                )
            except TelemedError:
                continue  # the doctor ended it first
            fired.add("limit_reached")

    # --- patients gone past the grace (backstop of the live layer's timers) ----------------

    async def _away_patients(self, now: datetime, fired: Fired) -> None:
        cutoff = now - self.rules.no_show_after
        async with self.db.read() as session:
            rows = (
                await session.scalars(
                    select(Consultation.id)
                    .where(
                        Consultation.state != State.CLOSED.value,
                        Consultation.patient_away_since <= cutoff,
                    )
                    .limit(self.batch)
                )
            ).all()
        for consultation_id in rows:
            try:
                await self.consultations.fire(consultation_id, Event.PATIENT_LEAVES, SYSTEM_ACTOR)
            except TelemedError:
                continue
            fired.add("left")

    # --- live sessions of tokens that expired ----------------------------------------------

    async def _ended_sessions(self, now: datetime, fired: Fired) -> None:
        while await announce_ended_tokens(self.db, self.clock, self.batch) >= self.batch:
            if not self.keep_going():
                return

    # --- R-SCH: the slot horizon moves forward ---------------------------------------------

    async def _slots(self, now: datetime, fired: Fired) -> None:
        """Cut slots from every doctor's hours up to `slot_horizon_days` ahead, hourly."""
        if self._slots_cut_at is not None and now - self._slots_cut_at < SLOT_REFRESH:
            return
        self._slots_cut_at = now
        async with self.db.read() as session:
            doctors = (await session.scalars(select(WorkingHours.doctor_id).distinct())).all()
        for doctor_id in doctors:
            await self.appointments.open_slots(doctor_id, self.settings.scheduler.slot_horizon_days)
        fired.add("slot_refresh")

    # --- the outbox ---------------------------------------------------------------------------

    async def _send_all(
        self, claimed: Sequence[Any], people: dict[str, Any], own_sms: set[str]
    ) -> list[tuple[str, str | None]]:
        """Build each message (times in the patient's zone) and deliver per channel. A push
        whose message has no SMS row of its own carries the patient's phone for the
        fallback."""
        by_channel: dict[str, list[tuple[str, OutboundMessage]]] = {}
        for note in claimed:
            person = people.get(note.recipient_id)
            target = person.phone if (person and note.channel == "sms") else note.recipient_id
            words = compose(note.kind, note.payload, person.timezone if person else None)
            fallback = None
            if note.channel == "push" and person is not None and _base(note) not in own_sms:
                fallback = person.phone
            by_channel.setdefault(note.channel, []).append(
                (
                    note.id,
                    OutboundMessage(
                        to=target,
                        text=words.text,
                        kind=note.channel,
                        idempotency_key=note.id,
                        title=words.title,
                        url=words.url,
                        fallback_to=fallback,
                    ),
                )
            )
        results: list[tuple[str, str | None]] = []
        for channel, batch in by_channel.items():
            results += await _deliver(self.senders[channel], batch)
        return results

    async def _dispatch(self, fired: Fired) -> None:
        """Send queued push/SMS messages, a batch at a time: claim (attempts + 1), send
        concurrently, then mark the accepted ones sent in one update."""
        while True:
            pending = (
                select(Notification.id)
                .where(
                    Notification.sent_at.is_(None),
                    Notification.channel.in_(tuple(self.senders)),
                    Notification.attempts < MAX_ATTEMPTS,
                )
                .order_by(Notification.created_at)
                .limit(self.batch)
            )
            async with self.db.write() as session:
                claimed = (
                    await session.execute(
                        update(Notification)
                        .where(
                            Notification.id.in_(pending.scalar_subquery()),
                            Notification.sent_at.is_(None),
                        )
                        .values(attempts=Notification.attempts + 1)
                        .returning(
                            Notification.id,
                            Notification.dedupe_key,
                            Notification.channel,
                            Notification.recipient_id,
                            Notification.kind,
                            Notification.payload,
                        )
                        .execution_options(synchronize_session=False)
                    )
                ).all()
                people = {
                    row.id: row
                    for row in (
                        await session.execute(
                            select(Patient.id, Patient.phone, Patient.timezone).where(
                                Patient.id.in_({c.recipient_id for c in claimed})
                            )
                        )
                    ).all()
                }
                pushes = [f"{_base(c)}:sms" for c in claimed if c.channel == "push"]
                own_sms = set()
                if pushes:
                    own_sms = {
                        key.rsplit(":", 1)[0]
                        for key in await session.scalars(
                            select(Notification.dedupe_key).where(
                                Notification.dedupe_key.in_(pushes)
                            )
                        )
                    }
            if not claimed:
                return
            results = await self._send_all(claimed, people, own_sms)
            sent = [note_id for note_id, error in results if error is None]
            failed = [{"b_id": note_id, "b_error": error} for note_id, error in results if error]
            async with self.db.write() as session:
                if sent:
                    await session.execute(
                        update(Notification)
                        .where(Notification.id.in_(sent))
                        .values(sent_at=self.clock.now())
                        .execution_options(synchronize_session=False)
                    )
                if failed:
                    await session.execute(
                        update(Notification)
                        .where(Notification.id == bindparam("b_id"))
                        .values(last_error=bindparam("b_error"))
                        .execution_options(synchronize_session=False),
                        failed,
                    )
            for note in claimed:
                fired.add(f"sent_{note.channel}")
            if len(claimed) < self.batch or not self.keep_going():
                return


async def _deliver(
    sender: Sender, batch: list[tuple[str, OutboundMessage]]
) -> list[tuple[str, str | None]]:
    """Hand one channel's batch to its sender: in one call if it can take many, else one by
    one with bounded concurrency. Returns (notification id, error or None)."""
    send_each = getattr(sender, "send_each", None)
    if send_each is not None:
        errors = await send_each([message for _, message in batch])
        return [(note_id, error) for (note_id, _), error in zip(batch, errors, strict=True)]
    send_many = getattr(sender, "send_many", None)
    if send_many is not None:
        try:
            await send_many([message for _, message in batch])
        except Exception as exc:
            log.warning("batch of %d failed: %s", len(batch), type(exc).__name__)
            return [(note_id, type(exc).__name__) for note_id, _ in batch]
        return [(note_id, None) for note_id, _ in batch]
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(note_id: str, message: OutboundMessage) -> tuple[str, str | None]:
        async with gate:
            try:
                await sender.send(message)
            except Exception as exc:
                log.warning(
                    "%s to %s failed: %s",
                    message.kind,
                    _who(message.kind, message.to),
                    type(exc).__name__,
                )
                return note_id, type(exc).__name__
        return note_id, None

    return list(await asyncio.gather(*(one(note_id, m) for note_id, m in batch)))


def _base(note: Any) -> str:
    """The message's key without its channel (`reminder:ID:push` -> `reminder:ID`)."""
    return str(note.dedupe_key).rsplit(":", 1)[0]


def _who(channel: str, target: str) -> str:
    return mask_phone(target) if channel == "sms" else target[:8]
