"""The pages and their front-end packages are served by the app itself (no build step)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from appkit import Running

import telemed.app as app_module


async def test_the_patient_app_and_the_console_are_served(app: Running) -> None:
    for path in ("/", "/console"):
        resp = await app.client.get(path)
        assert resp.status == 200 and resp.content_type == "text/html"
        assert '<html lang="ru">' in await resp.text()


async def test_socket_io_client_is_served_from_the_npm_install(app: Running) -> None:
    resp = await app.client.get("/vendor/socket.io.esm.min.js")
    assert resp.status == 200 and "javascript" in resp.content_type
    assert "export" in await resp.text()  # the ES-module build the pages import


async def test_only_the_listed_vendor_files_are_served(app: Running) -> None:
    for name in ("package.json", "..%2Fpackage.json", "socket.io.js"):
        assert (await app.client.get(f"/vendor/{name}")).status == 404


async def test_a_checkout_without_npm_ci_gets_a_clear_error(
    app: Running, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(app_module, "NODE_MODULES", tmp_path)
    resp = await app.client.get("/vendor/socket.io.esm.min.js")
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "vendor_missing"


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
