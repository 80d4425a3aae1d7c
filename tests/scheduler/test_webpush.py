"""Reminders that reach the phone (R-REMIND-1): Web Push through a push service on 127.0.0.1
that checks VAPID and decrypts the payload as a browser would, SMS as the fallback, and the
patient's notifications list. The clock is moved by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from appkit import Running
from clinic import ADULT, CHILD, Clinic
from helpers import add_patients, bearer, staff_token
from pushservice import Device, PushService, unb64url
from sqlalchemy import func, select

from scheduler.jobs import Fired
from telemed.models import Consultation, Patient, PushSubscription
from telemed.notify.webpush import topic_of
from telemed.roles import Role

FIRST_SLOT = "2026-01-15T10:00:00+00:00"  # T = 13:00 Moscow; the clock starts at T-60m
SECOND_SLOT = "2026-01-15T10:30:00+00:00"


@pytest.fixture
async def pushes() -> AsyncIterator[PushService]:
    service = await PushService().start()
    yield service
    await service.stop()


@pytest.fixture
def start_clinic(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path, pushes: PushService
) -> Callable[..., Any]:
    """Start (or restart, on the same database) the app with Web Push to the test service."""

    async def start(first: bool = True) -> Clinic:
        app: Running = await start_app(
            sqlite_url,
            push={"backend": "webpush", "endpoint_hosts": [pushes.host]},
            storage={"documents_dir": str(tmp_path / "documents")},
            scheduler={"enabled": False},
        )
        if first:
            await add_patients(app, [ADULT, CHILD])
        clinic = Clinic(app, tmp_path / "push-unused.jsonl", str(app.client.make_url("/")))
        clinic.admin = (await staff_token(app, Role.ADMIN, "admin" if first else "admin2"))[0]
        login = "consultant" if first else "consultant2"
        clinic.consultant, clinic.consultant_id = await staff_token(app, Role.CONSULTANT, login)
        config = await (await app.client.get("/api/v1/push/config")).json()
        pushes.server_key = config["public_key"]
        return clinic

    return start


@pytest.fixture
async def clinic(start_clinic: Callable[..., Any]) -> AsyncIterator[Clinic]:
    c: Clinic = await start_clinic()
    yield c
    for client in c.clients:
        await client.close()


async def subscribe(clinic: Clinic, token: str, device: Device) -> None:
    resp = await clinic.app.client.post(
        "/api/v1/me/push-subscriptions", json=device.subscription(), headers=bearer(token)
    )
    assert resp.status == 201, await resp.text()


def reminder_sms(clinic: Clinic) -> list[dict[str, Any]]:
    return [m for m in clinic.app.sms() if m["code"] is None and "Напоминание" in m["text"]]


async def test_push_config_gives_the_vapid_public_key_kept_in_the_database(clinic: Clinic) -> None:
    """The application server key is an uncompressed P-256 point, base64url, the same each
    time (generated once and kept like the OTP key)."""
    first = await (await clinic.app.client.get("/api/v1/push/config")).json()
    again = await (await clinic.app.client.get("/api/v1/push/config")).json()
    key = unb64url(first["public_key"])
    assert len(key) == 65 and key[0] == 4 and first == again
    assert "=" not in first["public_key"]


async def test_the_reminder_reaches_every_device_once_at_remind_before_without_medical_text(
    clinic: Clinic, pushes: PushService
) -> None:
    """R-REMIND-1: at T-10 each device of the patient gets one push (VAPID checked, payload
    decrypted): title, a short line with the time in the patient's zone, the appointment
    screen; the tag and Topic come from the outbox key. No SMS: the push was taken."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    phone, laptop = pushes.device(), pushes.device()
    await subscribe(clinic, patient, phone)
    await subscribe(clinic, patient, laptop)
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(minutes=49, seconds=59))  # T-10m-1s
    await clinic.tick()
    assert pushes.received == []
    clinic.app.clock.advance(timedelta(seconds=1))  # T-10m
    await clinic.tick()
    for _ in range(3):
        clinic.app.clock.advance(timedelta(seconds=30))
        await clinic.tick()
    assert pushes.refused == []
    assert len(pushes.to(phone)) == 1 and len(pushes.to(laptop)) == 1
    got = pushes.to(phone)[0]
    assert set(got.payload) == {"title", "body", "url", "tag"}
    assert got.payload["title"] == "Скоро консультация"
    assert "13:00" in got.payload["body"]  # Moscow, the patient's zone
    assert got.payload["url"] == f"/#booking/{booked['appointment_id']}"
    assert got.topic == topic_of(got.payload["tag"]) and len(got.topic) <= 32
    assert pushes.to(laptop)[0].payload == got.payload  # the same tag: one notification
    text = str(got.payload)
    assert "therapist" not in text and "терапевт" not in text
    assert reminder_sms(clinic) == []


async def test_the_reminder_is_pushed_once_across_a_scheduler_restart(
    start_clinic: Callable[..., Any], pushes: PushService
) -> None:
    """R-REMIND-1: the first node claims the reminder and dies before sending; the node that
    starts next sends it, once, and never again however often it ticks."""
    first: Clinic = await start_clinic()
    _, doctor_id = await first.doctor(Role.THERAPIST, "ther")
    patient = await first.patient()
    device = pushes.device()
    await subscribe(first, patient, device)
    await first.book(patient, doctor_id, FIRST_SLOT)
    first.app.clock.advance(timedelta(minutes=50))
    claimed = Fired()
    await first.runner.work._reminders(first.app.clock.now(), claimed)  # claimed, not sent
    assert claimed.counts == {"reminder": 1} and pushes.received == []
    await first.app.client.close()  # the node is gone
    second: Clinic = await start_clinic(first=False)
    for _ in range(4):
        await second.tick()
        second.app.clock.advance(timedelta(seconds=20))
    assert len(pushes.to(device)) == 1 and pushes.refused == []
    assert pushes.to(device)[0].payload["title"] == "Скоро консультация"
    await second.app.client.close()


async def test_a_gone_subscription_is_deleted_and_the_next_reminder_goes_by_sms(
    clinic: Clinic, pushes: PushService
) -> None:
    """A 410 from the push service deletes the subscription; the reminder it could not take
    goes by SMS at once, and so does the next one (no device is left)."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    await subscribe(clinic, patient, pushes.device(answer=410))
    await clinic.book(patient, doctor_id, FIRST_SLOT)
    await clinic.book(patient, doctor_id, SECOND_SLOT)
    clinic.app.clock.advance(timedelta(minutes=50))  # the first reminder
    await clinic.tick()
    async with clinic.app.services.db.read() as session:
        left = await session.scalar(select(func.count()).select_from(PushSubscription))
    assert left == 0
    assert len(reminder_sms(clinic)) == 1 and "13:00" in reminder_sms(clinic)[0]["text"]
    assert reminder_sms(clinic)[0]["to"] == "+79161234567"
    clinic.app.clock.advance(timedelta(minutes=30))  # the second reminder
    await clinic.tick()
    sms = reminder_sms(clinic)
    assert len(sms) == 2 and "13:30" in sms[1]["text"]
    assert pushes.received == []


async def test_an_endpoint_outside_the_known_push_services_is_refused(
    clinic: Clinic, pushes: PushService
) -> None:
    """The server never POSTs elsewhere: an endpoint on another host or port, or plain http
    to a host listed without a port, is refused with validation_error."""
    patient = await clinic.patient()
    good = pushes.device().subscription()
    for endpoint in (
        "https://evil.example/push/abc",
        "http://127.0.0.1:1/push/abc",
        "http://fcm.googleapis.com/fcm/send/abc",
        "https://fcm.googleapis.com.evil.example/fcm/send/abc",
        "https://user@fcm.googleapis.com/fcm/send/abc",
    ):
        resp = await clinic.app.client.post(
            "/api/v1/me/push-subscriptions",
            json={**good, "endpoint": endpoint},
            headers=bearer(patient),
        )
        body = await resp.json()
        assert resp.status == 422 and body["error"]["code"] == "validation_error", endpoint
    async with clinic.app.services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(PushSubscription)) == 0


async def test_devices_are_added_and_removed_by_their_owner_only(
    clinic: Clinic, pushes: PushService
) -> None:
    """Several devices per patient; DELETE by endpoint; another patient cannot remove it."""
    adult = await clinic.patient()
    child = await clinic.patient("+79167654321")
    one, two = pushes.device(), pushes.device()
    await subscribe(clinic, adult, one)
    await subscribe(clinic, adult, two)
    await subscribe(clinic, adult, two)  # the same browser again: still one row
    async with clinic.app.services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(PushSubscription)) == 2
    gone = await clinic.app.client.delete(
        "/api/v1/me/push-subscriptions", json={"endpoint": one.endpoint}, headers=bearer(child)
    )
    assert gone.status == 404
    gone = await clinic.app.client.delete(
        "/api/v1/me/push-subscriptions", json={"endpoint": one.endpoint}, headers=bearer(adult)
    )
    assert gone.status == 204
    staff = await clinic.app.client.post(
        "/api/v1/me/push-subscriptions", json=two.subscription(), headers=bearer(clinic.consultant)
    )
    assert staff.status == 403
    async with clinic.app.services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(PushSubscription)) == 1


async def test_the_notifications_list_shows_the_reminder_live_with_a_read_mark(
    clinic: Clinic, pushes: PushService
) -> None:
    """Every message to the patient is in their list, newest first, announced live as
    notification:new; reading it is theirs alone."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    other = await clinic.patient("+79167654321")
    live = await clinic.join(patient, "patient")
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT, notify_via="push")
    clinic.app.clock.advance(timedelta(minutes=50))
    await clinic.tick()
    new = await live.wait("notification:new", lambda d: d["kind"] == "reminder")
    assert new["title"] == "Скоро консультация" and new["read"] is False
    listed = await (
        await clinic.app.client.get("/api/v1/notifications", headers=bearer(patient))
    ).json()
    assert [i["kind"] for i in listed["items"]] == ["reminder", "appointment_booked"]
    assert listed["unread"] == 2
    first = listed["items"][0]
    assert first["notification_id"] == new["notification_id"]
    assert first["appointment_id"] == booked["appointment_id"]
    path = f"/api/v1/notifications/{first['notification_id']}/read"
    assert (await clinic.app.client.post(path, headers=bearer(other))).status == 404
    assert (await clinic.app.client.post(path, headers=bearer(patient))).status == 204
    listed = await (
        await clinic.app.client.get("/api/v1/notifications", headers=bearer(patient))
    ).json()
    assert listed["items"][0]["read"] is True and listed["unread"] == 1
    theirs = await (
        await clinic.app.client.get("/api/v1/notifications", headers=bearer(other))
    ).json()
    assert theirs == {"items": [], "unread": 0}


async def test_a_cancellation_by_the_clinic_is_pushed_to_the_patient(
    clinic: Clinic, pushes: PushService
) -> None:
    """The consultant cancels: the patient's device is told (title, date, the appointment)."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    device = pushes.device()
    await subscribe(clinic, patient, device)
    booked = await clinic.book(patient, doctor_id, FIRST_SLOT)
    resp = await clinic.app.client.post(
        f"/api/v1/appointments/{booked['appointment_id']}/cancel",
        headers=bearer(clinic.consultant),
    )
    assert resp.status == 200, await resp.text()
    await clinic.tick()
    (got,) = pushes.to(device)
    assert got.payload["title"] == "Запись отменена" and "13:00" in got.payload["body"]
    assert got.payload["url"] == f"/#booking/{booked['appointment_id']}"


async def test_a_booked_consultation_opening_is_pushed_when_the_patient_is_not_on_the_page(
    clinic: Clinic, pushes: PushService
) -> None:
    """R-SCH 3: at the appointment's time the patient, not connected, is told on the phone
    to come in; the tap opens the waiting screen."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    patient = await clinic.patient()
    device = pushes.device()
    await subscribe(clinic, patient, device)
    await clinic.book(patient, doctor_id, FIRST_SLOT)
    clinic.app.clock.advance(timedelta(minutes=50))
    await clinic.tick()
    clinic.app.clock.advance(timedelta(minutes=10))
    await clinic.tick()
    got = pushes.to(device)
    assert [r.payload["title"] for r in got] == ["Скоро консультация", "Консультация начинается"]
    assert got[1].payload["url"] == "/#consultation"


async def test_staff_calling_a_patient_whose_page_is_closed_pushes_to_their_phone(
    clinic: Clinic, pushes: PushService
) -> None:
    """The patient's page dropped while they wait; the consultant accepts: their phone is
    told someone is waiting for them, and the tap opens the waiting screen."""
    patient = await clinic.patient()
    device = pushes.device()
    await subscribe(clinic, patient, device)
    page = await clinic.join(patient, "patient")
    cid = (await page.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    await page.close()
    consultant = await clinic.join(clinic.consultant, "consultant")
    for _ in range(50):  # the drop is recorded when the server sees the disconnect
        async with clinic.app.services.db.read() as session:
            row = await session.get(Consultation, cid)
        if row is not None and row.patient_away_since is not None:
            break
        await asyncio.sleep(0.05)
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await clinic.tick()
    (got,) = pushes.to(device)
    assert got.payload["title"] == "Вас ждут на консультации"
    assert got.payload["url"] == "/#consultation"


async def test_logging_out_drops_the_devices_that_session_registered_and_sms_takes_over(
    clinic: Clinic, pushes: PushService
) -> None:
    """R-REMIND-1 after a logout: a subscription belongs to the session that registered it.
    Logging out of the phone's session (the page could not unsubscribe: no DELETE) drops the
    phone, not the laptop logged in beside it; a browser registering again from a new
    session moves to it. With no device left, the next reminder goes by SMS."""
    _, doctor_id = await clinic.doctor(Role.THERAPIST, "ther")
    on_phone = await clinic.patient()
    clinic.app.clock.advance(timedelta(seconds=61))  # the SMS code's resend cooldown
    on_laptop = await clinic.patient()
    clinic.app.clock.advance(timedelta(seconds=61))
    again = await clinic.patient()  # the laptop's browser, logged in once more
    phone, laptop = pushes.device(), pushes.device()
    await subscribe(clinic, on_phone, phone)
    await subscribe(clinic, on_laptop, laptop)
    await subscribe(clinic, again, laptop)  # the same endpoint: now this session's
    await clinic.book(on_laptop, doctor_id, FIRST_SLOT)
    await clinic.book(on_laptop, doctor_id, SECOND_SLOT)

    for token in (on_phone, on_laptop):
        out = await clinic.app.client.post("/api/v1/auth/logout", headers=bearer(token))
        assert out.status == 204, await out.text()
    async with clinic.app.services.db.read() as session:
        left = (await session.scalars(select(PushSubscription.endpoint))).all()
    assert left == [laptop.endpoint]

    clinic.app.clock.advance(timedelta(minutes=48))  # T-10 for 13:00
    await clinic.tick()
    assert len(pushes.to(laptop)) == 1 and pushes.to(phone) == []
    assert reminder_sms(clinic) == []

    out = await clinic.app.client.post("/api/v1/auth/logout", headers=bearer(again))
    assert out.status == 204
    clinic.app.clock.advance(timedelta(minutes=30))  # T-10 for 13:30
    await clinic.tick()
    assert len(pushes.received) == 1  # nothing more pushed
    sms = reminder_sms(clinic)
    assert len(sms) == 1 and "13:30" in sms[0]["text"]


async def test_a_logout_after_switching_to_a_child_on_the_same_phone_drops_the_phone(
    clinic: Clinic, pushes: PushService
) -> None:
    """R-REMIND-1 on a family phone: the parent's device was registered before the app
    switched to the child (a new token, the parent's revoked); logging out of the child's
    session is logging out of that phone, so the parent's subscription goes too."""
    family = "+79160001122"
    await add_patients(
        clinic.app,
        [
            f"F-1,2026-01-01,2026-01-01,2027-12-31,Петрова Анна,1985-06-01,F,{family}",
            f"F-2,2026-01-01,2026-01-01,2027-12-31,Петров Миша,2015-09-01,M,{family}",
        ],
    )
    first = await clinic.patient(family)
    me = await (await clinic.app.client.get("/api/v1/me", headers=bearer(first))).json()
    async with clinic.app.services.db.read() as session:
        (other,) = (
            await session.scalars(
                select(Patient.id).where(Patient.phone == family, Patient.id != me["user_id"])
            )
        ).all()
    phone = pushes.device()
    await subscribe(clinic, first, phone)
    switched = await clinic.app.client.post(
        "/api/v1/auth/switch", json={"patient_id": other}, headers=bearer(first)
    )
    assert switched.status == 200, await switched.text()
    second = (await switched.json())["token"]
    out = await clinic.app.client.post("/api/v1/auth/logout", headers=bearer(second))
    assert out.status == 204
    async with clinic.app.services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(PushSubscription)) == 0


async def test_a_consent_withdrawal_drops_every_device_of_the_patient(
    clinic: Clinic, pushes: PushService
) -> None:
    """R-CONSENT-1: a withdrawal stops every service; the devices' subscriptions are data
    kept under the consent, so all of them go and nothing more is pushed to them."""
    token = await clinic.patient()
    clinic.app.clock.advance(timedelta(seconds=61))
    other_session = await clinic.patient()
    phone, laptop = pushes.device(), pushes.device()
    await subscribe(clinic, token, phone)
    await subscribe(clinic, other_session, laptop)
    out = await clinic.app.client.delete("/api/v1/me/consent", headers=bearer(token))
    assert out.status == 204, await out.text()
    async with clinic.app.services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(PushSubscription)) == 0
