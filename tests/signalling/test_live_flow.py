"""The urgent flow over real Socket.IO clients (R-URG-1..5, R-ROUTE-1, R-LIMIT-URG)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from appkit import Running
from helpers import patient_token, staff_token
from sqlalchemy import select

from telemed.models import ConsultationLeg
from telemed.roles import Role


async def run_urgent_flow(live: Any, phone: str, doctor_role: Role) -> None:
    app: Running = live.running
    consultant_token, consultant_id = await staff_token(app, Role.CONSULTANT)
    doctor_token, doctor_id = await staff_token(app, doctor_role)
    consultant = await live.join(consultant_token, "consultant")
    doctor = await live.join(doctor_token, "doctor")
    assert (await consultant.ok("queue:watch"))["items"] == []
    await doctor.ok("queue:watch")
    patient = await live.join(await patient_token(app, phone), "patient")

    # R-URG-1/2: the patient picks a channel and waits in the consultant queue.
    started = await patient.ok("consultation:start", {"channel": "video"})
    cid = started["consultation_id"]
    waiting = await patient.wait_state(cid, "waiting_consultant")
    assert waiting["queue_position"] == 1 and waiting["estimated_wait_seconds"] > 0
    update = await consultant.wait_queue(lambda items: len(items) == 1)
    assert update["items"][0]["consultation_id"] == cid
    assert update["items"][0]["channel"] == "video"

    await consultant.ok("consultation:accept", {})
    with_consultant = await patient.wait_state(cid, "with_consultant")
    assert with_consultant["counterpart"]["role"] == "consultant"
    await consultant.wait_state(cid, "with_consultant")

    await patient.ok("chat:send", {"consultation_id": cid, "text": "Болит голова"})
    said = await consultant.wait("chat:message")
    assert said["text"] == "Болит голова" and said["sender_role"] == "patient"

    # R-ROUTE-1: transferred to the duty doctor by age; the old call hangs up.
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await patient.wait("call:hangup")
    await consultant.wait("call:hangup")
    await patient.wait_state(cid, "waiting_doctor")
    queued = await doctor.wait_queue(lambda items: len(items) == 1)
    assert queued["role"] == doctor_role.value

    app.clock.advance(timedelta(minutes=2))
    await doctor.ok("consultation:accept", {"consultation_id": cid})
    with_doctor = await patient.wait_state(cid, "with_doctor")
    assert with_doctor["counterpart"]["role"] == doctor_role.value
    assert with_doctor["limit_ends_at"]  # R-LIMIT-URG: the leg runs under the limit
    history = await doctor.wait("chat:history", lambda d: d["consultation_id"] == cid)
    assert [m["text"] for m in history["messages"]] == ["Болит голова"]

    # R-URG-5: the doctor ends the leg; the consultant is online, so the patient goes back.
    app.clock.advance(timedelta(minutes=10))
    await doctor.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
    back = await patient.wait_state(cid, "with_consultant")
    assert back["counterpart"]["role"] == "consultant"
    await consultant.wait_state(cid, "with_consultant")

    await consultant.ok("consultation:close", {"consultation_id": cid, "outcome": "finished"})
    closed = await patient.wait("consultation:closed")
    assert closed == {"consultation_id": cid, "reason": "finished"}

    async with app.services.db.read() as session:
        legs = (
            await session.scalars(
                select(ConsultationLeg)
                .where(ConsultationLeg.consultation_id == cid)
                .order_by(ConsultationLeg.started_at)
            )
        ).all()
    assert [(leg.staff_id, leg.role) for leg in legs] == [
        (consultant_id, "consultant"),
        (doctor_id, doctor_role.value),
        (consultant_id, "consultant"),
    ]
    assert all(leg.ended_at is not None for leg in legs)


async def test_an_adult_goes_through_the_whole_urgent_flow_with_the_therapist(live: Any) -> None:
    """R-URG-1..5 end to end; an adult goes to the duty therapist (R-ROUTE-1)."""
    await run_urgent_flow(live, "+79161234567", Role.THERAPIST)


async def test_a_ten_year_old_goes_to_the_paediatrician(live: Any) -> None:
    """R-ROUTE-1: a child of 10 goes to the duty paediatrician."""
    await run_urgent_flow(live, "+79167654321", Role.PAEDIATRICIAN)


async def _with_the_doctor(live: Any) -> tuple[Any, Any, Any, str, str]:
    """An adult with the duty therapist, their consultant online: (patient, consultant,
    doctor, the consultation id, the patient's token)."""
    app: Running = live.running
    consultant = await live.join((await staff_token(app, Role.CONSULTANT))[0], "consultant")
    doctor = await live.join((await staff_token(app, Role.THERAPIST))[0], "doctor")
    await doctor.ok("queue:watch")
    token = await patient_token(app, "+79161234567")
    patient = await live.join(token, "patient")
    cid = (await patient.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    await consultant.ok("consultation:accept", {})
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await doctor.ok("consultation:accept", {"consultation_id": cid})
    await patient.wait_state(cid, "with_doctor")
    return patient, consultant, doctor, cid, token


async def test_a_patient_hanging_up_on_the_doctor_goes_back_to_the_consultant(live: Any) -> None:
    """R-URG-2, R-URG-5: the patient's hang-up during the doctor's leg ends the leg, not the
    consultation: they are with their (online) consultant again, nothing is closed."""
    app: Running = live.running
    patient, consultant, _, cid, token = await _with_the_doctor(live)
    resp = await app.client.post(
        f"/api/v1/consultations/{cid}/hang-up", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200
    assert (await resp.json())["state"] == "with_consultant"
    back = await patient.wait_state(cid, "with_consultant")
    assert back["counterpart"]["role"] == "consultant"
    await consultant.wait_state(cid, "with_consultant")
    async with app.services.db.read() as session:
        legs = (
            await session.scalars(
                select(ConsultationLeg)
                .where(ConsultationLeg.consultation_id == cid)
                .order_by(ConsultationLeg.started_at)
            )
        ).all()
    assert [leg.role for leg in legs] == ["consultant", "therapist", "consultant"]
    assert legs[1].end_reason == "patient_ends_doctor_leg_to_consultant"

    # With the consultant, the same button leaves the consultation.
    resp = await app.client.post(
        f"/api/v1/consultations/{cid}/hang-up", headers={"Authorization": f"Bearer {token}"}
    )
    assert (await resp.json())["close_reason"] == "left"
    assert await patient.wait("consultation:closed") == {"consultation_id": cid, "reason": "left"}


async def test_a_patient_hanging_up_on_the_doctor_waits_for_a_consultant_when_theirs_is_away(
    live: Any,
) -> None:
    """R-URG-5: with their consultant offline, the hang-up queues the patient for any
    consultant rather than closing the consultation."""
    app: Running = live.running
    patient, consultant, _, cid, token = await _with_the_doctor(live)
    await consultant.close()
    resp = await app.client.post(
        f"/api/v1/consultations/{cid}/hang-up", headers={"Authorization": f"Bearer {token}"}
    )
    assert (await resp.json())["state"] == "waiting_consultant"
    await patient.wait_state(cid, "waiting_consultant")


async def test_another_patient_cannot_hang_up_someone_elses_doctor(live: Any) -> None:
    """Every REST call checks who asks: another patient is refused."""
    app: Running = live.running
    _, _, _, cid, _ = await _with_the_doctor(live)
    other = await patient_token(app, "+79167654321")
    resp = await app.client.post(
        f"/api/v1/consultations/{cid}/hang-up", headers={"Authorization": f"Bearer {other}"}
    )
    assert resp.status == 403


async def test_a_delivered_second_opinion_reaches_the_patient_in_the_chat_at_once(
    live: Any,
) -> None:
    """R-SECOND: the consultant delivers the conclusion into the chat of the consultation it
    was asked in; the patient there gets the message with its /#/conclusions/ID link live,
    not only on the next history replay."""
    import aiohttp

    app: Running = live.running
    consultant_token, _ = await staff_token(app, Role.CONSULTANT)
    specialist_token, specialist_id = await staff_token(app, Role.SPECIALIST)
    consultant = await live.join(consultant_token, "consultant")
    token = await patient_token(app, "+79161234567")
    patient = await live.join(token, "patient")
    cid = (await patient.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    await consultant.ok("consultation:accept", {})
    await patient.wait_state(cid, "with_consultant")

    def auth(t: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {t}"}

    form = aiohttp.FormData()
    form.add_field("file", b"%PDF-1.4\n%%EOF\n", filename="mri.pdf", content_type="application/pdf")
    doc = await (await app.client.post("/api/v1/documents", data=form, headers=auth(token))).json()
    case = await (
        await app.client.post(
            "/api/v1/second-opinions",
            json={"consultation_id": cid, "document_ids": [doc["document_id"]]},
            headers=auth(token),
        )
    ).json()
    path = f"/api/v1/second-opinions/{case['second_opinion_id']}"
    resp = await app.client.post(
        f"{path}/assign", json={"specialist_id": specialist_id}, headers=auth(consultant_token)
    )
    assert resp.status == 200
    signed = await (
        await app.client.post(
            f"{path}/conclusion",
            json={"text": "Операция не нужна.", "recommendations": "ЛФК.", "sign": True},
            headers=auth(specialist_token),
        )
    ).json()
    resp = await app.client.post(f"{path}/deliver", headers=auth(consultant_token))
    assert resp.status == 200
    link = f"/#/conclusions/{signed['conclusion_id']}"
    message = await patient.wait("chat:message", lambda m: link in m["text"])
    assert message["consultation_id"] == cid and message["sender_role"] == "consultant"
    mine = await consultant.wait("chat:message", lambda m: link in m["text"])
    assert mine["message_id"] == message["message_id"]
