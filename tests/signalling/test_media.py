"""Real media between two aiortc peers that negotiate only through the `signal` relay
(R-URG-1, R-URG-3, R-URG-5, R-NOSHOW-1; DESIGN.md: WebRTC peer to peer, relay to the
current counterpart only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from appkit import Running
from helpers import CHILD_PHONE, patient_token, staff_token
from live import Live
from media import HEIGHT, SAMPLE_RATE, TONE_AMPLITUDE, WIDTH, MediaPeer, Peers

from telemed.roles import Role

VIDEO_FRAMES = 15  # half a second at 30 fps
AUDIO_FRAMES = 25  # half a second of 20 ms frames
MEDIA_WITHIN = 10.0
MEDIA_SOURCES = ("/aiortc/", "/aioice/", "/signalling/media.py")


@pytest.fixture
def live_config() -> dict[str, Any]:
    """A patient who drops keeps their consultation for 30 s (R-NOSHOW-1 grace)."""
    return {"signalling": {"queue_refresh_interval": "10ms"}, "rules": {"no_show_after": "30s"}}


def media_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still running code of aiortc, aioice or the test peer."""
    left = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and any(s in code.co_filename for s in MEDIA_SOURCES):
            left.append(task)
    return left


@pytest.fixture
async def peers(live: Any) -> AsyncIterator[Peers]:
    """Every peer of the test, closed whatever happened; then nothing of them may run."""
    kit = Peers()
    try:
        yield kit
    finally:
        await kit.close_all()
    assert all(peer.closed for peer in kit.all)
    for _ in range(100):  # a cancelled task may finish on a later tick: allow 2 s
        if not media_tasks():
            break
        await asyncio.sleep(0.02)
    assert media_tasks() == []


class Setup:
    """The app, a consultant and an adult patient waiting in the consultant queue."""

    app: Running
    consultant: Live
    patient: Live
    patient_token: str
    cid: str


async def patient_waiting(live: Any) -> Setup:
    s = Setup()
    s.app = live.running
    consultant_token, _ = await staff_token(s.app, Role.CONSULTANT)
    s.consultant = await live.join(consultant_token, "consultant")
    s.patient_token = await patient_token(s.app)
    s.patient = await live.join(s.patient_token, "patient")
    started = await s.patient.ok("consultation:start", {"channel": "video"})
    s.cid = started["consultation_id"]
    await s.patient.wait_state(s.cid, "waiting_consultant")
    return s


async def call(
    peers: Peers,
    cid: str,
    staff: Live,
    staff_role: str,
    staff_state: dict[str, Any],
    patient: Live,
    patient_state: dict[str, Any],
) -> tuple[MediaPeer, MediaPeer]:
    """The staff member offers, the patient answers: only through `signal`."""
    assert "ice_servers" in patient_state and "ice_servers" in staff_state
    patient_peer = peers.open(patient, cid, staff_role, patient_state["ice_servers"])
    staff_peer = peers.open(staff, cid, "patient", staff_state["ice_servers"])
    await staff_peer.offer()
    return staff_peer, patient_peer


async def assert_media_both_ways(*sides: MediaPeer) -> None:
    """Each side gets real frames: video of the size sent, and the tone (not silence)."""
    for side in sides:
        got = await side.wait_media(VIDEO_FRAMES, AUDIO_FRAMES, within=MEDIA_WITHIN)
        assert set(got.video_sizes) == {(WIDTH, HEIGHT)}, got
        assert got.audio_rates == {SAMPLE_RATE}, got
        assert got.audio_peak > TONE_AMPLITUDE // 4, got


def signals(client: Live, cid: str) -> list[tuple[str, str]]:
    """(from_role, type) of every `signal` a client got for a consultation."""
    return [
        (e["from_role"], e["data"]["type"])
        for e in client.events("signal")
        if e["consultation_id"] == cid
    ]


async def test_the_consultant_and_the_patient_see_and_hear_each_other_through_the_relay(
    live: Any, peers: Peers
) -> None:
    """R-URG-1/R-URG-3: after the accept the consultant offers, the patient answers, both
    through the server's `signal` relay only, and each receives the other's video and audio."""
    s = await patient_waiting(live)
    await s.consultant.ok("consultation:accept", {})
    patient_state = await s.patient.wait_state(s.cid, "with_consultant")
    consultant_state = await s.consultant.wait_state(s.cid, "with_consultant")

    consultant_peer, patient_peer = await call(
        peers, s.cid, s.consultant, "consultant", consultant_state, s.patient, patient_state
    )
    await assert_media_both_ways(consultant_peer, patient_peer)

    assert signals(s.patient, s.cid) == [("consultant", "offer")]
    assert signals(s.consultant, s.cid) == [("patient", "answer")]
    assert consultant_peer.pc.connectionState == patient_peer.pc.connectionState == "connected"


async def test_after_a_transfer_the_patient_and_the_duty_doctor_negotiate_a_new_call(
    live: Any, peers: Peers
) -> None:
    """R-URG-3/R-ROUTE-1: the transfer hangs the consultant's call up; the duty therapist
    accepts and a new pair negotiates through the relay, and media flows both ways. The
    consultant is no longer the counterpart: their signals are refused."""
    s = await patient_waiting(live)
    therapist_token, _ = await staff_token(s.app, Role.THERAPIST)
    therapist = await live.join(therapist_token, "therapist")
    await s.consultant.ok("consultation:accept", {})
    consultant_peer, first_patient_peer = await call(
        peers,
        s.cid,
        s.consultant,
        "consultant",
        await s.consultant.wait_state(s.cid, "with_consultant"),
        s.patient,
        await s.patient.wait_state(s.cid, "with_consultant"),
    )
    await assert_media_both_ways(consultant_peer, first_patient_peer)

    await s.consultant.ok("consultation:transfer", {"consultation_id": s.cid, "to": "duty_doctor"})
    await s.patient.wait("call:hangup", lambda d: d["consultation_id"] == s.cid)
    await s.consultant.wait("call:hangup", lambda d: d["consultation_id"] == s.cid)
    await first_patient_peer.close()
    await consultant_peer.close()
    await s.patient.wait_state(s.cid, "waiting_doctor")

    late = await s.consultant.call(
        "signal", {"consultation_id": s.cid, "data": {"type": "offer", "sdp": "v=0 late"}}
    )
    assert late["ok"] is False and late["error"]["code"] == "forbidden"

    await therapist.ok("consultation:accept", {"consultation_id": s.cid})
    patient_state = await s.patient.wait_state(s.cid, "with_doctor")
    assert patient_state["counterpart"]["role"] == "therapist"
    therapist_peer, patient_peer = await call(
        peers,
        s.cid,
        therapist,
        "therapist",
        await therapist.wait_state(s.cid, "with_doctor"),
        s.patient,
        patient_state,
    )
    await assert_media_both_ways(therapist_peer, patient_peer)
    assert signals(s.patient, s.cid) == [("consultant", "offer"), ("therapist", "offer")]
    assert signals(therapist, s.cid) == [("patient", "answer")]
    assert signals(s.consultant, s.cid) == [("patient", "answer")]


async def test_signals_from_a_third_party_are_refused_and_never_reach_the_call(
    live: Any, peers: Peers
) -> None:
    """DESIGN.md relay rule: another patient and a staff member who is not with the patient
    get `forbidden` for this consultation's `signal`; the call goes on untouched."""
    s = await patient_waiting(live)
    therapist_token, _ = await staff_token(s.app, Role.THERAPIST)
    therapist = await live.join(therapist_token, "unrelated therapist")
    stranger = await live.join(await patient_token(s.app, CHILD_PHONE), "another patient")
    await s.consultant.ok("consultation:accept", {})
    consultant_peer, patient_peer = await call(
        peers,
        s.cid,
        s.consultant,
        "consultant",
        await s.consultant.wait_state(s.cid, "with_consultant"),
        s.patient,
        await s.patient.wait_state(s.cid, "with_consultant"),
    )
    await assert_media_both_ways(consultant_peer, patient_peer)
    before = (patient_peer.received.video_frames, consultant_peer.received.video_frames)

    forged = {"type": "offer", "sdp": "v=0 forged"}
    for intruder in (stranger, therapist):
        ack = await intruder.call("signal", {"consultation_id": s.cid, "data": forged})
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden", (intruder.name, ack)

    # The refusal is decided before any emit, so after the acks nothing can still be on
    # its way; the counterparts' own traffic keeps flowing and proves the sockets live.
    await s.patient.ok("chat:send", {"consultation_id": s.cid, "text": "still here"})
    await s.consultant.wait("chat:message", lambda d: d["text"] == "still here")
    assert all(e["data"] != forged for e in s.patient.events("signal"))
    assert all(e["data"] != forged for e in s.consultant.events("signal"))
    assert therapist.events("signal") == [] and stranger.events("signal") == []
    for side, seen in zip((patient_peer, consultant_peer), before, strict=True):
        await side.wait_media(seen + VIDEO_FRAMES, 0, within=MEDIA_WITHIN)  # still flowing


async def test_a_patient_who_drops_comes_back_to_the_same_doctor_and_media_flows_again(
    live: Any, peers: Peers
) -> None:
    """R-URG-2/R-NOSHOW-1: a patient whose connection drops while with the doctor and who
    reconnects within the grace gets the same doctor back; the doctor hears `peer:rejoined`,
    offers again, and media flows again."""
    s = await patient_waiting(live)
    therapist_token, therapist_id = await staff_token(s.app, Role.THERAPIST)
    therapist = await live.join(therapist_token, "therapist")
    await s.consultant.ok("consultation:accept", {})
    await s.patient.wait_state(s.cid, "with_consultant")
    await s.consultant.ok("consultation:transfer", {"consultation_id": s.cid, "to": "duty_doctor"})
    await therapist.ok("consultation:accept", {"consultation_id": s.cid})
    first_state = await s.patient.wait_state(s.cid, "with_doctor")
    therapist_state = await therapist.wait_state(s.cid, "with_doctor")
    therapist_peer, patient_peer = await call(
        peers, s.cid, therapist, "therapist", therapist_state, s.patient, first_state
    )
    await assert_media_both_ways(therapist_peer, patient_peer)

    # The drop: the patient's media and socket go away at once.
    await patient_peer.close()
    await s.patient.close()
    away = await therapist.wait("peer:away", lambda d: d["consultation_id"] == s.cid)
    assert away["role"] == "patient"
    await therapist_peer.close()

    back = await live.join(s.patient_token, "patient again")
    state = await back.wait_state(s.cid, "with_doctor")
    assert state["counterpart"] == first_state["counterpart"]
    rejoined = await therapist.wait("peer:rejoined", lambda d: d["consultation_id"] == s.cid)
    assert rejoined["role"] == "patient"
    consultation = await s.app.services.consultations.get(s.cid)
    assert consultation.doctor_id == therapist_id and consultation.patient_away_since is None

    again_therapist, again_patient = await call(
        peers, s.cid, therapist, "therapist", therapist_state, back, state
    )
    await assert_media_both_ways(again_therapist, again_patient)
    assert signals(back, s.cid) == [("therapist", "offer")]
    assert signals(therapist, s.cid) == [("patient", "answer"), ("patient", "answer")]
