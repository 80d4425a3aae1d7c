"""Everything the clock decides: reminders, starts, no-shows and the doctors' time limits
(R-REMIND-1, R-NOSHOW-1, R-LIMIT-URG, R-LIMIT-SCH, R-URG-5). The clock is moved by hand."""

from __future__ import annotations

from datetime import timedelta

from clinic import Clinic
from helpers import bearer
from sqlalchemy import func, select

from telemed.models import Notification
from telemed.roles import Role

FIRST_SLOT = "2026-01-15T10:00:00+00:00"  # T = 13:00 Moscow; the clock starts at T-60m


async def test_the_reminder_goes_out_ten_minutes_before_exactly_once(clinic: Clinic) -> None:
    """R-REMIND-1: at T-10 the patient's sockets and push get one reminder, never two."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    live = await clinic.join(patient, "patient")
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(minutes=49, seconds=59))  # T-10m-1s
    await clinic.tick()
    assert live.events("reminder") == [] and clinic.pushes() == []
    clinic.app.clock.advance(timedelta(seconds=1))  # T-10m
    await clinic.tick()
    reminder = await live.wait("reminder")
    assert reminder == {"appointment_id": booked["appointment_id"], "starts_at": FIRST_SLOT}
    for _ in range(3):
        clinic.app.clock.advance(timedelta(seconds=30))
        await clinic.tick()
    pushes = clinic.pushes()
    assert len(pushes) == 1 and "13:00" in pushes[0]["text"]  # Moscow time, the patient's zone
    assert len(live.events("reminder")) == 1
    async with clinic.app.services.db.read() as session:
        outbox = await session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.kind == "reminder", Notification.channel == "push")
        )
    assert outbox == 1


async def test_a_booked_patient_who_never_comes_is_closed_as_no_show_and_the_consultant_told(
    clinic: Clinic,
) -> None:
    """R-NOSHOW-1: at T the consultation waits for the patient; at T+15 it is closed."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    watcher = await clinic.join(clinic.consultant, "consultant")
    await watcher.ok("queue:watch")
    patient = await clinic.patient()
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(hours=1))  # T
    await clinic.tick()
    mine = await (
        await clinic.app.client.get("/api/v1/consultations", headers=bearer(patient))
    ).json()
    assert mine["items"][0]["state"] == "waiting_patient"
    clinic.app.clock.advance(timedelta(minutes=14, seconds=59))
    await clinic.tick()
    assert watcher.events("appointment:no_show") == []
    clinic.app.clock.advance(timedelta(seconds=1))  # T+15
    await clinic.tick()
    told = await watcher.wait("appointment:no_show")
    assert told["appointment_id"] == booked["appointment_id"]
    mine = await (
        await clinic.app.client.get("/api/v1/consultations", headers=bearer(patient))
    ).json()
    assert mine["items"][0]["state"] == "closed"
    assert mine["items"][0]["close_reason"] == "no_show"
    appointments = await (
        await clinic.app.client.get("/api/v1/appointments", headers=bearer(patient))
    ).json()
    assert appointments["items"][0]["state"] == "no_show"


async def test_a_booked_patient_who_comes_in_time_is_not_a_no_show(clinic: Clinic) -> None:
    """R-NOSHOW-1 / R-SCH-3: connecting moves the consultation into the consultant queue."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(hours=1, minutes=5))
    await clinic.tick()
    live = await clinic.join(patient, "patient")
    state = await live.wait("consultation:state", lambda d: d["state"] == "waiting_consultant")
    clinic.app.clock.advance(timedelta(minutes=20))
    await clinic.tick()
    assert live.events("consultation:closed") == []
    assert state["kind"] == "scheduled"


async def test_a_patient_already_connected_at_the_start_goes_straight_to_the_queue(
    clinic: Clinic,
) -> None:
    """R-SCH-3: at its time a booked consultation enters the consultant queue if the patient
    is already there."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    live = await clinic.join(patient, "patient")
    await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(hours=1))
    await clinic.tick()
    state = await live.wait("consultation:state")
    assert state["state"] == "waiting_consultant" and state["queue_position"] == 1


async def test_a_booked_patient_cannot_join_before_the_reminder_time(clinic: Clinic) -> None:
    """A booked patient may start from remind_before ahead of the time, not earlier."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT)
    live = await clinic.join(patient, "patient")
    early = await live.call(
        "consultation:start", {"channel": "video", "appointment_id": booked["appointment_id"]}
    )
    assert early["ok"] is False and early["error"]["code"] == "too_early"
    clinic.app.clock.advance(timedelta(minutes=50))
    ok = await live.ok(
        "consultation:start", {"channel": "video", "appointment_id": booked["appointment_id"]}
    )
    assert ok["state"] == "waiting_consultant"


async def _with_doctor(
    clinic: Clinic, doctor: Role, login: str
) -> tuple[str, object, object, object]:
    doctor_token, _ = await clinic.doctor(doctor, login)
    patient = await clinic.join(await clinic.patient(), "patient")
    consultant = await clinic.join(clinic.consultant, "consultant")
    doc = await clinic.join(doctor_token, login)
    return doctor_token, patient, consultant, doc


async def test_the_urgent_doctor_leg_is_warned_at_28_minutes_and_ends_at_30(
    clinic: Clinic,
) -> None:
    """R-LIMIT-URG and R-URG-5: warning 2 minutes before, end at 30, back to the consultant."""
    _, patient, consultant, therapist = await _with_doctor(clinic, Role.THERAPIST, "ther")
    cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await therapist.ok("consultation:accept", {"consultation_id": cid})
    started = await patient.wait_state(cid, "with_doctor")
    clinic.app.clock.advance(timedelta(minutes=27, seconds=59))
    await clinic.tick()
    assert patient.events("limit:warning") == []
    clinic.app.clock.advance(timedelta(seconds=1))  # 28:00
    await clinic.tick()
    warning = await patient.wait("limit:warning")
    assert warning == {
        "consultation_id": cid,
        "ends_at": started["limit_ends_at"],
        "server_time": clinic.app.clock.now().isoformat(),
    }
    assert (await therapist.wait("limit:warning"))["consultation_id"] == cid
    clinic.app.clock.advance(timedelta(minutes=1, seconds=59))
    await clinic.tick()
    assert patient.events("limit:reached") == [] and len(patient.events("limit:warning")) == 1
    clinic.app.clock.advance(timedelta(seconds=1))  # 30:00
    await clinic.tick()
    reached = {"consultation_id": cid, "server_time": clinic.app.clock.now().isoformat()}
    assert await patient.wait("limit:reached") == reached
    assert await therapist.wait("limit:reached") == reached
    back = await patient.wait_state(cid, "with_consultant")
    assert back["counterpart"]["role"] == "consultant"


async def test_the_booked_doctor_leg_ends_at_15_minutes(clinic: Clinic) -> None:
    """R-LIMIT-SCH: a booked consultation's doctor leg: warning at 13, end at 15."""
    doctor_token, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient_token = await clinic.patient()
    booked = await clinic.book(patient_token, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(minutes=55))
    patient = await clinic.join(patient_token, "patient")
    consultant = await clinic.join(clinic.consultant, "consultant")
    doctor = await clinic.join(doctor_token, "doctor")
    cid = (
        await patient.ok(
            "consultation:start", {"channel": "video", "appointment_id": booked["appointment_id"]}
        )
    )["consultation_id"]
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await consultant.ok(
        "consultation:transfer", {"consultation_id": cid, "to": "doctor", "doctor_id": doctor_id}
    )
    await doctor.ok("consultation:accept", {"consultation_id": cid})
    await patient.wait_state(cid, "with_doctor")
    clinic.app.clock.advance(timedelta(minutes=13))
    await clinic.tick()
    assert (await doctor.wait("limit:warning"))["consultation_id"] == cid
    clinic.app.clock.advance(timedelta(minutes=2))
    await clinic.tick()
    reached = await doctor.wait("limit:reached")
    assert reached == {"consultation_id": cid, "server_time": clinic.app.clock.now().isoformat()}
    await patient.wait_state(cid, "with_consultant")


async def test_after_the_limit_with_the_consultant_offline_the_patient_waits_in_the_queue(
    clinic: Clinic,
) -> None:
    """R-URG-5: the consultant is gone: the patient goes back to the consultant queue."""
    _, patient, consultant, therapist = await _with_doctor(clinic, Role.THERAPIST, "ther")
    cid = (await patient.ok("consultation:start", {"channel": "audio"}))["consultation_id"]
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await therapist.ok("consultation:accept", {"consultation_id": cid})
    await consultant.close()
    clinic.app.clock.advance(timedelta(minutes=30))
    await clinic.tick()
    state = await patient.wait_state(cid, "waiting_consultant")
    assert state["queue_position"] == 1
