"""Two real `telemed serve` processes on one fresh PostgreSQL database and one Redis
(issue 7): the urgent flow with the patient on node A and the staff on node B, then node
A is SIGKILLed mid-consultation and the patient resumes on node B."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from appkit import Running
from helpers import ADULT_PHONE, add_patients, staff_token
from live import Live
from scalekit import ADULT, REDIS_URL, ServeProcess, patient_login, staff_login

from telemed.roles import Role


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    """The serve processes of a test, stopped and reaped whatever happens."""
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.stop()


async def seeded(start_app: Callable[..., Awaitable[Running]], pg_url: str) -> None:
    """Migrate the fresh database and add the patient and the staff, from a node that
    is not part of the deployment (no Redis, no scheduler), before the processes start."""
    seed = await start_app(pg_url, scheduler={"enabled": False})
    await add_patients(seed, [ADULT])
    await staff_token(seed, Role.CONSULTANT, "consultant")
    await staff_token(seed, Role.THERAPIST, "therapist")


async def talk(patient: Live, staff: Live, cid: str, role: str, tag: str) -> None:
    """A chat message and a WebRTC signal each way through the relay."""
    await patient.ok("chat:send", {"consultation_id": cid, "text": f"patient {tag}"})
    heard = await staff.wait("chat:message", lambda d: d["text"] == f"patient {tag}")
    assert heard["sender_role"] == "patient"
    await staff.ok("chat:send", {"consultation_id": cid, "text": f"{role} {tag}"})
    await patient.wait("chat:message", lambda d: d["text"] == f"{role} {tag}")
    offer = {"type": "offer", "sdp": f"v=0 {tag}"}
    await staff.ok("signal", {"consultation_id": cid, "data": offer})
    got = await patient.wait("signal", lambda d: d["data"] == offer)
    assert got["from_role"] == role
    answer = {"type": "answer", "sdp": f"v=0 {tag}"}
    await patient.ok("signal", {"consultation_id": cid, "data": answer})
    assert (await staff.wait("signal", lambda d: d["data"] == answer))["from_role"] == "patient"


async def test_the_urgent_flow_across_two_processes_survives_killing_the_patients_node(
    start_app: Callable[..., Awaitable[Running]],
    pg_url: str,
    redis_prefix: str,
    tmp_path: Path,
    processes: list[ServeProcess],
) -> None:
    """R-AUTH-1, R-CONSENT-1, R-URG-1..5, R-ROUTE-1 across processes: OTP login and consent
    on A, the queue on B, chat and signals both ways, the duty therapist's leg ending back
    `with_consultant` (R-URG-5), then A is killed: the patient reconnects to B and finds the
    same state and counterpart, only the chat it missed, and a working relay."""
    await seeded(start_app, pg_url)
    sms_file = tmp_path / "sms.jsonl"
    settings: dict[str, Any] = {
        "database": {"url": pg_url},
        "redis": {"url": REDIS_URL, "prefix": redis_prefix, "presence_ttl": "1.5s"},
        "scheduler": {"lease_key": f"{redis_prefix}:lease"},
        "signalling": {"queue_refresh_interval": "10ms"},
        "sms": {"backend": "file", "path": str(sms_file)},
        "logging": {"json": False},
    }
    node_a = ServeProcess(tmp_path, "a", settings)
    processes.append(node_a)
    node_b = ServeProcess(tmp_path, "b", settings)
    processes.append(node_b)
    await node_a.ready()
    await node_b.ready()
    live: list[Live] = []
    try:
        consultant = Live(node_b.url, await staff_login(node_b.url, "consultant"), "consultant")
        therapist = Live(node_b.url, await staff_login(node_b.url, "therapist"), "therapist")
        patient_token = await patient_login(node_a.url, ADULT_PHONE, sms_file)
        patient = Live(node_a.url, patient_token, "patient on a")
        live += [consultant, therapist, patient]
        for client in live:
            await client.connect()
        await consultant.ok("queue:watch")
        await therapist.ok("queue:watch")

        cid = (await patient.ok("consultation:start", {"channel": "video"}))["consultation_id"]
        await patient.wait_state(cid, "waiting_consultant")
        queued = await consultant.wait("queue:update", lambda d: len(d["items"]) == 1)
        assert queued["items"][0]["consultation_id"] == cid
        await consultant.ok("consultation:accept", {})
        with_consultant = await patient.wait_state(cid, "with_consultant")
        assert with_consultant["counterpart"]["role"] == "consultant"
        await talk(patient, consultant, cid, "consultant", "1")

        await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
        await patient.wait_state(cid, "waiting_doctor")
        queued = await therapist.wait("queue:update", lambda d: len(d["items"]) == 1)
        assert queued["role"] == "therapist"  # adult -> therapist (R-ROUTE-1)
        await therapist.ok("consultation:accept", {"consultation_id": cid})
        with_doctor = await patient.wait_state(cid, "with_doctor")
        assert with_doctor["counterpart"]["role"] == "therapist"
        await talk(patient, therapist, cid, "therapist", "2")
        await therapist.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
        back = await patient.wait_state(cid, "with_consultant")  # R-URG-5: still online
        assert back["counterpart"] == with_consultant["counterpart"]
        await talk(patient, consultant, cid, "consultant", "3")
        last_seen = max(m["message_id"] for m in patient.events("chat:message"))

        node_a.kill()
        missed = await consultant.ok(
            "chat:send", {"consultation_id": cid, "text": "while you were away"}
        )
        patient = Live(node_b.url, patient_token, "patient on b")
        live.append(patient)
        await patient.connect(last_message_id=last_seen)
        resumed = await patient.wait_state(cid, "with_consultant")
        assert resumed["counterpart"] == with_consultant["counterpart"]
        history = await patient.wait("chat:history", lambda d: d["consultation_id"] == cid)
        assert [(m["message_id"], m["text"]) for m in history["messages"]] == [
            (missed["message_id"], "while you were away")
        ]
        rejoined = await consultant.wait("peer:rejoined")
        assert rejoined == {"consultation_id": cid, "role": "patient"}
        await talk(patient, consultant, cid, "consultant", "4")  # renegotiated via B

        await consultant.ok("consultation:close", {"consultation_id": cid, "outcome": "finished"})
        closed = await patient.wait("consultation:closed")
        assert closed == {"consultation_id": cid, "reason": "finished"}
    finally:
        for client in live:
            await client.close()
