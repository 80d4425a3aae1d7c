"""Ends of tokens that nobody announced: expiries, and revocations made by another process.

A logout or a disabled account tells live sessions in its own transaction; a token that
simply expires has no such moment, so the scheduler treats `expires_at` as a deadline and
announces each end once (`auth_tokens.ended_at`), also across restarts and leader changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from telemed.clock import Clock
from telemed.db import Database
from telemed.events import AccessEnded, EndReason
from telemed.events import record as record_event
from telemed.models import AuthToken


async def announce_ended_tokens(db: Database, clock: Clock, limit: int = 500) -> int:
    """Mark ended tokens as told and tell their live sessions; returns how many."""
    now = clock.now()
    async with db.write() as session:
        due = (
            select(AuthToken.id)
            .where(
                AuthToken.ended_at.is_(None),
                (AuthToken.expires_at <= now) | AuthToken.revoked_at.is_not(None),
            )
            .limit(limit)
        )
        ended = (
            await session.execute(
                update(AuthToken)
                .where(AuthToken.id.in_(due.scalar_subquery()), AuthToken.ended_at.is_(None))
                .values(ended_at=now)
                .returning(AuthToken.id, AuthToken.subject_id, AuthToken.revoked_at)
                .execution_options(synchronize_session=False)
            )
        ).all()
        for token_id, subject_id, revoked_at in ended:
            reason = EndReason.EXPIRED if revoked_at is None else EndReason.LOGOUT
            record_event(session, AccessEnded(subject_id, reason, token_id))
    return len(ended)


async def next_token_end(db: Database) -> datetime | None:
    """When the next live token expires."""
    async with db.read() as session:
        return await session.scalar(
            select(func.min(AuthToken.expires_at)).where(AuthToken.ended_at.is_(None))
        )
