"""Staff password logins are rate-limited per account and per address (security by default):
guessing a consultant's or doctor's password must be as slow as guessing an SMS code."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from appkit import Running
from helpers import staff_token
from sqlalchemy import select

from telemed.models import AuditEntry
from telemed.roles import Role


async def _login(app: Running, login: str, password: str) -> tuple[int, str | None]:
    resp = await app.client.post("/api/v1/auth/staff", json={"login": login, "password": password})
    body = await resp.json()
    return resp.status, body.get("error", {}).get("code")


async def test_wrong_passwords_lock_the_account_for_the_window(
    start_app: Any, sqlite_url: str
) -> None:
    app: Running = await start_app(
        sqlite_url, auth={"staff_failures_per_account": 3, "staff_failure_window": "10m"}
    )
    await staff_token(app, Role.CONSULTANT)
    for _ in range(3):
        assert await _login(app, "consultant", "wrong-pass") == (401, "invalid_credentials")
    # Even the right password is refused now, with the time to wait.
    resp = await app.client.post(
        "/api/v1/auth/staff", json={"login": "consultant", "password": "secret-pass"}
    )
    assert resp.status == 429 and resp.headers["Retry-After"] == "600"
    assert (await resp.json())["error"]["code"] == "rate_limited"
    app.clock.advance(timedelta(minutes=10, seconds=1))
    assert (await _login(app, "consultant", "secret-pass"))[0] == 200


async def test_a_successful_login_starts_the_count_again(start_app: Any, sqlite_url: str) -> None:
    app: Running = await start_app(sqlite_url, auth={"staff_failures_per_account": 3})
    await staff_token(app, Role.THERAPIST)
    for _ in range(2):
        await _login(app, "therapist", "typo-typo")
    assert (await _login(app, "therapist", "secret-pass"))[0] == 200
    for _ in range(2):
        await _login(app, "therapist", "typo-typo")
    assert (await _login(app, "therapist", "secret-pass"))[0] == 200


async def test_one_address_cannot_spray_guesses_over_many_logins(
    start_app: Any, sqlite_url: str
) -> None:
    app: Running = await start_app(
        sqlite_url, auth={"staff_failures_per_address": 4, "staff_failures_per_account": 100}
    )
    await staff_token(app, Role.CONSULTANT)
    for login in ("a-login", "b-login", "c-login", "consultant"):
        assert (await _login(app, login, "guess-guess"))[0] == 401
    assert await _login(app, "d-login", "guess-guess") == (429, "rate_limited")
    assert await _login(app, "consultant", "secret-pass") == (429, "rate_limited")


async def test_refused_attempts_are_audited_without_the_password(
    start_app: Any, sqlite_url: str
) -> None:
    app: Running = await start_app(sqlite_url, auth={"staff_failures_per_account": 1})
    await staff_token(app, Role.CONSULTANT)
    await _login(app, "consultant", "wrong-pass")
    await _login(app, "consultant", "secret-pass")
    async with app.services.db.read() as session:
        rows = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "login_staff").order_by(AuditEntry.id)
            )
        ).all()
    assert [r.outcome for r in rows] == ["ok", "invalid_credentials", "rate_limited"]
    assert all("secret-pass" not in str(r.detail) for r in rows)


async def test_an_old_hash_is_replaced_by_the_bounded_one_at_the_next_login(
    start_app: Any, sqlite_url: str
) -> None:
    """Issue 14: argon2 with the library's 64 MiB default grew the server under a flood; the
    stored hash moves to the bounded profile when its owner next logs in."""
    from argon2 import PasswordHasher
    from sqlalchemy import update

    from telemed.models import Staff

    app: Running = await start_app(sqlite_url)
    await staff_token(app, Role.CONSULTANT)
    old = PasswordHasher().hash("secret-pass")
    async with app.services.db.write() as session:
        await session.execute(update(Staff).values(password_hash=old))
    assert (await _login(app, "consultant", "secret-pass"))[0] == 200
    async with app.services.db.read() as session:
        stored = await session.scalar(select(Staff.password_hash))
    assert stored != old and stored is not None and "m=19456,t=2,p=1" in stored
    assert (await _login(app, "consultant", "secret-pass"))[0] == 200
