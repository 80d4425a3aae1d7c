"""Consultation chat: persisted, ordered by id, replayed from the database on (re)join."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.clock import Clock
from telemed.db import Database
from telemed.errors import ValidationFailed
from telemed.models import ChatMessage, ChatMessageDocument, Document, table_of

MAX_TEXT = 4000
HISTORY_LIMIT = 500


@dataclass(frozen=True)
class AttachedDocument:
    document_id: str
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Message:
    """A chat message as clients receive it (`chat:message`)."""

    message_id: int
    consultation_id: str
    sender_role: str
    sender_id: str
    text: str
    created_at: datetime
    documents: list[AttachedDocument] = field(default_factory=list)

    def to_event(self) -> dict[str, object]:
        return {
            "message_id": str(self.message_id),
            "consultation_id": self.consultation_id,
            "sender_role": self.sender_role,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
            "documents": [
                {
                    "document_id": d.document_id,
                    "filename": d.filename,
                    "content_type": d.content_type,
                    "size": d.size,
                }
                for d in self.documents
            ],
        }


def _attached(doc: Document) -> AttachedDocument:
    return AttachedDocument(doc.id, doc.filename, doc.content_type, doc.size)


class ChatService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def post(
        self,
        consultation_id: str,
        sender_role: str,
        sender_id: str,
        text: str,
        documents: list[Document] | None = None,
    ) -> Message:
        """Store a message (with already-checked documents) and return it as sent."""
        text = text.strip()
        if not text and not documents:
            raise ValidationFailed("A message needs text or a document.", field="text")
        if len(text) > MAX_TEXT:
            raise ValidationFailed(f"A message holds at most {MAX_TEXT} characters.", field="text")
        now = self.clock.now()
        async with self.db.write() as session:
            row = ChatMessage(
                consultation_id=consultation_id,
                sender_role=sender_role,
                sender_id=sender_id,
                text=text,
                created_at=now,
            )
            session.add(row)
            await session.flush()
            for doc in documents or []:
                session.add(ChatMessageDocument(message_id=row.id, document_id=doc.id))
        return Message(
            row.id,
            consultation_id,
            sender_role,
            sender_id,
            text,
            now,
            [_attached(d) for d in documents or []],
        )

    async def history(self, consultation_id: str, after_id: int = 0) -> list[Message]:
        """Messages after `after_id`, oldest first: what a (re)joining client missed."""
        async with self.db.read() as session:
            return await read_history(session, consultation_id, after_id)


_MESSAGES = table_of(ChatMessage)
_HISTORY = (  # built once, Core columns (no ORM loading): every connect and accept reads it
    select(
        _MESSAGES.c.id,
        _MESSAGES.c.consultation_id,
        _MESSAGES.c.sender_role,
        _MESSAGES.c.sender_id,
        _MESSAGES.c.text,
        _MESSAGES.c.created_at,
    )
    .where(
        _MESSAGES.c.consultation_id == bindparam("consultation_id"),
        _MESSAGES.c.id > bindparam("after_id"),
    )
    .order_by(_MESSAGES.c.id)
    .limit(HISTORY_LIMIT)
)


# The same for several consultations at once (connects arriving together): the first
# HISTORY_LIMIT messages of each after one shared `after_id`.
_NUMBERED = (
    select(
        *_HISTORY.selected_columns,
        func.row_number()
        .over(partition_by=_MESSAGES.c.consultation_id, order_by=_MESSAGES.c.id)
        .label("n"),
    )
    .where(
        _MESSAGES.c.consultation_id.in_(bindparam("consultations", expanding=True)),
        _MESSAGES.c.id > bindparam("after_id"),
    )
    .subquery()
)
_HISTORIES = (
    select(*(c for c in _NUMBERED.c if c.name != "n"))
    .where(_NUMBERED.c.n <= HISTORY_LIMIT)
    .order_by(_NUMBERED.c.consultation_id, _NUMBERED.c.id)
)

Want = tuple[str, int]  # a consultation, and the last message id the client has


async def read_history(
    session: AsyncSession, consultation_id: str, after_id: int = 0
) -> list[Message]:
    """ChatService.history within a session the caller holds (one read for a whole connect)."""
    want = (consultation_id, after_id)
    return (await read_histories(session, [want]))[want]


async def read_histories(
    session: AsyncSession, wants: Collection[Want]
) -> dict[Want, list[Message]]:
    """read_history for several consultations in two statements. They are read after the
    smallest `after_id` asked; a client further on whose consultation filled the limit is
    read again on its own, so each gets exactly what read_history would give it."""
    if not wants:
        return {}
    consultations = sorted({cid for cid, _ in wants})
    least = min(after for _, after in wants)
    if len(consultations) == 1:
        params: dict[str, Any] = {"consultation_id": consultations[0], "after_id": least}
        rows = (await session.execute(_HISTORY, params)).all()
    else:
        params = {"consultations": consultations, "after_id": least}
        rows = (await session.execute(_HISTORIES, params)).all()
    by_consultation: dict[str, list[Any]] = {}
    for row in rows:
        by_consultation.setdefault(row.consultation_id, []).append(row)
    picked: dict[Want, list[Any]] = {}
    for cid, after in wants:
        read = by_consultation.get(cid, [])
        if after > least and len(read) >= HISTORY_LIMIT:  # more may follow what was read
            params = {"consultation_id": cid, "after_id": after}
            picked[(cid, after)] = list((await session.execute(_HISTORY, params)).all())
        else:
            picked[(cid, after)] = [r for r in read if r.id > after]
    attached = await _attachments_of(session, {r.id for rs in picked.values() for r in rs})
    return {
        want: [
            Message(
                r.id,
                r.consultation_id,
                r.sender_role,
                r.sender_id,
                r.text,
                r.created_at,
                attached.get(r.id, []),
            )
            for r in rs
        ]
        for want, rs in picked.items()
    }


async def _attachments_of(
    session: AsyncSession, message_ids: Collection[int]
) -> dict[int, list[AttachedDocument]]:
    attached: dict[int, list[AttachedDocument]] = {}
    if message_ids:
        links = (
            await session.execute(
                select(ChatMessageDocument.message_id, Document)
                .join(Document, Document.id == ChatMessageDocument.document_id)
                .where(ChatMessageDocument.message_id.in_(sorted(message_ids)))
            )
        ).all()
        for message_id, doc in links:
            attached.setdefault(message_id, []).append(_attached(doc))
    return attached
