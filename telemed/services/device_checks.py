"""The patient's last connection check (R-DEV), kept in one row per patient."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from telemed.clock import Clock
from telemed.db import Database
from telemed.devices import CallMeasure, Verdict, browser_label, os_label
from telemed.models import DeviceCheck


def platform_text(verdict: Verdict) -> str:
    """`Windows 10/11, Chrome 124`: what the staff need to know of the patient's device."""
    parts = [os_label(verdict.platform), browser_label(verdict.platform)]
    return ", ".join(p for p in parts if p)[:100] or "unknown"


async def save_check(
    db: Database,
    clock: Clock,
    patient_id: str,
    channel: str,
    verdict: Verdict,
    language: str,
    call: CallMeasure | None,
) -> datetime:
    """Replace the patient's last check with this one (an upsert, safe against a second
    check saved at the same moment); returns when it was checked."""
    now = clock.now()
    values: dict[str, Any] = {
        "patient_id": patient_id,
        "channel": channel,
        "ok": verdict.ok,
        "failing": verdict.failing,
        "checks": [asdict(c) for c in verdict.checks],
        "call": asdict(call) if call is not None else None,
        "platform": platform_text(verdict),
        "language": language,
        "checked_at": now,
    }
    async with db.write() as session:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(DeviceCheck).values(**values)
        update = {k: statement.excluded[k] for k in values if k != "patient_id"}
        await session.execute(
            statement.on_conflict_do_update(index_elements=["patient_id"], set_=update)
        )
    return now


async def last_check(db: Database, patient_id: str) -> DeviceCheck | None:
    """The patient's last saved check, if any."""
    async with db.read() as session:
        return (
            await session.scalars(select(DeviceCheck).where(DeviceCheck.patient_id == patient_id))
        ).one_or_none()
