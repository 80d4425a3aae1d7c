"""The whole urgent flow in Debian's Chromium with three people in one browser: a patient
on a 360 px phone, a consultant and a therapist at their desks (R-URG-1..5, R-ROUTE-1,
R-LIMIT-URG, R-CONCL-1), with real WebRTC video between the browsers both ways, and
screenshots of every console screen at 360 and 1280 px."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from e2ekit import (
    ADULT,
    DESK,
    PHONE,
    WAIT,
    Person,
    Stage,
    camera_file,
    chromium,
    login_patient,
    login_staff,
    open_stage,
    overflow,
    person,
    shots,
    unlabelled,
    video_flowing,
)
from playwright.async_api import Page, expect

from telemed.roles import Role

CONCLUSION = "ОРВИ, лёгкое течение."
ADVICE = "Обильное питьё, парацетамол при температуре выше 38,5."


async def visible_screen(page: Page) -> str:
    """The name of the patient app's screen now shown."""
    return str(
        await page.evaluate(
            "[...document.querySelectorAll('section[data-screen]')]"
            ".filter(s => !s.hidden && s.offsetParent !== null).map(s => s.dataset.screen)[0] || ''"
        )
    )


async def patient_reaches_home(page: Page) -> None:
    """Consent, profile and the connection check, in whatever order the app asks for them."""
    for _ in range(12):
        await page.wait_for_function(  # a function: an expression would be eval()ed (CSP)
            "() => [...document.querySelectorAll('section[data-screen]')]"
            ".some(s => !s.hidden && s.offsetParent !== null && s.dataset.screen !== 'login')",
            timeout=WAIT,
        )
        screen = await visible_screen(page)
        if screen == "home":
            return
        if screen == "consent":
            await page.get_by_test_id("consent-accept").click()
        elif screen == "timezone":
            await page.get_by_test_id("tz-confirm").click()
        elif screen == "profile":
            await page.get_by_test_id("profile-save").click()
        elif screen == "check":
            await page.get_by_test_id("check-run").click()
            await expect(page.get_by_test_id("check-result")).to_be_visible(timeout=60_000)
            await page.get_by_test_id("check-continue").click()
        await page.wait_for_function(  # until the app moves on from this screen
            "name => ![...document.querySelectorAll('section[data-screen]')]"
            ".some(s => !s.hidden && s.offsetParent !== null && s.dataset.screen === name)",
            arg=screen,
            timeout=WAIT,
        )
    raise AssertionError(f"the patient app never reached home: {await visible_screen(page)}")


async def flowing_both_ways(a: Page, b: Page) -> None:
    """The remote <video> of each side has a size and an advancing currentTime."""
    for page in (a, b):
        seen = await video_flowing(page)
        assert seen["width"] > 0 and seen["height"] > 0 and seen["t1"] > seen["t0"], seen


async def console_shots(who: Person, name: str) -> None:
    """Both widths, and at each: nothing wider than the screen, every control labelled."""
    await shots(who.page, name)
    for width in (PHONE["width"], DESK["width"]):
        await who.page.set_viewport_size({"width": width, "height": DESK["height"]})
        assert await overflow(who.page) <= 0, f"{name} overflows at {width}px"
    await who.page.set_viewport_size(DESK)  # type: ignore[arg-type]
    assert await unlabelled(who.page) == [], name


async def test_urgent_flow_from_the_queue_to_the_signed_conclusion_in_the_calendar(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-URG-1..5, R-ROUTE-1, R-LIMIT-URG, R-CONCL-1, R-CAL-1: a patient starts an urgent
    video consultation, the consultant accepts and chats, transfers to the duty therapist,
    video flows both ways on each leg, the therapist gets the limit warning and ends the leg,
    the patient is back with the consultant, who closes; the therapist signs the conclusion
    and the patient sees it in the calendar."""
    stage: Stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    await stage.add_staff(Role.CONSULTANT, "anna", "Анна Консультант")
    await stage.add_staff(Role.THERAPIST, "boris", "Борис Терапевт")

    async with chromium(camera_file(tmp_path)) as browser:
        consultant = await person(browser, DESK, "consultant")
        therapist = await person(browser, DESK, "therapist")
        patient = await person(browser, PHONE, "patient")
        c, d, p = consultant.page, therapist.page, patient.page

        # Staff log in; the login screen itself is a console screen.
        await c.goto(f"{stage.url}/console")
        await expect(c.get_by_test_id("login-submit")).to_be_visible(timeout=WAIT)
        await console_shots(consultant, "console-login")
        await login_staff(c, stage.url, "anna")
        await login_staff(d, stage.url, "boris")
        await expect(c.locator("#queue-empty")).to_be_visible(timeout=WAIT)
        await expect(c.locator("#live-state")).to_be_hidden(timeout=WAIT)  # connected
        await expect(d.locator("#live-state")).to_be_hidden(timeout=WAIT)
        await console_shots(consultant, "console-queue-empty")

        # R-URG-1: the patient logs in, accepts the consent, checks, picks video and starts.
        await login_patient(p, stage)
        await patient_reaches_home(p)
        await p.get_by_test_id("channel-video").check()
        await p.get_by_test_id("start-urgent").click()
        await expect(p.get_by_test_id("queue-position")).to_be_visible(timeout=WAIT)

        # R-URG-2: it arrives in an empty queue: a visible mark (and a sound).
        item = c.get_by_test_id("queue-item")
        await expect(item).to_have_count(1, timeout=WAIT)
        await expect(c.get_by_test_id("queue-alert")).to_be_visible(timeout=WAIT)
        await expect(item).to_contain_text("Иванов Иван Петрович", timeout=WAIT)
        await expect(item).to_contain_text("видео", timeout=WAIT)
        await expect(item).to_contain_text(re.compile(r"\d+ лет"), timeout=WAIT)
        await console_shots(consultant, "console-queue")

        # The consultant accepts: video both ways, and chat.
        await item.get_by_test_id("accept").click()
        await expect(c.get_by_test_id("queue-alert")).to_be_hidden(timeout=WAIT)
        await expect(c.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "connected", timeout=WAIT
        )
        await flowing_both_ways(c, p)
        await c.get_by_test_id("chat-input").fill("Здравствуйте! Что вас беспокоит?")
        await c.get_by_test_id("chat-send").click()
        await expect(p.get_by_test_id("chat-message").last).to_contain_text(
            "Что вас беспокоит", timeout=WAIT
        )
        await p.get_by_test_id("chat-input").fill("Температура 38 и кашель")
        await p.get_by_test_id("chat-send").click()
        await expect(c.get_by_test_id("chat-message").last).to_contain_text(
            "Температура 38", timeout=WAIT
        )
        await console_shots(consultant, "console-call-consultant")

        # R-URG-3, R-ROUTE-1: to the duty therapist (the patient is 18+).
        await c.get_by_test_id("transfer-duty-doctor").click()
        await expect(c.locator("#work-handed")).to_be_visible(timeout=WAIT)
        d_item = d.get_by_test_id("queue-item")
        await expect(d_item).to_have_count(1, timeout=WAIT)
        await console_shots(therapist, "console-doctor-queue")
        await d_item.get_by_test_id("accept").click()
        await expect(d.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "connected", timeout=WAIT
        )
        await flowing_both_ways(d, p)
        await expect(d.get_by_test_id("chat-message").first).to_contain_text(
            "Что вас беспокоит", timeout=WAIT
        )
        # Counting down from the 30-minute limit (the page's own clock runs meanwhile).
        await expect(d.get_by_test_id("limit-countdown")).to_have_text(
            re.compile(r"^(30:00|2\d:[0-5]\d)$"), timeout=WAIT
        )

        # Meanwhile the consultant identifies the caller (R-AUTH-2) on the tools panel.
        await c.get_by_test_id("identify-policy").fill("E-1")
        await c.get_by_test_id("identify-name").fill("Иванов Иван Петрович")
        await c.get_by_test_id("identify-birth").fill("1980-03-01")
        await c.get_by_test_id("identify-submit").click()
        await expect(c.get_by_test_id("found-patient")).to_contain_text("полис E-1", timeout=WAIT)
        await console_shots(consultant, "console-tools")

        # R-LIMIT-URG: the clock moves to two minutes before the limit: the warning. (The
        # shot comes first: the page counts down on its own clock, which did not jump.)
        await console_shots(therapist, "console-call-doctor")
        stage.app.clock.advance(timedelta(minutes=28, seconds=5))
        await stage.tick()
        await expect(d.get_by_test_id("limit-warning")).to_be_visible(timeout=WAIT)

        # R-URG-5: the therapist hangs up; an in-page dialog asks first (Esc cancels, the
        # keyboard reaches both answers), then the patient is back with the consultant.
        dialog = d.get_by_test_id("confirm-dialog")
        await d.get_by_test_id("hangup").click()
        await expect(dialog).to_be_visible(timeout=WAIT)
        await expect(d.get_by_test_id("confirm-no")).to_be_focused()
        await console_shots(therapist, "console-confirm")
        await d.keyboard.press("Escape")
        await expect(dialog).to_be_hidden(timeout=WAIT)
        await expect(d.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "connected", timeout=WAIT
        )
        await d.get_by_test_id("end-leg").click()
        await expect(dialog).to_contain_text("Завершить приём?", timeout=WAIT)
        await d.keyboard.press("Tab")
        await expect(d.get_by_test_id("confirm-yes")).to_be_focused()
        await d.keyboard.press("Enter")
        await expect(d.get_by_test_id("conclusion-text")).to_be_visible(timeout=WAIT)
        await expect(c.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "connected", timeout=WAIT
        )
        await flowing_both_ways(c, p)
        await c.get_by_test_id("close-consultation").click()
        await expect(c.get_by_test_id("confirm-dialog")).to_contain_text(
            "Завершить консультацию?", timeout=WAIT
        )
        await c.get_by_test_id("confirm-yes").click()
        await expect(c.locator("#work-handed")).to_contain_text("завершена", timeout=WAIT)

        # R-CONCL-1: the therapist signs; the list of pending conclusions empties.
        await expect(d.get_by_test_id("pending-item")).to_have_count(1, timeout=WAIT)
        await d.get_by_test_id("conclusion-text").fill(CONCLUSION)
        await d.get_by_test_id("conclusion-recommendations").fill(ADVICE)
        await console_shots(therapist, "console-conclusion")
        await d.get_by_test_id("conclusion-sign").click()
        await expect(d.get_by_test_id("conclusion-status")).to_have_attribute(
            "data-status", "signed", timeout=WAIT
        )
        await expect(d.get_by_test_id("pending-item")).to_have_count(0, timeout=WAIT)

        # R-CAL-1: the patient sees it in the calendar.
        await p.get_by_test_id("nav-calendar").click()
        await expect(p.get_by_test_id("conclusion").first).to_contain_text("ОРВИ", timeout=WAIT)

        for who in (consultant, therapist):
            assert not [e for e in who.errors if "rtc:" not in e], who.errors
