"""Test calls at scale (R-DEV): 20 at once stay under `device.max_concurrent_calls`, the
rest get `check_busy`, and once they end no peer, task, thread or file descriptor is
left behind."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
from appkit import Running
from devicekit import start_call, until
from helpers import add_patients, bearer, patient_token

from signalling.media_check import MEDIA_CHECKS

PATIENTS = 20
CAP = 10


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _round(app: Running, tokens: list[str]) -> tuple[list[int], list[dict[str, Any]]]:
    """Every patient starts a test call at the same moment; the accepted ones run to their
    end. Returns the statuses and the accepted calls' reports."""
    base = str(app.client.make_url("/"))
    connector = aiohttp.TCPConnector(force_close=True)  # no pooled sockets to count
    async with aiohttp.ClientSession(base_url=base, connector=connector) as http:
        calls = await asyncio.gather(
            *(start_call(http, bearer(t), video=(320, 240)) for t in tokens)
        )
        try:
            busy = [c for c in calls if c.status == 503]
            assert all(c.body["error"]["code"] == "check_busy" for c in busy)
            reports = []
            for call, token in zip(calls, tokens, strict=True):
                if call.status != 201:
                    continue
                resp = await http.get(
                    f"/api/v1/device-check/call/{call.call_id}", headers=bearer(token)
                )
                reports.append(await resp.json())
        finally:
            for call in calls:
                await call.close()
    return [c.status for c in calls], reports


async def test_twenty_checks_at_once_stay_under_the_cap_and_leave_nothing_behind(
    start_app: Callable[..., Any], sqlite_url: str
) -> None:
    """R-DEV: at most `max_concurrent_calls` peers run; the others are told to retry; after
    the calls no peer, task, thread or descriptor remains (a second round proves the
    steady state: the first one also opens the pools that stay)."""
    app: Running = await start_app(
        sqlite_url,
        device={
            "call_measure": "1s",
            "call_timeout": "10s",
            "max_concurrent_calls": CAP,
            "calls_per_minute": 10,
        },
        auth={"otp_per_address_per_hour": 100},
        scheduler={"enabled": False},  # its own periodic tasks are not ours to count
    )
    rows = [
        f"P-{n},2026-01-01,2026-01-01,2027-12-31,Пациент {n},1980-01-01,M,+7916555{n:04d}"
        for n in range(PATIENTS)
    ]
    await add_patients(app, rows)
    tokens = [await patient_token(app, f"+7916555{n:04d}") for n in range(PATIENTS)]
    checks = app.client.server.app[MEDIA_CHECKS]

    async def idle() -> tuple[int, set[asyncio.Task[Any]], int]:
        await until(lambda: checks.active == 0 and not checks.running_tasks(), 10, "idle")
        await asyncio.sleep(0.3)  # closed transports release their sockets on the next turns
        gc.collect()
        return _open_fds(), set(asyncio.all_tasks()), threading.active_count()

    for round_number in (1, 2):
        statuses, reports = await _round(app, tokens)
        assert sorted(statuses) == [201] * CAP + [503] * (PATIENTS - CAP), statuses
        assert checks.peak == CAP
        assert all(r["state"] == "done" and r["video_frames"] > 0 for r in reports), reports
        assert all(r["audio_dbfs"] > -30 for r in reports)
        if round_number == 1:
            fds, tasks, threads = await idle()
        else:
            fds_after, tasks_after, threads_after = await idle()
    assert checks.active == 0 and not checks.running_tasks()
    assert {t for t in tasks_after - tasks if not t.done()} == set()
    assert threads_after == threads  # every decoder thread has been joined
    assert fds_after == fds, (fds, fds_after)
    assert checks.refused == 2 * (PATIENTS - CAP)
