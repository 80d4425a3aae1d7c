"""/metrics and /readyz of a node (issue 7): the numbers an operator of several nodes
watches move with what happens (R-URG-2 start target, errors by code, events)."""

from __future__ import annotations

from datetime import timedelta

from helpers import ADULT_PHONE, patient_token, staff_token
from scalekit import Nodes, metric_value, signalling_of, until

from telemed.roles import Role


async def test_metrics_follow_clients_queues_waits_breaches_events_and_errors(
    nodes: Nodes,
) -> None:
    """R-URG-2: a patient waiting past `urgent_start_target` shows in the queue gauges and,
    once taken, in the breaches of the last 24 h; events are timed, errors counted by
    transport and code; a consultant on node b is counted online on node a."""
    a, b = nodes.a, nodes.b
    # Baselines: a labelled counter is exported from its first use on, so absent counts as 0.
    chats = await metric_value(
        a, "telemed_socketio_event_seconds_count", absent=0.0, event="chat:send"
    )
    signals = await metric_value(a, "telemed_socketio_events_total", absent=0.0, event="signal")
    forbidden = await metric_value(
        a, "telemed_errors_total", absent=0.0, transport="socketio", code="forbidden"
    )
    unauthorized = await metric_value(
        a, "telemed_errors_total", absent=0.0, transport="rest", code="unauthorized"
    )
    assert await metric_value(a, "telemed_connected_clients") == 0
    assert await metric_value(a, "telemed_queue_length", role="consultant") == 0
    assert await metric_value(a, "telemed_start_target_breaches_24h") == 0
    assert await metric_value(a, "telemed_redis_up") == 1
    assert await metric_value(a, "telemed_database_up") == 1
    async with a.client.get("/readyz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"database": "ok", "redis": "ok", "status": "ready"}

    consultant = await nodes.join(b, (await staff_token(a, Role.CONSULTANT))[0], "consultant")
    patient = await nodes.join(a, await patient_token(a, ADULT_PHONE), "patient")
    await until(lambda: signalling_of(a).presence.count(Role.CONSULTANT) == 1, 5, "b's staff")
    assert await metric_value(a, "telemed_connected_clients") == 1
    assert await metric_value(a, "telemed_online_users", role="consultant") == 1
    cid = (await patient.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    a.clock.advance(a.settings.rules.urgent_start_target + timedelta(minutes=1))
    waited = (a.settings.rules.urgent_start_target + timedelta(minutes=1)).total_seconds()
    assert await metric_value(a, "telemed_queue_length", role="consultant") == 1
    assert await metric_value(a, "telemed_queue_longest_wait_seconds", role="consultant") == waited
    assert await metric_value(a, "telemed_queue_past_target", role="consultant") == 1

    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await patient.wait_state(cid, "with_consultant")
    await patient.ok("chat:send", {"consultation_id": cid, "text": "hello"})
    await patient.ok("signal", {"consultation_id": cid, "data": {"type": "offer", "sdp": "v=0"}})
    refused = await patient.call("queue:watch")
    assert refused["error"]["code"] == "forbidden"
    async with a.client.get("/api/v1/me") as resp:
        assert resp.status == 401

    assert await metric_value(a, "telemed_queue_length", role="consultant") == 0
    assert await metric_value(a, "telemed_start_target_breaches_24h") == 1
    after = await metric_value(a, "telemed_socketio_event_seconds_count", event="chat:send")
    assert after == chats + 1
    assert await metric_value(a, "telemed_socketio_events_total", event="chat:send") >= 1
    # The relay's hot path is counted, not timed (no histogram observe per signal).
    assert await metric_value(a, "telemed_socketio_events_total", event="signal") == signals + 1
    assert (
        await metric_value(a, "telemed_socketio_event_seconds_count", absent=-1.0, event="signal")
        == -1.0
    )
    assert (
        await metric_value(a, "telemed_errors_total", transport="socketio", code="forbidden")
        == forbidden + 1
    )
    assert (
        await metric_value(a, "telemed_errors_total", transport="rest", code="unauthorized")
        == unauthorized + 1
    )
    assert await metric_value(a, "telemed_scheduler_lag_seconds") >= 0
    assert await metric_value(a, "telemed_relay_published_total") > 0
