"""The installable patient app and its pushes in Debian's Chromium (R-REMIND-1): the service
worker installs, the manifest makes the app installable, the patient is offered pushes after
a booking (not on the first load) and grants them; the page's real
`pushManager.subscribe()` goes to Chromium's push service, here a fake of Google's GCM/FCM
on 127.0.0.1 (tests/fakegcm.py: check-in, registration, the MCS connection, FCM's Web Push
endpoint), and registers the subscription Chromium made. The reminder the server pushes
(VAPID, aes128gcm) travels as it would in the field: to the subscription's endpoint, over
MCS to Chromium, decrypted by Chromium and shown by the service worker; its click opens the
appointment; the notifications list is updated live, screenshotted at 360 and 1280 px.
Logging out unsubscribes the device: Chromium tells GCM, the server forgets it."""

from __future__ import annotations

import asyncio
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
from fakegcm import PUSH_HOST, FakeGcm
from helpers import staff_token
from playwright.async_api import async_playwright, expect
from sqlalchemy import select
from test_urgent_flow import patient_reaches_home

from telemed.models import PushSubscription
from telemed.notify.base import OutboundMessage
from telemed.notify.webpush import payload_of, topic_of
from telemed.roles import Role

READ_NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.ready;
  const shown = await registration.getNotifications();
  return shown.map((n) => ({title: n.title, body: n.body, tag: n.tag, data: n.data}));
}"""

BROWSER_SUBSCRIPTION = """async () => {
  const registration = await navigator.serviceWorker.getRegistration('/');
  const subscription = await registration?.pushManager.getSubscription();
  return subscription ? subscription.toJSON() : null;
}"""


@pytest.fixture
async def gcm(tmp_path: Path) -> AsyncIterator[FakeGcm]:
    service = await FakeGcm(tmp_path).start()
    yield service
    await service.stop()


@asynccontextmanager
async def installed_profile(tmp_path: Path, gcm: FakeGcm) -> AsyncIterator[Person]:
    """Chromium with a profile on disk: Playwright's browser contexts are incognito, where
    Chromium never offers to install an app (`in-incognito`) and refuses push subscriptions;
    its GCM pointed at the fake."""
    camera = camera_file(tmp_path)
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=[*FLAGS, f"--use-file-for-fake-video-capture={camera}", *gcm.chromium_flags()],
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


async def subscriptions(stage: Any) -> list[PushSubscription]:
    async with stage.app.services.db.read() as session:
        return list((await session.scalars(select(PushSubscription))).all())


async def test_installable_app_push_notification_click_notifications_list_and_logout(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path, gcm: FakeGcm
) -> None:
    """R-REMIND-1 in the browser, from the page's subscription to the server's push, the tap
    on the notification and the logout that ends the device's pushes."""
    stage = await open_stage(
        start_app,
        sqlite_url,
        tmp_path,
        push={"backend": "webpush", "path": None},  # the default push service hosts
        push_session=gcm.session,
    )
    server_key = (await (await stage.app.client.get("/api/v1/push/config")).json())["public_key"]
    await stage.add_patients(ADULT)
    admin, _ = await staff_token(stage.app, Role.ADMIN, "admin")
    await doctor(stage, admin, Role.PSYCHOLOGIST, "psychologist")

    async with installed_profile(tmp_path, gcm) as patient:
        page = patient.page
        tid = page.get_by_test_id
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        leaving: list[str] = []  # the page's last words: the device, then the session
        page.on(
            "request",
            lambda r: (
                leaving.append(f"{r.method} {r.url.removeprefix(stage.url)}")
                if r.method in ("DELETE", "POST")
                and r.url.endswith(("/logout", "/push-subscriptions"))
                else None
            ),
        )
        cdp = await patient.context.new_cdp_session(page)

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
        # The page subscribed for real (Chromium checked in with GCM and registered) and sent
        # the subscription Chromium made to the server.
        (device,) = await until(lambda: subscriptions(stage))
        token = device.endpoint.removeprefix(f"https://{PUSH_HOST}/fcm/send/")
        assert token != device.endpoint and token in gcm.registrations
        assert gcm.registrations[token].sender == server_key  # the applicationServerKey
        assert gcm.registrations[token].app_id.startswith(f"wp:{stage.url}/#")
        browser = await page.evaluate(BROWSER_SUBSCRIPTION)
        assert browser["endpoint"] == device.endpoint
        assert (device.p256dh, device.auth) == (browser["keys"]["p256dh"], browser["keys"]["auth"])
        assert device.token_id is not None  # the session that registered it

        # The notifications list is open when the reminder comes: it arrives live.
        await tid("nav-notifications").click()
        await screen_is(page, "notifications")
        stage.app.clock.advance(timedelta(minutes=50))  # T-10 for the 13:00 slot
        assert (await stage.tick()).get("reminder") == 1
        item = tid("notification").first
        await expect(item).to_contain_text("Скоро консультация", timeout=WAIT)
        await expect(item).to_have_attribute("data-read", "false")
        await expect(tid("unread-count")).to_have_text("1")
        await fits_and_labelled(page)
        await shots(page, "patient-notifications")

        # The push: to the endpoint (VAPID with the key the browser subscribed with, TTL,
        # Topic, aes128gcm), over MCS to Chromium, decrypted there, shown by the worker.
        await gcm.until(lambda: gcm.pushes)
        assert gcm.refused == []
        (push,) = gcm.pushes
        assert push.token == token and push.urgency == "high"
        shown = await until(lambda: page.evaluate(READ_NOTIFICATIONS))
        assert len(shown) == 1
        assert shown[0]["title"] == "Скоро консультация" and "13:00" in shown[0]["body"]
        assert push.topic == topic_of(shown[0]["tag"])  # a resend replaces, not duplicates
        appointment_id = shown[0]["data"]["url"].split("/")[-1]
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

        # The DevTools protocol's own push (ServiceWorker.deliverPushMessage) reaches the same
        # worker: the payload the server makes when the doctor calls shows what it says.
        registrations: list[dict[str, Any]] = []
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: registrations.extend(event["registrations"]),
        )
        await cdp.send("ServiceWorker.enable")

        async def app_registration() -> list[dict[str, Any]]:
            return [r for r in registrations if r["scopeURL"] == f"{stage.url}/"]

        (registration, *_) = await until(app_registration)
        calling = OutboundMessage(
            to=device.endpoint,
            text="Врач ждёт вас на консультации.",
            kind="push",
            title="Врач на связи",
            url="/#waiting",
            idempotency_key="cdp-delivered",
        )
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": stage.url,
                "registrationId": registration["registrationId"],
                "data": payload_of(calling).decode(),
            },
        )
        (shown_cdp,) = await until(lambda: page.evaluate(READ_NOTIFICATIONS))
        assert shown_cdp["title"] == "Врач на связи"
        assert shown_cdp["body"] == "Врач ждёт вас на консультации."
        assert shown_cdp["tag"] == "cdp-delivered" and shown_cdp["data"] == {"url": "/#waiting"}
        await worker.evaluate(
            "self.registration.getNotifications().then(ns => ns.forEach(n => n.close()))"
        )

        # Logging out: the page unsubscribes (Chromium tells GCM) and the server forgets
        # the device before the session ends; nothing is left to push to.
        await tid("nav-profile").click()
        await screen_is(page, "profile")
        await tid("logout").click()
        await expect(page.locator("#phone-form")).to_be_visible(timeout=WAIT)
        assert leaving == [
            "POST /api/v1/me/push-subscriptions",  # the subscription, long ago
            "DELETE /api/v1/me/push-subscriptions",
            "POST /api/v1/auth/logout",
        ]
        assert await subscriptions(stage) == []
        await gcm.until(lambda: [r for r in gcm.unregistered if r.token == token])
        assert token not in gcm.registrations
        assert await page.evaluate(BROWSER_SUBSCRIPTION) is None

        # The one 404 is the home screen asking for a connection check not made yet.
        assert {url.removeprefix(stage.url) for url in missing} <= {"/api/v1/device-check"}
        assert [e for e in patient.errors if "status of 404" not in e] == [], patient.errors
