"""Conclusions over the REST API on real databases (R-CONCL-1): only the consultation's doctor
writes, drafts change in place and stay hidden from the patient, a signed version never
changes and a correction is a new version with a reason, the doctor's console lists what is
pending and overdue, and every read and write is audited."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import pytest
from appkit import Running
from conclusion_kit import (
    ADVICE,
    FINDINGS,
    MINUTE,
    OTHER_PHONE,
    audit_of,
    cast,
    finished_consultation,
    get_json,
    patient,
    staff,
    write,
)
from sqlalchemy import select

from telemed.consultation import Channel
from telemed.models import Conclusion
from telemed.roles import Role


async def versions(app: Running, consultation_id: str) -> list[Conclusion]:
    async with app.services.db.read() as session:
        rows = await session.scalars(
            select(Conclusion)
            .where(Conclusion.consultation_id == consultation_id)
            .order_by(Conclusion.version)
        )
        return list(rows)


async def test_the_doctor_drafts_edits_and_signs_and_the_patient_sees_only_the_signed(
    any_db_url: str, start_app: object
) -> None:
    """R-CONCL-1: a draft changes in place and is not shown; signed, it is the patient's."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    c = await cast(app)
    cid = await finished_consultation(c)

    status, draft = await write(app, c.therapist, cid, text="черновик")
    assert status == 200, draft
    assert (draft["status"], draft["version"], draft["text"]) == ("draft", 1, "черновик")
    assert draft["signed_at"] is None and draft["latest_signed_id"] is None

    status, _ = await get_json(app, c.patient, f"/api/v1/conclusions/{draft['conclusion_id']}")
    assert status == 404  # a draft is not shown to the patient

    app.clock.advance(MINUTE)
    status, edited = await write(app, c.therapist, cid, follow_up="Повторный осмотр через 3 дня")
    assert status == 200
    assert edited["conclusion_id"] == draft["conclusion_id"] and edited["version"] == 1
    assert (edited["text"], edited["follow_up"]) == (FINDINGS, "Повторный осмотр через 3 дня")

    status, signed = await write(app, c.therapist, cid, sign=True)
    assert status == 200
    assert signed["conclusion_id"] == draft["conclusion_id"]
    assert signed["status"] == "signed" and signed["signed_at"] is not None
    assert signed["follow_up"] == ""  # each save carries the whole text

    status, seen = await get_json(app, c.patient, f"/api/v1/conclusions/{signed['conclusion_id']}")
    assert status == 200
    assert (seen["text"], seen["recommendations"], seen["status"]) == (FINDINGS, ADVICE, "signed")
    assert seen["doctor_name"] == "therapist"
    assert seen["latest_signed_id"] == signed["conclusion_id"]
    assert len(await versions(app, cid)) == 1


async def test_a_signed_conclusion_cannot_be_changed_in_place_only_corrected_with_a_reason(
    any_db_url: str, start_app: object
) -> None:
    """R-CONCL-1: signed is immutable; a correction is version 2 with a reason; v1 is kept."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    c = await cast(app)
    cid = await finished_consultation(c)
    _, first = await write(app, c.therapist, cid, sign=True)

    status, refused = await write(app, c.therapist, cid, text="исправлено без причины")
    assert status == 409 and refused["error"]["code"] == "already_signed"
    status, refused = await write(app, c.therapist, cid, text="подпись заново", sign=True)
    assert status == 409 and refused["error"]["code"] == "already_signed"
    (only,) = await versions(app, cid)
    assert (only.findings, only.status) == (FINDINGS, "signed")

    app.clock.advance(5 * MINUTE)
    status, second = await write(
        app, c.therapist, cid, text="Уточнённый диагноз", sign=True, reason="опечатка в диагнозе"
    )
    assert status == 200, second
    assert second["version"] == 2 and second["status"] == "signed"
    assert second["supersedes_id"] == first["conclusion_id"]
    assert second["reason"] == "опечатка в диагнозе"

    old, new = await versions(app, cid)
    assert (old.id, old.findings, old.status, old.signed_at) == (
        first["conclusion_id"],
        FINDINGS,
        "signed",
        app.clock.now() - 5 * MINUTE,
    )
    assert new.findings == "Уточнённый диагноз"

    status, seen_old = await get_json(app, c.patient, f"/api/v1/conclusions/{old.id}")
    assert status == 200 and seen_old["text"] == FINDINGS
    assert seen_old["latest_signed_id"] == new.id  # the patient is told a newer one exists


async def test_a_correction_can_be_drafted_first_and_the_patient_keeps_the_signed_one_meanwhile(
    app: Running,
) -> None:
    """R-CONCL-1: a draft of version 2 (with its reason) is hidden until it is signed."""
    c = await cast(app)
    cid = await finished_consultation(c)
    _, first = await write(app, c.therapist, cid, sign=True)
    status, draft2 = await write(app, c.therapist, cid, text="v2 черновик", reason="уточнение")
    assert status == 200 and (draft2["version"], draft2["status"]) == (2, "draft")
    assert draft2["latest_signed_id"] == first["conclusion_id"]

    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    (event,) = cal["events"]
    assert event["conclusion"]["conclusion_id"] == first["conclusion_id"]

    status, signed2 = await write(app, c.therapist, cid, text="v2", sign=True)
    assert status == 200 and signed2["conclusion_id"] == draft2["conclusion_id"]
    assert signed2["reason"] == "уточнение"  # kept from the draft
    _, cal = await get_json(app, c.patient, "/api/v1/calendar")
    assert cal["events"][0]["conclusion"]["conclusion_id"] == signed2["conclusion_id"]
    assert cal["events"][0]["conclusion"]["version"] == 2


async def test_another_doctor_cannot_write_the_conclusion_and_the_refusal_is_audited(
    any_db_url: str, start_app: object
) -> None:
    """R-CONCL-1: only the doctor who led the consultation's doctor leg writes it."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    c = await cast(app)
    cid = await finished_consultation(c)
    other = await staff(app, Role.THERAPIST, "therapist-2")
    specialist = await staff(app, Role.SPECIALIST)

    for intruder in (other, specialist, c.consultant, c.patient):
        status, body = await write(app, intruder, cid, sign=True)
        assert status == 403, body
        assert body["error"]["code"] == "forbidden"
    assert await versions(app, cid) == []

    refused = await audit_of(app, "consultation", cid)
    writes = [(e.actor_id, e.action, e.outcome) for e in refused if e.action == "conclusion_write"]
    # The consultant and the patient are refused by role before reaching the rules.
    assert writes == [
        (other.id, "conclusion_write", "forbidden"),
        (specialist.id, "conclusion_write", "forbidden"),
    ]

    status, _ = await write(app, c.therapist, cid)
    assert status == 200
    status, body = await write(app, other, cid, text="чужая правка")
    assert status == 403  # not the other doctor's draft either


async def test_another_patient_cannot_read_the_conclusion_nor_an_admin(app: Running) -> None:
    """R-CONCL-1: a conclusion is its patient's; staff who serve patients read signed ones."""
    c = await cast(app)
    cid = await finished_consultation(c)
    _, signed = await write(app, c.therapist, cid, sign=True)
    path = f"/api/v1/conclusions/{signed['conclusion_id']}"
    stranger = await patient(app, OTHER_PHONE, "P-2")
    admin = await staff(app, Role.ADMIN)

    status, body = await get_json(app, stranger, path)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await get_json(app, admin, path)
    assert status == 404
    outsider = await staff(app, Role.PAEDIATRICIAN)  # never served this patient (issue 14)
    status, body = await get_json(app, outsider, path)
    assert status == 404 and body["error"]["code"] == "not_found"
    for reader in (c.patient, c.consultant):
        status, body = await get_json(app, reader, path)
        assert status == 200 and body["text"] == FINDINGS

    reads = await audit_of(app, "conclusion", signed["conclusion_id"])
    outcomes = [(e.actor_id, e.outcome) for e in reads if e.action == "conclusion_read"]
    assert outcomes[:4] == [
        (stranger.id, "not_found"),
        (admin.id, "not_found"),
        (outsider.id, "not_found"),
        (c.patient.id, "ok"),
    ]


async def test_a_draft_is_readable_by_its_author_only(app: Running) -> None:
    c = await cast(app)
    cid = await finished_consultation(c)
    _, draft = await write(app, c.therapist, cid)
    path = f"/api/v1/conclusions/{draft['conclusion_id']}"
    assert (await get_json(app, c.therapist, path))[0] == 200
    for reader in (c.patient, c.consultant, await staff(app, Role.THERAPIST, "t2")):
        assert (await get_json(app, reader, path))[0] == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"reason": "нечего исправлять"}, "nothing_to_correct"),
        ({"recommendations": "", "sign": True}, "incomplete_conclusion"),
        ({"text": ""}, "validation_error"),
        ({"text": "x", "diagnosis": "unknown field"}, "validation_error"),
    ],
)
async def test_bad_conclusions_are_refused_with_a_code(
    app: Running, body: dict[str, object], code: str
) -> None:
    c = await cast(app)
    cid = await finished_consultation(c)
    status, answer = await write(app, c.therapist, cid, **body)
    assert status == 422 and answer["error"]["code"] == code
    assert await versions(app, cid) == []


async def test_a_conclusion_for_an_unknown_consultation_is_not_found(app: Running) -> None:
    c = await cast(app)
    status, body = await write(app, c.therapist, "no-such-consultation")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_the_doctor_may_draft_during_the_leg_with_no_deadline_yet(app: Running) -> None:
    """R-CONCL-1: the deadline starts when the leg ends; drafting during it is allowed."""
    c = await cast(app)
    svc = app.services.consultations
    started = await svc.start(c.patient.id, Channel.AUDIO)
    cid = started.consultation.id
    await svc.accept(c.consultant.actor(Role.CONSULTANT), cid)
    await svc.transfer_to_duty_doctor(cid, c.consultant.actor(Role.CONSULTANT))
    await svc.accept(c.therapist.actor(Role.THERAPIST), cid)
    status, draft = await write(app, c.therapist, cid)
    assert status == 200 and draft["due_at"] is None
    _, console = await get_json(app, c.therapist, "/api/v1/conclusions/pending")
    assert console == {"pending": [], "overdue": []}  # not due while the leg is open


async def test_the_console_lists_pending_then_overdue_conclusions(
    any_db_url: str, start_app: object
) -> None:
    """R-CONCL-1: due `conclusion_due_after` after the leg ends (here 30m from config)."""
    app: Running = await start_app(any_db_url, rules={"conclusion_due_after": "30m"})  # type: ignore[operator]
    c = await cast(app)
    other_patient = await patient(app, OTHER_PHONE, "P-2")
    first = await finished_consultation(c, patient=other_patient, close=False)
    first_end = app.clock.now()
    second = await finished_consultation(c)
    second_end = app.clock.now() - 2 * MINUTE  # the consultant closed 2 minutes after the leg
    _, draft = await write(app, c.therapist, second)

    status, console = await get_json(app, c.therapist, "/api/v1/conclusions/pending")
    assert status == 200
    assert console["overdue"] == []
    assert [(d["consultation_id"], d["draft_conclusion_id"]) for d in console["pending"]] == [
        (first, None),
        (second, draft["conclusion_id"]),
    ]
    assert [d["patient_id"] for d in console["pending"]] == [other_patient.id, c.patient.id]
    assert console["pending"][0]["patient_name"] == "Иванов Иван"
    due = [datetime.fromisoformat(d["due_at"]) for d in console["pending"]]
    assert due == [first_end + timedelta(minutes=30), second_end + timedelta(minutes=30)]

    app.clock.set(first_end + timedelta(minutes=30, seconds=1))
    _, console = await get_json(app, c.therapist, "/api/v1/conclusions/pending")
    assert [d["consultation_id"] for d in console["overdue"]] == [first]
    assert [d["consultation_id"] for d in console["pending"]] == [second]

    await write(app, c.therapist, first, sign=True)
    app.clock.advance(timedelta(hours=1))
    _, console = await get_json(app, c.therapist, "/api/v1/conclusions/pending")
    assert [d["consultation_id"] for d in console["overdue"]] == [second]
    assert console["pending"] == []

    other = await staff(app, Role.THERAPIST, "therapist-2")
    _, console = await get_json(app, other, "/api/v1/conclusions/pending")
    assert console == {"pending": [], "overdue": []}  # each doctor sees their own


async def test_two_signs_at_once_leave_exactly_one_signed_version(
    any_db_url: str, start_app: object
) -> None:
    """R-CONCL-1: racing saves cannot produce two first versions or change a signed one."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    c = await cast(app)
    cid = await finished_consultation(c)
    results = await asyncio.gather(
        *(write(app, c.therapist, cid, text=f"вариант {i}", sign=True) for i in range(5))
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409, 409, 409, 409], results
    (only,) = await versions(app, cid)
    winner = next(body for status, body in results if status == 200)
    assert (only.id, only.findings, only.status) == (
        winner["conclusion_id"],
        winner["text"],
        "signed",
    )


async def test_writes_and_reads_are_audited_without_medical_text_and_nothing_is_logged(
    app: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Every read and write of a conclusion is audited (actor, action, object, time,
    outcome); neither the audit log nor the service log holds the medical text."""
    caplog.set_level(logging.INFO)  # the service's level; ours down to DEBUG
    caplog.set_level(logging.DEBUG, logger="telemed")
    caplog.set_level(logging.DEBUG, logger="conclusions")
    c = await cast(app)
    cid = await finished_consultation(c)
    _, draft = await write(app, c.therapist, cid)
    t_sign = app.clock.advance(MINUTE)
    await write(app, c.therapist, cid, sign=True)
    await get_json(app, c.patient, f"/api/v1/conclusions/{draft['conclusion_id']}")

    entries = await audit_of(app, "conclusion", draft["conclusion_id"])
    assert [(e.actor_role, e.actor_id, e.action, e.outcome) for e in entries] == [
        ("therapist", c.therapist.id, "conclusion_draft", "ok"),
        ("therapist", c.therapist.id, "conclusion_sign", "ok"),
        ("patient", c.patient.id, "conclusion_read", "ok"),
    ]
    assert entries[1].at == t_sign and entries[0].client_addr == "127.0.0.1"
    assert entries[1].detail == {"consultation": cid, "version": 1, "status": "signed"}
    dumped = " ".join(f"{e.detail} {e.action}" for e in entries)
    logged = caplog.text
    for medical in (FINDINGS, ADVICE):
        assert medical not in dumped and medical not in logged
