"""R-URG-5: after the doctor the patient is back with the consultant, who sees the doctor's
recommendations (the signed conclusion; of a draft only that it is not signed) and records
the services the patient needs and the outcome; the patient sees it in "My records"."""

from __future__ import annotations

from typing import Any

import pytest
from clinic import Clinic
from helpers import bearer, staff_token

from telemed.roles import Role

CONCLUSION = "ОРВИ, лёгкое течение."
ADVICE = "Обильное питьё, контроль температуры."


@pytest.fixture
def clinic_db_url(any_db_url: str) -> str:
    """These run on SQLite and on PostgreSQL."""
    return any_db_url


async def _back_from_the_doctor(clinic: Clinic) -> tuple[str, str, str]:
    """An urgent consultation that went to the duty therapist and back: (patient token,
    therapist token, consultation id)."""
    therapist, _ = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    live = await clinic.join(patient, "patient")
    cid = (await live.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    consultant = await clinic.join(clinic.consultant, "consultant")
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    doctor = await clinic.join(therapist, "therapist")
    await doctor.ok("consultation:accept", {"consultation_id": cid})
    await doctor.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
    await consultant.wait_state(cid, "with_consultant")
    return patient, therapist, cid


async def _view(clinic: Clinic, cid: str, token: str | None = None) -> Any:
    resp = await clinic.app.client.get(
        f"/api/v1/consultations/{cid}/follow-up", headers=bearer(token or clinic.consultant)
    )
    return resp.status, await resp.json()


async def test_the_consultant_sees_where_the_conclusion_stands_then_its_recommendations(
    clinic: Clinic,
) -> None:
    """R-URG-5: none -> draft (no text shown) -> signed (text and recommendations)."""
    _, therapist, cid = await _back_from_the_doctor(clinic)
    status, view = await _view(clinic, cid)
    assert status == 200 and view["conclusion"]["state"] == "none"
    assert view["conclusion"]["doctor_name"] and view["follow_up"] is None
    url = f"/api/v1/consultations/{cid}/conclusion"
    body = {"text": CONCLUSION, "recommendations": ADVICE}
    assert (await clinic.app.client.post(url, json=body, headers=bearer(therapist))).status == 200
    _, view = await _view(clinic, cid)
    assert view["conclusion"]["state"] == "draft"
    assert view["conclusion"]["text"] == "" and view["conclusion"]["recommendations"] == ""
    signed = await clinic.app.client.post(
        url, json={**body, "sign": True}, headers=bearer(therapist)
    )
    assert signed.status == 200
    _, view = await _view(clinic, cid)
    assert view["conclusion"]["state"] == "signed"
    assert view["conclusion"]["text"] == CONCLUSION
    assert view["conclusion"]["recommendations"] == ADVICE


async def test_the_follow_up_is_recorded_and_shown_in_my_records(clinic: Clinic) -> None:
    """R-URG-5, seed 000 "My records": needs from the closed list, outcome and note."""
    patient, _, cid = await _back_from_the_doctor(clinic)
    resp = await clinic.app.client.put(
        f"/api/v1/consultations/{cid}/follow-up",
        json={"needs": ["tests", "specialist"], "outcome": "booked", "note": "Анализ крови."},
        headers=bearer(clinic.consultant),
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["needs"] == ["specialist", "tests"]  # in the list's order
    again = await clinic.app.client.put(
        f"/api/v1/consultations/{cid}/follow-up",
        json={"needs": ["tests"], "outcome": "referred", "note": ""},
        headers=bearer(clinic.consultant),
    )
    assert again.status == 200  # corrected in place
    records = await (await clinic.app.client.get("/api/v1/records", headers=bearer(patient))).json()
    mine = next(r for r in records["items"] if r["consultation_id"] == cid)
    assert mine["follow_up"]["needs"] == ["tests"]
    assert mine["follow_up"]["outcome"] == "referred"
    assert mine["follow_up"]["recorded_at"].endswith("+03:00")  # the patient's zone


async def test_only_the_consultations_consultant_records_it_and_only_from_the_lists(
    clinic: Clinic,
) -> None:
    """R-URG-5: who asks is checked; the needs and outcome are closed lists."""
    patient, therapist, cid = await _back_from_the_doctor(clinic)
    url = f"/api/v1/consultations/{cid}/follow-up"
    good = {"needs": ["none"], "outcome": "finished", "note": ""}
    other, _ = await staff_token(clinic.app, Role.CONSULTANT, "other-consultant")
    for token, status in ((other, 403), (therapist, 403), (patient, 403)):
        resp = await clinic.app.client.put(url, json=good, headers=bearer(token))
        assert resp.status == status, (token, await resp.text())
    assert (await _view(clinic, cid, other))[0] == 403
    for bad in (
        {"needs": ["spa"], "outcome": "finished"},
        {"needs": ["none"], "outcome": "maybe"},
        {"needs": ["none", "tests"], "outcome": "finished"},
    ):
        resp = await clinic.app.client.put(url, json=bad, headers=bearer(clinic.consultant))
        assert resp.status == 422, bad
    records = await (await clinic.app.client.get("/api/v1/records", headers=bearer(patient))).json()
    assert all(r["follow_up"] is None for r in records["items"])
