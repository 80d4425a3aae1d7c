"""The patient's fallback and staying on the line, in Debian's Chromium: the hotline on the
login, after a failed connection check (in the app and on /check) (R-FALLBACK-1); the seed's
"stay online, do not hang up" on the waiting, doctor-wait and call screens, the limit warning,
and a hang-up during the doctor's leg that asks first and returns the patient to the
consultant instead of closing the consultation (R-URG-2, R-URG-5). Staff work in the console
pages; screenshots at 360 and 1280 px."""

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
    Stage,
    camera_file,
    chromium,
    fits_and_labelled,
    login_patient,
    login_staff,
    open_stage,
    person,
    screen_is,
    shots,
)
from playwright.async_api import expect
from sqlalchemy import select
from test_urgent_flow import patient_reaches_home

from telemed.models import Consultation
from telemed.roles import Role

HOTLINE = "8 (800) 500-61-11"  # seed 001, the default of clinic.hotline


async def test_the_hotline_is_on_the_login_and_after_a_failed_check(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-FALLBACK-1: a patient who cannot log in sees the hotline on the login screen; a
    connection check that fails (here: more bandwidth asked than any link has) shows it under
    the verdict, in the app and on the /check page, as a tel: link."""
    stage: Stage = await open_stage(
        start_app, sqlite_url, tmp_path, device={"min_bandwidth_kbps": 50_000_000}
    )
    await stage.add_patients(ADULT)
    async with chromium(camera_file(tmp_path)) as browser:
        patient = await person(browser, PHONE, "patient")
        page = patient.page
        tid = page.get_by_test_id

        await page.goto(f"{stage.url}/")
        await screen_is(page, "login")
        login_line = page.locator('[data-screen="login"]').get_by_test_id("hotline")
        await expect(login_line).to_contain_text(HOTLINE, timeout=WAIT)
        await expect(login_line).to_contain_text("Позвоните медицинскому консультанту")
        number = login_line.get_by_test_id("hotline-number")
        await expect(number).to_have_attribute("href", "tel:88005006111")
        await fits_and_labelled(page)
        await shots(page, "patient-login-hotline")
        await tid("lang-en").click()
        await expect(login_line).to_contain_text("Call the medical consultant")
        await expect(login_line).to_contain_text(HOTLINE)
        await tid("lang-ru").click()

        await login_patient(page, stage, ADULT_PHONE)
        await screen_is(page, "consent")
        await tid("consent-accept").click()
        await screen_is(page, "timezone")
        await tid("tz-confirm").click()
        await screen_is(page, "check")
        check_line = page.locator("#check-hotline")
        await expect(check_line).to_be_hidden()  # nothing failed yet
        await tid("check-run").click()
        await expect(tid("check-result")).to_have_attribute("data-verdict", "fail", timeout=60_000)
        await expect(page.locator('[data-check="bandwidth"]')).to_have_attribute("data-ok", "false")
        await expect(check_line).to_be_visible()
        await expect(check_line).to_contain_text(HOTLINE)
        await expect(check_line).to_contain_text("Если связь не наладится")
        await fits_and_labelled(page)
        await shots(page, "patient-check-failed-hotline")
        assert patient.errors == []

        # The standalone /check page: without a login it cannot run, and says whom to call.
        visitor = await person(browser, PHONE, "visitor")
        await visitor.page.goto(f"{stage.url}/check")
        await expect(visitor.page.locator("#login")).to_be_visible(timeout=WAIT)
        await expect(visitor.page.get_by_test_id("hotline")).to_contain_text(HOTLINE, timeout=WAIT)
        await shots(visitor.page, "check-page-hotline")
        assert visitor.errors == []


async def test_a_hang_up_during_the_doctors_leg_asks_and_returns_to_the_consultant(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-URG-2, R-URG-5: the patient is told to stay online on every screen of the way, sees
    the doctor's limit coming, and a hang-up on the doctor asks first (No keeps the doctor),
    then returns them to their consultant with the consultation open; only a hang-up with the
    consultant leaves it."""
    stage: Stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")
    await stage.add_staff(Role.THERAPIST, "boris", "Борис Терапевт")
    async with chromium(camera_file(tmp_path)) as browser:
        consultant = await person(browser, DESK, "consultant")
        therapist = await person(browser, DESK, "therapist")
        patient = await person(browser, PHONE, "patient")
        c, d, p = consultant.page, therapist.page, patient.page
        tid = p.get_by_test_id

        await login_staff(c, stage.url, "anna")
        await login_staff(d, stage.url, "boris")
        await expect(c.locator("#queue-empty")).to_be_visible(timeout=WAIT)
        await login_patient(p, stage)
        await patient_reaches_home(p)
        await tid("channel-chat").check()
        await tid("start-urgent").click()
        await screen_is(p, "waiting")
        stay = p.locator('[data-screen="waiting"]').get_by_test_id("stay-online")
        await expect(stay).to_contain_text("не прерывайте вызов")
        await expect(stay).to_contain_text("5 минут")
        await shots(p, "patient-waiting-stay")

        item = c.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        await item.get_by_test_id("accept").click()
        await screen_is(p, "call")
        await expect(p.locator("#call-who")).to_contain_text("Медицинский консультант")
        call_stay = p.locator('[data-screen="call"]').get_by_test_id("stay-online")
        await expect(call_stay).to_contain_text("не прерывайте вызов")

        # To the duty therapist: the doctor-wait screen says to stay online too.
        await c.get_by_test_id("transfer-duty-doctor").click()
        await screen_is(p, "waiting")
        await expect(p.locator("#waiting-title")).to_contain_text("Ожидание врача")
        await expect(stay).to_contain_text("Оставайтесь в интернете онлайн")
        await shots(p, "patient-doctor-wait-stay")
        await tid("leave-queue").click()  # it says what leaving now means, No stays
        await expect(p.locator(".confirm")).to_contain_text("Консультация будет закрыта")
        await tid("confirm-no").click()
        await screen_is(p, "waiting")
        d_item = d.get_by_test_id("queue-item")
        await expect(d_item).to_have_count(1, timeout=WAIT)
        await d_item.get_by_test_id("accept").click()
        await screen_is(p, "call")
        await expect(p.locator("#call-who")).to_contain_text("Терапевт", timeout=WAIT)

        # The doctor's limit is near: the patient sees it too (limit:warning).
        stage.app.clock.advance(timedelta(minutes=28, seconds=5))
        await stage.tick()
        await expect(tid("limit-warning")).to_be_visible(timeout=WAIT)
        await expect(tid("limit-warning")).to_contain_text("закончится")

        # The hang-up asks; No keeps the doctor.
        await tid("hangup").click()
        confirm = tid("hangup-confirm")
        await expect(confirm).to_contain_text("Вы вернётесь к медицинскому консультанту")
        await expect(tid("confirm-no")).to_be_focused()
        await fits_and_labelled(p)
        await shots(p, "patient-hangup-confirm")
        await tid("confirm-no").click()
        await expect(confirm).to_have_count(0)
        await expect(tid("hangup")).to_be_focused()
        await expect(p.locator("#call-who")).to_contain_text("Терапевт")

        # Yes: back with the consultant, the consultation still open.
        await tid("hangup").click()
        await tid("confirm-yes").click()
        await expect(p.locator("#call-who")).to_contain_text(
            "Медицинский консультант", timeout=WAIT
        )
        await expect(tid("back-to-consultant")).to_be_visible()
        await expect(tid("limit-warning")).to_be_hidden()
        await shots(p, "patient-back-with-consultant")
        async with stage.app.services.db.read() as session:
            row = await session.scalar(select(Consultation))
        assert row is not None and (row.state, row.close_reason) == ("with_consultant", None)
        await c.get_by_test_id("chat-input").fill("Я снова с вами. Чем ещё помочь?")
        await c.get_by_test_id("chat-send").click()
        await expect(tid("chat-message").last).to_contain_text("Я снова с вами", timeout=WAIT)

        # With the consultant the same button asks to end, and leaves.
        await tid("hangup").click()
        await expect(tid("hangup-confirm")).to_contain_text("Завершить консультацию?")
        await tid("confirm-yes").click()
        await expect(tid("consultation-closed")).to_contain_text("Вы вышли", timeout=WAIT)
        await screen_is(p, "home")
        for who in (consultant, therapist, patient):
            assert [e for e in who.errors if "rtc:" not in e] == [], who.errors


async def test_the_hotline_shows_when_the_call_loses_its_connection(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-FALLBACK-1: when the call cannot connect (the patient's phone goes offline during
    the call with the consultant) the call screen gives the hotline; back online, it goes."""
    stage: Stage = await open_stage(
        start_app,
        sqlite_url,
        tmp_path,
        signalling={"ping_interval": "2s", "ping_timeout": "3s"},  # a lost link shows soon
    )
    await stage.add_patients(ADULT)
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")
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
        item = c.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        await item.get_by_test_id("accept").click()
        await screen_is(p, "call")
        hotline = p.locator("#call-hotline")
        await expect(hotline).to_be_hidden()

        await p.context.set_offline(True)
        await expect(tid("call-state")).to_have_attribute("data-state", "offline", timeout=WAIT)
        await expect(hotline).to_be_visible()
        await expect(hotline).to_contain_text(HOTLINE)
        await expect(hotline).to_contain_text("Не удаётся соединиться")
        await shots(p, "patient-call-hotline")
        await p.context.set_offline(False)
        await expect(tid("call-state")).not_to_have_attribute("data-state", "offline", timeout=WAIT)
        await expect(hotline).to_be_hidden()
