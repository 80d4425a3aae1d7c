"""The /check page in Debian's Chromium with fake devices (R-DEV): a 1280x720 camera
passes, a 640x480 one fails the camera check; the page runs to its verdict through a
real WebRTC test call to the server, also on a 360 px screen driven from the keyboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from appkit import Running
from devicekit import CHROMIUM, CHROMIUM_FLAGS, CSP_LISTENER, is_csp_violation, write_y4m
from helpers import add_adult, bearer, patient_token
from playwright.async_api import async_playwright


async def run_page(
    url: str, camera: Path, lang: str = "en", phone_sized: bool = False
) -> dict[str, Any]:
    """Open the page as a patient on Windows, press Start (with the mouse, or on a 360 px
    wide screen from the keyboard), wait for the verdict."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={camera}"],
        )
        try:
            major = browser.version.split(".")[0]
            # The rules accept Windows and Mac OS X, not the Linux this test runs on.
            agent = (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                f"(KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36"
            )
            viewport = {"width": 360, "height": 740} if phone_sized else None
            context = await browser.new_context(user_agent=agent, viewport=viewport)
            await context.add_init_script(CSP_LISTENER)
            page = await context.new_page()
            violations: list[str] = []  # issue 14: any CSP violation fails the page
            page.on(
                "console",
                lambda m: violations.append(m.text) if is_csp_violation(m.text) else None,
            )
            await page.goto(f"{url}&lang={lang}")
            start = page.get_by_role("button", name=START[lang])
            if phone_sized:
                for _ in range(10):  # Tab from the top of the page to the Start button
                    await page.keyboard.press("Tab")
                    if await start.evaluate("b => b === document.activeElement"):
                        break
                await page.keyboard.press("Enter")
            else:
                await start.click()
            await page.wait_for_selector("#result[data-verdict]", timeout=40_000)
            wide = await page.evaluate("document.documentElement.scrollWidth")
            checks = await page.eval_on_selector_all(
                "#checks li",
                "items => items.map(i => [i.dataset.check, i.dataset.ok === 'true', "
                "i.textContent])",
            )
            assert violations == [], f"Content-Security-Policy violations: {violations}"
            return {
                "verdict": await page.get_attribute("#result", "data-verdict"),
                "heading": await page.text_content("#verdict"),
                "checks": {name: (ok, text) for name, ok, text in checks},
                "address": page.url,
                "stored_token": await page.evaluate("localStorage.getItem('telemed.token')"),
                "width": wide,
                "unlabelled": await page.evaluate(UNLABELLED),
            }
        finally:
            await browser.close()


START = {"en": "Start the check", "ru": "Начать проверку"}
# Form controls and buttons without an accessible name.
UNLABELLED = """[...document.querySelectorAll('input, button, meter, video')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.textContent.trim()).map(e => e.outerHTML)"""


async def _open(start_app: Callable[..., Any], url: str) -> tuple[Running, str]:
    app: Running = await start_app(url, device={"call_measure": "3s"})
    await add_adult(app)
    token = await patient_token(app)
    return app, str(app.client.make_url("/check")) + f"?token={token}&channel=video"


async def test_chromium_with_a_720p_camera_runs_the_page_to_a_passing_verdict(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-DEV: a 1280x720 fake camera and the fake microphone pass every check."""
    app, page_url = await _open(start_app, sqlite_url)
    seen = await run_page(page_url, write_y4m(tmp_path / "720p.y4m", 1280, 720))
    assert seen["verdict"] == "ok", seen
    assert list(seen["checks"]) == [
        "os",
        "browser",
        "camera",
        "microphone",
        "bandwidth",
        "test_call",
    ]
    assert all(ok for ok, _ in seen["checks"].values())
    assert "1280×720" in seen["checks"]["camera"][1]
    assert "token=" not in seen["address"] and seen["stored_token"]
    row = await app.client.get("/api/v1/device-check", headers=bearer(seen["stored_token"]))
    saved = await row.json()
    assert saved["ok"] is True and saved["call"]["width"] == 1280


async def test_chromium_with_a_640x480_camera_fails_the_camera_check_only(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """R-DEV: a 640x480 camera is below 1024x720; the page says so and what to do."""
    _, page_url = await _open(start_app, sqlite_url)
    camera = write_y4m(tmp_path / "480p.y4m", 640, 480)
    seen = await run_page(page_url, camera, lang="ru", phone_sized=True)
    assert seen["verdict"] == "fail", seen
    failing = {name for name, (ok, _) in seen["checks"].items() if not ok}
    assert failing == {"camera"}
    assert "640×480" in seen["checks"]["camera"][1]
    assert "Камера даёт 640×480" in seen["checks"]["camera"][1]
    assert seen["width"] <= 360 and seen["unlabelled"] == []  # fits a phone, all labelled
