"""Calls through a real TURN relay: Debian's coturn, started by the test (tests/turnkit.py)
with `use-auth-secret` = `signalling.turn.secret`. The credentials the server hands out
(`session`, `consultation:state`, `ice:renew`) allocate on it over UDP, TCP and TLS; once
older than `signalling.turn.ttl` coturn refuses them; and two aiortc peers that may use
only relayed candidates (as when the direct path is blocked) see and hear each other
(DESIGN.md: media peer to peer, TURN with time-limited credentials)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aioice
import pytest
from helpers import patient_token, staff_token
from media import selected_pair
from test_media import assert_media_both_ways, patient_waiting
from test_media import peers as peers  # the fixture: every peer closed, nothing left running
from turnkit import Coturn, running_coturn

from telemed.clock import ManualClock
from telemed.roles import Role

SECRET = "turn-test-secret"
TTL = timedelta(minutes=10)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """One coturn for the module, on fresh loopback ports."""
    with running_coturn(tmp_path_factory.mktemp("coturn"), SECRET) as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    """The server's clock starts at the real time: coturn checks expiries by its own."""
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def live_config(coturn: Coturn) -> dict[str, Any]:
    return {
        "signalling": {
            "queue_refresh_interval": "10ms",
            "turn": coturn.turn_settings("udp", "tcp", "tls", ttl="10m"),
        },
        "rules": {"no_show_after": "30s"},
    }


def turn_of(ice_servers: list[dict[str, Any]]) -> dict[str, Any]:
    (turn,) = [s for s in ice_servers if "username" in s]
    return turn


async def relayed_candidates(
    coturn: Coturn, turn: dict[str, Any], transport: str
) -> list[aioice.Candidate]:
    """The relayed candidates an ICE agent gathers on coturn with these credentials, over
    `udp`, `tcp` or `tls` (TLS trusting the test's self-signed certificate)."""
    tls: bool | ssl.SSLContext = coturn.tls_context() if transport == "tls" else False
    agent = aioice.Connection(
        ice_controlling=True,
        components=1,
        turn_server=(coturn.host, coturn.tls_port if tls else coturn.port),
        turn_username=turn["username"],
        turn_password=turn["credential"],
        turn_transport="udp" if transport == "udp" else "tcp",
        turn_ssl=tls,  # type: ignore[arg-type]  # aioice passes it on to create_connection
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    try:
        await agent.gather_candidates()
        return [c for c in agent.local_candidates if c.type == "relay"]
    finally:
        await agent.close()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_the_handed_out_turn_credentials_allocate_a_relay_on_coturn(
    live: Any, coturn: Coturn, transport: str
) -> None:
    """The `session` event's TURN credentials get a relayed address from coturn over each
    listener the config names (UDP, TCP, TLS)."""
    patient = await live.join(await patient_token(live.running), "patient")
    session = await patient.wait("session")
    turn = turn_of(session["ice_servers"])
    assert turn["urls"] == coturn.urls("udp", "tcp", "tls")
    relayed = await relayed_candidates(coturn, turn, transport)
    assert [c.host for c in relayed] == [coturn.relay_ip]


async def test_credentials_older_than_their_ttl_are_refused_by_coturn(
    live: Any, coturn: Coturn, clock: ManualClock
) -> None:
    """Credentials handed out more than `signalling.turn.ttl` ago get no relay (coturn
    answers 401); the same user's fresh ones, from `ice:renew`, get one."""
    patient = await live.join(await patient_token(live.running), "patient")
    real_now = clock.now()
    clock.set(real_now - TTL - timedelta(seconds=5))  # as if handed out 10 min 5 s ago
    old = await patient.ok("ice:renew", {})
    clock.set(real_now)
    assert datetime.fromisoformat(old["expires_at"]) < real_now
    assert await relayed_candidates(coturn, turn_of(old["ice_servers"]), "udp") == []
    assert "401" in coturn.log_text()

    fresh = await patient.ok("ice:renew", {})
    assert datetime.fromisoformat(fresh["expires_at"]) == real_now + TTL
    assert turn_of(fresh["ice_servers"])["username"] != turn_of(old["ice_servers"])["username"]
    assert len(await relayed_candidates(coturn, turn_of(fresh["ice_servers"]), "udp")) == 1


async def test_everyone_may_renew_and_the_session_says_when_the_credentials_end(
    live: Any, clock: ManualClock
) -> None:
    """`session.ice_expires_at` is `ttl` after the connect; staff renew as patients do."""
    token, _ = await staff_token(live.running, Role.CONSULTANT)
    consultant = await live.join(token, "consultant")
    session = await consultant.wait("session")
    assert datetime.fromisoformat(session["ice_expires_at"]) == clock.now() + TTL
    clock.advance(timedelta(minutes=8))
    renewed = await consultant.ok("ice:renew", {})
    assert datetime.fromisoformat(renewed["expires_at"]) == clock.now() + TTL


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_call_with_only_relayed_candidates_carries_media_through_coturn(
    live: Any, peers: Any, coturn: Coturn, tmp_path: Path, transport: str
) -> None:
    """With host candidates ruled out (the direct path blocked), the consultant and the
    patient still see and hear each other: both ends of the chosen pair are relayed."""
    s = await patient_waiting(live)
    await s.consultant.ok("consultation:accept", {"consultation_id": s.cid})
    staff_state = await s.consultant.wait_state(s.cid, "with_consultant")
    patient_state = await s.patient.wait_state(s.cid, "with_consultant")

    def only(state: dict[str, Any]) -> list[dict[str, Any]]:
        turn = turn_of(state["ice_servers"])
        wanted = [u for u in turn["urls"] if u.endswith(f"transport={transport}")][:1]
        return [{**turn, "urls": wanted}]

    patient_peer = peers.open(s.patient, s.cid, "consultant", only(patient_state), True)
    staff_peer = peers.open(s.consultant, s.cid, "patient", only(staff_state), True)
    await staff_peer.offer()
    await assert_media_both_ways(staff_peer, patient_peer)
    assert selected_pair(staff_peer.pc) == ("relay", "relay")
    assert selected_pair(patient_peer.pc) == ("relay", "relay")
    assert "incoming packet ALLOCATE processed, success" in coturn.log_text()
