"""The door of the login paths (issue 14, telemed/http/flood_gate.py): an address that keeps
being refused is refused before its body is read, slowly, while every other address and
every other path pass untouched."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from appkit import Running
from helpers import staff_token

from telemed.http.flood_gate import FloodGate
from telemed.roles import Role

STAFF = "/api/v1/auth/staff"
FLOODER, COLLEAGUE = "203.0.113.9", "10.0.0.5"


async def login(app: Running, ip: str, body: Any) -> tuple[int, str | None, str | None]:
    """POST a staff login from `ip`; (status, error code, Retry-After)."""
    resp = await app.client.post(STAFF, data=body, headers={"X-Forwarded-For": ip})
    payload = await resp.json()
    return resp.status, (payload.get("error") or {}).get("code"), resp.headers.get("Retry-After")


async def test_an_address_refused_past_the_limit_is_refused_at_the_door(
    start_app: Any, sqlite_url: str
) -> None:
    """Issue 14: past `flood_refusals` refusals the flooder's next request is refused
    before its body is read (a broken body answers 429, not 400); a colleague elsewhere
    still gets a real answer; after a quiet window the door opens again."""
    app: Running = await start_app(
        sqlite_url,
        server={"trusted_proxies": ["127.0.0.1"]},
        auth={
            "staff_failures_per_account": 2,
            "flood_refusals": 3,
            "flood_window": "30s",
            "flood_spacing": "0s",
        },
    )
    await staff_token(app, Role.CONSULTANT)
    wrong = '{"login": "consultant", "password": "wrong-guess"}'
    assert [(await login(app, FLOODER, wrong))[:2] for _ in range(2)] == [
        (401, "invalid_credentials")
    ] * 2
    for _ in range(4):  # refused by the account's limit: the service read each body
        assert (await login(app, FLOODER, wrong))[:2] == (429, "rate_limited")
    assert await login(app, FLOODER, "{not json") == (429, "rate_limited", "30")
    assert (await login(app, COLLEAGUE, "{not json"))[:2] == (400, "bad_request")

    app.clock.advance(timedelta(seconds=20))  # knocking keeps the door closed
    assert (await login(app, FLOODER, "{not json"))[:2] == (429, "rate_limited")
    app.clock.advance(timedelta(seconds=31))
    assert (await login(app, FLOODER, "{not json"))[:2] == (400, "bad_request")


async def test_the_door_guards_only_the_login_paths(start_app: Any, sqlite_url: str) -> None:
    """Issue 14: a closed door refuses logins only; the flooder's other requests reach
    the service as before."""
    app: Running = await start_app(
        sqlite_url,
        auth={"staff_failures_per_account": 1, "flood_refusals": 1, "flood_spacing": "0s"},
    )
    token, _ = await staff_token(app, Role.CONSULTANT)
    wrong = '{"login": "consultant", "password": "wrong-guess"}'
    statuses = [(await login(app, "127.0.0.1", wrong))[0] for _ in range(4)]
    assert statuses == [401, 429, 429, 429]
    resp = await app.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200


def test_the_door_answers_one_address_once_per_spacing_and_holds_a_bounded_number() -> None:
    """Issue 14, the tarpit: an address's requests at the door wait their turns, one per
    `spacing`, whatever their number; another address has its own turns; past `max_held`
    waiting refusals the next is answered at once (bounded memory)."""
    gate = FloodGate(refusals=1, window=60, spacing=1.0, max_held=2)
    assert [gate.wait("a", 0.0) for _ in range(3)] == [1.0, 2.0, 3.0]
    assert gate.wait("b", 0.0) == 1.0
    assert gate.wait("a", 10.0) == 1.0  # its earlier turns are past

    async def run() -> None:
        slow = FloodGate(refusals=1, window=60, spacing=30.0, max_held=2)
        held = [asyncio.create_task(slow.hold("a", 0.0)) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert slow.held == 2
        await asyncio.wait_for(slow.hold("a", 0.0), timeout=1)  # answered at once
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        assert slow.held == 0

    asyncio.run(run())


def test_the_door_closes_after_the_refusals_and_opens_after_a_quiet_window() -> None:
    """Issue 14: more than `refusals` refusals within the window close it; each knock
    keeps it closed a whole window more."""
    gate = FloodGate(refusals=2, window=10, spacing=0, max_held=10)
    gate.refused("a", 0.0)
    gate.refused("a", 1.0)
    assert gate.closed_for("a", 1.5) is None
    gate.refused("a", 2.0)
    assert gate.closed_for("a", 2.5) == 10
    assert gate.closed_for("b", 2.5) is None
    assert gate.closed_for("a", 12.0) == 10  # closed until 12.5 by the knock at 2.5; now 22
    assert gate.closed_for("a", 22.1) is None
