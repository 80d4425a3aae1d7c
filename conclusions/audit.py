"""Reading the audit log back: who read or wrote a conclusion, a document or a case, and when."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from telemed.db import Database
from telemed.models import AuditEntry

MAX_LIMIT = 1000


async def list_entries(
    db: Database,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    limit: int = 100,
) -> Sequence[AuditEntry]:
    """The newest audit entries, optionally of one object type and object id."""
    query = select(AuditEntry)
    if object_type is not None:
        query = query.where(AuditEntry.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditEntry.object_id == object_id)
    async with db.read() as session:
        rows = await session.scalars(
            query.order_by(AuditEntry.id.desc()).limit(min(limit, MAX_LIMIT))
        )
        return rows.all()
