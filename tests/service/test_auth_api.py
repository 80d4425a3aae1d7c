"""Access through the real HTTP API: SMS codes (R-AUTH-1), staff logins, tokens, roles,
and the consent gate (R-CONSENT-1)."""

from __future__ import annotations

from datetime import timedelta

from appkit import Running
from helpers import ADULT_PHONE, add_adult, add_patients, bearer, patient_token, staff_token

from telemed.roles import Role

OTP = "/api/v1/auth/otp"
VERIFY = "/api/v1/auth/otp/verify"


async def ask(app: Running, phone: str = ADULT_PHONE, ip: str | None = None) -> int:
    headers = {"X-Forwarded-For": ip} if ip else {}
    resp = await app.client.post(OTP, json={"phone": phone}, headers=headers)
    return resp.status


async def verify(app: Running, code: str, phone: str = ADULT_PHONE) -> tuple[int, dict]:  # type: ignore[type-arg]
    resp = await app.client.post(VERIFY, json={"phone": phone, "code": code})
    return resp.status, await resp.json()


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


async def test_a_patient_logs_in_with_phone_and_sms_code(app: Running) -> None:
    """R-AUTH-1: the phone is the login; the code arrives by SMS to that phone."""
    await add_adult(app)
    assert await ask(app, "8 (916) 123-45-67") == 202
    code = await app.last_code(ADULT_PHONE)
    status, body = await verify(app, code, "+7 916 123 45 67")
    assert status == 200
    assert body["role"] == "patient" and body["token"] and body["user_id"]
    me = await app.client.get("/api/v1/me", headers=bearer(body["token"]))
    assert (await me.json())["full_name"] == "Иванов Иван"


async def test_a_code_works_only_once(app: Running) -> None:
    """R-AUTH-1: codes are single use."""
    await add_adult(app)
    await ask(app)
    code = await app.last_code(ADULT_PHONE)
    assert (await verify(app, code))[0] == 200
    status, body = await verify(app, code)
    assert status == 401 and body["error"]["code"] == "invalid_code"


async def test_a_code_expires_after_five_minutes(app: Running) -> None:
    """R-AUTH-1: a code older than otp_ttl (5 min) is refused."""
    await add_adult(app)
    await ask(app)
    code = await app.last_code(ADULT_PHONE)
    app.clock.advance(timedelta(minutes=5, seconds=1))
    status, body = await verify(app, code)
    assert status == 401 and body["error"]["code"] == "invalid_code"


async def test_a_code_just_before_expiry_still_works(app: Running) -> None:
    """R-AUTH-1: the code is valid for the whole otp_ttl."""
    await add_adult(app)
    await ask(app)
    code = await app.last_code(ADULT_PHONE)
    app.clock.advance(timedelta(minutes=4, seconds=59))
    assert (await verify(app, code))[0] == 200


async def test_five_wrong_tries_burn_the_code(app: Running) -> None:
    """R-AUTH-1: at most 5 tries per code; after them even the right code is refused."""
    await add_adult(app)
    await ask(app)
    code = await app.last_code(ADULT_PHONE)
    answers = [await verify(app, wrong(code)) for _ in range(5)]
    assert [a[1]["error"]["code"] for a in answers] == ["invalid_code"] * 4 + ["too_many_attempts"]
    assert answers[0][1]["error"]["details"]["attempts_left"] == 4
    status, body = await verify(app, code)
    assert status == 429 and body["error"]["code"] == "too_many_attempts"


async def test_a_new_code_replaces_the_old_one(app: Running) -> None:
    """R-AUTH-1: only the newest code is valid, so tries do not add up across codes."""
    await add_adult(app)
    await ask(app)
    first = await app.last_code(ADULT_PHONE)
    app.clock.advance(timedelta(seconds=61))
    await ask(app)
    second = await app.last_code(ADULT_PHONE)
    if first != second:
        assert (await verify(app, first))[0] == 401
    assert (await verify(app, second))[0] == 200


async def test_a_new_code_can_be_asked_for_only_after_the_cooldown(app: Running) -> None:
    """R-AUTH-1: 60 s resend cooldown, with Retry-After."""
    await add_adult(app)
    assert await ask(app) == 202
    app.clock.advance(timedelta(seconds=30))
    resp = await app.client.post(OTP, json={"phone": ADULT_PHONE})
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "otp_cooldown"
    assert resp.headers["Retry-After"] == "30"
    app.clock.advance(timedelta(seconds=30))
    assert await ask(app) == 202


async def test_codes_per_phone_are_capped_per_hour(app: Running) -> None:
    """R-AUTH-1: at most otp_per_phone_per_hour (5) codes per phone per hour."""
    await add_adult(app)
    statuses = []
    for _ in range(6):
        statuses.append(await ask(app))
        app.clock.advance(timedelta(seconds=61))
    assert statuses == [202] * 5 + [429]
    app.clock.advance(timedelta(minutes=60))
    assert await ask(app) == 202
    await app.services.auth.drain()
    assert len(app.sms()) == 6


async def test_codes_per_client_address_are_capped_per_hour(start_app, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    """R-AUTH-1: one address cannot spray codes over many phones."""
    app: Running = await start_app(sqlite_url, auth={"otp_per_address_per_hour": 3})
    phones = [f"+7916123450{i}" for i in range(5)]
    statuses = [await ask(app, p) for p in phones]
    assert statuses == [202, 202, 202, 429, 429]


async def test_known_and_unknown_numbers_get_the_same_answer(app: Running) -> None:
    """R-AUTH-1: the answer does not reveal whether a phone is insured; only known ones get SMS."""
    await add_adult(app)
    known = await app.client.post(OTP, json={"phone": ADULT_PHONE})
    unknown = await app.client.post(OTP, json={"phone": "+79160000000"})
    assert known.status == unknown.status == 202
    assert await known.json() == await unknown.json()
    await app.services.auth.drain()
    assert [m["to"] for m in app.sms()] == [ADULT_PHONE]
    status, body = await verify(app, "123456", "+79160000000")
    assert status == 401 and body["error"]["code"] == "invalid_code"
    again = await app.client.post(OTP, json={"phone": "+79160000000"})
    assert again.status == 429  # the cooldown applies to unknown numbers too


async def test_codes_are_stored_hashed(app: Running) -> None:
    """R-AUTH-1: the database never holds a code in clear."""
    from sqlalchemy import select

    from telemed.models import OtpCode

    await add_adult(app)
    await ask(app)
    code = await app.last_code(ADULT_PHONE)
    async with app.services.db.read() as session:
        stored = (await session.scalars(select(OtpCode.code_hash))).all()
    assert stored and all(code not in h for h in stored) and all(len(h) == 64 for h in stored)


async def test_a_phone_that_is_not_a_phone_is_refused(app: Running) -> None:
    for bad in ["hello", "123", "+7 916 abc 45 67", "9" * 40]:
        resp = await app.client.post(OTP, json={"phone": bad})
        assert resp.status == 422, bad
        body = await resp.json()
        assert body["error"]["code"] == "validation_error"
        assert bad not in body["error"]["message"]


async def test_staff_log_in_with_password_and_wrong_password_is_refused(app: Running) -> None:
    token, _ = await staff_token(app, Role.CONSULTANT)
    me = await app.client.get("/api/v1/me", headers=bearer(token))
    assert (await me.json())["role"] == "consultant"
    for login, password in [("consultant", "nope-nope"), ("nobody", "secret-pass")]:
        resp = await app.client.post(
            "/api/v1/auth/staff", json={"login": login, "password": password}
        )
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "invalid_credentials"


async def test_staff_passwords_are_stored_with_argon2(app: Running) -> None:
    from sqlalchemy import select

    from telemed.models import Staff

    await staff_token(app, Role.THERAPIST)
    async with app.services.db.read() as session:
        stored = await session.scalar(select(Staff.password_hash))
    assert stored is not None and stored.startswith("$argon2id$")


async def test_tokens_expire(app: Running) -> None:
    token, _ = await staff_token(app, Role.CONSULTANT)
    app.clock.advance(timedelta(hours=12, seconds=1))
    resp = await app.client.get("/api/v1/me", headers=bearer(token))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"


async def test_logout_revokes_the_token(app: Running) -> None:
    token, _ = await staff_token(app, Role.CONSULTANT)
    assert (await app.client.post("/api/v1/auth/logout", headers=bearer(token))).status == 204
    resp = await app.client.get("/api/v1/me", headers=bearer(token))
    assert resp.status == 401


async def test_routes_check_the_role(app: Running) -> None:
    """Every role sees only what it needs: a patient cannot identify callers, a doctor cannot
    register patients, nobody anonymous gets in."""
    await add_adult(app)
    patient = await patient_token(app)
    therapist, _ = await staff_token(app, Role.THERAPIST)
    body = {"policy_number": "P-1", "full_name": "Иванов Иван", "birth_date": "1980-03-01"}
    for headers in [bearer(patient), bearer(therapist), {}, bearer("forged")]:
        resp = await app.client.post("/api/v1/patients/identify", json=body, headers=headers)
        assert resp.status in (401, 403)
    consultant, _ = await staff_token(app, Role.CONSULTANT)
    resp = await app.client.post(
        "/api/v1/consultations", json={"channel": "video"}, headers=bearer(consultant)
    )
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"


async def test_no_patient_service_before_consent(app: Running) -> None:
    """R-CONSENT-1: every patient service answers 403 consent_required until accepted."""
    await add_adult(app)
    token = await patient_token(app, consent=False)
    me = await (await app.client.get("/api/v1/me", headers=bearer(token))).json()
    assert me["consent_required"] is True
    for method, path, body in [
        ("POST", "/api/v1/consultations", {"channel": "chat"}),
        ("GET", "/api/v1/consultations", None),
    ]:
        resp = await app.client.request(method, path, json=body, headers=bearer(token))
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "consent_required"


async def test_consent_is_recorded_with_version_hash_time_address_and_browser(
    app: Running,
) -> None:
    """R-CONSENT-1: acceptance is recorded; services open; withdrawal closes them again."""
    from sqlalchemy import select

    from telemed.consent import consent_text
    from telemed.models import ConsentRecord

    await add_adult(app)
    token = await patient_token(app, consent=False)
    consent = await (await app.client.get("/api/v1/consent")).json()
    stale = await app.client.post(
        "/api/v1/me/consent", json={"version": "1999-01"}, headers=bearer(token)
    )
    assert stale.status == 409 and (await stale.json())["error"]["code"] == "consent_outdated"
    resp = await app.client.post(
        "/api/v1/me/consent",
        json={"version": consent["version"]},
        headers={**bearer(token), "User-Agent": "TestBrowser/1.0"},
    )
    assert resp.status == 201
    async with app.services.db.read() as session:
        rec = await session.scalar(select(ConsentRecord))
    assert rec is not None
    assert rec.version == consent["version"]
    assert rec.text_sha256 == consent_text().sha256 == consent["sha256"]
    assert rec.accepted_at == app.clock.now()
    assert rec.client_addr == "127.0.0.1" and rec.user_agent == "TestBrowser/1.0"
    ok = await app.client.post(
        "/api/v1/consultations", json={"channel": "chat"}, headers=bearer(token)
    )
    assert ok.status == 201
    assert (await app.client.delete("/api/v1/me/consent", headers=bearer(token))).status == 204
    resp = await app.client.get("/api/v1/consultations", headers=bearer(token))
    assert (await resp.json())["error"]["code"] == "consent_required"


async def test_the_consent_text_comes_in_russian_and_english(app: Running) -> None:
    ru = await (await app.client.get("/api/v1/consent")).json()
    en = await (await app.client.get("/api/v1/consent?lang=en")).json()
    assert ru["language"] == "ru" and "Согласие" in ru["text"]
    assert en["language"] == "en" and "Consent" in en["text"]
    assert ru["version"] == en["version"]


async def test_the_time_zone_must_be_an_iana_name(app: Running) -> None:
    """R-CAL-1: the patient sets their time zone; a bad name is refused."""
    await add_adult(app)
    token = await patient_token(app)
    bad = await app.client.patch(
        "/api/v1/me", json={"timezone": "Mars/Olympus"}, headers=bearer(token)
    )
    assert bad.status == 422
    good = await app.client.patch(
        "/api/v1/me", json={"timezone": "Asia/Vladivostok"}, headers=bearer(token)
    )
    assert (await good.json())["timezone"] == "Asia/Vladivostok"


async def test_a_representative_accepts_the_childs_consent_for_them(app: Running) -> None:
    """R-CONSENT-1 for a child: /me says a representative consents; the representative's text
    (not "I, the insured person") is served and its hash is what the acceptance records."""
    from sqlalchemy import select

    from telemed.consent import Variant, consent_text
    from telemed.models import ConsentRecord

    await add_patients(
        app, ["C-9,2026-01-01,2026-01-01,2027-12-31,Петрова Аня,2015-06-01,F,+79167654321"]
    )
    token = await patient_token(app, "+79167654321", consent=False)
    me = await (await app.client.get("/api/v1/me", headers=bearer(token))).json()
    assert me["consent_required"] and me["consent_variant"] == "representative"
    assert me["duty_doctor"] == "paediatrician"  # R-ROUTE-1: the child's home offers them
    for lang, words in (("ru", "законный представитель"), ("en", "legal representative")):
        resp = await app.client.get(f"/api/v1/consent?lang={lang}&variant=representative")
        shown = await resp.json()
        assert shown["variant"] == "representative" and words in shown["text"]
        assert "застрахованное лицо, даю" not in shown["text"]
    resp = await app.client.post(
        "/api/v1/me/consent", json={"version": shown["version"]}, headers=bearer(token)
    )
    assert resp.status == 201
    async with app.services.db.read() as session:
        rec = await session.scalar(select(ConsentRecord))
    assert rec is not None
    assert rec.text_sha256 == consent_text(variant=Variant.REPRESENTATIVE).sha256
    assert rec.text_sha256 != consent_text().sha256


async def test_an_adult_consents_for_themselves(app: Running) -> None:
    """An adult gets the insured person's own consent text."""
    await add_adult(app)
    token = await patient_token(app, consent=False)
    me = await (await app.client.get("/api/v1/me", headers=bearer(token))).json()
    assert me["consent_variant"] == "self" and me["duty_doctor"] == "therapist"
    own = await (await app.client.get("/api/v1/consent")).json()
    assert own["variant"] == "self" and "застрахованное лицо" in own["text"]
