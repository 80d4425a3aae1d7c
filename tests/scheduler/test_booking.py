"""Booking, cancelling and the documents gate (R-SCH, R-CANCEL-1, R-DOCS-1)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from clinic import Clinic
from helpers import bearer

from telemed.roles import Role

FIRST_SLOT = "2026-01-15T10:00:00+00:00"  # 13:00 in Moscow


async def test_free_slots_come_from_working_hours_in_the_patients_time_zone(
    clinic: Clinic,
) -> None:
    """R-SCH, R-CAL-1: slots cut from the doctor's hours; patients see them in their zone."""
    _, doctor_id = await clinic.doctor(Role.PSYCHOLOGIST, "psy", "13:00-14:00")
    patient = await clinic.patient()
    await clinic.app.client.patch(
        "/api/v1/me", json={"timezone": "Asia/Vladivostok"}, headers=bearer(patient)
    )
    resp = await clinic.app.client.get(
        "/api/v1/slots",
        params={"role": "psychologist", "to": "2026-01-16T00:00:00+00:00"},
        headers=bearer(patient),
    )
    slots = (await resp.json())["slots"]
    assert [s["starts_at"] for s in slots] == [
        "2026-01-15T20:00:00+10:00",
        "2026-01-15T20:15:00+10:00",
        "2026-01-15T20:30:00+10:00",
        "2026-01-15T20:45:00+10:00",
    ]
    assert {s["doctor_id"] for s in slots} == {doctor_id}


async def test_a_patient_books_a_psychologist_from_a_free_slot_but_not_a_therapist(
    clinic: Clinic,
) -> None:
    """R-SCH-2 / seed 000: psychologists and specialists are booked by the patient."""
    await clinic.doctor(Role.PSYCHOLOGIST, "psy")
    _, therapist_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    slots = (
        await (
            await clinic.app.client.get("/api/v1/slots?role=psychologist", headers=bearer(patient))
        ).json()
    )["slots"]
    resp = await clinic.app.client.post(
        "/api/v1/appointments",
        json={"slot_id": slots[0]["slot_id"], "channel": "audio"},
        headers=bearer(patient),
    )
    assert resp.status == 201
    booked = await resp.json()
    assert booked["state"] == "booked" and booked["starts_at"] == "2026-01-15T13:00:00+03:00"
    mine = await (
        await clinic.app.client.get("/api/v1/appointments", headers=bearer(patient))
    ).json()
    assert [a["appointment_id"] for a in mine["items"]] == [booked["appointment_id"]]
    ther_slots = (
        await (
            await clinic.app.client.get("/api/v1/slots?role=therapist", headers=bearer(patient))
        ).json()
    )["slots"]
    refused = await clinic.app.client.post(
        "/api/v1/appointments",
        json={"slot_id": ther_slots[0]["slot_id"], "channel": "video"},
        headers=bearer(patient),
    )
    assert refused.status == 403
    assert therapist_id == ther_slots[0]["doctor_id"]


async def test_a_slot_is_booked_once_and_the_loser_of_a_race_gets_slot_taken(
    clinic: Clinic,
) -> None:
    """R-SCH: two patients race for one slot: one booking, one 409 slot_taken."""
    await clinic.doctor(Role.PSYCHOLOGIST, "psy")
    adult = await clinic.patient("+79161234567")
    child = await clinic.patient("+79167654321")
    slots = (
        await (
            await clinic.app.client.get("/api/v1/slots?role=psychologist", headers=bearer(adult))
        ).json()
    )["slots"]
    body = {"slot_id": slots[0]["slot_id"], "channel": "video"}
    for _ in range(1):
        first, second = await asyncio.gather(
            clinic.app.client.post("/api/v1/appointments", json=body, headers=bearer(adult)),
            clinic.app.client.post("/api/v1/appointments", json=body, headers=bearer(child)),
        )
        statuses = sorted([first.status, second.status])
        assert statuses == [201, 409]
        loser = first if first.status == 409 else second
        assert (await loser.json())["error"]["code"] == "slot_taken"
    after = (
        await (
            await clinic.app.client.get("/api/v1/slots?role=psychologist", headers=bearer(adult))
        ).json()
    )["slots"]
    assert slots[0]["slot_id"] not in {s["slot_id"] for s in after}


async def test_a_consultant_books_a_doctor_at_a_time_and_says_how_to_tell_the_patient(
    clinic: Clinic,
) -> None:
    """R-SCH-1: any doctor, at a free time, with kind, documents and the way to inform."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    client = await clinic.join(patient, "patient")
    booked = await clinic.book(
        patient, doctor_id, FIRST_SLOT, requires_documents=True, notify_via="phone"
    )
    assert booked["notify_via"] == "phone" and booked["requires_documents"] is True
    told = await client.wait("appointment:booked")
    assert told["appointment_id"] == booked["appointment_id"]
    me = await (await clinic.app.client.get("/api/v1/me", headers=bearer(patient))).json()
    nothing = await clinic.app.client.post(
        "/api/v1/appointments",
        json={
            "patient_id": me["user_id"],
            "doctor_id": doctor_id,
            "starts_at": "2026-01-15T10:07:00+00:00",
            "channel": "video",
        },
        headers=bearer(clinic.consultant),
    )
    assert nothing.status == 404 and (await nothing.json())["error"]["code"] == "no_such_slot"
    naive = await clinic.app.client.post(
        "/api/v1/appointments",
        json={
            "patient_id": me["user_id"],
            "doctor_id": doctor_id,
            "starts_at": "2026-01-15T10:00:00",
            "channel": "video",
        },
        headers=bearer(clinic.consultant),
    )
    assert naive.status == 422


async def test_a_patient_cancels_before_the_start_and_the_consultant_is_told(
    clinic: Clinic,
) -> None:
    """R-CANCEL-1: before the start the cancel works, the slot opens, consultants hear it."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    watcher = await clinic.join(clinic.consultant, "consultant")
    await watcher.ok("queue:watch")
    patient = await clinic.patient()
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(minutes=59, seconds=59))
    resp = await clinic.app.client.post(
        f"/api/v1/appointments/{booked['appointment_id']}/cancel", headers=bearer(patient)
    )
    assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
    told = await watcher.wait("appointment:cancelled")
    assert told == {"appointment_id": booked["appointment_id"], "by": "patient"}
    slots = (
        await (
            await clinic.app.client.get(
                "/api/v1/slots?role=therapist", headers=bearer(clinic.consultant)
            )
        ).json()
    )["slots"]
    assert slots[0]["starts_at"].startswith("2026-01-15T10:00")


async def test_a_cancel_after_the_start_is_refused(clinic: Clinic) -> None:
    """R-CANCEL-1: after the start a cancel is refused with already_started."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(hours=1))
    await clinic.tick()
    resp = await clinic.app.client.post(
        f"/api/v1/appointments/{booked['appointment_id']}/cancel", headers=bearer(patient)
    )
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "already_started"


async def test_a_cancel_one_second_after_the_start_is_refused_before_any_scheduler_pass(
    clinic: Clinic,
) -> None:
    """R-CANCEL-1: the start time alone refuses the cancel: no scheduler pass has moved the
    appointment on (it is still `booked` in the database), one second after its start."""
    from telemed.models import Appointment

    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(hours=1, seconds=1))  # 10:00:01 UTC, no tick
    async with clinic.app.services.db.read() as session:
        row = await session.get(Appointment, booked["appointment_id"])
    assert row is not None and row.state == "booked"
    resp = await clinic.app.client.post(
        f"/api/v1/appointments/{booked['appointment_id']}/cancel", headers=bearer(patient)
    )
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "already_started"
    async with clinic.app.services.db.read() as session:
        row = await session.get(Appointment, booked["appointment_id"])
    assert row is not None and (row.state, row.cancelled_at) == ("booked", None)


async def test_documents_are_required_before_the_duty_doctor_too(clinic: Clinic) -> None:
    """R-DOCS-1 on the duty-doctor path: a booked consultation that needs documents is not
    transferred to the duty therapist either, until the patient adds one from their card."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT, requires_documents=True)
    clinic.app.clock.advance(timedelta(minutes=55))
    live = await clinic.join(patient, "patient")
    ack = await live.ok(
        "consultation:start", {"channel": "chat", "appointment_id": booked["appointment_id"]}
    )
    cid = ack["consultation_id"]
    consultant = await clinic.join(clinic.consultant, "consultant")
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    to_duty = {"consultation_id": cid, "to": "duty_doctor"}
    blocked = await consultant.call("consultation:transfer", to_duty)
    assert blocked["ok"] is False and blocked["error"]["code"] == "documents_required"
    await live.wait_state(cid, "with_consultant")  # nothing moved

    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", b"%PDF-1.4\n%%EOF\n", filename="ecg.pdf", content_type="application/pdf")
    up = await clinic.app.client.post("/api/v1/documents", data=form, headers=bearer(patient))
    assert up.status == 201, await up.text()
    added = await clinic.app.client.post(
        f"/api/v1/consultations/{cid}/documents",
        json={"document_id": (await up.json())["document_id"]},
        headers=bearer(patient),
    )
    assert added.status in (200, 201), await added.text()
    moved = await consultant.ok("consultation:transfer", to_duty)
    assert moved["state"] == "waiting_doctor"


async def test_another_patient_cannot_cancel_my_appointment(clinic: Clinic) -> None:
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    mine = await clinic.book(await clinic.patient(), doctor_id, FIRST_SLOT)
    other = await clinic.patient("+79167654321")
    resp = await clinic.app.client.post(
        f"/api/v1/appointments/{mine['appointment_id']}/cancel", headers=bearer(other)
    )
    assert resp.status == 404


async def test_documents_are_required_before_the_doctor(clinic: Clinic) -> None:
    """R-DOCS-1: a booked consultation needing documents is not transferred to the doctor
    until the patient adds one from their medical card; they see what is missing."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT, requires_documents=True)
    clinic.app.clock.advance(timedelta(minutes=55))
    live = await clinic.join(patient, "patient")
    ack = await live.ok(
        "consultation:start", {"channel": "video", "appointment_id": booked["appointment_id"]}
    )
    cid = ack["consultation_id"]
    state = await live.wait_state(cid, "waiting_consultant")
    assert state["documents_required"] is True
    consultant = await clinic.join(clinic.consultant, "consultant")
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    blocked = await consultant.call(
        "consultation:transfer", {"consultation_id": cid, "to": "doctor", "doctor_id": doctor_id}
    )
    assert blocked["ok"] is False and blocked["error"]["code"] == "documents_required"
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", pdf, filename="analysis.pdf", content_type="application/pdf")
    up = await clinic.app.client.post("/api/v1/documents", data=form, headers=bearer(patient))
    assert up.status == 201, await up.text()
    document_id = (await up.json())["document_id"]
    added = await clinic.app.client.post(
        f"/api/v1/consultations/{cid}/documents",
        json={"document_id": document_id},
        headers=bearer(patient),
    )
    assert added.status in (200, 201), await added.text()
    moved = await consultant.ok(
        "consultation:transfer", {"consultation_id": cid, "to": "doctor", "doctor_id": doctor_id}
    )
    assert moved["state"] == "waiting_doctor"


async def test_the_slot_horizon_moves_forward_as_days_pass(clinic: Clinic) -> None:
    """R-SCH: slots keep being cut from the working hours `slot_horizon_days` ahead."""
    await clinic.doctor(Role.PSYCHOLOGIST, "psy", "13:00-14:00")

    async def thursdays() -> list[str]:
        # Through the service: a week on, the staff tokens of the fixture have expired.
        found = await clinic.app.services.appointments.free_slots(
            Role.PSYCHOLOGIST, clinic.app.clock.now(), datetime(2026, 3, 1, tzinfo=UTC)
        )
        return sorted({slot.starts_at.date().isoformat() for slot, _ in found})

    assert await thursdays() == ["2026-01-15", "2026-01-22"]  # 14 days ahead
    clinic.app.clock.advance(timedelta(days=7))
    await clinic.tick()
    assert await thursdays() == ["2026-01-22", "2026-01-29"]


async def test_the_booked_doctor_reads_the_card_before_the_start_and_not_after_a_cancel(
    clinic: Clinic,
) -> None:
    """R-DOCS-1: the doctor of a booked appointment studies the documents in advance; another
    doctor does not, and a cancelled booking gives no access."""
    doctor, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    other, _ = await clinic.doctor(Role.THERAPIST, "other")
    patient = await clinic.patient()
    me = await (await clinic.app.client.get("/api/v1/me", headers=bearer(patient))).json()
    card = f"/api/v1/documents?patient_id={me['user_id']}"

    async def status(token: str) -> int:
        return (await clinic.app.client.get(card, headers=bearer(token))).status

    assert await status(doctor) == 404
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT, requires_documents=True)
    assert (await status(doctor), await status(other)) == (200, 404)
    resp = await clinic.app.client.post(
        f"/api/v1/appointments/{booked['appointment_id']}/cancel", headers=bearer(patient)
    )
    assert resp.status == 200
    assert await status(doctor) == 404
