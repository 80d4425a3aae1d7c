"""Second expert opinion (R-SECOND) over the REST API: the patient asks with documents of their
card, a consultant assigns a specialist (due 14 working days later on the configured
calendar), the specialist writes the conclusion, the consultant delivers it into the chat,
a consultation with the specialist is booked on request, and overdue cases are flagged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from appkit import Running
from conclusion_kit import (
    ADVICE,
    FINDINGS,
    OTHER_PHONE,
    Cast,
    Person,
    add_document,
    audit_of,
    cast,
    get_json,
    patient,
    staff,
)
from helpers import SYSTEM
from sqlalchemy import select

from telemed.consultation import Channel
from telemed.models import ChatMessage, Notification
from telemed.roles import Role
from telemed.services.appointments import Hours

QUESTION = "Нужна ли операция на колене?"
LONG_TOKENS = {"token_ttl": "60d"}  # logins that outlive the weeks the clock moves over


@dataclass
class Case:
    """A second opinion asked in a consultation, with the people around it."""

    c: Cast
    specialist: Person
    consultation_id: str
    documents: list[str]
    id: str


async def post(
    app: Running, who: Person, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    resp = await app.client.post(path, json=body or {}, headers=who.auth)
    return resp.status, await resp.json()


async def asked(app: Running) -> Case:
    """The patient talks to a consultant in chat and asks, sending two documents."""
    c = await cast(app)
    specialist = await staff(app, Role.SPECIALIST)
    svc = app.services.consultations
    started = await svc.start(c.patient.id, Channel.CHAT)
    consultation_id = started.consultation.id
    await svc.accept(c.consultant.actor(Role.CONSULTANT), consultation_id)
    documents = [
        await add_document(app, c.patient.id, "mri.pdf"),
        await add_document(app, c.patient.id, "xray.pdf"),
    ]
    status, body = await post(
        app,
        c.patient,
        "/api/v1/second-opinions",
        {"consultation_id": consultation_id, "question": QUESTION, "document_ids": documents},
    )
    assert status == 201, body
    return Case(c, specialist, consultation_id, documents, body["second_opinion_id"])


async def assign(app: Running, case: Case) -> dict[str, Any]:
    status, body = await post(
        app,
        case.c.consultant,
        f"/api/v1/second-opinions/{case.id}/assign",
        {"specialist_id": case.specialist.id},
    )
    assert status == 200, body
    return body


async def conclude(app: Running, case: Case, **extra: Any) -> dict[str, Any]:
    status, body = await post(
        app,
        case.specialist,
        f"/api/v1/second-opinions/{case.id}/conclusion",
        {"text": FINDINGS, "recommendations": ADVICE, "sign": True, **extra},
    )
    assert status == 200, body
    return body


async def test_a_second_opinion_goes_from_request_to_delivery_in_the_chat(
    any_db_url: str, start_app: object
) -> None:
    """R-SECOND: asked with documents, assigned, concluded, delivered exactly once."""
    app: Running = await start_app(any_db_url)  # type: ignore[operator]
    case = await asked(app)
    c = case.c
    _, body = await get_json(app, c.patient, f"/api/v1/second-opinions/{case.id}")
    assert (body["state"], body["question"], body["due_on"]) == ("requested", QUESTION, None)
    assert [d["document_id"] for d in body["documents"]] == case.documents
    assert [d["filename"] for d in body["documents"]] == ["mri.pdf", "xray.pdf"]

    assert (await get_json(app, case.specialist, "/api/v1/second-opinions"))[1]["items"] == []
    status, _ = await get_json(app, case.specialist, f"/api/v1/second-opinions/{case.id}")
    assert status == 404  # not theirs until assigned

    assigned = await assign(app, case)
    # Thursday 15 January 2026 + 14 working days = Wednesday 4 February.
    assert (assigned["state"], assigned["due_on"], assigned["working_days_left"]) == (
        "assigned",
        "2026-02-04",
        14,
    )
    assert assigned["specialist_name"] == "specialist" and assigned["overdue"] is False

    _, mine = await get_json(app, case.specialist, "/api/v1/second-opinions")
    assert [i["second_opinion_id"] for i in mine["items"]] == [case.id]
    _, seen = await get_json(app, case.specialist, f"/api/v1/second-opinions/{case.id}")
    assert len(seen["documents"]) == 2
    for document_id in case.documents:
        actions = [
            (e.actor_id, e.action, e.outcome) for e in await audit_of(app, "document", document_id)
        ]
        assert actions == [
            (c.patient.id, "document_attach", "ok"),
            (c.patient.id, "document_read", "ok"),
            (case.specialist.id, "document_read", "ok"),
        ]

    status, body = await post(app, c.consultant, f"/api/v1/second-opinions/{case.id}/deliver")
    assert status == 409 and body["error"]["code"] == "not_concluded"
    status, draft = await post(
        app,
        case.specialist,
        f"/api/v1/second-opinions/{case.id}/conclusion",
        {"text": "черновик", "recommendations": ""},
    )
    assert status == 200 and draft["status"] == "draft"
    assert draft["second_opinion_id"] == case.id and draft["consultation_id"] is None
    status, body = await post(app, c.consultant, f"/api/v1/second-opinions/{case.id}/deliver")
    assert status == 409 and body["error"]["code"] == "not_concluded"

    signed = await conclude(app, case)
    assert signed["conclusion_id"] == draft["conclusion_id"] and signed["status"] == "signed"
    _, body = await get_json(app, c.consultant, f"/api/v1/second-opinions/{case.id}")
    assert body["state"] == "concluded" and body["conclusion_id"] == signed["conclusion_id"]

    status, delivered = await post(app, c.consultant, f"/api/v1/second-opinions/{case.id}/deliver")
    assert status == 200, delivered
    assert delivered["state"] == "delivered" and delivered["delivered_at"] is not None
    status, again = await post(app, c.consultant, f"/api/v1/second-opinions/{case.id}/deliver")
    assert status == 409 and again["error"]["code"] == "already_delivered"

    async with app.services.db.read() as session:
        messages = (
            await session.scalars(
                select(ChatMessage).where(ChatMessage.consultation_id == case.consultation_id)
            )
        ).all()
        notes = (
            await session.scalars(
                select(Notification).where(
                    Notification.kind == "second_opinion_ready", Notification.channel == "push"
                )
            )
        ).all()
    (message,) = messages
    assert (message.sender_role, message.sender_id) == ("consultant", c.consultant.id)
    assert message.text.endswith(f"/#/conclusions/{signed['conclusion_id']}")
    assert FINDINGS not in message.text
    (note,) = notes
    assert (note.recipient_role, note.recipient_id) == ("patient", c.patient.id)
    assert note.payload == {
        "second_opinion_id": case.id,
        "conclusion_id": signed["conclusion_id"],
    }

    status, conclusion = await get_json(
        app, c.patient, f"/api/v1/conclusions/{signed['conclusion_id']}"
    )
    assert status == 200 and conclusion["text"] == FINDINGS
    _, mine = await get_json(app, c.patient, "/api/v1/second-opinions")
    assert [(i["state"], i["conclusion_id"]) for i in mine["items"]] == [
        ("delivered", signed["conclusion_id"])
    ]
    _, open_cases = await get_json(app, c.consultant, "/api/v1/second-opinions")
    assert open_cases["items"] == []  # consultants see what is still to deliver


async def test_a_consultation_with_the_specialist_is_booked_on_request(app: Running) -> None:
    """R-SECOND: the booking goes through the booking service, at a free slot."""
    case = await asked(app)
    await assign(app, case)
    path = f"/api/v1/second-opinions/{case.id}/appointment"
    monday_10 = "2026-01-19T10:00:00+03:00"
    status, body = await post(
        app, case.c.consultant, path, {"starts_at": monday_10, "channel": "video"}
    )
    assert status == 409 and body["error"]["code"] == "not_concluded"
    await conclude(app, case)

    await app.services.appointments.set_working_hours(
        case.specialist.id,
        [Hours(d, time(10), time(12)) for d in range(5)],
        zone="Europe/Moscow",
        slot_minutes=15,
        days_ahead=14,
        who=SYSTEM,
    )
    status, body = await post(
        app, case.c.consultant, path, {"starts_at": "2026-01-19T13:00:00+03:00", "channel": "video"}
    )
    assert status == 404  # no free slot of the specialist then

    status, booked = await post(
        app, case.c.consultant, path, {"starts_at": monday_10, "channel": "video"}
    )
    assert status == 201, booked
    assert (booked["doctor_id"], booked["kind"], booked["state"]) == (
        case.specialist.id,
        "second_opinion",
        "booked",
    )
    assert datetime.fromisoformat(booked["starts_at"]) == datetime(2026, 1, 19, 7, tzinfo=UTC)
    _, body = await get_json(app, case.c.consultant, f"/api/v1/second-opinions/{case.id}")
    assert body["appointment_id"] == booked["appointment_id"]

    status, body = await post(
        app, case.c.consultant, path, {"starts_at": "2026-01-19T10:15:00+03:00", "channel": "audio"}
    )
    assert status == 409 and body["error"]["code"] == "already_booked"

    _, cal = await get_json(app, case.c.patient, "/api/v1/calendar")
    (event,) = [e for e in cal["events"] if e["type"] == "appointment"]
    assert event["appointment_id"] == booked["appointment_id"]
    assert event["starts_at"] == monday_10
    assert event["title"] == "Запись: врач-специалист, видео"


async def test_an_undelivered_case_past_its_due_date_is_flagged_for_consultants(
    any_db_url: str, start_app: object
) -> None:
    """R-SECOND: overdue the day after the due date (Moscow calendar) until delivered."""
    app: Running = await start_app(any_db_url, auth=LONG_TOKENS)  # type: ignore[operator]
    case = await asked(app)
    await assign(app, case)
    consultant = case.c.consultant

    # 4 February 2026, 23:59 in Moscow: the due date itself is still in time.
    app.clock.set(datetime(2026, 2, 4, 20, 59, tzinfo=UTC))
    _, listed = await get_json(app, consultant, "/api/v1/second-opinions")
    (item,) = listed["items"]
    assert (item["overdue"], item["working_days_left"]) == (False, 0)
    _, overdue = await get_json(app, consultant, "/api/v1/second-opinions", overdue="true")
    assert overdue["items"] == []

    # 5 February, 00:30 in Moscow (still the 4th in UTC).
    app.clock.set(datetime(2026, 2, 4, 21, 30, tzinfo=UTC))
    _, overdue = await get_json(app, consultant, "/api/v1/second-opinions", overdue="true")
    assert [(i["second_opinion_id"], i["overdue"]) for i in overdue["items"]] == [(case.id, True)]
    _, mine = await get_json(app, case.c.patient, f"/api/v1/second-opinions/{case.id}")
    assert mine["overdue"] is True

    await conclude(app, case)
    await post(app, consultant, f"/api/v1/second-opinions/{case.id}/deliver")
    _, overdue = await get_json(app, consultant, "/api/v1/second-opinions", overdue="true")
    assert overdue["items"] == []
    _, mine = await get_json(app, case.c.patient, f"/api/v1/second-opinions/{case.id}")
    assert (mine["overdue"], mine["working_days_left"]) == (False, None)


async def test_the_deadline_skips_the_new_year_holidays_from_config(app: Running) -> None:
    """R-SECOND: assigned on Thursday 24 December 2026; 31 December and 1-8 January are off."""
    app.clock.set(datetime(2026, 12, 24, 9, tzinfo=UTC))
    case = await asked(app)
    assigned = await assign(app, case)
    assert assigned["due_on"] == "2027-01-22"


async def test_the_working_days_and_holidays_come_from_config(
    sqlite_url: str, start_app: object
) -> None:
    """R-SECOND: `second_opinion_working_days` and `holidays` are configuration."""
    app: Running = await start_app(  # type: ignore[operator]
        sqlite_url,
        rules={"second_opinion_working_days": 3, "holidays": ["2026-01-19"]},
    )
    case = await asked(app)
    assigned = await assign(app, case)
    # Thursday 15th: Friday 16th, (weekend), Monday 19th off, Tuesday 20th, Wednesday 21st.
    assert assigned["due_on"] == "2026-01-21"


async def test_a_reassignment_before_the_conclusion_keeps_the_deadline(
    sqlite_url: str, start_app: object
) -> None:
    app: Running = await start_app(sqlite_url, auth=LONG_TOKENS)  # type: ignore[operator]
    case = await asked(app)
    first = await assign(app, case)
    app.clock.set(datetime(2026, 1, 20, 9, tzinfo=UTC))
    other = await staff(app, Role.SPECIALIST, "specialist-2")
    status, body = await post(
        app,
        case.c.consultant,
        f"/api/v1/second-opinions/{case.id}/assign",
        {"specialist_id": other.id},
    )
    assert status == 200 and body["specialist_id"] == other.id
    assert body["due_on"] == first["due_on"]
    status, _ = await get_json(app, case.specialist, f"/api/v1/second-opinions/{case.id}")
    assert status == 404  # the first specialist no longer sees it
    status, _ = await post(
        app,
        case.specialist,
        f"/api/v1/second-opinions/{case.id}/conclusion",
        {"text": FINDINGS, "recommendations": ADVICE},
    )
    assert status == 403

    case.specialist = other
    await conclude(app, case)
    status, body = await post(
        app,
        case.c.consultant,
        f"/api/v1/second-opinions/{case.id}/assign",
        {"specialist_id": first["specialist_id"]},
    )
    assert status == 409


async def test_second_opinions_are_refused_outside_their_people(app: Running) -> None:
    """R-SECOND: a case is its patient's, the consultants' and its specialist's only."""
    case = await asked(app)
    c = case.c
    stranger = await patient(app, OTHER_PHONE, "P-2")
    therapist_path = f"/api/v1/second-opinions/{case.id}/assign"

    status, _ = await get_json(app, stranger, f"/api/v1/second-opinions/{case.id}")
    assert status == 404
    assert (await get_json(app, stranger, "/api/v1/second-opinions"))[1]["items"] == []
    status, body = await post(app, c.patient, therapist_path, {"specialist_id": c.therapist.id})
    assert status == 403
    status, body = await post(app, c.consultant, therapist_path, {"specialist_id": c.therapist.id})
    assert status == 422 and body["error"]["code"] == "not_a_specialist"
    await assign(app, case)
    status, _ = await post(app, case.specialist, f"/api/v1/second-opinions/{case.id}/deliver")
    assert status == 403
    status, _ = await post(
        app,
        c.therapist,
        f"/api/v1/second-opinions/{case.id}/conclusion",
        {"text": FINDINGS, "recommendations": ADVICE},
    )
    assert status == 403  # a therapist is not the case's specialist (refused by role)

    foreign = await add_document(app, stranger.id)
    status, body = await post(
        app,
        c.patient,
        "/api/v1/second-opinions",
        {"consultation_id": case.consultation_id, "document_ids": [foreign]},
    )
    assert status == 422 and body["error"]["code"] == "unknown_documents"
    status, body = await post(
        app,
        stranger,
        "/api/v1/second-opinions",
        {"consultation_id": case.consultation_id, "document_ids": [foreign]},
    )
    assert status == 404  # not the stranger's consultation
    status, body = await post(
        app,
        c.patient,
        "/api/v1/second-opinions",
        {"consultation_id": case.consultation_id, "document_ids": []},
    )
    assert status == 422 and body["error"]["code"] == "validation_error"

    refused = await audit_of(app, "second_opinion", case.id)
    assert (stranger.id, "second_opinion_read", "not_found") in [
        (e.actor_id, e.action, e.outcome) for e in refused
    ]


async def test_the_specialist_reads_the_documents_sent_with_the_case_and_nothing_else(
    app: Running,
) -> None:
    """R-SECOND: the package goes to the specialist: just its documents, not the whole card."""
    case = await asked(app)
    other = await add_document(app, case.c.patient.id, "unrelated.pdf")
    path = f"/api/v1/documents/{case.documents[0]}"
    before = await app.client.get(path, headers=case.specialist.auth)
    assert before.status == 404  # not assigned yet
    await assign(app, case)
    sent = await app.client.get(path, headers=case.specialist.auth)
    assert sent.status == 200, await sent.text()
    assert (await sent.json())["document_id"] == case.documents[0]
    rest = await app.client.get(f"/api/v1/documents/{other}", headers=case.specialist.auth)
    assert rest.status == 404


async def test_the_opinion_is_in_the_patients_calendar_and_records_with_its_link(
    app: Running,
) -> None:
    """R-SECOND, R-CONCL-1: the patient sees the second opinion in the calendar and "My
    records" from the request on; the conclusion and its `/#/conclusions/ID` link appear only
    once the consultant has delivered it."""
    case = await asked(app)

    def opinion_events(cal: dict[str, Any]) -> list[dict[str, Any]]:
        return [e for e in cal["events"] if e["type"] == "second_opinion"]

    _, cal = await get_json(app, case.c.patient, "/api/v1/calendar")
    (event,) = opinion_events(cal)
    assert (event["status"], event["second_opinion_id"], event["conclusion"]) == (
        "requested",
        case.id,
        None,
    )
    await assign(app, case)
    signed = await conclude(app, case)
    _, cal = await get_json(app, case.c.patient, "/api/v1/calendar")
    assert opinion_events(cal)[0]["conclusion"] is None  # signed, not yet delivered
    _, records = await get_json(app, case.c.patient, "/api/v1/records")
    (record,) = [r for r in records["items"] if r["kind"] == "second_opinion"]
    assert (record["state"], record["conclusion_id"]) == ("assigned", None)

    status, _ = await post(app, case.c.consultant, f"/api/v1/second-opinions/{case.id}/deliver")
    assert status == 200
    _, cal = await get_json(app, case.c.patient, "/api/v1/calendar")
    (event,) = opinion_events(cal)
    assert event["status"] == "delivered"
    assert event["conclusion"]["conclusion_id"] == signed["conclusion_id"]
    assert event["conclusion"]["recommendations"] == ADVICE
    _, records = await get_json(app, case.c.patient, "/api/v1/records")
    (record,) = [r for r in records["items"] if r["kind"] == "second_opinion"]
    assert record["conclusion_id"] == signed["conclusion_id"]
    assert record["second_opinion_id"] == case.id
    status, shown = await get_json(
        app, case.c.patient, f"/api/v1/conclusions/{signed['conclusion_id']}"
    )
    assert status == 200 and shown["second_opinion_id"] == case.id


async def test_the_patient_books_the_specialist_from_their_own_opinion_only(
    app: Running,
) -> None:
    """R-SECOND: after the conclusion the patient books its specialist from the same screen;
    the appointment is linked to the case, booked by nobody on the staff; another patient's
    case is not theirs to book."""
    case = await asked(app)
    await assign(app, case)
    await conclude(app, case)
    await app.services.appointments.set_working_hours(
        case.specialist.id,
        [Hours(d, time(10), time(12)) for d in range(5)],
        zone="Europe/Moscow",
        slot_minutes=15,
        days_ahead=14,
        who=SYSTEM,
    )
    path = f"/api/v1/second-opinions/{case.id}/appointment"
    monday_10 = "2026-01-19T10:00:00+03:00"
    other = await patient(app, OTHER_PHONE, policy="P-2")
    status, _ = await post(app, other, path, {"starts_at": monday_10, "channel": "video"})
    assert status == 404
    status, booked = await post(
        app, case.c.patient, path, {"starts_at": monday_10, "channel": "chat"}
    )
    assert status == 201, booked
    assert (booked["doctor_id"], booked["kind"]) == (case.specialist.id, "second_opinion")
    _, body = await get_json(app, case.c.patient, f"/api/v1/second-opinions/{case.id}")
    assert body["appointment_id"] == booked["appointment_id"]
    from telemed.models import Appointment

    async with app.services.db.read() as session:
        row = await session.get(Appointment, booked["appointment_id"])
    assert row is not None and row.booked_by is None
