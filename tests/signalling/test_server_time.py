"""`server_time` in `consultation:state` and `limit:warning`: the injected clock's time of
the event, so a client counts down to `limit_ends_at` / `ends_at` on the server's clock
rather than on its own (which may be wrong by minutes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from helpers import patient_token, staff_token

from scheduler.runner import SchedulerRunner
from telemed.app import SCHEDULER
from telemed.roles import Role


@pytest.fixture
def live_config() -> dict[str, Any]:
    """The test moves the clock and ticks the scheduler itself."""
    return {"signalling": {"queue_refresh_interval": "10ms"}, "scheduler": {"enabled": False}}


def stamped(payload: dict[str, Any], now: datetime) -> datetime:
    """The payload's `server_time`, checked to be ISO 8601 with an offset and `now`."""
    server_time = datetime.fromisoformat(payload["server_time"])
    assert server_time.utcoffset() is not None, payload["server_time"]
    assert server_time == now, payload
    return server_time


async def test_state_and_limit_warning_carry_the_server_clock(live: Any) -> None:
    """R-LIMIT-URG: every `consultation:state` (both views) and the `limit:warning` carry
    the manual clock's time, and the warning comes 2 minutes before `ends_at` by it."""
    app = live.running
    consultant_token, _ = await staff_token(app, Role.CONSULTANT)
    therapist_token, _ = await staff_token(app, Role.THERAPIST)
    consultant = await live.join(consultant_token, "consultant")
    therapist = await live.join(therapist_token, "therapist")
    patient = await live.join(await patient_token(app), "patient")

    cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    stamped(await patient.wait_state(cid, "waiting_consultant"), app.clock.now())

    app.clock.advance(timedelta(minutes=3))
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    stamped(await patient.wait_state(cid, "with_consultant"), app.clock.now())
    stamped(await consultant.wait_state(cid, "with_consultant"), app.clock.now())

    app.clock.advance(timedelta(minutes=1))
    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await therapist.ok("consultation:accept", {"consultation_id": cid})
    started = await therapist.wait_state(cid, "with_doctor")
    stamped(started, app.clock.now())
    stamped(await patient.wait_state(cid, "with_doctor"), app.clock.now())

    app.clock.advance(timedelta(minutes=28))
    runner: SchedulerRunner = app.client.server.app[SCHEDULER]
    await runner.tick()
    for side in (patient, therapist):
        warning = await side.wait("limit:warning", lambda d: d["consultation_id"] == cid)
        assert warning["ends_at"] == started["limit_ends_at"]
        now = stamped(warning, app.clock.now())
        assert datetime.fromisoformat(warning["ends_at"]) - now == timedelta(minutes=2)
