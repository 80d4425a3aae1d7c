"""A live session lives only while its access does; the protocol keeps its reserved names;
each socket has an event budget; every change leaves through the one publisher."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from appkit import Running
from helpers import bearer, patient_token, staff_token

from telemed.context import REPLAN
from telemed.roles import Role

ADMIN_LOGIN = "admin"


async def socket_errors(app: Running, code: str) -> float:
    """telemed_errors_total for socket acks of `code`, as /metrics shows it (0 if none)."""
    text = await (await app.client.get("/metrics")).text()
    for line in text.splitlines():
        labels = (f'code="{code}"', 'transport="socketio"')
        if line.startswith("telemed_errors_total{") and all(x in line for x in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def ended(client: Any, reason: str) -> None:
    """The socket is told why and then disconnected by the server, within 2 s."""
    told = await client.wait("session:ended", within=2)
    assert told == {"reason": reason}
    for _ in range(40):
        if not client.sio.connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{client.name}: still connected after session:ended")


async def test_a_consultation_started_over_rest_reaches_the_watching_consultants(
    live: Any,
) -> None:
    """R-URG-2: the queue's watchers see a patient whichever way they started."""
    app: Running = live.running
    consultant = await live.join((await staff_token(app, Role.CONSULTANT))[0], "consultant")
    await consultant.ok("queue:watch")
    token = await patient_token(app, "+79161234567")
    resp = await app.client.post(
        "/api/v1/consultations", json={"channel": "audio"}, headers=bearer(token)
    )
    assert resp.status == 201, await resp.text()
    cid = (await resp.json())["consultation_id"]
    joined = await consultant.wait("queue:joined")
    assert joined["role"] == "consultant" and joined["item"]["consultation_id"] == cid
    assert joined["item"]["position"] == 1 and "server_time" in joined


async def test_queue_watchers_get_deltas_not_the_whole_queue(live: Any) -> None:
    """R-URG-2: an accept tells the watchers one `queue:left` (taken), never the queue."""
    app: Running = live.running
    first = await live.join((await staff_token(app, Role.CONSULTANT, "c1"))[0], "c1")
    second = await live.join((await staff_token(app, Role.CONSULTANT, "c2"))[0], "c2")
    await first.ok("queue:watch")
    await second.ok("queue:watch")
    adult = await live.join(await patient_token(app, "+79161234567"), "adult")
    cid = (await adult.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    await second.wait("queue:joined")
    await first.ok("consultation:accept", {"consultation_id": cid})
    left = await second.wait("queue:left")
    assert left["consultation_id"] == cid and left["reason"] == "taken"
    assert second.queue() == [] and second.events("queue:update") == []


async def test_logout_ends_the_live_session(live: Any) -> None:
    app: Running = live.running
    token = await patient_token(app, "+79161234567")
    patient = await live.join(token, "patient")
    resp = await app.client.post("/api/v1/auth/logout", headers=bearer(token))
    assert resp.status == 204, await resp.text()
    await ended(patient, "logout")


async def test_logout_of_one_token_leaves_the_others_sessions_alone(live: Any) -> None:
    """Only sockets of the revoked token end."""
    app: Running = live.running
    consultant_token, _ = await staff_token(app, Role.CONSULTANT)
    consultant = await live.join(consultant_token, "consultant")
    token = await patient_token(app, "+79161234567")
    await (await app.client.post("/api/v1/auth/logout", headers=bearer(token))).read()
    await asyncio.sleep(0.3)
    assert consultant.sio.connected and consultant.events("session:ended") == []


async def test_consent_withdrawal_ends_the_live_session(live: Any) -> None:
    """R-CONSENT-1: no service without consent, the live one included."""
    app: Running = live.running
    token = await patient_token(app, "+79161234567")
    patient = await live.join(token, "patient")
    resp = await app.client.delete("/api/v1/me/consent", headers=bearer(token))
    assert resp.status in (200, 204), await resp.text()
    await ended(patient, "consent_withdrawn")


async def test_a_disabled_staff_account_ends_its_live_session(live: Any) -> None:
    app: Running = live.running
    token, consultant_id = await staff_token(app, Role.CONSULTANT)
    consultant = await live.join(token, "consultant")
    admin_token, _ = await staff_token(app, Role.ADMIN, ADMIN_LOGIN)
    resp = await app.client.post(
        f"/api/v1/staff/{consultant_id}/disable", headers=bearer(admin_token)
    )
    assert resp.status == 204, await resp.text()
    await ended(consultant, "account_disabled")
    again = await app.client.get("/api/v1/me", headers=bearer(token))
    assert again.status == 401


async def test_an_expired_token_ends_the_live_session_at_its_expiry(live: Any) -> None:
    """The scheduler acts on `expires_at` like any deadline: no event from the client is
    needed for the session to end."""
    app: Running = live.running
    token = await patient_token(app, "+79161234567")
    patient = await live.join(token, "patient")
    await asyncio.sleep(0.2)
    assert patient.events("session:ended") == []
    app.clock.advance(app.services.settings.auth.token_ttl + timedelta(seconds=1))
    app.client.server.app[REPLAN]()  # the clock jumped: let the scheduler plan anew
    await ended(patient, "expired")


async def test_binary_events_are_refused_and_never_dispatched(live: Any) -> None:
    """Every telemed event is JSON: a Socket.IO binary event (bytes in the payload, sent as
    attachments) is answered bad_request and reaches no handler; the socket stays usable."""
    app: Running = live.running
    consultant = await live.join((await staff_token(app, Role.CONSULTANT))[0], "consultant")
    patient = await live.join(await patient_token(app, "+79161234567"), "patient")
    cid = (await patient.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    ack = await patient.call("chat:send", {"consultation_id": cid, "text": b"hello"})
    assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
    await patient.ok("chat:send", {"consultation_id": cid, "text": "hello"})
    said = await consultant.wait("chat:message")
    assert said["text"] == "hello" and consultant.events("chat:message") == [said]


@pytest.mark.parametrize("name", ["disconnect", "connect", "connect_error", "message"])
async def test_client_frames_with_reserved_names_are_unknown_events(live: Any, name: str) -> None:
    """A raw `42["disconnect",{}]` must not run the server's own handler: the patient stays
    connected and present, and the ack says unknown_event."""
    app: Running = live.running
    consultant = await live.join((await staff_token(app, Role.CONSULTANT))[0], "consultant")
    token = await patient_token(app, "+79161234567")
    patient = await live.join(token, "patient")
    cid = (await patient.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    url = str(app.client.make_url("/socket.io/?EIO=4&transport=websocket"))
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await ws.receive_str()).startswith("0")  # engine.io open
        await ws.send_str("40" + json.dumps({"token": token}))
        assert (await ws.receive_str()).startswith("40")  # connected (takes over)
        await ws.send_str("421" + json.dumps([name, {"token": "whatever"}]))
        while True:
            frame = await ws.receive_str()
            if frame.startswith("431"):
                break
        ack = json.loads(frame[3:])[0]
        assert ack["ok"] is False and ack["error"]["code"] == "unknown_event"
        await asyncio.sleep(0.3)  # a handled "disconnect" would have told the consultant
        assert consultant.events("peer:away") == []
        await ws.send_str("42" + json.dumps(["chat:send", {"consultation_id": cid, "text": "x"}]))
        said = await consultant.wait("chat:message")  # still the same, live patient
        assert said["text"] == "x"


async def test_each_socket_has_a_chat_budget_answered_rate_limited_and_counted(
    start_app: Any, sqlite_url: str
) -> None:
    """One patient cannot fill the chat table: past the burst, rate_limited, counted."""
    from helpers import add_adult
    from live import Live

    app: Running = await start_app(
        sqlite_url, signalling={"budgets": {"chat": {"rate": 1, "burst": 5}}}
    )
    await add_adult(app, "+79161234567")
    patient = await Live(
        str(app.client.make_url("/")), await patient_token(app, "+79161234567"), "p"
    ).connect()
    try:
        before = await socket_errors(app, "rate_limited")
        cid = (await patient.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
        acks = [
            await patient.call("chat:send", {"consultation_id": cid, "text": f"m{n}"})
            for n in range(8)
        ]
        assert [a["ok"] for a in acks] == [True] * 5 + [False] * 3
        assert {a["error"]["code"] for a in acks[5:]} == {"rate_limited"}
        app.clock.advance(timedelta(seconds=2))  # two tokens back
        assert (await patient.call("chat:send", {"consultation_id": cid, "text": "x"}))["ok"]
        assert await socket_errors(app, "rate_limited") - before == 3
    finally:
        await patient.close()


async def test_unknown_and_reserved_events_are_answered_and_counted(live: Any) -> None:
    """Every unknown_event ack is counted in telemed_errors_total, like any other error."""
    app: Running = live.running
    patient = await live.join(await patient_token(app, "+79161234567"), "patient")
    before = await socket_errors(app, "unknown_event")
    ack = await patient.call("nope", {})
    assert ack["ok"] is False and ack["error"]["code"] == "unknown_event"
    assert await socket_errors(app, "unknown_event") == before + 1
