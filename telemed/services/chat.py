"""Consultation chat: persisted, ordered by id, replayed from the database on (re)join."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, select
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


async def read_history(
    session: AsyncSession, consultation_id: str, after_id: int = 0
) -> list[Message]:
    """ChatService.history within a session the caller holds (one read for a whole connect)."""
    params = {"consultation_id": consultation_id, "after_id": after_id}
    rows = (await session.execute(_HISTORY, params)).all()
    ids = [r.id for r in rows]
    attached: dict[int, list[AttachedDocument]] = {}
    if ids:
        links = (
            await session.execute(
                select(ChatMessageDocument.message_id, Document)
                .join(Document, Document.id == ChatMessageDocument.document_id)
                .where(ChatMessageDocument.message_id.in_(ids))
            )
        ).all()
        for message_id, doc in links:
            attached.setdefault(message_id, []).append(_attached(doc))
    return [
        Message(
            r.id,
            r.consultation_id,
            r.sender_role,
            r.sender_id,
            r.text,
            r.created_at,
            attached.get(r.id, []),
        )
        for r in rows
    ]
