"""Consultant tools over the real API: identify a caller (R-AUTH-2), register a missing one
(R-AUTH-3), send them the login code."""

from __future__ import annotations

from appkit import Running
from helpers import ADULT_PHONE, add_adult, bearer, staff_token

from telemed.roles import Role

IDENTIFY = "/api/v1/patients/identify"
CALLER = {"policy_number": "P-1", "full_name": "иванов  иван", "birth_date": "1980-03-01"}


async def test_a_consultant_identifies_a_caller_and_sends_them_the_login_code(
    app: Running,
) -> None:
    """R-AUTH-2: policy number + name + date of birth identify the caller; the same SMS code
    then logs them in."""
    await add_adult(app)
    token, _ = await staff_token(app, Role.CONSULTANT)
    resp = await app.client.post(
        IDENTIFY, json={**CALLER, "phone": "8 916 123 45 67"}, headers=bearer(token)
    )
    assert resp.status == 200, await resp.text()
    found = await resp.json()
    assert found["full_name"] == "Иванов Иван" and found["policy_active"] is True
    assert found["masked_phone"] == "+7916***4567" and found["age"] == 45
    sent = await app.client.post(
        f"/api/v1/patients/{found['patient_id']}/login-code", headers=bearer(token)
    )
    assert sent.status == 202
    code = await app.last_code(ADULT_PHONE)
    login = await app.client.post(
        "/api/v1/auth/otp/verify", json={"phone": ADULT_PHONE, "code": code}
    )
    assert (await login.json())["user_id"] == found["patient_id"]


async def test_a_caller_whose_details_differ_is_not_identified(app: Running) -> None:
    """R-AUTH-2: a wrong date of birth, name, phone or policy gives not_found, no hint."""
    await add_adult(app)
    token, _ = await staff_token(app, Role.CONSULTANT)
    for change in [
        {"birth_date": "1980-03-02"},
        {"full_name": "Петров Иван"},
        {"policy_number": "P-404"},
        {"phone": "+79160000000"},
    ]:
        resp = await app.client.post(IDENTIFY, json={**CALLER, **change}, headers=bearer(token))
        assert resp.status == 404, change
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_a_consultant_registers_a_caller_missing_from_the_list(app: Running) -> None:
    """R-AUTH-3: registered by the consultant, then identifiable and able to log in."""
    token, consultant_id = await staff_token(app, Role.CONSULTANT)
    new = {
        "policy_number": "NEW-7",
        "full_name": "Зайцева Ольга",
        "birth_date": "1992-11-30",
        "sex": "F",
        "phone": "+7 916 555 44 33",
    }
    resp = await app.client.post("/api/v1/patients", json=new, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    again = await app.client.post("/api/v1/patients", json=new, headers=bearer(token))
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "already_registered"
    found = await app.client.post(
        IDENTIFY,
        json={k: new[k] for k in ("policy_number", "full_name", "birth_date")},
        headers=bearer(token),
    )
    assert found.status == 200
    from telemed.models import Patient

    async with app.services.db.read() as session:
        patient = await session.get(Patient, (await found.json())["patient_id"])
    assert patient is not None
    assert patient.source == "consultant" and patient.registered_by == consultant_id
    await app.client.post("/api/v1/auth/otp", json={"phone": "+79165554433"})
    assert await app.last_code("+79165554433")


async def test_registration_refuses_bad_details(app: Running) -> None:
    token, _ = await staff_token(app, Role.CONSULTANT)
    base = {
        "policy_number": "X-1",
        "full_name": "Кто-то",
        "birth_date": "1990-01-01",
        "sex": "F",
        "phone": "+79165554433",
    }
    for change in [
        {"sex": "X"},
        {"birth_date": "2999-01-01"},
        {"phone": "12"},
        {"birth_date": "01.01.1990"},
    ]:
        resp = await app.client.post(
            "/api/v1/patients", json={**base, **change}, headers=bearer(token)
        )
        assert resp.status == 422, change
