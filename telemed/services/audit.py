"""The audit log: who did what to which object, when, with what outcome.

Callers pass ids and codes only: never tokens, codes or medical text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from telemed.models import AuditEntry, table_of


@dataclass(frozen=True)
class Who:
    """The actor of an audited action, with the address it came from."""

    role: str
    id: str | None
    client_addr: str | None = None


def record(
    session: AsyncSession,
    *,
    at: datetime,
    who: Who,
    action: str,
    object_type: str,
    object_id: str | None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit entry to the caller's transaction (so it commits with the change)."""
    session.add(AuditEntry(**_columns(at, who, action, object_type, object_id, outcome, detail)))


_INSERT = insert(table_of(AuditEntry))


async def write_entry(
    session: AsyncSession,
    *,
    at: datetime,
    who: Who,
    action: str,
    object_type: str,
    object_id: str | None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """`record`, written at once by a prebuilt INSERT: no unit-of-work flush, for hot paths
    (a consultation's moves)."""
    entry = _columns(at, who, action, object_type, object_id, outcome, detail)
    await session.execute(_INSERT, entry)


def _columns(
    at: datetime,
    who: Who,
    action: str,
    object_type: str,
    object_id: str | None,
    outcome: str,
    detail: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "at": at,
        "actor_role": who.role,
        "actor_id": who.id,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "outcome": outcome,
        "client_addr": who.client_addr,
        "detail": detail,
    }
