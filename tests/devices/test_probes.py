"""Bandwidth probes of the connection check (R-DEV): random, uncached, capped downloads;
uploads timed by the server; consented patients only; a budget per patient."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import Any

from appkit import Running
from helpers import add_adult, bearer, patient_token, staff_token

from telemed.roles import Role

PROBE = "/api/v1/device-check/probe"


async def _app(start_app: Callable[..., Any], url: str, **device: Any) -> Running:
    app: Running = await start_app(url, device={"probe_max_bytes": 1_000_000, **device})
    await add_adult(app)
    return app


async def test_a_download_probe_is_random_uncached_uncompressed_and_capped(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: the page times real bytes: nothing can compress or cache them."""
    app = await _app(start_app, sqlite_url)
    headers = bearer(await patient_token(app))
    resp = await app.client.get(
        f"{PROBE}?bytes=200000", headers={**headers, "Accept-Encoding": "gzip, br"}
    )
    body = await resp.read()
    assert resp.status == 200 and len(body) == 200_000
    assert resp.headers["Content-Encoding"] == "identity"
    assert "no-store" in resp.headers["Cache-Control"]
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert len(zlib.compress(body, 9)) > 0.99 * len(body)
    again = await (await app.client.get(f"{PROBE}?bytes=200000", headers=headers)).read()
    assert again != body
    capped = await app.client.get(f"{PROBE}?bytes=50000000", headers=headers)
    assert capped.status == 200 and len(await capped.read()) == 1_000_000
    bad = await app.client.get(f"{PROBE}?bytes=-5", headers=headers)
    assert bad.status == 422


async def test_an_upload_probe_is_timed_by_the_server(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: the server counts what it received and how fast; too big is refused."""
    app = await _app(start_app, sqlite_url)
    headers = bearer(await patient_token(app))
    resp = await app.client.post(PROBE, data=os.urandom(500_000), headers=headers)
    result = await resp.json()
    assert resp.status == 200, result
    assert result["bytes"] == 500_000 and result["kbps"] > 1000 and result["seconds"] > 0
    resp = await app.client.post(PROBE, data=os.urandom(1_000_001), headers=headers)
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "payload_too_large"


async def test_probes_are_for_consented_patients_only(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-CONSENT-1, R-DEV: no probe without a login or before the consent; not for staff."""
    app = await _app(start_app, sqlite_url)
    assert (await app.client.get(PROBE)).status == 401
    fresh = bearer(await patient_token(app, consent=False))
    resp = await app.client.get(PROBE, headers=fresh)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "consent_required"
    consultant, _ = await staff_token(app, Role.CONSULTANT)
    resp = await app.client.post(PROBE, data=b"x" * 10, headers=bearer(consultant))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    for path in ("/api/v1/device-check/config", "/api/v1/device-check"):
        assert (await app.client.get(path, headers=fresh)).status == 403


async def test_a_patient_gets_a_probe_budget_per_minute(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: probes are rate-limited per patient: beyond the budget `rate_limited` with a
    Retry-After; the budget covers downloads and uploads together."""
    app = await _app(start_app, sqlite_url, probe_bytes_per_minute=2_500_000)
    headers = bearer(await patient_token(app))
    for _ in range(2):
        assert (await app.client.get(f"{PROBE}?bytes=1000000", headers=headers)).status == 200
    resp = await app.client.post(PROBE, data=os.urandom(600_000), headers=headers)
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "rate_limited"
    assert 0 < int(resp.headers["Retry-After"]) <= 60
    assert (await app.client.post(PROBE, data=os.urandom(400_000), headers=headers)).status == 200


async def test_the_page_learns_the_minimums_and_ice_servers_before_checking(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: the page asks for the configured numbers instead of knowing them."""
    app: Running = await start_app(
        sqlite_url,
        device={"min_video": [1280, 720], "call_measure": "4s"},
        signalling={"stun_urls": ["stun:stun.example.org:3478"]},
    )
    await add_adult(app)
    headers = bearer(await patient_token(app))
    config = await (await app.client.get("/api/v1/device-check/config", headers=headers)).json()
    assert config["min_video"] == [1280, 720] and config["min_bandwidth_kbps"] == 1000
    assert config["measure_seconds"] == 4 and config["probe_max_bytes"] == 4 * 1024 * 1024
    assert config["ice_servers"] == [{"urls": ["stun:stun.example.org:3478"]}]
    resp = await app.client.get("/api/v1/device-check", headers=headers)
    assert resp.status == 404  # no check yet


async def test_the_verdict_speaks_the_language_the_patient_asked_for(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: Russian by default, English from Accept-Language or ?lang=en."""
    app = await _app(start_app, sqlite_url)
    headers = bearer(await patient_token(app))
    body = {
        "channel": "video",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36",
        "camera": None,
        "microphone": True,
        "bandwidth_kbps": 2000,
    }
    ru = await (await app.client.post("/api/v1/device-check", json=body, headers=headers)).json()
    en = await (
        await app.client.post(
            "/api/v1/device-check", json=body, headers={**headers, "Accept-Language": "en-GB"}
        )
    ).json()
    assert (ru["language"], en["language"]) == ("ru", "en")
    assert ru["ok"] is en["ok"] is False
    assert [c["name"] for c in ru["checks"] if not c["ok"]] == ["os", "camera"]
    assert ru["checks"][2]["advice"].startswith("Подключите камеру")
    assert en["checks"][2]["advice"].startswith("Connect a camera")
    assert en["platform"] == "Linux, Chrome 124"
    bad = dict(body, channel="fax")
    resp = await app.client.post("/api/v1/device-check", json=bad, headers=headers)
    assert resp.status == 422
