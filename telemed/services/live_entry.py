"""What a connecting Socket.IO client is let in with, read at once.

A connect asks several questions: who is behind the token, whether a patient has accepted
the current consent, which consultations are open for them, and for each what its people
are shown (names, the appointment) and the chat since the client's last message. Asked one
read session each, that was five sessions per connect; here it is one, so a reconnect storm
of 10,000 clients costs 10,000 reads of the database instead of 50,000 (docs/performance.md).
A patient coming back to consultations that marked them away (every patient after a
restart) adds one write, which clears the deadlines and reads the rest afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from telemed.services.consultations import clear_away_in, open_in
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


async def enter(db: Database, clock: Clock, token: str | None, last_message_id: int) -> Entry:
    """A connect's answers in one read session (and, for a patient coming back, one short
    write that clears the away deadlines); Unauthorized for a missing or bad token."""
    if not token:
        raise Unauthorized()
    async with db.read() as session:
        caller = await caller_in(session, token, clock.now())
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
    now = clock.now()
    async with db.write() as session:
        rejoined = frozenset(await clear_away_in(session, caller.id, now))
        if rejoined != away:  # something moved since the read: read again, in this transaction
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
