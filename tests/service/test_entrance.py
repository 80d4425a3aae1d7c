"""Connects arriving together are read in one session (telemed/services/live_entry.py):
each gets exactly what it would get read alone, for a few statements in all, on both
backends. R-CONSENT-1: a patient without the current consent is not let in."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from helpers import engine_events
from sqlalchemy import insert, update
from test_consultations import add_patient, add_staff, service

from telemed.clock import ManualClock
from telemed.consent import current_version
from telemed.consultation import Channel, State
from telemed.db import Database
from telemed.errors import Unauthorized
from telemed.models import AuthToken, ChatMessage, Consultation, new_id
from telemed.roles import Role
from telemed.security import new_token, token_digest
from telemed.services.chat import HISTORY_LIMIT, ChatService, read_histories, read_history
from telemed.services.consent import ConsentService
from telemed.services.live_entry import Entrance, Entry


async def token_of(
    db: Database, clock: ManualClock, user_id: str, role: Role, ttl: int = 60
) -> str:
    token = new_token()
    async with db.write() as session:
        session.add(
            AuthToken(
                id=new_id(),
                token_hash=token_digest(token),
                subject_id=user_id,
                role=role.value,
                created_at=clock.now(),
                expires_at=clock.now() + timedelta(minutes=ttl),
            )
        )
    return token


async def consented(db: Database, clock: ManualClock) -> str:
    patient = await add_patient(db, clock)
    await ConsentService(db, clock).accept(patient, current_version(), "127.0.0.1", "test")
    return patient


def seen(entry: Entry | BaseException) -> object:
    """What a connect is given, comparable between two reads."""
    if isinstance(entry, BaseException):
        return (type(entry).__name__, str(entry))
    opened = [
        (o.row.id, o.row.state, o.facts, [m.message_id for m in o.messages or []])
        for o in entry.opened
    ]
    return (entry.caller, entry.consented, entry.back, opened, entry.rejoined)


async def test_r_consent_1_connects_read_together_get_what_each_would_get_alone(
    any_db: Database, clock: ManualClock
) -> None:
    """A patient with a consultant and a chat, one waiting in the queue, one without the
    current consent, one a booked consultation waits for, their consultant, an expired and
    an unknown token, and a second tab: read together in one batch of about six statements
    (a connect alone runs four or five), and each answer is what it gets alone."""
    svc, chat = service(any_db, clock), ChatService(any_db, clock)
    consultant = await add_staff(any_db, clock, Role.CONSULTANT)
    with_consultant, waiting, booked = [await consented(any_db, clock) for _ in range(3)]
    no_consent = await add_patient(any_db, clock)
    talking = (await svc.start(with_consultant, Channel.VIDEO)).consultation.id
    await svc.accept(consultant, talking)
    for text in ("one", "two", "three"):
        await chat.post(talking, "patient", with_consultant, text)
    await svc.start(waiting, Channel.CHAT)
    waited = (await svc.start(booked, Channel.AUDIO)).consultation.id
    async with any_db.write() as session:
        await session.execute(
            update(Consultation)
            .where(Consultation.id == waited)
            .values(state=State.WAITING_PATIENT.value)
        )
    tokens = [
        await token_of(any_db, clock, with_consultant, Role.PATIENT),
        await token_of(any_db, clock, waiting, Role.PATIENT),
        await token_of(any_db, clock, no_consent, Role.PATIENT),
        await token_of(any_db, clock, booked, Role.PATIENT),
        await token_of(any_db, clock, consultant.id, Role.CONSULTANT),
        await token_of(any_db, clock, waiting, Role.PATIENT, ttl=-1),
        "not-a-token",
    ]
    asks = [(token, 0) for token in tokens] + [(tokens[0], 2)]  # a tab that saw two messages

    async def entry_of(entrance: Entrance, token: str, after: int) -> Entry | BaseException:
        try:
            return await entrance.enter(token, after)
        except Unauthorized as exc:
            return exc

    alone = Entrance(any_db, clock, batch=1)
    one_by_one = [seen(await entry_of(alone, token, after)) for token, after in asks]
    shared = Entrance(any_db, clock)
    with engine_events(any_db, "before_cursor_execute") as statements:
        together = await asyncio.gather(*(entry_of(shared, t, a) for t, a in asks))

    assert [seen(e) for e in together] == one_by_one
    assert len(statements) <= 6  # tokens, consents, open, names and legs, chat, attachments
    entries = [e for e in together if isinstance(e, Entry)]
    assert [(e.consented, e.back, len(e.opened)) for e in entries] == [
        (True, False, 1),  # with the consultant, the chat given back
        (True, False, 1),  # waiting in the queue
        (False, False, 0),  # no consent: refused (R-CONSENT-1)
        (True, True, 0),  # a booked consultation waits for them: moved on, then read afresh
        (True, False, 1),  # the consultant: their patient
        (True, False, 1),  # the second tab
    ]
    assert [m.text for m in entries[0].opened[0].messages or []] == ["one", "two", "three"]
    assert [m.text for m in entries[5].opened[0].messages or []] == ["three"]
    assert entries[0].opened[0].facts == entries[4].opened[0].facts
    assert entries[4].opened[0].facts is not None
    assert entries[4].opened[0].facts.counterpart == {
        "role": "consultant",
        "name": f"consultant {consultant.id[:4]}",
    }
    refused = [e for e in together if isinstance(e, BaseException)]
    assert [str(e) for e in refused] == [
        "The session has expired; log in again.",
        "The session is not valid; log in again.",
    ]


async def test_chat_histories_read_together_are_exact_past_the_limit(
    any_db: Database, clock: ManualClock
) -> None:
    """Several consultations' chats in one read, each client from its own last message: a
    client further on in a chat longer than the limit is read again on its own, so every
    answer is what read_history gives it alone."""
    svc = service(any_db, clock)
    long, short = [
        (await svc.start(await add_patient(any_db, clock), Channel.CHAT)).consultation.id
        for _ in range(2)
    ]
    rows = [
        {"consultation_id": cid, "sender_role": "patient", "sender_id": "p", "text": f"m{n}"}
        for cid, count in ((long, 2 * HISTORY_LIMIT), (short, 3))
        for n in range(count)
    ]
    async with any_db.write() as session:
        await session.execute(insert(ChatMessage).values(created_at=clock.now()), rows)
    async with any_db.read() as session:
        first = await read_history(session, long)
        ids = [m.message_id for m in first]
        wants = [(long, 0), (long, ids[300]), (short, 0), (long, ids[-1] + 10**6)]
        together = await read_histories(session, wants)
        alone = {want: await read_history(session, *want) for want in wants}

    assert len(first) == HISTORY_LIMIT
    assert together == alone
    assert len(together[(long, ids[300])]) == HISTORY_LIMIT  # past the first read's end
    assert together[(long, ids[300])][0].message_id == ids[301]
    assert [m.text for m in together[(short, 0)]] == ["m0", "m1", "m2"]
    assert together[(long, ids[-1] + 10**6)] == []
