"""The consultant queue as patients and staff see it (R-URG-2)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from appkit import Running
from helpers import bearer, patient_token, staff_token

from telemed.roles import Role


async def test_positions_and_estimates_update_as_the_queue_moves(live: Any) -> None:
    """R-URG-2: a waiting patient sees their place and an estimated wait, kept current."""
    app: Running = live.running
    child = await live.join(await patient_token(app, "+79167654321"), "child")
    first = (await child.ok("consultation:start", {"channel": "audio"}))["consultation_id"]
    app.clock.advance(timedelta(seconds=30))
    adult = await live.join(await patient_token(app, "+79161234567"), "adult")
    second = (await adult.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    place = await adult.wait_state(second, "waiting_consultant")
    assert place["queue_position"] == 2
    consultant = await live.join((await staff_token(app, Role.CONSULTANT))[0], "consultant")
    await consultant.ok("consultation:accept", {})  # the longest-waiting one: the child
    assert (await child.wait_state(first, "with_consultant"))["counterpart"]["role"] == (
        "consultant"
    )
    moved = await adult.wait(
        "consultation:state",
        lambda d: d["consultation_id"] == second and d.get("queue_position") == 1,
    )
    assert moved["estimated_wait_seconds"] <= place["estimated_wait_seconds"]


async def test_the_console_sees_who_is_past_the_start_target_and_breaches_are_counted(
    live: Any,
) -> None:
    """R-URG-2: the 5-minute start target is tracked: marked in the queue, counted after."""
    app: Running = live.running
    token, _ = await staff_token(app, Role.CONSULTANT)
    consultant = await live.join(token, "consultant")
    await consultant.ok("queue:watch")
    adult = await live.join(await patient_token(app, "+79161234567"), "adult")
    cid = (await adult.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    fresh = await consultant.wait_queue(lambda items: len(items) == 1)
    assert fresh["items"][0]["past_target"] is False
    app.clock.advance(timedelta(minutes=5, seconds=1))
    snapshot = await (await app.client.get("/api/v1/queues", headers=bearer(token))).json()
    waiting = snapshot["queues"][0]
    assert waiting["role"] == "consultant" and waiting["items"][0]["past_target"] is True
    assert waiting["items"][0]["waited_seconds"] == 301
    assert snapshot["start_target_seconds"] == 300 and snapshot["breaches_last_24h"] == 1
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    after = await (await app.client.get("/api/v1/queues", headers=bearer(token))).json()
    assert after["queues"][0]["items"] == [] and after["breaches_last_24h"] == 1


async def test_patients_cannot_see_the_queues(live: Any) -> None:
    app: Running = live.running
    token = await patient_token(app, "+79161234567")
    resp = await app.client.get("/api/v1/queues", headers=bearer(token))
    assert resp.status == 403
