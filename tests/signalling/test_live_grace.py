"""A patient away longer than the grace is closed as `left`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from appkit import Running
from helpers import patient_token, staff_token

from telemed.roles import Role


@pytest.fixture
def live_config() -> dict[str, Any]:
    return {"signalling": {"queue_refresh_interval": "10ms"}, "rules": {"no_show_after": "1s"}}


async def test_a_patient_away_past_the_grace_is_closed_as_left(live: Any) -> None:
    """A patient gone longer than no_show_after is closed as `left`; the staff are told."""
    app: Running = live.running
    adult = await live.join(await patient_token(app, "+79161234567"), "patient")
    consultant = await live.join((await staff_token(app, Role.CONSULTANT))[0], "consultant")
    cid = (await adult.ok("consultation:start", {"channel": "audio"}))["consultation_id"]
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await adult.close()
    await consultant.wait("peer:away")  # the server has seen the drop
    app.clock.advance(timedelta(seconds=2))
    closed = await consultant.wait("consultation:closed", within=10)
    assert closed == {"consultation_id": cid, "reason": "left"}
    row = await app.services.consultations.get(cid)
    assert row.state == "closed" and row.close_reason == "left"
