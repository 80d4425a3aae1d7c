"""The patient app by keyboard and on a 360 px phone: a sensible Tab order with a visible
focus ring, labelled controls and no sideways scrolling on every screen in both languages,
live regions for the queue place and the call state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2ekit import (
    ADULT,
    ADULT_PHONE,
    PHONE,
    WAIT,
    camera_file,
    chromium,
    fits_and_labelled,
    login_patient,
    open_stage,
    person,
    screen_is,
    shots,
)
from helpers import staff_token
from live import Live
from playwright.async_api import Page, expect

from telemed.roles import Role

FOCUSED = """() => {
  const e = document.activeElement;
  const s = getComputedStyle(e);
  const r = e.getBoundingClientRect();
  return {testid: e.dataset.testid || e.getAttribute('href') || e.id || e.tagName,
          ring: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2,
          shown: r.width > 0 && r.height > 0 && r.right > 0 && r.left < innerWidth};
}"""


async def tab_walk(page: Page, steps: int) -> list[dict[str, Any]]:
    """Press Tab from the top of the page and note each control focused (up to the end)."""
    # Focus the body for a moment: Tab then starts from the top, as on a fresh page.
    await page.evaluate(
        "const b = document.body; b.tabIndex = -1; b.focus(); b.removeAttribute('tabindex')"
    )
    seen = []
    for _ in range(steps):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED)
        if focused["testid"] == "BODY":  # past the last control: the walk is done
            break
        seen.append(focused)
    return seen


async def test_keyboard_focus_labels_live_regions_and_phone_width(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 6 point 4 (keyboard reachable, labelled, visible focus) and the 360 px phone."""
    stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    consultant_token, _ = await staff_token(stage.app, Role.CONSULTANT, "consultant")
    consultant = await Live(stage.url, consultant_token, "consultant").connect()

    async with chromium(camera_file(tmp_path)) as browser:
        patient = await person(browser, PHONE)
        page = patient.page
        tid = page.get_by_test_id

        # The login form by keyboard alone.
        await page.goto(f"{stage.url}/")
        await screen_is(page, "login")
        walk = await tab_walk(page, 4)
        assert [w["testid"] for w in walk] == ["#content", "lang-ru", "lang-en", "phone-input"]
        assert all(w["ring"] and w["shown"] for w in walk), walk
        await login_patient(page, stage, ADULT_PHONE)
        await screen_is(page, "consent")
        await tid("consent-accept").click()
        await screen_is(page, "timezone")
        await tid("tz-confirm").click()
        await screen_is(page, "check")
        await tid("check-continue").click()
        await screen_is(page, "home")

        # Home: skip link, language, the menu in order, then the page; each with a ring.
        walk = await tab_walk(page, 14)
        order = [w["testid"] for w in walk]
        assert order[:11] == [
            "#content",
            "lang-ru",
            "lang-en",
            "nav-home",
            "nav-booking",
            "nav-card",
            "nav-calendar",
            "nav-records",
            "nav-opinions",
            "nav-notifications",
            "nav-profile",
        ], order
        assert "channel-video" in order[11:], order
        assert all(w["ring"] and w["shown"] for w in walk), walk
        assert (
            await page.evaluate(
                'document.querySelectorAll(\'[tabindex]:not([tabindex="-1"]):not([tabindex="0"])\').length'
            )
            == 0
        )
        await page.keyboard.press("Shift+Tab")
        await shots(page, "patient-home-focus")

        # Every screen fits the phone and has no unlabelled control, in Russian and English.
        for lang in ("ru", "en"):
            await tid(f"lang-{lang}").click()
            screens = (
                "home",
                "booking",
                "card",
                "calendar",
                "records",
                "opinions",
                "notifications",
            )
            for name in (*screens, "profile", "check"):
                await page.goto(f"{stage.url}/#{name}")
                await screen_is(page, name)
                await fits_and_labelled(page)

        # The queue place and the call state are live regions.
        await page.goto(f"{stage.url}/#home")
        await screen_is(page, "home")
        await tid("channel-chat").check()
        await tid("start-urgent").click()
        await screen_is(page, "waiting")
        await expect(tid("queue-position")).not_to_have_text("—", timeout=WAIT)
        live = tid("queue-live")
        await expect(live).to_have_attribute("aria-live", "polite")
        assert await live.locator('[data-testid="queue-position"]').count() == 1
        await fits_and_labelled(page)
        consultation_id = await page.locator('section[data-screen="waiting"]').get_attribute(
            "data-consultation-id"
        )
        await consultant.ok("consultation:accept", {"consultation_id": consultation_id})
        await screen_is(page, "call")
        await expect(tid("call-state")).to_have_attribute("role", "status")
        await fits_and_labelled(page)
        walk = await tab_walk(page, 25)
        assert "chat-input" in [w["testid"] for w in walk], walk
        assert [w for w in walk if not (w["ring"] and w["shown"])] == []
        await shots(page, "patient-call-en")
        assert patient.errors == []  # any unexpected 404 included (e2ekit.EXPECTED_404)

    await consultant.close()
