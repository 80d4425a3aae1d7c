"""The patient app's calendar subscription (the secret iCalendar feed: make, copy, revoke),
a cancelled appointment marked once, and withdrawing the consent from the profile."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from e2ekit import (
    ADULT,
    ADULT_PHONE,
    PHONE,
    WAIT,
    camera_file,
    chromium,
    doctor,
    fits_and_labelled,
    login_patient,
    open_stage,
    person,
    screen_is,
    shots,
)
from helpers import staff_token
from playwright.async_api import expect

from telemed.roles import Role


async def test_calendar_feed_cancelled_mark_and_consent_withdrawal(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-CAL-1, R-CANCEL-1, R-CONSENT-1: the feed link is shown with copy and revoke and
    works until revoked; "cancelled" appears once; after withdrawing, the consent screen."""
    stage = await open_stage(start_app, sqlite_url, tmp_path)
    await stage.add_patients(ADULT)
    admin, _ = await staff_token(stage.app, Role.ADMIN, "admin")
    await doctor(stage, admin, Role.PSYCHOLOGIST, "psychologist")

    async with chromium(camera_file(tmp_path)) as browser:
        patient = await person(browser, PHONE)
        await patient.context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=stage.url
        )
        page = patient.page
        tid = page.get_by_test_id

        await login_patient(page, stage, ADULT_PHONE)
        await screen_is(page, "consent")
        await tid("consent-accept").click()
        await screen_is(page, "timezone")
        await tid("tz-confirm").click()
        await screen_is(page, "check")
        await tid("check-continue").click()
        await screen_is(page, "home")

        # A booked and cancelled appointment: the calendar says "cancelled" once.
        await tid("nav-booking").click()
        await screen_is(page, "booking")
        await tid("slot").first.click()
        await tid("book-confirm").click()
        await tid("cancel-appointment").click()
        await tid("confirm-yes").click()
        await expect(tid("appointment")).to_have_attribute("data-state", "cancelled", timeout=WAIT)
        await tid("nav-calendar").click()
        await screen_is(page, "calendar")
        event = page.locator('[data-testid="calendar-event"][data-status="cancelled"]')
        await expect(event).to_have_count(1, timeout=WAIT)
        await expect(event.get_by_test_id("event-status")).to_have_text("отменена")
        assert (await event.inner_text()).lower().count("отмен") == 1, await event.inner_text()

        # The subscription link: made, shown, copied, fetched, revoked.
        await expect(tid("feed-url")).to_be_hidden()
        await tid("feed-create").click()
        await expect(tid("feed-url")).to_have_value(re.compile(r"/ical/.+\.ics$"), timeout=WAIT)
        url = await tid("feed-url").input_value()
        assert url.startswith(f"{stage.url}/ical/") and url.endswith(".ics"), url
        assert (await tid("feed-webcal").get_attribute("href") or "").startswith("webcal://")
        await tid("feed-copy").click()
        await expect(page.locator("#feed-status")).not_to_be_empty()
        assert await page.evaluate("navigator.clipboard.readText()") == url
        resp = await stage.app.client.get(urlsplit(url).path)
        assert resp.status == 200
        assert "STATUS:CANCELLED" in await resp.text()
        await fits_and_labelled(page)
        await shots(page, "patient-calendar-feed")
        await tid("feed-revoke").click()
        await tid("confirm-yes").click()
        await expect(tid("feed-url")).to_be_hidden()
        await expect(page.locator("#feed-status")).not_to_be_empty()
        assert (await stage.app.client.get(urlsplit(url).path)).status == 404

        # Withdrawing the consent from the profile returns to the consent screen.
        await tid("nav-profile").click()
        await screen_is(page, "profile")
        await tid("consent-withdraw").click()
        await shots(page, "patient-consent-withdraw")
        await tid("confirm-yes").click()
        await screen_is(page, "consent")
        await expect(tid("consent-text")).not_to_be_empty()
        await expect(page.locator("#nav")).to_be_hidden()
        closed = await page.evaluate(
            """async () => (await fetch('/api/v1/calendar', {headers: {Authorization:
                 'Bearer ' + JSON.parse(localStorage['telemed.patient']).token}})).status"""
        )
        assert closed == 403  # consent_required: every patient service is closed again
        await tid("consent-accept").click()
        await screen_is(page, "check")
        # The browser logs the test's own 403 (the kit already drops the expected 404s).
        assert [e for e in patient.errors if "status of 403" not in e] == [], patient.errors
