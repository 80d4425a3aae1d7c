"""Patients connecting again share the write that clears their away deadlines (R-URG-2: the
place is kept while they are away, and coming back ends the deadline), on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from helpers import engine_events
from sqlalchemy import select
from test_consultations import add_patient, service

from telemed.clock import ManualClock
from telemed.consultation import Channel
from telemed.db import Database
from telemed.models import Consultation
from telemed.services.live_entry import AwayClearing


async def test_r_urg_2_patients_coming_back_at_once_share_one_write_each_told_their_own(
    any_db: Database, clock: ManualClock
) -> None:
    """Six patients away (after a restart, say) come back at the same moment: one write
    transaction clears all their deadlines, and each is told only the consultations they
    were away from; a patient with nothing to clear is told nothing."""
    svc = service(any_db, clock)
    away: dict[str, str] = {}
    for _ in range(6):
        patient = await add_patient(any_db, clock)
        away[patient] = (await svc.start(patient, Channel.VIDEO)).consultation.id
        await svc.patient_away(patient)
    present = await add_patient(any_db, clock)
    await svc.start(present, Channel.CHAT)
    clock.advance(timedelta(minutes=2))
    clearing = AwayClearing(any_db, clock)
    with engine_events(any_db, "commit") as commits:
        results = await asyncio.gather(*(clearing.clear(p) for p in [*away, present]))

    assert len(commits) == 1
    for patient, (when, cleared) in zip([*away, present], results, strict=True):
        assert when == clock.now()
        assert cleared == ({away[patient]} if patient in away else set())
    async with any_db.read() as session:
        rows = (
            await session.execute(
                select(Consultation.patient_away_since, Consultation.patient_seen_at).where(
                    Consultation.id.in_(list(away.values()))
                )
            )
        ).all()
    assert rows and all(since is None and seen == clock.now() for since, seen in rows)


async def test_r_urg_2_patients_arriving_during_a_write_share_the_next_one(
    db: Database, clock: ManualClock
) -> None:
    """Group commit: the first patient's write starts at once; patients arriving while it
    runs are cleared together by the next write, and nobody waits for a write that
    already began without them."""
    svc = service(db, clock)
    patients = [await add_patient(db, clock) for _ in range(5)]
    for patient in patients:
        await svc.start(patient, Channel.AUDIO)
        await svc.patient_away(patient)
    clearing = AwayClearing(db, clock)
    with engine_events(db, "commit") as commits:
        first = asyncio.ensure_future(clearing.clear(patients[0]))
        await asyncio.sleep(0)  # the first write has started
        rest = await asyncio.gather(*(clearing.clear(p) for p in patients[1:]))
        await first
    assert len(commits) == 2
    assert all(len(cleared) == 1 for _, cleared in [first.result(), *rest])


async def test_r_urg_2_two_tabs_of_one_patient_in_one_write_only_one_is_told(
    db: Database, clock: ManualClock
) -> None:
    """Two connections of the same patient share a write: one is told what it cleared,
    the other nothing (the counterpart hears one `peer:rejoined`; the second tab is a
    takeover, told as such), as when their writes ran one after the other."""
    svc = service(db, clock)
    patient = await add_patient(db, clock)
    cid = (await svc.start(patient, Channel.VIDEO)).consultation.id
    await svc.patient_away(patient)
    clearing = AwayClearing(db, clock)
    told = await asyncio.gather(clearing.clear(patient), clearing.clear(patient))
    assert sorted(cleared for _, cleared in told) == [set(), {cid}]
