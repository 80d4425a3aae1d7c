"""No log line holds medical text, a name or a phone number (issue 14): a whole urgent
flow with a conclusion, through REST and Socket.IO clients, with the failures a client can
cause on the way (a NUL in the chat, a foreign record), and the captured service log is
scanned for the chat text, the conclusion, the patient's name and phone."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from appkit import Running
from helpers import bearer, patient_token, staff_token

from telemed.roles import Role

PHONE = "+79161234567"  # the adult of tests/signalling/conftest.py, Иванов Иван
NAME = "Иванов Иван"
CHAT = "Сильная головная боль третий день, тошнота"
FINDINGS = "Мигрень без ауры, исключить гипертонический криз"
ADVICE = "Суматриптан 50 мг при приступе, дневник головной боли"


async def test_an_urgent_flow_with_a_conclusion_logs_no_medical_text_name_or_phone(
    live: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the service's level (config logging.level)
    app: Running = live.running
    consultant_token, _ = await staff_token(app, Role.CONSULTANT)
    doctor_token, _ = await staff_token(app, Role.THERAPIST)
    outsider_token, _ = await staff_token(app, Role.PAEDIATRICIAN, "outsider")
    consultant = await live.join(consultant_token, "consultant")
    doctor = await live.join(doctor_token, "doctor")
    await consultant.ok("queue:watch")
    await doctor.ok("queue:watch")
    token = await patient_token(app, PHONE)
    patient = await live.join(token, "patient")

    cid = (await patient.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    await consultant.ok("consultation:accept", {})
    await patient.wait_state(cid, "with_consultant")
    await patient.ok("chat:send", {"consultation_id": cid, "text": CHAT})
    bad = await patient.call("chat:send", {"consultation_id": cid, "text": CHAT + "\x00"})
    assert bad["error"]["code"] == "validation_error"
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await patient.wait_state(cid, "waiting_doctor")
    await doctor.ok("consultation:accept", {"consultation_id": cid})
    await patient.wait_state(cid, "with_doctor")
    await doctor.ok("chat:send", {"consultation_id": cid, "text": CHAT})
    app.clock.advance(timedelta(minutes=10))
    await doctor.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
    await patient.wait_state(cid, "with_consultant")
    await consultant.ok("consultation:close", {"consultation_id": cid, "outcome": "finished"})
    await patient.wait("consultation:closed")

    client = app.client
    body = {"text": FINDINGS, "recommendations": ADVICE, "sign": True}
    resp = await client.post(
        f"/api/v1/consultations/{cid}/conclusion", json=body, headers=bearer(doctor_token)
    )
    assert resp.status in (200, 201), await resp.text()
    conclusion_id = (await resp.json())["conclusion_id"]
    for who, status in ((token, 200), (outsider_token, 404)):
        resp = await client.get(f"/api/v1/conclusions/{conclusion_id}", headers=bearer(who))
        assert resp.status == status
    me = (await (await client.get("/api/v1/me", headers=bearer(token))).json())["user_id"]
    resp = await client.get(f"/fhir/Patient/{me}/$everything", headers=bearer(token))
    assert resp.status == 200
    resp = await client.get("/api/v1/records", headers=bearer(token))
    assert resp.status == 200
    resp = await client.post(
        "/api/v1/auth/staff", json={"login": NAME, "password": "x" * 12}
    )  # a name typed as a login
    assert resp.status == 401

    logged = "\n".join(
        [caplog.text]
        + [str(r.args) for r in caplog.records]
        + [str(getattr(r, "__dict__", "")) for r in caplog.records]
    )
    services = {r.name for r in caplog.records if r.name.startswith("telemed")}
    assert services, "no service line was captured: the scan would prove nothing"
    for secret in (CHAT, FINDINGS, ADVICE, NAME, "Иванов", PHONE, PHONE[2:], "9161234567"):
        assert secret not in logged, secret
