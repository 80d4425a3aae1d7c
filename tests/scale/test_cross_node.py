"""Several nodes behind a load balancer (issue 7, items 1-2): Socket.IO events cross nodes
through Redis and none is lost in a burst; presence is shared (R-URG-5, wait estimates)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from helpers import ADULT_PHONE, CHILD_PHONE, patient_token, staff_token
from live import Live
from scalekit import REDIS_URL, Nodes, signalling_of, until

from telemed.roles import Role

BURST = 1000
LISTENERS = 4  # staff logins hash passwords: keep the setup short


async def test_a_burst_of_a_thousand_emits_on_one_node_all_reach_clients_on_the_other(
    make_nodes: Callable[..., Awaitable[Nodes]],
) -> None:
    """Trap 2: 1,000 concurrent emits from node a to users connected to node b, through a
    pool of 4 connections; every one waits its turn and arrives exactly once (a pool that
    raises when full, as redis-py's default does, loses them)."""
    nodes = await make_nodes(redis={"max_connections": 4})
    staff = [await staff_token(nodes.a, Role.CONSULTANT, f"c{i}") for i in range(LISTENERS)]
    clients = [await nodes.join(nodes.b, token, f"c{i}") for i, (token, _) in enumerate(staff)]
    for client in clients:
        await client.wait("session")
    live = signalling_of(nodes.a)

    await asyncio.gather(
        *(live.transport.to_user(staff[n % LISTENERS][1], "burst", {"n": n}) for n in range(BURST))
    )

    for client in clients:
        await until(lambda c=client: len(c.events("burst")) >= BURST // LISTENERS, 20, "burst")
    await asyncio.sleep(0.2)  # nothing arrives twice
    for i, client in enumerate(clients):
        assert sorted(e["n"] for e in client.events("burst")) == list(range(i, BURST, LISTENERS))


async def test_the_urgent_flow_with_the_patient_on_one_node_and_the_staff_on_the_other(
    nodes: Nodes,
) -> None:
    """R-URG-1..5 and R-ROUTE-1 across nodes: every queue and consultation event, every
    signal and chat message crosses from node a to node b and back."""
    a, b = nodes.a, nodes.b
    consultant_token, consultant_id = await staff_token(a, Role.CONSULTANT)
    doctor_token, _ = await staff_token(a, Role.THERAPIST)
    consultant = await nodes.join(b, consultant_token, "consultant")
    doctor = await nodes.join(b, doctor_token, "doctor")
    assert (await consultant.ok("queue:watch"))["items"] == []
    await doctor.ok("queue:watch")
    patient = await nodes.join(a, await patient_token(a, ADULT_PHONE), "patient")
    await until(
        lambda: signalling_of(a).presence.count(Role.CONSULTANT) == 1, 5, "node a to see b's staff"
    )

    cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    waiting = await patient.wait_state(cid, "waiting_consultant")
    # one consultant online (on node b): the whole queue_service_time for place 1
    assert waiting["queue_position"] == 1 and waiting["estimated_wait_seconds"] == 180
    update = await consultant.wait_queue(lambda items: len(items) == 1)
    assert update["items"][0]["consultation_id"] == cid

    await consultant.ok("consultation:accept", {})
    assert (await patient.wait_state(cid, "with_consultant"))["counterpart"]["role"] == "consultant"
    await exchange(patient, consultant, cid, "consultant")

    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await patient.wait("call:hangup")
    await consultant.wait("call:hangup")
    await patient.wait_state(cid, "waiting_doctor")
    queued = await doctor.wait_queue(lambda items: len(items) == 1)
    assert queued["role"] == "therapist"

    a.clock.advance(timedelta(minutes=2))
    await doctor.ok("consultation:accept", {"consultation_id": cid})
    with_doctor = await patient.wait_state(cid, "with_doctor")
    assert with_doctor["counterpart"]["role"] == "therapist" and with_doctor["limit_ends_at"]
    history = await doctor.wait("chat:history", lambda d: d["consultation_id"] == cid)
    assert [m["text"] for m in history["messages"]] == ["from patient", "from consultant"]
    await exchange(patient, doctor, cid, "therapist")

    await doctor.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
    assert (await patient.wait_state(cid, "with_consultant"))["counterpart"]["role"] == "consultant"
    await consultant.ok("consultation:close", {"consultation_id": cid, "outcome": "finished"})
    closed = await patient.wait("consultation:closed")
    assert closed == {"consultation_id": cid, "reason": "finished"}
    assert consultant_id


async def exchange(patient: Live, staff: Live, cid: str, role: str) -> None:
    """An offer and an answer, and a chat message each way, between two nodes."""
    offer = {"type": "offer", "sdp": f"v=0 offer from {role}"}
    await staff.ok("signal", {"consultation_id": cid, "data": offer})
    got = await patient.wait("signal")
    assert got == {"consultation_id": cid, "from_role": role, "data": offer}
    answer = {"type": "answer", "sdp": "v=0 answer"}
    await patient.ok("signal", {"consultation_id": cid, "data": answer})
    assert (await staff.wait("signal"))["data"] == answer
    if role == "consultant":
        await patient.ok("chat:send", {"consultation_id": cid, "text": "from patient"})
        said = await staff.wait("chat:message", lambda d: d["text"] == "from patient")
        assert said["sender_role"] == "patient"
        await staff.ok("chat:send", {"consultation_id": cid, "text": "from consultant"})
        await patient.wait("chat:message", lambda d: d["text"] == "from consultant")
    else:
        await staff.ok("chat:send", {"consultation_id": cid, "text": f"from {role}"})
        said = await patient.wait("chat:message", lambda d: d["text"] == f"from {role}")
        assert said["sender_role"] == role


async def test_the_doctor_hands_back_to_a_consultant_online_on_another_node(
    nodes: Nodes,
) -> None:
    """R-URG-5 across nodes: the doctor's node sees whether the consultant is online on
    another node: back to them while they are, to the consultant queue once they left."""
    a, b = nodes.a, nodes.b
    consultant_token, consultant_id = await staff_token(a, Role.CONSULTANT)
    doctor_token, _ = await staff_token(a, Role.PAEDIATRICIAN)
    consultant = await nodes.join(a, consultant_token, "consultant")
    doctor = await nodes.join(b, doctor_token, "doctor")
    patient = await nodes.join(b, await patient_token(a, CHILD_PHONE), "patient")
    cid = (await patient.ok("consultation:start", {"channel": "audio"}))["consultation_id"]

    async def to_the_doctor() -> None:
        await consultant.ok("consultation:accept", {"consultation_id": cid})
        await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
        await doctor.ok("consultation:accept", {"consultation_id": cid})
        await patient.wait_state(cid, "with_doctor")

    await to_the_doctor()
    assert signalling_of(b).presence.online(consultant_id)
    await doctor.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
    back = await patient.wait_state(cid, "with_consultant")
    assert back["counterpart"]["role"] == "consultant"

    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await doctor.ok("consultation:accept", {"consultation_id": cid})
    await patient.wait_state(cid, "with_doctor")
    await consultant.close()
    await until(lambda: not signalling_of(b).presence.online(consultant_id), 5, "node b to see it")
    await doctor.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
    await patient.wait_state(cid, "waiting_consultant")

    consultant = await nodes.join(a, consultant_token, "consultant again")
    await until(lambda: signalling_of(b).presence.online(consultant_id), 5, "node b to see it")
    await to_the_doctor()
    await doctor.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
    await patient.wait_state(cid, "with_consultant")


async def test_the_wait_estimate_counts_the_staff_online_on_every_node(nodes: Nodes) -> None:
    """R-URG-2: two consultants online on node b halve the estimate of a patient on a;
    a node's users leave every count as soon as it stops."""
    a, b = nodes.a, nodes.b
    for login in ("c1", "c2"):
        await nodes.join(b, (await staff_token(a, Role.CONSULTANT, login))[0], login)
    await until(lambda: signalling_of(a).presence.count(Role.CONSULTANT) == 2, 5, "two")
    patient = await nodes.join(a, await patient_token(a, ADULT_PHONE), "patient")
    cid = (await patient.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    waiting = await patient.wait_state(cid, "waiting_consultant")
    assert waiting["estimated_wait_seconds"] == 90  # 3m for place 1, shared by two

    await signalling_of(b).cluster.stop()  # node b leaves (as on a graceful shutdown)
    await until(lambda: signalling_of(a).presence.count(Role.CONSULTANT) == 0, 5, "none")


async def test_emits_to_a_socket_of_this_node_skip_redis_and_room_emits_still_cross(
    nodes: Nodes, redis_prefix: str
) -> None:
    """Trap 3: `session`, the welcome `consultation:state` and `chat:history` go to one
    socket of the emitting node: delivered without a Redis publish. A change goes to the
    user's room, which may span nodes: still published, and heard by a consultant on b."""
    listener = aioredis.Redis.from_url(REDIS_URL)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{redis_prefix}:socketio")
    published: list[dict[str, Any]] = []

    async def record() -> None:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                published.append(json.loads(message["data"]))

    recorder = asyncio.ensure_future(record())
    try:
        consultant_token, _ = await staff_token(nodes.a, Role.CONSULTANT)
        consultant = await nodes.join(nodes.b, consultant_token, "consultant on b")
        await consultant.ok("queue:watch")
        token = await patient_token(nodes.a, ADULT_PHONE)
        first = await nodes.join(nodes.a, token, "patient on a")
        await first.wait("session")
        cid = (await first.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
        await first.wait_state(cid, "waiting_consultant")
        await first.close()
        again = await nodes.join(nodes.a, token, "patient on a again")
        await again.wait("session")
        assert (await again.wait_state(cid, "waiting_consultant"))["consultation_id"] == cid
        await again.wait("chat:history", lambda d: d["consultation_id"] == cid)
        await consultant.ok("consultation:accept", {"consultation_id": cid})
        await again.wait_state(cid, "with_consultant")  # emitted on b to a user room on a

        def sent(event: str) -> list[dict[str, Any]]:
            """What was published of one event."""
            return [m for m in published if m.get("method") == "emit" and m["event"] == event]

        await until(lambda: len(sent("consultation:state")) >= 2, 10, "published states")
        assert sent("session") == []
        rooms = {m["room"] for m in published if m.get("method") == "emit"}
        assert all(room.startswith(("u:", "q:")) for room in rooms), rooms  # never a sid
    finally:
        recorder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder
        await pubsub.aclose()
        await listener.aclose()


async def test_a_node_forgets_a_cached_counterpart_when_another_node_changes_the_consultation(
    nodes: Nodes,
) -> None:
    """The relay caches who talks to whom; a transfer made on node b must stop node a from
    relaying the patient's signals to the consultant at once, not when the entry expires."""
    a, b = nodes.a, nodes.b
    consultant_token, _ = await staff_token(a, Role.CONSULTANT)
    await staff_token(a, Role.THERAPIST)
    consultant = await nodes.join(b, consultant_token, "consultant")
    patient = await nodes.join(a, await patient_token(a, ADULT_PHONE), "patient")
    await until(lambda: signalling_of(a).presence.count(Role.CONSULTANT) == 1, 5, "presence")
    cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    await consultant.ok("consultation:accept", {})
    await patient.wait_state(cid, "with_consultant")
    await exchange(patient, consultant, cid, "consultant")  # node a now caches the pair

    await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
    await patient.wait_state(cid, "waiting_doctor")
    late = await patient.call("signal", {"consultation_id": cid, "data": {"candidate": "x"}})
    assert late["ok"] is False and late["error"]["code"] == "invalid_state"
    await asyncio.sleep(0.2)  # and nothing was relayed to the consultant after the transfer
    answer = {"type": "answer", "sdp": "v=0 answer"}
    assert [e["data"] for e in consultant.events("signal")] == [answer]
