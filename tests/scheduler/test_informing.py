"""R-SCH-1: the consultant books from the free slots shown in the patient's time zone and
informs the patient the agreed way, with the date, the time and the zone: a chat message in
the consultation, a push notification (with an SMS) from the outbox, or a call the
consultant makes and confirms; the day's list shows the informing as done or due."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from clinic import Clinic
from helpers import bearer

from telemed.roles import Role
from telemed.services.appointments import booking_text

FIRST_SLOT = "2026-01-15T10:00:00+00:00"  # 13:00 in Moscow, 20:00 in Vladivostok


@pytest.fixture
def clinic_db_url(any_db_url: str) -> str:
    """These run on SQLite and on PostgreSQL."""
    return any_db_url


async def _patient_in(clinic: Clinic, zone: str) -> tuple[str, str]:
    patient = await clinic.patient()
    resp = await clinic.app.client.patch(
        "/api/v1/me", json={"timezone": zone}, headers=bearer(patient)
    )
    assert resp.status == 200, await resp.text()
    me = await (await clinic.app.client.get("/api/v1/me", headers=bearer(patient))).json()
    return patient, me["user_id"]


async def _day(clinic: Clinic) -> dict[str, dict[str, Any]]:
    resp = await clinic.app.client.get("/api/v1/appointments", headers=bearer(clinic.consultant))
    assert resp.status == 200
    return {a["appointment_id"]: a for a in (await resp.json())["items"]}


def test_the_booking_text_names_the_doctor_date_time_and_zone() -> None:
    """R-SCH-1, R-CAL-1: the text is in the patient's zone and says which zone."""
    text = booking_text(
        datetime(2026, 1, 15, 10, 0, tzinfo=UTC), "Asia/Vladivostok", "Петров П.", "therapist"
    )
    assert "15.01.2026 в 20:00 по времени Asia/Vladivostok" in text
    assert "Петров П. (терапевт)" in text


async def test_staff_see_the_free_slots_in_the_patients_time_zone(clinic: Clinic) -> None:
    """R-SCH-1, R-CAL-1: `patient_id` turns the slot list to the patient's zone, named."""
    await clinic.doctor(Role.THERAPIST, "ther", "13:00-13:30")
    _, patient_id = await _patient_in(clinic, "Asia/Vladivostok")
    resp = await clinic.app.client.get(
        "/api/v1/slots",
        params={"role": "therapist", "patient_id": patient_id, "to": "2026-01-16T00:00:00Z"},
        headers=bearer(clinic.consultant),
    )
    data = await resp.json()
    assert data["time_zone"] == "Asia/Vladivostok"
    assert [s["starts_at"] for s in data["slots"]] == [
        "2026-01-15T20:00:00+10:00",
        "2026-01-15T20:15:00+10:00",
    ]
    plain = await (
        await clinic.app.client.get(
            "/api/v1/slots", params={"role": "therapist"}, headers=bearer(clinic.consultant)
        )
    ).json()
    assert plain["time_zone"] is None and plain["slots"][0]["starts_at"] == "2026-01-15T10:00:00Z"


async def test_informing_by_chat_puts_the_date_time_and_zone_in_the_consultation_chat(
    clinic: Clinic,
) -> None:
    """R-SCH-1: chat on the platform, while the patient is on the line with the consultant."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient, patient_id = await _patient_in(clinic, "Asia/Vladivostok")
    live = await clinic.join(patient, "patient")
    cid = (await live.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    consultant = await clinic.join(clinic.consultant, "consultant")
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    resp = await clinic.app.client.post(
        "/api/v1/appointments",
        json={
            "patient_id": patient_id,
            "doctor_id": doctor_id,
            "starts_at": FIRST_SLOT,
            "channel": "video",
            "notify_via": "chat",
            "consultation_id": cid,
        },
        headers=bearer(clinic.consultant),
    )
    assert resp.status == 201, await resp.text()
    booked = await resp.json()
    assert booked["informing"] == "done" and booked["informed_at"]
    message = await live.wait("chat:message")
    assert "15.01.2026 в 20:00 по времени Asia/Vladivostok" in message["text"]
    assert message["consultation_id"] == cid
    assert (await _day(clinic))[booked["appointment_id"]]["informing"] == "done"


async def test_chat_informing_needs_my_consultation_with_that_patient(clinic: Clinic) -> None:
    """R-SCH-1: a chat message goes only into a consultation the consultant is in with the
    patient; another consultation is refused and nothing is booked."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient, _ = await _patient_in(clinic, "Europe/Moscow")
    other = await clinic.patient("+79167654321")
    other_id = (await (await clinic.app.client.get("/api/v1/me", headers=bearer(other))).json())[
        "user_id"
    ]
    live = await clinic.join(patient, "patient")
    cid = (await live.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    consultant = await clinic.join(clinic.consultant, "consultant")
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    resp = await clinic.app.client.post(
        "/api/v1/appointments",
        json={
            "patient_id": other_id,
            "doctor_id": doctor_id,
            "starts_at": FIRST_SLOT,
            "channel": "video",
            "notify_via": "chat",
            "consultation_id": cid,
        },
        headers=bearer(clinic.consultant),
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "chat_needs_consultation"
    assert await _day(clinic) == {}


async def test_informing_by_push_goes_through_the_outbox_with_date_time_and_zone(
    clinic: Clinic,
) -> None:
    """R-SCH-1: push/SMS: due until the outbox has sent it, then done."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient, _ = await _patient_in(clinic, "Asia/Vladivostok")
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT, notify_via="push")
    assert booked["informing"] == "due"
    assert (await _day(clinic))[booked["appointment_id"]]["informing"] == "due"
    await clinic.tick()
    texts = [p["text"] for p in clinic.pushes()]
    assert any("15.01.2026 в 20:00 по времени Asia/Vladivostok" in t for t in texts), texts
    assert (await _day(clinic))[booked["appointment_id"]]["informing"] == "done"


async def test_a_call_is_due_until_the_consultant_confirms_it(clinic: Clinic) -> None:
    """R-SCH-1: a call on the platform or to the phone is the consultant's to make; it shows
    as due until they confirm, and only consultants confirm."""
    doctor_token, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient, _ = await _patient_in(clinic, "Europe/Moscow")
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT, notify_via="phone")
    appointment_id = booked["appointment_id"]
    assert booked["informing"] == "due"
    await clinic.tick()
    assert clinic.pushes() == []  # a call is not outbox work
    refused = await clinic.app.client.post(
        f"/api/v1/appointments/{appointment_id}/informed", headers=bearer(doctor_token)
    )
    assert refused.status == 403
    done = await clinic.app.client.post(
        f"/api/v1/appointments/{appointment_id}/informed", headers=bearer(clinic.consultant)
    )
    assert done.status == 200 and (await done.json())["informing"] == "done"
    day = (await _day(clinic))[appointment_id]
    assert day["informing"] == "done" and day["doctor_name"] and day["patient_name"]
