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
from collections.abc import Sequence
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
from telemed.services.auth import Caller, callers_in
from telemed.services.chat import Message, read_histories
from telemed.services.consent import consented_in
from telemed.services.consultations import clear_away_of, open_of
from telemed.services.live_facts import Facts, read_facts_of


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


BATCH = 256  # connects read together at most (the statements' IN lists stay short)
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
    """Where connecting clients are let in: the connects arriving together are read in one
    session (a group read, like AwayClearing's group commit: the first starts at once,
    those arriving while it runs share the next, at most `batch` each), away deadlines
    cleared in shared writes."""

    def __init__(self, db: Database, clock: Clock, batch: int = BATCH) -> None:
        self.db, self.clock, self.batch = db, clock, batch
        self.away = AwayClearing(db, clock)
        self._asks: list[tuple[str, int, asyncio.Future[Entry]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def enter(self, token: str | None, last_message_id: int) -> Entry:
        """A connect's answers, read with the others arriving at the same time (and, for a
        patient coming back, a shared write that clears the away deadlines); Unauthorized
        for a missing or bad token."""
        if not token:
            raise Unauthorized()
        entry = await self._read(token, last_message_id)
        away = {o.row.id for o in entry.opened if o.row.patient_away_since is not None}
        if entry.caller.role is not Role.PATIENT or not away:
            return entry
        now, cleared = await self.away.clear(entry.caller.id)
        rejoined = frozenset(cleared)
        if rejoined != away:  # something moved since the read: read again
            again = await self._read(token, last_message_id)
            return Entry(again.caller, again.consented, again.back, again.opened, rejoined)
        for opened in entry.opened:  # as the write left them
            if opened.row.id in rejoined:
                set_committed_value(opened.row, "patient_away_since", None)
                set_committed_value(opened.row, "patient_seen_at", now)
        return Entry(entry.caller, True, False, entry.opened, rejoined)

    async def _read(self, token: str, last_message_id: int) -> Entry:
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._asks.append((token, last_message_id, future))
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read_all())
        return await future

    async def _read_all(self) -> None:
        try:
            while self._asks:
                batch, self._asks = self._asks[: self.batch], self._asks[self.batch :]
                asks = [(token, after) for token, after, _ in batch]
                try:
                    async with self.db.read() as session:
                        answers = await _entries(session, asks, self.clock.now())
                except Exception as exc:
                    answers = [exc] * len(batch)
                for (_, _, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # its connect was cancelled meanwhile
                        continue
                    if isinstance(answer, Entry):
                        future.set_result(answer)
                    else:
                        future.set_exception(answer)
        finally:
            self._reader = None


async def _entries(
    session: AsyncSession, asks: Sequence[tuple[str, int]], now: datetime
) -> list[Entry | Exception]:
    """The entries of connects read together: about six statements, however many."""
    callers = await callers_in(session, {token for token, _ in asks}, now)
    valid = [c for c in callers.values() if isinstance(c, Caller)]
    consented = await consented_in(session, {c.id for c in valid if c.role is Role.PATIENT})
    let_in = [c for c in valid if c.role is not Role.PATIENT or c.id in consented]
    open_rows = await open_of(
        session,
        {c.id for c in let_in if c.role is Role.PATIENT},
        {c.id for c in let_in if c.role is not Role.PATIENT},
    )
    waited_for = {  # patients a booked consultation waits for: patient_back reads afresh
        user for user, rows in open_rows.items() if any(_waits_for_patient(r) for r in rows)
    }
    shown = {
        row.id: row for user, rows in open_rows.items() if user not in waited_for for row in rows
    }
    facts = await read_facts_of(session, list(shown.values()))
    wants = {
        (row.id, after)
        for token, after in asks
        if isinstance(caller := callers[token], Caller) and caller.id not in waited_for
        for row in open_rows.get(caller.id, [])
    }
    histories = await read_histories(session, wants)
    entries: list[Entry | Exception] = []
    for token, after in asks:
        caller = callers[token]
        if not isinstance(caller, Caller):
            entries.append(caller)
        elif caller.role is Role.PATIENT and caller.id not in consented:
            entries.append(Entry(caller, consented=False, back=False, opened=[]))
        elif caller.id in waited_for:
            entries.append(Entry(caller, consented=True, back=True, opened=[]))
        else:
            rows = open_rows.get(caller.id, [])
            opened = [Opened(r, facts[r.id], histories[(r.id, after)]) for r in rows]
            entries.append(Entry(caller, consented=True, back=False, opened=opened))
    return entries


def _waits_for_patient(row: Consultation) -> bool:
    return row.state == State.WAITING_PATIENT.value
