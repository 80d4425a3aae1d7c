"""A second tab or device of the same user takes over on any node: the old socket is told
`session:replaced` and disconnected wherever it is, so a user never has two live sessions
on one consultation (docs/realtime.md, "Connecting")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from helpers import ADULT_PHONE, patient_token, staff_token
from live import Live
from redis_server import PrivateRedis
from scalekit import REDIS_URL, Nodes, signalling_of, until, url_of

from signalling.budget import Budget
from signalling.presence import Participant
from signalling.redis_presence import RedisPresence
from telemed.models import Consultation
from telemed.roles import Role


async def replaced_and_gone(old: Live) -> None:
    """The old socket is told why, then disconnected by the server."""
    replaced = await old.wait("session:replaced")
    assert replaced["reason"] == "taken_over"
    await until(lambda: not old.sio.connected, 5, f"{old.name} to be disconnected")


async def test_a_patient_opening_a_second_tab_on_another_node_replaces_the_first(
    nodes: Nodes,
) -> None:
    """The patient's first tab (node a) is replaced by the second (node b): told and
    disconnected; the second resumes the consultation and chats; the patient is not
    counted away (no grace timer, no `peer:away`, no `peer:rejoined`) since they never
    left; the consultant hears `peer:replaced` and starts the call afresh."""
    a, b = nodes.a, nodes.b
    consultant_token, _ = await staff_token(a, Role.CONSULTANT)
    consultant = await nodes.join(b, consultant_token, "consultant")
    token = await patient_token(a, ADULT_PHONE)
    first = await nodes.join(a, token, "tab on a")
    cid = (await first.ok("consultation:start", {"channel": "chat"}))["consultation_id"]
    await first.wait_state(cid, "waiting_consultant")
    first_sid = first.sio.get_sid()
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await first.wait_state(cid, "with_consultant")

    second = await nodes.join(b, token, "tab on b")
    await replaced_and_gone(first)
    await until(lambda: signalling_of(a).presence.get(first_sid) is None, 5, "node a to drop it")

    assert (await second.wait_state(cid, "with_consultant"))["consultation_id"] == cid
    assert (await second.ok("consultation:start", {"channel": "chat"}))["consultation_id"] == cid
    await second.ok("chat:send", {"consultation_id": cid, "text": "from the second tab"})
    said = await consultant.wait("chat:message", lambda d: d["text"] == "from the second tab")
    assert said["sender_role"] == "patient"
    assert not second.events("session:replaced")
    patient_id = str(second.events("session")[0]["user_id"])
    assert signalling_of(a).presence.sids(patient_id) == []
    assert signalling_of(b).presence.sids(patient_id) == [second.sio.get_sid()]
    replaced = await consultant.wait("peer:replaced")
    assert replaced == {"consultation_id": cid, "role": "patient"}
    assert consultant.events("peer:away") == [] and consultant.events("peer:rejoined") == []
    async with a.services.db.read() as session:
        row = await session.get(Consultation, cid)
    assert row is not None and row.patient_away_since is None


async def test_a_consultant_opening_a_second_console_on_another_node_replaces_the_first(
    nodes: Nodes,
) -> None:
    """Two consoles of one consultant never both act: the one on node a is replaced by the
    one on node b, which then takes the patient; node a keeps no socket of theirs."""
    a, b = nodes.a, nodes.b
    consultant_token, consultant_id = await staff_token(a, Role.CONSULTANT)
    first = await nodes.join(a, consultant_token, "console on a")
    await first.ok("queue:watch")
    patient = await nodes.join(a, await patient_token(a, ADULT_PHONE), "patient")
    cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
    await first.wait_queue(lambda items: len(items) == 1)

    second = await nodes.join(b, consultant_token, "console on b")
    await replaced_and_gone(first)
    await until(lambda: not signalling_of(a).presence.sids(consultant_id), 5, "node a to drop it")

    await second.ok("queue:watch")
    await second.ok("consultation:accept", {"consultation_id": cid})
    state = await patient.wait_state(cid, "with_consultant")
    assert state["counterpart"]["role"] == "consultant"
    assert not second.events("session:replaced")
    assert signalling_of(b).presence.sids(consultant_id) == [second.sio.get_sid()]


async def test_two_connects_at_once_on_two_nodes_leave_exactly_the_later_one(
    nodes: Nodes, redis_prefix: str
) -> None:
    """Redis orders the two claims (an atomic SET ... GET of the user's session key): the
    later one gets the earlier's socket and replaces it; the earlier gets nothing of the
    later's. Exactly one survives, the one the key names, on either node."""
    token, consultant_id = await staff_token(nodes.a, Role.CONSULTANT)
    on_a = Live(url_of(nodes.a), token, "on a")
    on_b = Live(url_of(nodes.b), token, "on b")
    nodes.clients += [on_a, on_b]
    await asyncio.gather(on_a.connect(), on_b.connect())

    await until(
        lambda: bool(on_a.events("session:replaced") or on_b.events("session:replaced")),
        5,
        "one of them to be replaced",
    )
    loser, winner = (on_a, on_b) if on_a.events("session:replaced") else (on_b, on_a)
    await until(lambda: not loser.sio.connected, 5, "the replaced one to be disconnected")
    await winner.wait("session")
    await winner.ok("queue:watch")  # it works, and nothing replaced it meanwhile
    assert winner.sio.connected and not winner.events("session:replaced")
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        holder = await client.get(f"{redis_prefix}:presence:user:{consultant_id}")
    finally:
        await client.aclose()
    assert holder == winner.sio.get_sid()

    def sockets() -> list[str]:
        """The consultant's sockets on both nodes."""
        a, b = signalling_of(nodes.a).presence, signalling_of(nodes.b).presence
        return a.sids(consultant_id) + b.sids(consultant_id)

    await until(lambda: len(sockets()) == 1, 5, "one socket left in all")
    assert sockets() == [winner.sio.get_sid()]


async def test_a_replaced_socket_releases_nothing_and_learns_its_user_is_still_online(
    redis_prefix: str,
) -> None:
    """The claims of two nodes' presences on real Redis: the second names the first's
    socket; the first, disconnected, finds its user held by the newer socket (so its node
    does not count the patient away) and leaves the key; the last one deletes it."""
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    a = RedisPresence(REDIS_URL, redis_prefix, 1.5)
    b = RedisPresence(REDIS_URL, redis_prefix, 1.5)
    key = f"{redis_prefix}:presence:user:u1"
    try:

        def joined(presence: RedisPresence, sid: str) -> Participant:
            who = Participant(
                sid, "u1", Role.PATIENT, "t", "t-id", now + timedelta(hours=1), now, Budget({})
            )
            presence.add(who)
            return who

        first, second = joined(a, "sid-a"), joined(b, "sid-b")
        assert await a.claim(first) == []
        assert await b.claim(second) == ["sid-a"]
        a.remove(first.sid)
        assert await a.release(first) is True
        assert await b.client.get(key) == "sid-b"
        assert 0 < await b.client.pttl(key) <= 3_600_000  # lives no longer than the token
        b.remove(second.sid)
        assert await b.release(second) is False
        assert await b.client.exists(key) == 0
    finally:
        await a.client.aclose()
        await b.client.aclose()


async def test_while_redis_is_down_a_second_tab_still_replaces_the_first_on_its_node(
    private_redis: PrivateRedis, make_nodes: Callable[..., Awaitable[Nodes]]
) -> None:
    """Redis failing: the takeover falls back to this node's order, as with one node; a
    tab that connected then (unknown to Redis) is still replaced once Redis is back."""
    nodes = await make_nodes(redis={"url": private_redis.url})
    token = await patient_token(nodes.a, ADULT_PHONE)
    first = await nodes.join(nodes.a, token, "tab 1")
    await first.wait("session")

    private_redis.stop()
    second = await nodes.join(nodes.a, token, "tab 2, redis down")
    await replaced_and_gone(first)
    await second.wait("session")

    private_redis.start()
    third = await nodes.join(nodes.a, token, "tab 3, redis back")
    await replaced_and_gone(second)
    await third.wait("session")
    assert third.sio.connected and not third.events("session:replaced")
