"""signalling/admission.py: every connect is answered, and a storm's welcomes wait their turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from signalling.admission import Admission
from telemed.errors import ConsentRequired


async def test_a_connect_handler_that_fails_is_refused_with_an_error_the_client_sees() -> None:
    admission = Admission(lambda: 1)

    async def broken(sid: str, environ: dict[str, Any], auth: Any) -> None:
        raise TimeoutError("QueuePool limit of size 5 overflow 10 reached")

    with pytest.raises(socketio.exceptions.ConnectionRefusedError) as refused:
        await admission.connect(broken, "s", {}, None)
    assert refused.value.error_args["data"]["code"] == "internal_error"

    async def no_consent(sid: str, environ: dict[str, Any], auth: Any) -> None:
        raise ConsentRequired()

    with pytest.raises(socketio.exceptions.ConnectionRefusedError) as refused:
        await admission.connect(no_consent, "s", {}, None)
    assert refused.value.error_args["data"]["code"] == "consent_required"


async def test_welcomes_wait_their_turn_and_a_failed_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    admission = Admission(lambda: 2)
    running = most = 0

    async def welcome(fail: bool) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)
        running -= 1
        if fail:
            raise RuntimeError("welcome failed")

    await asyncio.gather(*(admission.welcome(welcome(n == 3)) for n in range(10)))
    assert most == 2
    assert "welcome of a connected socket failed" in caplog.text
