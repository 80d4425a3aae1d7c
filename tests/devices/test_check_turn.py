"""The connection check's TURN line (R-DEV, R-FALLBACK-1): the /check page in Debian's
Chromium gathers a relayed candidate on a real coturn (tests/turnkit.py) with the TURN
credentials the server hands out; with coturn up the line passes, with it stopped the line
fails and says what to do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from appkit import Running
from devicekit import write_y4m
from helpers import add_adult, bearer, patient_token
from test_check_page import run_page
from turnkit import Coturn

from telemed.clock import ManualClock

SECRET = "check-turn-secret"


@pytest.fixture
def clock() -> ManualClock:
    """The server's clock starts at the real time: coturn checks expiries by its own."""
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """A coturn of this test (the test may stop it), stopped whatever happened."""
    server = Coturn(tmp_path, SECRET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _open(start_app: Callable[..., Any], url: str, coturn: Coturn) -> tuple[Running, str]:
    app: Running = await start_app(
        url,
        device={"call_measure": "3s"},
        signalling={"turn": coturn.turn_settings("udp", "tcp")},
    )
    await add_adult(app)
    token = await patient_token(app)
    return app, str(app.client.make_url("/check")) + f"?token={token}&channel=video"


async def test_the_turn_line_passes_when_the_relay_answers(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path, coturn: Coturn
) -> None:
    """R-DEV: the page's test call offers a relayed candidate got on coturn with the
    handed-out credentials: the TURN line passes, and so does the whole check."""
    app, page_url = await _open(start_app, sqlite_url, coturn)
    seen = await run_page(page_url, write_y4m(tmp_path / "720p.y4m", 1280, 720))
    assert seen["verdict"] == "ok", seen
    assert list(seen["checks"])[-2:] == ["test_call", "turn"]
    ok, line = seen["checks"]["turn"]
    assert ok and line.startswith("Relay server (TURN)") and "Yours: reachable" in line, line
    saved = await (
        await app.client.get("/api/v1/device-check", headers=bearer(seen["stored_token"]))
    ).json()
    assert saved["call"]["offered_relay"] >= 1
    assert "incoming packet ALLOCATE processed, success" in coturn.log_text()


async def test_the_turn_line_fails_with_advice_when_the_relay_is_down(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path, coturn: Coturn
) -> None:
    """R-DEV, R-FALLBACK-1: with coturn stopped the direct test call still works here, but
    the TURN line fails and tells the patient what to do (and the hotline is shown)."""
    _, page_url = await _open(start_app, sqlite_url, coturn)
    coturn.stop()
    seen = await run_page(page_url, write_y4m(tmp_path / "720p.y4m", 1280, 720), lang="ru")
    assert seen["verdict"] == "fail", seen
    failing = {name for name, (ok, _) in seen["checks"].items() if not ok}
    assert failing == {"turn"}, seen["checks"]
    line = seen["checks"]["turn"][1]
    assert "недоступен" in line and "порт 3478" in line and "VPN" in line, line
