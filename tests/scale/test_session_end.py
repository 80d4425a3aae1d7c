"""A live session ends when its access does, on whichever node the socket is (Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import ADULT_PHONE, bearer, patient_token, staff_token
from scalekit import Nodes

from telemed.roles import Role


async def ended_within_two_seconds(client: Any, reason: str) -> None:
    assert await client.wait("session:ended", within=2) == {"reason": reason}
    for _ in range(40):
        if not client.sio.connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{client.name} still connected")


async def test_a_logout_on_one_node_ends_the_socket_on_the_other(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
    token = await patient_token(a, ADULT_PHONE)
    patient = await nodes.join(b, token, "patient on b")
    resp = await a.client.post("/api/v1/auth/logout", headers=bearer(token))
    assert resp.status == 204
    await ended_within_two_seconds(patient, "logout")


async def test_consent_withdrawn_on_one_node_ends_the_socket_on_the_other(nodes: Nodes) -> None:
    """R-CONSENT-1 on every node."""
    a, b = nodes.a, nodes.b
    token = await patient_token(a, ADULT_PHONE)
    patient = await nodes.join(b, token, "patient on b")
    resp = await a.client.delete("/api/v1/me/consent", headers=bearer(token))
    assert resp.status in (200, 204)
    await ended_within_two_seconds(patient, "consent_withdrawn")


async def test_a_staff_account_disabled_on_one_node_is_ended_on_the_other(nodes: Nodes) -> None:
    a, b = nodes.a, nodes.b
    token, consultant_id = await staff_token(a, Role.CONSULTANT)
    consultant = await nodes.join(b, token, "consultant on b")
    admin, _ = await staff_token(a, Role.ADMIN, "admin")
    resp = await a.client.post(f"/api/v1/staff/{consultant_id}/disable", headers=bearer(admin))
    assert resp.status == 204
    await ended_within_two_seconds(consultant, "account_disabled")
