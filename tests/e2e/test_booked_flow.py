"""The patient app in Debian's Chromium on a 360 px phone: booking and cancelling from free
slots, a consultant's booking that needs documents (R-DOCS-1) with its reminder (R-REMIND-1),
the consultation blocked until a document is added (the consultant's transfer to the booked
doctor refused at the console page, R-SCH-3), a reload during the call that comes
back to the same call, the calendar with the conclusion (R-CONCL-1, R-CAL-1), and
screenshots of every patient screen at 360 and 1280 px."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from e2ekit import (
    ADULT,
    ADULT_PHONE,
    DESK,
    PHONE,
    WAIT,
    camera_file,
    chromium,
    doctor,
    fits_and_labelled,
    login_patient,
    login_staff,
    open_stage,
    person,
    screen_is,
    shots,
)
from helpers import bearer, staff_token
from live import Live
from playwright.async_api import expect

from telemed.roles import Role

BOOKED_AT = "2026-01-15T13:00:00+03:00"  # the consultant's booking, an hour ahead
CONCLUSION = "Тревожное расстройство не выявлено."
ADVICE = "Режим сна, повторная консультация по необходимости."


async def test_booked_consultation_with_reminder_documents_and_reload(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-SCH, R-REMIND-1, R-DOCS-1, R-CANCEL-1, R-CONCL-1, R-CAL-1 through the patient app."""
    stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    admin, _ = await staff_token(stage.app, Role.ADMIN, "admin")
    consultant_token, _ = await staff_token(stage.app, Role.CONSULTANT, "consultant")
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")  # at the console page
    therapist_token, therapist_id = await doctor(stage, admin, Role.THERAPIST, "therapist")
    await doctor(stage, admin, Role.PSYCHOLOGIST, "psychologist")
    therapist = await Live(stage.url, therapist_token, "therapist").connect()
    document = tmp_path / "анализ-крови.pdf"
    document.write_bytes(b"%PDF-1.4 blood test\n")

    async with chromium(camera_file(tmp_path)) as browser:
        patient = await person(browser, PHONE)
        page = patient.page
        tid = page.get_by_test_id
        desk = await person(browser, DESK, "consultant")
        console = desk.page
        await login_staff(console, stage.url, "anna")
        await expect(console.locator("#live-state")).to_be_hidden(timeout=WAIT)

        # Login, consent, the connection check on first contact (R-AUTH-1, R-CONSENT-1, R-DEV).
        await page.goto(f"{stage.url}/")
        await screen_is(page, "login")
        await shots(page, "patient-login")
        await login_patient(page, stage, ADULT_PHONE)
        await screen_is(page, "consent")
        await expect(tid("consent-text")).not_to_be_empty()
        await shots(page, "patient-consent")
        await tid("consent-accept").click()
        await screen_is(page, "timezone")  # R-CAL-1: asked once, on the first login
        await expect(tid("tz-select")).to_have_value("Europe/Moscow")  # the browser's zone
        await shots(page, "patient-timezone")
        await tid("tz-confirm").click()
        await screen_is(page, "check")
        await tid("check-run").click()
        await expect(tid("check-result")).to_have_attribute("data-verdict", "ok", timeout=60_000)
        await shots(page, "patient-check")
        await tid("check-continue").click()
        await screen_is(page, "home")
        await fits_and_labelled(page)
        await shots(page, "patient-home")

        # The patient books a psychologist from free slots, then cancels (R-SCH-2, R-CANCEL-1).
        await tid("nav-booking").click()
        await screen_is(page, "booking")
        await tid("slot").first.click()
        await tid("book-confirm").click()
        booked = tid("appointment").filter(has=tid("cancel-appointment"))
        await expect(booked).to_have_count(1, timeout=WAIT)
        await fits_and_labelled(page)
        await shots(page, "patient-booking")
        await booked.get_by_test_id("cancel-appointment").click()
        await tid("confirm-yes").click()
        await expect(tid("appointment")).to_have_attribute("data-state", "cancelled")

        # The consultant books the therapist; the consultation needs documents (R-DOCS-1).
        me = await (
            await stage.app.client.get("/api/v1/me", headers=bearer(consultant_token))
        ).json()
        assert me["role"] == "consultant"
        patient_id = await page.evaluate("JSON.parse(localStorage['telemed.patient']).user_id")
        resp = await stage.app.client.post(
            "/api/v1/appointments",
            json={
                "patient_id": patient_id,
                "doctor_id": therapist_id,
                "starts_at": BOOKED_AT,
                "channel": "video",
                "kind": "scheduled",
                "requires_documents": True,
            },
            headers=bearer(consultant_token),
        )
        assert resp.status == 201, await resp.text()
        appointment_id = (await resp.json())["appointment_id"]
        await tid("nav-home").click()
        await screen_is(page, "home")
        await expect(tid("appointment").filter(has=tid("appointment-docs"))).to_have_count(1)

        # Ten minutes before, the reminder arrives in the open app (R-REMIND-1).
        stage.app.clock.advance(timedelta(minutes=50))
        assert (await stage.tick()).get("reminder") == 1
        reminder = tid("reminder")
        await expect(reminder).to_be_visible(timeout=WAIT)
        await expect(reminder).to_have_attribute("role", "status")
        await expect(reminder).to_have_attribute("data-appointment-id", appointment_id)
        await shots(page, "patient-reminder")

        # Joining from the reminder: the queue, and the documents the booking needs.
        await reminder.get_by_test_id("reminder-join").click()
        await screen_is(page, "waiting")
        await expect(tid("queue-position")).not_to_have_text("—")
        await expect(tid("documents-required")).to_be_visible()
        await fits_and_labelled(page)
        await shots(page, "patient-waiting")
        consultation_id = await page.locator('section[data-screen="waiting"]').get_attribute(
            "data-consultation-id"
        )
        assert consultation_id

        # The consultant takes the patient at the console and is offered the booked doctor
        # first (R-SCH-3); the doctor is refused until documents are in (R-DOCS-1), in the
        # console's language.
        queued = console.locator(
            f'[data-testid="queue-item"][data-consultation-id="{consultation_id}"]'
        )
        await queued.get_by_test_id("accept").click(timeout=WAIT)
        await screen_is(page, "call")
        await expect(tid("documents-required")).to_be_visible()
        to_booked = console.get_by_test_id("transfer-booked-doctor")
        await expect(to_booked).to_be_visible(timeout=WAIT)
        await expect(to_booked).to_have_attribute("data-doctor-id", therapist_id)
        await to_booked.click()
        refused = console.locator("#work-error")
        await expect(refused).to_have_attribute("data-code", "documents_required", timeout=WAIT)
        await expect(refused).to_contain_text("не добавил медицинские документы")

        # The patient uploads a document into the card and adds it to the consultation.
        await tid("waiting-doc-upload").set_input_files(str(document))
        await expect(tid("doc-choice")).to_have_count(1, timeout=WAIT)
        await tid("attach-documents").click()
        await expect(tid("documents-added")).to_be_visible(timeout=WAIT)
        await to_booked.click()
        await expect(console.get_by_test_id("work-handed")).to_be_visible(timeout=WAIT)
        await screen_is(page, "waiting")
        await therapist.ok("consultation:accept", {"consultation_id": consultation_id})
        await screen_is(page, "call")
        await expect(page.locator("#call-who")).to_contain_text("therapist")
        await therapist.ok(
            "chat:send", {"consultation_id": consultation_id, "text": "Здравствуйте, я врач."}
        )
        await expect(tid("chat-message").last).to_contain_text("Здравствуйте, я врач.")
        await tid("chat-input").fill("Добрый день!")
        await tid("chat-send").click()
        await expect(tid("chat-message").last).to_contain_text("Добрый день!")
        await fits_and_labelled(page)
        await shots(page, "patient-call")

        # A reload during the call comes back to the same call, with its chat.
        await page.reload()
        await screen_is(page, "call")
        await expect(page.locator('section[data-screen="call"]')).to_have_attribute(
            "data-consultation-id", consultation_id
        )
        await expect(tid("chat-log")).to_contain_text("Здравствуйте, я врач.", timeout=WAIT)
        await expect(tid("chat-log")).to_contain_text("Добрый день!")
        await expect(page.locator("#call-who")).to_contain_text("therapist")
        await therapist.wait("peer:rejoined", within=WAIT / 1000)

        # The doctor ends the leg, the consultant closes, the conclusion reaches the calendar.
        await therapist.ok(
            "consultation:transfer", {"consultation_id": consultation_id, "to": "consultant"}
        )
        await expect(console.get_by_test_id("followup-panel")).to_be_visible(timeout=WAIT)
        await console.get_by_test_id("close-consultation").click()
        await console.get_by_test_id("confirm-yes").click()
        await screen_is(page, "home")
        await expect(tid("consultation-closed")).to_be_visible()
        resp = await stage.app.client.post(
            f"/api/v1/consultations/{consultation_id}/conclusion",
            json={"text": CONCLUSION, "recommendations": ADVICE, "sign": True},
            headers=bearer(therapist_token),
        )
        assert resp.status == 200, await resp.text()
        await tid("nav-calendar").click()
        await screen_is(page, "calendar")
        await expect(tid("conclusion")).to_contain_text(CONCLUSION, timeout=WAIT)
        # The appointment cancelled at the start says so once, in the status mark.
        cancelled = page.locator('[data-testid="calendar-event"][data-status="cancelled"]')
        await expect(cancelled.get_by_test_id("event-status")).to_have_text("отменена")
        assert (await cancelled.inner_text()).lower().count("отмен") == 1
        await fits_and_labelled(page)
        await shots(page, "patient-calendar")
        await tid("nav-records").click()
        await screen_is(page, "records")
        await expect(tid("record")).to_have_count(1)
        await shots(page, "patient-records")
        await tid("nav-card").click()
        await screen_is(page, "card")
        await expect(tid("document")).to_have_count(1)
        await shots(page, "patient-card")
        await tid("nav-profile").click()
        await screen_is(page, "profile")
        await tid("timezone-select").select_option("Asia/Vladivostok")
        await tid("profile-save").click()
        await expect(page.locator("#profile-saved")).not_to_be_empty()
        await fits_and_labelled(page)
        await shots(page, "patient-profile")
        await tid("lang-en").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await tid("nav-calendar").click()
        await expect(page.locator("#calendar-zone")).to_contain_text("Asia/Vladivostok")
        await shots(page, "patient-calendar-en")
        assert patient.errors == [], patient.errors

        assert desk.errors == [], desk.errors

    await therapist.close()
