"""Browser-test kit: the real app on a 127.0.0.1 port with a manual clock and no scheduler
of its own, Debian's Chromium with fake devices (a 1280x720 .y4m camera), several contexts
in one browser, screenshots at 360 and 1280 px, and the people the tests log in as."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appkit import Running
from clinic import THURSDAY  # the manual clock starts on Thursday 2026-01-15 09:00 UTC
from helpers import SYSTEM, add_patients, bearer, staff_token
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)

from scheduler.runner import SchedulerRunner
from telemed.app import SCHEDULER
from telemed.roles import Role
from telemed.services.staff import add_staff

# The fake-camera writer of the connection-check tests, reused as it is.
sys.path.append(str(Path(__file__).resolve().parent.parent / "devices"))
from devicekit import CHROMIUM, CHROMIUM_FLAGS, CSP_LISTENER, is_csp_violation, write_y4m

FLAGS = [*CHROMIUM_FLAGS, "--autoplay-policy=no-user-gesture-required"]
# Our users are in Russia: dates as dd.mm.yyyy in <input type=date>, Moscow time.
LOCALE = "ru-RU"
TIMEZONE = "Europe/Moscow"
PHONE = {"width": 360, "height": 740}
DESK = {"width": 1280, "height": 800}
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
STAFF_PASSWORD = "staff-pass-1"
# The patient's browser claims Windows: the connection check accepts Windows and Mac OS X.
WINDOWS_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{major}.0.0.0 Safari/537.36"
)
ADULT = "E-1,2026-01-01,2026-01-01,2027-12-31,Иванов Иван Петрович,1980-03-01,M,+79161234567"
ADULT_PHONE = "+79161234567"
WAIT = 30_000  # ms; a ceiling for a loaded 2-core machine, not a timing assertion


@dataclass
class Stage:
    """The running app as the browsers see it: its address, clock, scheduler and SMS."""

    app: Running
    url: str
    push_file: Path
    staff: dict[str, str] = field(default_factory=dict)  # login -> staff id

    @property
    def runner(self) -> SchedulerRunner:
        return self.app.client.server.app[SCHEDULER]

    async def tick(self) -> dict[str, int]:
        """Run the scheduler once at the manual clock's time (the tests move the clock)."""
        return (await self.runner.tick()).counts

    async def add_staff(self, role: Role, login: str, name: str) -> str:
        """A staff account the console logs in with (password STAFF_PASSWORD); its id."""
        svc = self.app.services
        row = await add_staff(
            svc.db,
            svc.clock,
            role=role,
            login=login,
            password=STAFF_PASSWORD,
            full_name=name,
            who=SYSTEM,
        )
        self.staff[login] = row.id
        return str(row.id)

    async def add_patients(self, *rows: str) -> None:
        """Insured persons from CSV lines (see helpers.CSV_HEADER)."""
        await add_patients(self.app, list(rows))

    async def otp(self, phone: str) -> str:
        """The last login code the SMS file backend wrote for this phone."""
        return await self.app.last_code(phone)

    def pushes(self) -> list[dict[str, Any]]:
        if not self.push_file.exists():
            return []
        return [json.loads(line) for line in self.push_file.read_text().splitlines()]


async def open_stage(
    start_app: Callable[..., Any],
    db_url: str,
    tmp_path: Path,
    *,
    push_session: Callable[[], Any] | None = None,
    **overrides: Any,
) -> Stage:
    """Serve the app on a real 127.0.0.1 port: file SMS and push, scheduler off, fast queue.
    `push_session`: how Web Push reaches the push services (tests/fakegcm.py)."""
    push_file = tmp_path / "push.jsonl"
    settings: dict[str, Any] = {
        "push": {"backend": "file", "path": str(push_file)},
        "storage": {"documents_dir": str(tmp_path / "documents")},
        "signalling": {"queue_refresh_interval": "50ms"},
        "scheduler": {"enabled": False},
    }
    for section, values in overrides.items():
        settings.setdefault(section, {}).update(values)
    app: Running = await start_app(db_url, push_session=push_session, **settings)
    url = str(app.client.make_url("/")).rstrip("/")
    assert url.startswith("http://127.0.0.1:"), url  # a secure context for getUserMedia
    return Stage(app=app, url=url, push_file=push_file)


def camera_file(tmp_path: Path) -> Path:
    """A 1280x720 fake camera for Chromium (passes the R-DEV camera check)."""
    return write_y4m(tmp_path / "camera-720p.y4m", 1280, 720, frames=30)


# The only 404s a page may meet: GET /api/v1/device-check is 404 until the patient's first
# connection check, and home says "check your connection" for it. Any other 404 is an error.
EXPECTED_404 = frozenset({"/api/v1/device-check"})


def expected_404(msg: ConsoleMessage) -> bool:
    """The browser's "Failed to load resource: ... 404" for one of the expected URLs."""
    url = (msg.location or {}).get("url", "")
    return "status of 404" in msg.text and urlsplit(url).path in EXPECTED_404


# Every page's console messages and errors, per browser, printed when a test fails in it.
_JOURNALS: dict[int, list[str]] = {}
# Content-Security-Policy violations per browser: any one fails the test (issue 14).
_VIOLATIONS: dict[int, list[str]] = {}


@asynccontextmanager
async def chromium(
    camera: Path, locale: str = LOCALE, executable: str = CHROMIUM
) -> AsyncIterator[Browser]:
    """One Debian Chromium with fake devices; each person gets a context of it. When the
    block fails, every page's console messages and errors are printed (pytest shows them).
    `executable` may be a wrapper that starts Chromium elsewhere (a network namespace).
    The browser's own language (date and time inputs follow it, not the context's locale)
    comes from LANGUAGE and --lang; it needs Debian's chromium-l10n, else Chromium stays en-US."""
    posix = locale.replace("-", "_")
    # LANG stays a locale the machine has (C.UTF-8): with an ungenerated ru_RU.UTF-8 Chromium
    # cannot open files with Cyrillic names and set_input_files silently sets nothing.
    env = {**os.environ, "LANGUAGE": f"{posix}:{locale.split('-')[0]}", "LANG": "C.UTF-8"}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable,
            args=[*FLAGS, f"--lang={locale}", f"--use-file-for-fake-video-capture={camera}"],
            env=env,
        )
        _JOURNALS[id(browser)] = []
        _VIOLATIONS[id(browser)] = []
        try:
            yield browser
            violations = _VIOLATIONS.get(id(browser), [])
            assert violations == [], f"Content-Security-Policy violations: {violations}"
        except BaseException:
            print_journal(browser)
            raise
        else:
            if os.environ.get("E2E_JOURNAL"):  # to read a passing run's too
                print_journal(browser)
        finally:
            _JOURNALS.pop(id(browser), None)
            _VIOLATIONS.pop(id(browser), None)
            await browser.close()


def print_journal(browser: Browser) -> None:
    """Every page's console messages and errors so far, oldest first."""
    print("\n--- browser console (all pages) ---")
    print("\n".join(_JOURNALS.get(id(browser), [])) or "(nothing)")


@dataclass
class Person:
    """One browser context (its own storage, as a separate device) and its page."""

    context: BrowserContext
    page: Page
    errors: list[str]


def watch(page: Page, name: str, errors: list[str] | None = None) -> None:
    """Journal the page's console and errors (printed on failure); errors also to `errors`;
    a Content-Security-Policy violation fails the test at the end of its `chromium` block."""
    journal = _JOURNALS.setdefault(id(page.context.browser), [])
    violations = _VIOLATIONS.setdefault(id(page.context.browser), [])

    def note(kind: str, text: str) -> None:
        journal.append(f"{datetime.now():%H:%M:%S.%f} {name} {kind}: {text}")

    def on_console(msg: ConsoleMessage) -> None:
        note(msg.type, msg.text)
        if is_csp_violation(msg.text):
            violations.append(f"{name}: {msg.text}")
        if msg.type == "error" and errors is not None and not expected_404(msg):
            errors.append(f"{msg.text} ({(msg.location or {}).get('url', '')})")

    def on_error(exc: Exception) -> None:
        note("pageerror", str(exc))
        if errors is not None:
            errors.append(str(exc))

    page.on("console", on_console)
    page.on("pageerror", on_error)
    page.on("crash", lambda _: note("crash", "the page crashed"))


async def person(
    browser: Browser,
    viewport: dict[str, int] | None = None,
    name: str = "",
    locale: str = LOCALE,
    timezone_id: str = TIMEZONE,
) -> Person:
    """A new context (Windows agent; a Russian user's locale and time zone unless the test
    asks otherwise) whose page's console and errors are journalled; JS errors in .errors."""
    major = browser.version.split(".")[0]
    context = await browser.new_context(
        user_agent=WINDOWS_AGENT.format(major=major),
        viewport=viewport or DESK,  # type: ignore[arg-type]
        locale=locale,
        timezone_id=timezone_id,
    )
    await context.add_init_script(CSP_LISTENER)
    page = await context.new_page()
    errors: list[str] = []
    watch(page, name or f"page{len(browser.contexts)}", errors)
    return Person(context=context, page=page, errors=errors)


NEXT_FRAME = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


async def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot to test-artifacts/screenshots/<name>-<width>.png."""
    width = (page.viewport_size or DESK)["width"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}-{width}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def shots(page: Page, name: str, widths: tuple[int, ...] = (360, 1280)) -> list[Path]:
    """The same screen at each width (phone and desk), then the original size back."""
    before = page.viewport_size or DESK
    saved = []
    for width in widths:
        await page.set_viewport_size({"width": width, "height": before["height"]})
        await page.evaluate(NEXT_FRAME)  # laid out and painted at the new size
        saved.append(await shot(page, name))
    await page.set_viewport_size(before)  # type: ignore[arg-type]
    return saved


async def overflow(page: Page) -> int:
    """How many pixels the page is wider than its viewport (0 when it fits)."""
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


VIDEO_PROBE = """async (el) => {
  const t0 = el.currentTime;
  await new Promise(r => setTimeout(r, 700));
  return {width: el.videoWidth, height: el.videoHeight, boxWidth: el.clientWidth,
          boxHeight: el.clientHeight, t0, t1: el.currentTime, paused: el.paused};
}"""


async def video_flowing(page: Page, testid: str = "remote-video", within: float = 30) -> Any:
    """Wait until the <video> shows frames: a non-zero size and an advancing currentTime."""
    video = page.get_by_test_id(testid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    seen: Any = None
    while loop.time() < deadline:
        seen = await video.evaluate(VIDEO_PROBE)
        if seen["width"] > 0 and seen["boxWidth"] > 0 and seen["t1"] > seen["t0"]:
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"{testid} is not playing: {seen}")


async def login_staff(page: Page, url: str, login: str) -> None:
    """Log in to the console (/console) with the staff password of the kit."""
    await page.goto(f"{url}/console")
    await page.get_by_test_id("login-input").fill(login)
    await page.get_by_test_id("password-input").fill(STAFF_PASSWORD)
    await page.get_by_test_id("login-submit").click()


async def login_patient(page: Page, stage: Stage, phone: str = ADULT_PHONE) -> None:
    """Log in to the patient app (/) with phone + the SMS code (R-AUTH-1)."""
    await page.goto(f"{stage.url}/")
    before = len(await _codes(stage, phone))
    await page.get_by_test_id("phone-input").fill(phone)
    await page.get_by_test_id("send-code").click()
    code = await _code_after(stage, phone, before)
    await page.get_by_test_id("code-input").fill(code)
    await page.get_by_test_id("verify-code").click()


async def _codes(stage: Stage, phone: str) -> list[str]:
    await stage.app.services.auth.drain()
    return [str(m["code"]) for m in stage.app.sms() if m["to"] == phone and m["code"]]


async def _code_after(stage: Stage, phone: str, before: int, within: float = 10) -> str:
    """Wait for the SMS the page just asked for (the request is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        codes = await _codes(stage, phone)
        if len(codes) > before:
            return codes[-1]
        if loop.time() > deadline:
            raise AssertionError(f"no SMS code was sent to {phone}")
        await asyncio.sleep(0.1)


UNLABELLED = """[...document.querySelectorAll('input, button, select, textarea, video')]
  .filter(e => e.offsetParent !== null && e.type !== 'hidden')
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby') && !e.textContent.trim())
  .map(e => e.outerHTML.slice(0, 120))"""


async def unlabelled(page: Page) -> list[str]:
    """Visible controls without an accessible name (all must be labelled)."""
    return list(await page.evaluate(UNLABELLED))


async def screen_is(page: Page, name: str) -> None:
    """Wait until the app shows that screen (and only it)."""
    await expect(page.locator(f'section[data-screen="{name}"]')).to_be_visible(timeout=WAIT)
    await expect(page.locator("section[data-screen]:not([hidden])")).to_have_count(1)


async def fits_and_labelled(page: Page) -> None:
    """No sideways scrolling on the phone and every visible control has a name."""
    assert await overflow(page) == 0
    assert await unlabelled(page) == []


async def doctor(stage: Stage, admin: str, role: Role, login: str) -> tuple[str, str]:
    """A doctor working Thursdays 13:00-17:00 Moscow time; (token, id)."""
    token, doctor_id = await staff_token(stage.app, role, login)
    resp = await stage.app.client.put(
        f"/api/v1/doctors/{doctor_id}/working-hours",
        json={
            "time_zone": "Europe/Moscow",
            "slot_minutes": 15,
            "hours": [{"weekday": THURSDAY, "starts": "13:00", "ends": "17:00"}],
        },
        headers=bearer(admin),
    )
    assert resp.status == 200, await resp.text()
    return token, doctor_id
