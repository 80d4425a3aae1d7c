"""The one place that queues messages to people: outbox rows, the in-app list and its event.

Every message is queued with `queue_notes` inside the transaction of the change it tells of:
one outbox row per channel (`push`, `sms`, `console`; unique dedupe key `KEY:CHANNEL`, so a
repeat of the same message fails with the change instead of sending twice), and for a patient
one `app` row, the entry of their notifications list, announced live as
`notification:new`. The scheduler's outbox dispatch sends the push and SMS rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.clock import Clock
from telemed.db import Database
from telemed.errors import NotFound
from telemed.events import UserMessage
from telemed.events import record as record_event
from telemed.models import Notification, Patient, new_id, table_of
from telemed.notify.messages import compose
from telemed.roles import Role

APP = "app"  # the in-app list: delivered when queued
DELIVERED_WHEN_QUEUED = frozenset({APP, "console"})
LIST_LIMIT = 100


@dataclass(frozen=True)
class Note:
    """One message: `key` names it once and for all (e.g. `reminder:APPOINTMENT`)."""

    key: str
    recipient_id: str
    kind: str
    payload: dict[str, Any]
    channels: tuple[str, ...] = ("push",)
    role: Role = Role.PATIENT


class Listed(Protocol):
    """What a list entry is made of: a stored Notification, or a row being queued."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def read_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class _Queued:
    """A row being queued, as `notification_item` reads it (no ORM instance built for it)."""

    id: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None = None


def notification_item(row: Listed, zone: str | None) -> dict[str, Any]:
    """An entry of the patient's list, as REST and `notification:new` give it."""
    words = compose(row.kind, row.payload, zone)
    return {
        "notification_id": row.id,
        "kind": row.kind,
        "title": words.title,
        "text": words.text,
        "url": words.url,
        "created_at": row.created_at.isoformat(),
        "read": row.read_at is not None,
        "appointment_id": row.payload.get("appointment_id"),
        "consultation_id": row.payload.get("consultation_id"),
    }


async def queue_notes(session: AsyncSession, now: datetime, notes: Sequence[Note]) -> None:
    """Queue messages in the outbox in `session`'s transaction (one prebuilt INSERT, no
    unit-of-work flush); patients also get an entry in their list and a live
    `notification:new`."""
    # Only words naming a time (a `starts_at`) need the patient's zone (notify.messages).
    patients = {
        n.recipient_id for n in notes if n.role is Role.PATIENT and "starts_at" in n.payload
    }
    zones: dict[str, str | None] = {}
    if patients:
        zones = {
            row.id: row.timezone
            for row in await session.execute(
                select(Patient.id, Patient.timezone).where(Patient.id.in_(patients))
            )
        }
    rows: list[dict[str, Any]] = []
    for note in notes:
        channels = note.channels + ((APP,) if note.role is Role.PATIENT else ())
        for channel in channels:
            row: dict[str, Any] = {
                "id": new_id(),
                "dedupe_key": f"{note.key}:{channel}",
                "recipient_role": note.role.value,
                "recipient_id": note.recipient_id,
                "channel": channel,
                "kind": note.kind,
                "payload": note.payload,
                "created_at": now,
                "sent_at": now if channel in DELIVERED_WHEN_QUEUED else None,
                "attempts": 0,
            }
            rows.append(row)
            if channel == APP:
                queued = _Queued(row["id"], note.kind, note.payload, now)
                item = notification_item(queued, zones.get(note.recipient_id))
                record_event(session, UserMessage(note.recipient_id, "notification:new", item))
    if rows:
        await session.execute(_INSERT, rows)


_INSERT = insert(table_of(Notification))


class NotificationService:
    """The patient's notifications list and its read marks."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def list_for(self, patient_id: str) -> tuple[list[dict[str, Any]], int]:
        """The newest entries first, and how many are unread."""
        async with self.db.read() as session:
            zone = await session.scalar(select(Patient.timezone).where(Patient.id == patient_id))
            mine = (Notification.recipient_id == patient_id, Notification.channel == APP)
            rows = (
                await session.scalars(
                    select(Notification)
                    .where(*mine)
                    .order_by(Notification.created_at.desc(), Notification.id.desc())
                    .limit(LIST_LIMIT)
                )
            ).all()
            unread = await session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(*mine, Notification.read_at.is_(None))
            )
        return [notification_item(row, zone) for row in rows], int(unread or 0)

    async def mark_read(self, patient_id: str, notification_id: str) -> None:
        """Mark one of my entries read; someone else's is `not_found`."""
        async with self.db.write() as session:
            row = await session.get(Notification, notification_id)
            if row is None or row.recipient_id != patient_id or row.channel != APP:
                raise NotFound("No such notification.")
            await session.execute(
                update(Notification)
                .where(Notification.id == notification_id, Notification.read_at.is_(None))
                .values(read_at=self.clock.now())
            )
