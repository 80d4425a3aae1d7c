"""The pages and their front-end packages are served by the app itself (no build step)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appkit import Running

import telemed.app as app_module

ROOT = Path(__file__).resolve().parents[2]


async def test_the_patient_app_and_the_console_are_served(app: Running) -> None:
    for path in ("/", "/console"):
        resp = await app.client.get(path)
        assert resp.status == 200 and resp.content_type == "text/html"
        assert '<html lang="ru">' in await resp.text()


async def test_socket_io_client_is_served_from_inside_the_package(app: Running) -> None:
    """The file the pages import is the vendored one (no node_modules needed to serve)."""
    resp = await app.client.get("/vendor/socket.io.esm.min.js")
    assert resp.status == 200 and "javascript" in resp.content_type
    body = await resp.read()
    assert b"export" in body  # the ES-module build the pages import
    assert body == (app_module.VENDOR_DIR / "socket.io.esm.min.js").read_bytes()
    assert app_module.VENDOR_DIR.is_relative_to(Path(app_module.__file__).parent)


def test_the_vendored_client_matches_package_lock_and_node_modules() -> None:
    """scripts/vendor.py --check: vendor.json pins the version and integrity of
    package-lock.json and the SHA-256 of each vendored file, the same bytes as npm ci's."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((app_module.VENDOR_DIR / "vendor.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert manifest["integrity"] == lock["packages"]["node_modules/socket.io-client"]["integrity"]
    assert (app_module.VENDOR_DIR / "LICENSE").read_text().startswith("The MIT License")


async def test_only_the_listed_vendor_files_are_served(app: Running) -> None:
    for name in ("package.json", "..%2Fpackage.json", "socket.io.js"):
        assert (await app.client.get(f"/vendor/{name}")).status == 404


async def test_the_hotline_is_served_to_the_pages_before_login(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-FALLBACK-1: a patient who cannot log in still gets the hotline, from `clinic.hotline`
    (the seed's 8-800 number by default)."""
    default = await start_app(sqlite_url)
    resp = await default.client.get("/api/v1/config")
    assert resp.status == 200
    body = await resp.json()
    assert body == {"hotline": "8 (800) 500-61-11", "second_opinion_working_days": 14}
    await default.client.close()

    changed = await start_app(sqlite_url, clinic={"hotline": "+7 495 000-00-00"})
    assert (await (await changed.client.get("/api/v1/config")).json())["hotline"] == (
        "+7 495 000-00-00"
    )
