"""What a connecting Socket.IO client is let in with, read at once.

A connect asks several questions: who is behind the token, whether a patient has accepted
the current consent, which consultations are open for them, and for each what its people
are shown (names, the appointment) and the chat since the client's last message. Asked one
read session each, that was five sessions per connect; here it is one, so a reconnect storm
of 10,000 clients costs 10,000 reads of the database instead of 50,000 (docs/performance.md).
A patient coming back to consultations that marked them away (every patient after a
restart) also has the deadlines cleared by a write that they share with the other patients
connecting at that moment (`AwayClearing`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from telemed.clock import Clock
from telemed.consultation import State
from telemed.db import Database
from telemed.errors import Unauthorized
from telemed.models import Consultation
from telemed.roles import Role
from telemed.services.auth import Caller, caller_in
from telemed.services.chat import Message, read_history
from telemed.services.consent import accepted_in
from telemed.services.consultations import clear_away_of, open_in
from telemed.services.live_facts import Facts, read_facts


@dataclass(frozen=True)
class Opened:
    """An open consultation as the connecting client is given it back (`facts` and
    `messages` None when they are to be read when sent)."""

    row: Consultation
    facts: Facts | None
    messages: list[Message] | None


@dataclass(frozen=True)
class Entry:
    """Who connects, whether they may (a patient needs the current consent), and what is
    open for them. `rejoined`: the consultations whose away deadline this connect cleared
    (their counterparts hear `peer:rejoined`). A booked consultation waiting for the patient
    to connect gets `back=True` and no `opened`: `patient_back` moves it on through the
    state machine, then reads afresh."""

    caller: Caller
    consented: bool
    back: bool
    opened: list[Opened]
    rejoined: frozenset[str] = frozenset()


Cleared = asyncio.Future[tuple[datetime, set[str]]]  # when, and what a patient was away from


class AwayClearing:
    """Clears the away deadlines of patients who connect again, many in one write (group
    commit): after a restart every patient comes back at once, and a write each queued
    them one by one behind SQLite's single writer, two trips to its thread apiece
    (docs/performance.md). The first patient's write starts at once; those arriving while
    it runs share the next one."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db, self._clock = db, clock
        self._waiting: dict[str, list[Cleared]] = {}
        self._writer: asyncio.Task[None] | None = None

    async def clear(self, patient_id: str) -> tuple[datetime, set[str]]:
        """When the deadlines were cleared, and the consultations the patient was away
        from; the write's error, if it failed."""
        future: Cleared = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(patient_id, []).append(future)
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_all())
        return await future

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                now = self._clock.now()
                try:
                    async with self._db.write() as session:
                        cleared = await clear_away_of(session, list(batch), now)
                except Exception as exc:
                    for future in chain.from_iterable(batch.values()):
                        if not future.done():  # (done: its connect was cancelled meanwhile)
                            future.set_exception(exc)
                    continue
                for patient_id, futures in batch.items():
                    # Told once: a second tab in the same write finds nothing cleared, so
                    # the counterpart hears one `peer:rejoined` (the takeover, its own).
                    away_from = cleared.get(patient_id, set())
                    for future in futures:
                        if not future.done():
                            future.set_result((now, away_from))
                            away_from = set()
        finally:
            self._writer = None


class Entrance:
    """Where connecting clients are let in: `enter` for each, away deadlines cleared in
    shared writes."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock
        self.away = AwayClearing(db, clock)

    async def enter(self, token: str | None, last_message_id: int) -> Entry:
        """A connect's answers in one read session (and, for a patient coming back, a
        shared write that clears the away deadlines); Unauthorized for a missing or bad
        token."""
        if not token:
            raise Unauthorized()
        async with self.db.read() as session:
            caller = await caller_in(session, token, self.clock.now())
            patient = caller.role is Role.PATIENT
            if patient and await accepted_in(session, caller.id) is None:
                return Entry(caller, consented=False, back=False, opened=[])
            rows = await open_in(session, caller.id, caller.role)
            if patient and any(_waits_for_patient(row) for row in rows):
                return Entry(caller, consented=True, back=True, opened=[])
            opened = await _opened(session, rows, last_message_id)
        away = {row.id for row in rows if row.patient_away_since is not None}
        if not (patient and away):
            return Entry(caller, consented=True, back=False, opened=opened)
        now, cleared = await self.away.clear(caller.id)
        rejoined = frozenset(cleared)
        if rejoined != away:  # something moved since the read: read again
            async with self.db.read() as session:
                rows = await open_in(session, caller.id, caller.role)
                back = any(_waits_for_patient(row) for row in rows)
                opened = [] if back else await _opened(session, rows, last_message_id)
            return Entry(caller, consented=True, back=back, opened=opened, rejoined=rejoined)
        for row in rows:  # as the write left them
            if row.id in rejoined:
                set_committed_value(row, "patient_away_since", None)
                set_committed_value(row, "patient_seen_at", now)
        return Entry(caller, consented=True, back=False, opened=opened, rejoined=rejoined)


async def _opened(session: AsyncSession, rows: list[Consultation], after: int) -> list[Opened]:
    return [
        Opened(row, await read_facts(session, row), await read_history(session, row.id, after))
        for row in rows
    ]


def _waits_for_patient(row: Consultation) -> bool:
    return row.state == State.WAITING_PATIENT.value
