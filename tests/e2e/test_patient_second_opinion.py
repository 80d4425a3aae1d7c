"""The second opinion from the patient's side, in Debian's Chromium (R-SECOND, seed 000): asked
from the call with the consultant, with a question and two documents uploaded on the same
screen; "sent to the specialist" with the due date 14 working days on; the delivered
conclusion opened by its link /#/conclusions/ID, shown in the calendar and "My records"; the
specialist booked from the conclusion. The consultant accepts in the console; the steps whose
console pages are another branch's work (assign, write, deliver) go through the REST API the
pages use. Screenshots at 360 and 1280 px."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2ekit import (
    ADULT,
    DESK,
    PHONE,
    STAFF_PASSWORD,
    WAIT,
    Stage,
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
from playwright.async_api import expect
from test_urgent_flow import patient_reaches_home

from telemed.roles import Role

QUESTION = "Нужна ли операция на колене?"
FINDINGS = "Разрыв мениска, операция не требуется."
ADVICE = "ЛФК, контроль МРТ через 3 месяца."


async def rest(stage: Stage, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    resp = await stage.app.client.post(f"/api/v1{path}", json=body or {}, headers=bearer(token))
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def test_a_second_opinion_asked_with_two_documents_opens_by_its_link(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-SECOND: the patient asks in their consultation with two documents of the card; the
    due date counts 14 working days (Thursday 15 January 2026 -> Wednesday 4 February); the
    delivered conclusion opens by its link, is in the calendar and "My records", and the
    specialist who wrote it is booked from the same screen."""
    stage: Stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")
    admin, _ = await staff_token(stage.app, Role.ADMIN, "admin")
    specialist, specialist_id = await doctor(stage, admin, Role.SPECIALIST, "olga")
    resp = await stage.app.client.post(
        "/api/v1/auth/staff", json={"login": "anna", "password": STAFF_PASSWORD}
    )
    consultant_token = (await resp.json())["token"]
    documents = [tmp_path / "мрт-колена.pdf", tmp_path / "рентген.pdf"]
    for document in documents:
        document.write_bytes(b"%PDF-1.4 " + document.stem.encode() + b"\n")

    async with chromium(camera_file(tmp_path)) as browser:
        consultant = await person(browser, DESK, "consultant")
        patient = await person(browser, PHONE, "patient")
        c, p = consultant.page, patient.page
        tid = p.get_by_test_id

        await login_staff(c, stage.url, "anna")
        await expect(c.locator("#queue-empty")).to_be_visible(timeout=WAIT)
        await login_patient(p, stage)
        await patient_reaches_home(p)
        await tid("channel-chat").check()
        await tid("start-urgent").click()
        await screen_is(p, "waiting")
        consultation_id = await p.locator('section[data-screen="waiting"]').get_attribute(
            "data-consultation-id"
        )
        item = c.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        await item.get_by_test_id("accept").click()
        await screen_is(p, "call")

        # Asked from the call: the consultation is chosen, two documents uploaded and ticked.
        await tid("call-opinion").click()
        await screen_is(p, "opinions")
        await expect(tid("opinion-consultation")).to_have_value(str(consultation_id))
        await expect(p.locator("#opinion-intro")).to_contain_text("14 рабочих дней")
        for number, document in enumerate(documents, start=1):
            await tid("opinion-upload").set_input_files(str(document))
            await expect(tid("opinion-doc")).to_have_count(number, timeout=WAIT)
        for box in await tid("opinion-doc").all():
            await box.check()
        await tid("opinion-question").fill(QUESTION)
        await fits_and_labelled(p)
        await shots(p, "patient-opinion-ask")
        await tid("opinion-send").click()
        case = tid("opinion")
        await expect(case).to_have_attribute("data-state", "requested", timeout=WAIT)
        await expect(case).to_contain_text(QUESTION)
        await expect(tid("opinion-status")).to_contain_text("направит пакет документов")
        case_id = str(await case.get_attribute("data-second-opinion-id"))
        sent = await (
            await stage.app.client.get(
                f"/api/v1/second-opinions/{case_id}", headers=bearer(consultant_token)
            )
        ).json()
        assert sorted(d["filename"] for d in sent["documents"]) == sorted(d.name for d in documents)

        # The consultant sends the package to the specialist: the due date is shown.
        await rest(
            stage,
            consultant_token,
            f"/second-opinions/{case_id}/assign",
            {"specialist_id": specialist_id},
        )
        await tid("nav-opinions").click()
        await expect(case).to_have_attribute("data-state", "assigned", timeout=WAIT)
        await expect(case.get_by_test_id("opinion-state")).to_contain_text(
            "направлен врачу-специалисту"
        )
        await expect(case.get_by_test_id("opinion-state")).to_contain_text("4 февраля 2026")
        await fits_and_labelled(p)
        await shots(p, "patient-opinion-sent")

        # Written, signed and delivered: the link opens the conclusion.
        signed = await rest(
            stage,
            specialist,
            f"/second-opinions/{case_id}/conclusion",
            {"text": FINDINGS, "recommendations": ADVICE, "sign": True},
        )
        await rest(stage, consultant_token, f"/second-opinions/{case_id}/deliver")
        link = f"/#/conclusions/{signed['conclusion_id']}"
        await p.evaluate("location.hash = 'consultation'")  # back to the chat
        await screen_is(p, "call")
        chat_link = tid("chat-conclusion-link")
        await expect(chat_link).to_have_attribute("href", link, timeout=WAIT)
        await shots(p, "patient-chat-conclusion-link")
        await chat_link.click()
        await screen_is(p, "conclusion")
        view = tid("conclusion-view")
        await expect(view).to_contain_text(FINDINGS, timeout=WAIT)
        await expect(view).to_contain_text(ADVICE)
        await expect(view).to_contain_text("второму мнению")

        # The specialist who wrote it, booked from the same screen, the zone beside the time.
        slot = tid("opinion-slot").first
        await expect(slot).to_contain_text("Europe/Moscow", timeout=WAIT)
        await fits_and_labelled(p)
        await shots(p, "patient-conclusion")
        await slot.click()
        await expect(tid("opinion-booked")).to_contain_text("назначена", timeout=WAIT)
        appointments = await (
            await stage.app.client.get("/api/v1/appointments", headers=bearer(specialist))
        ).json()
        assert [a["kind"] for a in appointments["items"]] == ["second_opinion"]

        # The same conclusion from the list, the calendar and "My records".
        await tid("nav-opinions").click()
        await expect(case).to_have_attribute("data-state", "delivered", timeout=WAIT)
        await case.get_by_test_id("opinion-conclusion").click()
        await screen_is(p, "conclusion")
        await expect(tid("conclusion-view")).to_contain_text(FINDINGS, timeout=WAIT)
        await tid("nav-calendar").click()
        event = p.locator('[data-testid="calendar-event"][data-type="second_opinion"]')
        await expect(event.get_by_test_id("conclusion")).to_contain_text(FINDINGS, timeout=WAIT)
        await tid("nav-records").click()
        record = tid("record").filter(has_text="Второе мнение")
        await expect(record).to_have_count(1, timeout=WAIT)
        await record.get_by_test_id("record-conclusion").click()
        await expect(record.get_by_test_id("conclusion")).to_contain_text(ADVICE, timeout=WAIT)
        await shots(p, "patient-records-opinion")

        # The link itself, opened afresh (a reload, or from the push notification).
        await p.goto(f"{stage.url}{link}")
        await screen_is(p, "conclusion")
        await expect(tid("conclusion-view")).to_contain_text(FINDINGS, timeout=WAIT)
        assert patient.errors == [] and consultant.errors == []
