"""Two real `telemed serve` processes on one fresh PostgreSQL database and one Redis
(issue 7): the urgent flow with the patient on node A and the staff on node B, then node
A is SIGKILLed mid-consultation and the patient resumes on node B. Every leg is a real
call: two aiortc peers negotiating only through `signal`, relayed across the nodes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from appkit import Running
from helpers import ADULT_PHONE, add_patients, staff_token
from live import Live
from media import HEIGHT, SAMPLE_RATE, TONE_AMPLITUDE, WIDTH, Peers
from scalekit import ADULT, REDIS_URL, ServeProcess, patient_login, staff_login

from telemed.roles import Role

VIDEO_FRAMES = 15  # half a second at 30 fps
AUDIO_FRAMES = 25  # half a second of 20 ms frames
MEDIA_WITHIN = 60.0  # encoding in the test process on a loaded 2-core machine is slow


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


async def chat(patient: Live, staff: Live, cid: str, role: str, tag: str) -> None:
    """A chat message each way."""
    await patient.ok("chat:send", {"consultation_id": cid, "text": f"patient {tag}"})
    heard = await staff.wait("chat:message", lambda d: d["text"] == f"patient {tag}")
    assert heard["sender_role"] == "patient"
    await staff.ok("chat:send", {"consultation_id": cid, "text": f"{role} {tag}"})
    await patient.wait("chat:message", lambda d: d["text"] == f"{role} {tag}")


async def call(
    peers: Peers,
    cid: str,
    staff: tuple[Live, str, dict[str, Any]],
    patient: tuple[Live, dict[str, Any]],
) -> None:
    """A fresh call for one leg: the staff side offers, the patient answers, only through
    `signal` (across the nodes); real video and the tone arrive on both sides; then both
    hang up, as the pages do on `call:hangup` before the next leg."""
    staff_live, staff_role, staff_state = staff
    patient_live, patient_state = patient
    patient_peer = peers.open(patient_live, cid, staff_role, patient_state["ice_servers"])
    staff_peer = peers.open(staff_live, cid, "patient", staff_state["ice_servers"])
    await staff_peer.offer()
    for side in (staff_peer, patient_peer):
        got = await side.wait_media(VIDEO_FRAMES, AUDIO_FRAMES, within=MEDIA_WITHIN)
        assert set(got.video_sizes) == {(WIDTH, HEIGHT)}, got
        assert got.audio_rates == {SAMPLE_RATE}, got
        assert got.audio_peak > TONE_AMPLITUDE // 4, got  # the tone, not silence
    await staff_peer.close()
    await patient_peer.close()


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
    same state and counterpart, only the chat it missed; the consultant, told `peer:replaced`,
    starts a fresh peer connection (as rtc.js does) and media flows again through B's relay."""
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
    peers = Peers()
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
        queued = await consultant.wait_queue(lambda items: len(items) == 1)
        assert queued["items"][0]["consultation_id"] == cid
        await consultant.ok("consultation:accept", {})
        with_consultant = await patient.wait_state(cid, "with_consultant")
        assert with_consultant["counterpart"]["role"] == "consultant"
        consultant_state = await consultant.wait_state(cid, "with_consultant")
        await chat(patient, consultant, cid, "consultant", "1")
        await call(
            peers, cid, (consultant, "consultant", consultant_state), (patient, with_consultant)
        )

        await consultant.ok("consultation:transfer", {"consultation_id": cid, "to": "duty_doctor"})
        await patient.wait_state(cid, "waiting_doctor")
        queued = await therapist.wait_queue(lambda items: len(items) == 1)
        assert queued["role"] == "therapist"  # adult -> therapist (R-ROUTE-1)
        await therapist.ok("consultation:accept", {"consultation_id": cid})
        with_doctor = await patient.wait_state(cid, "with_doctor")
        assert with_doctor["counterpart"]["role"] == "therapist"
        therapist_state = await therapist.wait_state(cid, "with_doctor")
        await chat(patient, therapist, cid, "therapist", "2")
        await call(peers, cid, (therapist, "therapist", therapist_state), (patient, with_doctor))
        await therapist.ok("consultation:transfer", {"consultation_id": cid, "to": "consultant"})
        back = await patient.wait_state(cid, "with_consultant")  # R-URG-5: still online
        assert back["counterpart"] == with_consultant["counterpart"]
        consultant_state = await consultant.wait_state(cid, "with_consultant")
        await chat(patient, consultant, cid, "consultant", "3")
        # The call of this leg stays up while node A dies: media is peer to peer.
        consultant_peer = peers.open(consultant, cid, "patient", consultant_state["ice_servers"])
        patient_peer = peers.open(patient, cid, "consultant", back["ice_servers"])
        await consultant_peer.offer()
        for side in (consultant_peer, patient_peer):
            await side.wait_media(VIDEO_FRAMES, AUDIO_FRAMES, within=MEDIA_WITHIN)
        last_seen = max(m["message_id"] for m in patient.events("chat:message"))

        node_a.kill()
        await patient_peer.close()  # the patient's page, gone with its node's connection
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
        # Node a died without seeing the patient leave: the new connection replaces the
        # session Redis still names (a dead node's socket), as a takeover would.
        replaced = await consultant.wait("peer:replaced")
        assert replaced == {"consultation_id": cid, "role": "patient"}
        await consultant_peer.close()  # on `peer:replaced` the staff side starts afresh
        await chat(patient, consultant, cid, "consultant", "4")
        await call(
            peers, cid, (consultant, "consultant", consultant_state), (patient, resumed)
        )  # renegotiated through node B only

        await consultant.ok("consultation:close", {"consultation_id": cid, "outcome": "finished"})
        closed = await patient.wait("consultation:closed")
        assert closed == {"consultation_id": cid, "reason": "finished"}
    finally:
        await peers.close_all()
        for client in live:
            await client.close()
