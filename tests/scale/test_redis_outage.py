"""Redis stops for 10 s under two nodes (issue 7): each node keeps serving its own
clients, says so on /readyz and /metrics, and recovers without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from helpers import ADULT_PHONE, CHILD_PHONE, patient_token, staff_token
from live import Live
from redis_server import PrivateRedis
from scalekit import Nodes, metric_value, signalling_of, until

from telemed.app import SIGNALLING
from telemed.roles import Role

OUTAGE = 10.0  # seconds of real time: a fault test, bounded


async def readyz(node: object) -> tuple[int, dict[str, str]]:
    async with node.client.get("/readyz") as resp:  # type: ignore[attr-defined]
        return resp.status, await resp.json()


async def with_consultant(nodes: Nodes, patient: Live, consultant: Live) -> str:
    """The patient starts and this consultant takes them: the two can talk."""
    cid = str((await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"])
    await patient.wait_state(cid, "waiting_consultant")
    await consultant.ok("consultation:accept", {"consultation_id": cid})
    await patient.wait_state(cid, "with_consultant")
    return cid


async def signal_arrives(sender: Live, receiver: Live, cid: str, n: int) -> None:
    await sender.ok("signal", {"consultation_id": cid, "data": {"candidate": n}})
    await receiver.wait("signal", lambda d: d["data"] == {"candidate": n})


async def test_a_redis_outage_keeps_each_node_serving_and_heals_without_a_restart(
    private_redis: PrivateRedis, make_nodes: Callable[..., Awaitable[Nodes]]
) -> None:
    """Same-node chat and signalling go on while Redis is down; /readyz answers 503
    naming redis and `telemed_redis_up` is 0; when Redis is back cross-node events flow
    again on the same nodes, and the chat sent across nodes meanwhile is read back from
    the database with `chat:history` after the last message id the client had."""
    nodes = await make_nodes(redis={"url": private_redis.url})
    a, b = nodes.a, nodes.b
    near_token, _ = await staff_token(a, Role.CONSULTANT, "near")
    far_token, _ = await staff_token(a, Role.CONSULTANT, "far")
    near = await nodes.join(a, near_token, "consultant on a")
    far = await nodes.join(b, far_token, "consultant on b")
    local_patient = await nodes.join(a, await patient_token(a, ADULT_PHONE), "patient 1 on a")
    remote_patient = await nodes.join(a, await patient_token(a, CHILD_PHONE), "patient 2 on a")
    local = await with_consultant(nodes, local_patient, near)
    remote = await with_consultant(nodes, remote_patient, far)
    await signal_arrives(far, remote_patient, remote, 0)
    said = await far.ok("chat:send", {"consultation_id": remote, "text": "before"})
    await remote_patient.wait("chat:message", lambda d: d["text"] == "before")
    last_seen = said["message_id"]
    assert await metric_value(a, "telemed_redis_up") == 1

    private_redis.stop()
    loop = asyncio.get_running_loop()
    back_at = loop.time() + OUTAGE
    for node in (a, b):
        status, body = await readyz(node)
        assert status == 503 and body["redis"] == "down" and body["database"] == "ok"
        assert await metric_value(node, "telemed_redis_up") == 0
    for n in (1, 2):  # same node: chat both ways and signalling, while Redis is down
        await local_patient.ok("chat:send", {"consultation_id": local, "text": f"p{n}"})
        await near.wait("chat:message", lambda d, n=n: d["text"] == f"p{n}")
        await near.ok("chat:send", {"consultation_id": local, "text": f"c{n}"})
        await local_patient.wait("chat:message", lambda d, n=n: d["text"] == f"c{n}")
        await signal_arrives(local_patient, near, local, n)
        await signal_arrives(near, local_patient, local, n)
    missed = await far.ok("chat:send", {"consultation_id": remote, "text": "during"})
    await asyncio.sleep(max(0.0, back_at - loop.time()))  # the rest of the outage

    private_redis.start()
    for node in (a, b):
        manager = signalling_of(node).cluster.manager
        assert manager is not None
        await until(manager.subscribed.is_set, 10, "the node to subscribe again")
        status, body = await readyz(node)
        assert status == 200 and body["redis"] == "ok"
        assert await metric_value(node, "telemed_redis_up") == 1
    await signal_arrives(far, remote_patient, remote, 3)
    await signal_arrives(remote_patient, far, remote, 4)
    assert not [m for m in remote_patient.events("chat:message") if m["text"] == "during"]
    history = await remote_patient.ok(
        "chat:history", {"consultation_id": remote, "after_message_id": last_seen}
    )
    assert [(m["message_id"], m["text"]) for m in history["messages"]] == [
        (missed["message_id"], "during")
    ]


async def test_a_leader_stops_cleanly_while_redis_is_down(
    start_app: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """The scheduler lease cannot be released without Redis: it lapses by its ttl, and the
    node still closes signalling and the database (the rest of its shutdown runs)."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        running = await start_app(
            sqlite_url,
            redis={"url": server.url},
            scheduler={"enabled": True, "lease_ttl": "3s"},
        )

        for _ in range(200):  # bounded: the lease job runs every lease_ttl / 3
            async with running.client.get("/healthz") as resp:
                if (await resp.json())["scheduler"] == "leader":
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the node never took the scheduler lease")
        signalling = running.client.app[SIGNALLING]
        server.stop()
        await running.client.close()  # raised from the lease release before the fix
        assert not signalling._tasks  # signalling.stop() ran after the scheduler's stop
    finally:
        server.stop()
