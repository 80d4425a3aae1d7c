"""The installable patient app and its pushes in Debian's Chromium (R-REMIND-1): the service
worker installs, the manifest makes the app installable, the patient is offered pushes after
a booking (not on the first load) and grants them; the reminder the server pushes to the
test push service is delivered to the service worker through the DevTools protocol
(`ServiceWorker.deliverPushMessage`) and shown as a notification; its click opens the
appointment; the notifications list is updated live, screenshotted at 360 and 1280 px."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from e2ekit import (
    ADULT,
    ADULT_PHONE,
    CHROMIUM,
    FLAGS,
    LOCALE,
    PHONE,
    TIMEZONE,
    WAIT,
    Person,
    camera_file,
    doctor,
    fits_and_labelled,
    login_patient,
    open_stage,
    screen_is,
    shots,
)
from helpers import staff_token
from playwright.async_api import async_playwright, expect
from pushservice import PushService
from sqlalchemy import func, select
from test_urgent_flow import patient_reaches_home

from telemed.models import PushSubscription
from telemed.roles import Role

READ_NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.ready;
  const shown = await registration.getNotifications();
  return shown.map((n) => ({title: n.title, body: n.body, tag: n.tag, data: n.data}));
}"""

SUBSCRIBE = """async () => {
  const registration = await navigator.serviceWorker.ready;
  const {createApi} = await import('/static/js/api.js');
  const api = createApi({storageKey: 'telemed.patient'});
  const {public_key} = await api.get('/push/config');
  const key = Uint8Array.from(atob(public_key.replace(/-/g, '+').replace(/_/g, '/')
    + '='.repeat((4 - public_key.length % 4) % 4)), (c) => c.charCodeAt(0));
  const gaveUp = new Promise((resolve) => setTimeout(() => resolve('no answer in 10 s'), 10000));
  try {
    const s = await Promise.race([registration.pushManager.subscribe({userVisibleOnly: true,
                                   applicationServerKey: key}), gaveUp]);
    return typeof s === 'string' ? {ok: false, error: s} : {ok: true, endpoint: s.endpoint};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}"""

REGISTER = """async (subscription) => {
  const {createApi} = await import('/static/js/api.js');
  const {registerSubscription} = await import('/static/app/push.js');
  await registerSubscription(createApi({storageKey: 'telemed.patient'}), subscription);
  return true;
}"""


@pytest.fixture
async def pushes() -> AsyncIterator[PushService]:
    service = await PushService().start()
    yield service
    await service.stop()


@asynccontextmanager
async def installed_profile(tmp_path: Path) -> AsyncIterator[Person]:
    """Chromium with a profile on disk: Playwright's browser contexts are incognito, where
    Chromium never offers to install an app (`in-incognito`)."""
    camera = camera_file(tmp_path)
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=[*FLAGS, f"--use-file-for-fake-video-capture={camera}"],
            viewport=PHONE,  # type: ignore[arg-type]
            locale=LOCALE,
            timezone_id=TIMEZONE,
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield Person(context=context, page=page, errors=errors)
        finally:
            await context.close()


async def until(probe: Callable[[], Any], within: float = 20) -> Any:
    """Poll an async probe until it returns something truthy (a ceiling, not a timing check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("nothing came")
        await asyncio.sleep(0.2)


async def test_installable_app_push_notification_click_and_notifications_list(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path, pushes: PushService
) -> None:
    """R-REMIND-1 in the browser, from the server's push to the tap on the notification."""
    stage = await open_stage(
        start_app,
        sqlite_url,
        tmp_path,
        push={"backend": "webpush", "endpoint_hosts": [pushes.host], "path": None},
    )
    pushes.server_key = (await (await stage.app.client.get("/api/v1/push/config")).json())[
        "public_key"
    ]
    await stage.add_patients(ADULT)
    admin, _ = await staff_token(stage.app, Role.ADMIN, "admin")
    await doctor(stage, admin, Role.PSYCHOLOGIST, "psychologist")

    async with installed_profile(tmp_path) as patient:
        page = patient.page
        tid = page.get_by_test_id
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        cdp = await patient.context.new_cdp_session(page)
        registrations: list[dict[str, Any]] = []
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: registrations.extend(event["registrations"]),
        )

        await login_patient(page, stage, ADULT_PHONE)
        await patient_reaches_home(page)  # consent, the time zone, the check

        # The service worker is installed and active, from the root scope; nothing asked yet.
        scope = await page.evaluate(
            "navigator.serviceWorker.ready.then(r => r.active && r.active.state === 'activated'"
            " ? r.scope : null)"
        )
        assert scope == f"{stage.url}/"
        assert await page.evaluate("Notification.permission") == "default"
        await expect(tid("push-offer")).to_have_count(0)

        # The manifest is valid and Chromium finds the app installable.
        manifest = await cdp.send("Page.getAppManifest")
        assert manifest.get("errors") == [], manifest.get("errors")
        installability = await cdp.send("Page.getInstallabilityErrors")
        assert installability["installabilityErrors"] == [], installability

        # The shell is cached; API answers never are.
        cached = await page.evaluate(
            "caches.open('telemed-shell-v1').then(c => c.keys()).then(k => k.map(r => r.url))"
        )
        assert f"{stage.url}/static/app/app.js" in cached
        assert not [url for url in cached if "/api/" in url]

        # A booking is the moment to offer pushes; the patient grants and subscribes.
        await tid("nav-booking").click()
        await screen_is(page, "booking")
        await tid("slot").first.click()
        await tid("book-confirm").click()
        await expect(tid("push-offer")).to_be_visible(timeout=WAIT)
        await patient.context.grant_permissions(["notifications"], origin=stage.url)
        await tid("push-offer-yes").click()
        await expect(tid("push-offer")).to_have_count(0)
        assert await page.evaluate("Notification.permission") == "granted"
        # Chromium's own push service is Google's (FCM), not reachable from this machine:
        # pushManager.subscribe fails here. The registration path of the page code is then
        # driven with a device of the test push service, as that browser would send it.
        tried = await page.evaluate(SUBSCRIBE)
        device = pushes.device()
        if not tried["ok"]:
            print(f"pushManager.subscribe offline: {tried['error']}")
        assert await page.evaluate(REGISTER, device.subscription())
        async with stage.app.services.db.read() as session:
            assert await session.scalar(select(func.count()).select_from(PushSubscription)) == 1

        # The notifications list is open when the reminder comes: it arrives live.
        await tid("nav-notifications").click()
        await screen_is(page, "notifications")
        stage.app.clock.advance(timedelta(minutes=50))  # T-10 for the 13:00 slot
        assert (await stage.tick()).get("reminder") == 1
        (push,) = await pushes.wait(1)
        assert push.payload["title"] == "Скоро консультация"
        item = tid("notification").first
        await expect(item).to_contain_text("Скоро консультация", timeout=WAIT)
        await expect(item).to_have_attribute("data-read", "false")
        await expect(tid("unread-count")).to_have_text("1")
        await fits_and_labelled(page)
        await shots(page, "patient-notifications")

        # The push, as the push service got it, delivered to the service worker over CDP.
        await cdp.send("ServiceWorker.enable")
        ours = await until(
            lambda: asyncio.sleep(0, [r for r in registrations if not r.get("isDeleted")])
        )
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": stage.url,
                "registrationId": ours[0]["registrationId"],
                "data": json.dumps(push.payload, ensure_ascii=False),
            },
        )
        shown = await until(lambda: page.evaluate(READ_NOTIFICATIONS))
        assert len(shown) == 1
        assert shown[0]["title"] == "Скоро консультация" and "13:00" in shown[0]["body"]
        assert shown[0]["tag"] == push.payload["tag"]
        appointment_id = push.payload["url"].split("/")[-1]
        assert shown[0]["data"] == {"url": f"/#booking/{appointment_id}"}

        # The tap: the worker's notificationclick handler, run in the worker for this
        # notification (CDP cannot click a system notification), opens the appointment.
        (worker,) = patient.context.service_workers
        await worker.evaluate("self.registration.getNotifications().then(([n]) => openFrom(n))")
        await screen_is(page, "booking")
        mine = page.locator(f'[data-testid="appointment"][data-appointment-id="{appointment_id}"]')
        await expect(mine).to_have_attribute("data-highlight", "true", timeout=WAIT)
        assert await page.evaluate(READ_NOTIFICATIONS) == []  # the tap closed it

        # Read from the list: the mark goes and the count with it.
        await tid("nav-notifications").click()
        await screen_is(page, "notifications")
        await tid("notification-read").first.click()
        await expect(tid("notification").first).to_have_attribute("data-read", "true")
        await expect(tid("unread-count")).to_be_hidden()
        # The one 404 is the home screen asking for a connection check not made yet.
        assert {url.removeprefix(stage.url) for url in missing} <= {"/api/v1/device-check"}
        assert [e for e in patient.errors if "status of 404" not in e] == [], patient.errors
