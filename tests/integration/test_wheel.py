"""The package stands alone: `python -m build` makes a wheel that, installed into a fresh
virtual environment outside the checkout and served from a folder with no node_modules and
no Node.js on PATH, serves every page. Chromium opens /, /console and /check: nothing is
404, the Socket.IO client loads from inside the package, the login forms show."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
START_WITHIN = 120.0
# What each page shows a visitor who has not logged in yet.
PAGES = {"/": "#phone-form", "/console": "#login-form", "/check": "#login"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[str]:
    """The wheel built from this checkout, installed in a new venv under tmp, serving the
    demo data from an empty folder with only that venv on PATH."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("telemed-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    site = tmp_path / "site"
    site.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
    env["PATH"] = str(venv / "bin")
    assert shutil.which("node", path=env["PATH"]) is None
    assert shutil.which("npm", path=env["PATH"]) is None
    telemed = str(venv / "bin" / "telemed")
    demo = subprocess.run(
        [telemed, "demo"], cwd=site, env=env, capture_output=True, text=True, timeout=300
    )
    assert demo.returncode == 0, demo.stderr
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [telemed, "serve", "--port", str(port)], cwd=site, env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_WITHIN
        while not _healthy(base):
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the installed telemed did not start: " + log_path.read_text())
            time.sleep(0.2)
        try:
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert not (site / "node_modules").exists()
    assert not any(p.name == "node_modules" for p in site.iterdir())


async def test_an_installed_wheel_serves_every_page_without_node(installed: str) -> None:
    base = installed
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            for path, login in PAGES.items():
                page = await browser.new_page()
                answers: dict[str, int] = {}
                page.on("response", lambda r, seen=answers: seen.__setitem__(r.url, r.status))
                errors: list[str] = []
                page.on("pageerror", lambda e, seen=errors: seen.append(str(e)))
                resp = await page.goto(base + path)
                assert resp is not None and resp.status == 200, path
                await page.wait_for_selector(login, state="visible", timeout=15_000)
                await page.wait_for_load_state("networkidle")
                failed = {url: status for url, status in answers.items() if status >= 400}
                assert not failed, (path, failed)
                assert not errors, (path, errors)
                if path != "/check":  # the app and the console talk Socket.IO
                    assert answers.get(base + "/vendor/socket.io.esm.min.js") == 200, answers
                await page.close()
        finally:
            await browser.close()
