"""Login limits hold under concurrency (issue 14, telemed/limits.py): on SQLite, on
PostgreSQL, and with two nodes on PostgreSQL + Redis. Racing requests are let through
exactly as many times as the limit says; a lockout does not lock the owner out; a stranger
cannot spend a patient's codes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from appkit import Running
from helpers import ADULT_PHONE, add_adult, staff_token
from sqlalchemy import func, select

from telemed.models import AuditEntry, OtpCode
from telemed.roles import Role
from telemed.security import Busy, PasswordChecker

OTP = "/api/v1/auth/otp"
VERIFY = "/api/v1/auth/otp/verify"
STAFF = "/api/v1/auth/staff"
REDIS_URL = "redis://127.0.0.1:6379/0"
NO_CAPS = {"password_in_flight": 1000, "password_per_address": 1000}


async def post(app: Running, path: str, body: dict[str, Any], ip: str | None = None) -> str:
    """POST and answer the status and error code, e.g. "202" or "429 otp_cooldown"."""
    headers = {"X-Forwarded-For": ip} if ip else {}
    resp = await app.client.post(path, json=body, headers=headers)
    payload = await resp.json() if resp.content_type == "application/json" else {}
    code = (payload.get("error") or {}).get("code") if isinstance(payload, dict) else None
    return f"{resp.status} {code}" if code else str(resp.status)


async def sms_to(app: Running, phone: str) -> int:
    await app.services.auth.drain()
    return sum(1 for m in app.sms() if m["to"] == phone and m["code"])


async def staff_outcomes(app: Running) -> Counter[str]:
    async with app.services.db.read() as session:
        rows = await session.execute(
            select(AuditEntry.outcome, func.count())
            .where(AuditEntry.action == "login_staff")
            .group_by(AuditEntry.outcome)
        )
        return Counter({outcome: int(n) for outcome, n in rows})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


# --- one node, SQLite and PostgreSQL ------------------------------------------------------


async def test_fifty_concurrent_code_requests_for_one_phone_send_exactly_one_sms(
    any_db_url: str, start_app: Any
) -> None:
    """R-AUTH-1 limits, issue 14: the cooldown is an atomic counter, not count-then-insert."""
    app: Running = await start_app(any_db_url)
    await add_adult(app)
    answers = await asyncio.gather(*(post(app, OTP, {"phone": ADULT_PHONE}) for _ in range(50)))
    assert Counter(answers) == {"202": 1, "429 otp_cooldown": 49}
    assert await sms_to(app, ADULT_PHONE) == 1


async def test_a_thousand_concurrent_guesses_of_one_code_are_cut_at_the_attempt_limit(
    any_db_url: str, start_app: Any
) -> None:
    """R-AUTH-1, issue 14: each try is taken by a guarded update before the code is compared.
    (The login door, tests/service/test_login_door.py, is opened wide: the code's own
    attempt limit is what is tested here.)"""
    app: Running = await start_app(
        any_db_url,
        auth={
            "otp_max_attempts": 5,
            "otp_verify_per_address_per_hour": 100_000,
            "flood_refusals": 100_000,
        },
    )
    await add_adult(app)
    assert await post(app, OTP, {"phone": ADULT_PHONE}) == "202"
    code = await app.last_code(ADULT_PHONE)
    guess = {"phone": ADULT_PHONE, "code": wrong(code)}
    answers = await asyncio.gather(*(post(app, VERIFY, guess) for _ in range(1000)))
    assert all(a.startswith("4") for a in answers)
    assert Counter(answers)["401 invalid_code"] == 4  # the 5th compared one says too_many
    async with app.services.db.read() as session:
        attempts = await session.scalar(select(OtpCode.attempts))
    assert attempts == 5
    right = await post(app, VERIFY, {"phone": ADULT_PHONE, "code": code})
    assert right == "429 too_many_attempts"


async def test_a_hundred_concurrent_wrong_passwords_are_checked_at_most_the_account_limit(
    any_db_url: str, start_app: Any
) -> None:
    """Issue 14: `auth.staff_failures_per_account` password checks, the rest refused unhashed."""
    app: Running = await start_app(
        any_db_url,
        auth={"staff_failures_per_account": 10, "staff_failures_per_address": 1000, **NO_CAPS},
    )
    await staff_token(app, Role.CONSULTANT)
    before = await staff_outcomes(app)
    body = {"login": "consultant", "password": "wrong-password"}
    answers = await asyncio.gather(*(post(app, STAFF, body) for _ in range(100)))
    assert Counter(answers) == {"401 invalid_credentials": 10, "429 rate_limited": 90}
    after = await staff_outcomes(app)
    assert after["invalid_credentials"] - before["invalid_credentials"] == 10


async def test_a_locked_account_still_lets_its_owner_in_from_an_address_they_used(
    any_db_url: str, start_app: Any
) -> None:
    """Issue 14, no lockout as denial of service: a stranger's failures lock the account
    for unknown addresses only; the owner's known address has a count of its own."""
    app: Running = await start_app(
        any_db_url,
        server={"trusted_proxies": ["127.0.0.1"]},
        auth={"staff_failures_per_account": 3},
    )
    await staff_token(app, Role.CONSULTANT)
    right = {"login": "consultant", "password": "secret-pass"}
    wrong_body = {"login": "consultant", "password": "guess-guess"}
    office, stranger, new_place = "10.0.0.5", "203.0.113.9", "198.51.100.7"
    assert await post(app, STAFF, right, office) == "200"
    for _ in range(3):
        assert await post(app, STAFF, wrong_body, stranger) == "401 invalid_credentials"
    assert await post(app, STAFF, wrong_body, stranger) == "429 rate_limited"
    assert await post(app, STAFF, right, new_place) == "429 rate_limited"
    assert await post(app, STAFF, right, office) == "200"
    app.clock.advance(timedelta(minutes=16))
    assert await post(app, STAFF, right, new_place) == "200"


async def test_a_stranger_cannot_spend_a_patients_codes(any_db_url: str, start_app: Any) -> None:
    """Issue 14: the per-phone budget and the cooldown are per address, so a stranger who
    spends their share leaves the patient (and the consultant helping them) theirs."""
    app: Running = await start_app(
        any_db_url,
        server={"trusted_proxies": ["127.0.0.1"]},
        auth={"otp_per_phone_per_hour": 2, "otp_resend_cooldown": "60s"},
    )
    await add_adult(app)
    stranger, patient = "203.0.113.9", "10.1.1.1"
    body = {"phone": ADULT_PHONE}
    assert await post(app, OTP, body, stranger) == "202"
    assert await post(app, OTP, body, patient) == "202"  # not held by the stranger's cooldown
    app.clock.advance(timedelta(seconds=61))
    assert await post(app, OTP, body, stranger) == "202"
    app.clock.advance(timedelta(seconds=61))
    assert await post(app, OTP, body, stranger) == "429 rate_limited"
    assert await post(app, OTP, body, patient) == "202"
    code = await app.last_code(ADULT_PHONE)
    assert await post(app, VERIFY, {"phone": ADULT_PHONE, "code": code}, patient) == "200"


def test_password_checks_past_a_cap_are_refused_at_once() -> None:
    """Issue 14: a flood costs no memory; one address holds at most its share of checks."""
    checker = PasswordChecker(workers=1, in_flight=3, per_address=2)
    try:
        with checker.slot("a"), checker.slot("a"):
            with pytest.raises(Busy):
                checker.slot("a").__enter__()
            with checker.slot("b"), pytest.raises(Busy):
                checker.slot("c").__enter__()
        with checker.slot("a"), checker.slot("a"):  # released: free again
            pass
    finally:
        checker.close()


# --- two nodes on PostgreSQL + Redis ------------------------------------------------------


@pytest.mark.postgres
async def test_two_nodes_on_postgresql_and_redis_share_the_limits(
    pg_url: str, start_app: Any
) -> None:
    """Issue 14: with `redis.url` the counters are Redis INCR + PEXPIRE, shared by nodes: 50
    code requests -> 1 SMS, 1,000 guesses -> 5 compared, 100 wrong passwords -> 10 checked."""
    redis = {"url": REDIS_URL, "prefix": f"test-{uuid.uuid4().hex[:8]}"}
    auth = {
        "staff_failures_per_account": 10,
        "staff_failures_per_address": 1000,
        "otp_max_attempts": 5,
        "otp_verify_per_address_per_hour": 100_000,
        "flood_refusals": 100_000,  # the door (test_login_door.py) would answer them all
        **NO_CAPS,
    }
    one: Running = await start_app(pg_url, redis=redis, auth=auth, scheduler={"enabled": False})
    two: Running = await start_app(pg_url, redis=redis, auth=auth, scheduler={"enabled": False})
    await add_adult(one)
    nodes = [one, two]
    body = {"phone": ADULT_PHONE}
    answers = await asyncio.gather(*(post(nodes[i % 2], OTP, body) for i in range(50)))
    assert Counter(answers) == {"202": 1, "429 otp_cooldown": 49}
    await two.services.auth.drain()
    assert await sms_to(one, ADULT_PHONE) == 1  # both nodes write the same SMS file

    code = await one.last_code(ADULT_PHONE)
    guess = {"phone": ADULT_PHONE, "code": wrong(code)}
    answers = await asyncio.gather(*(post(nodes[i % 2], VERIFY, guess) for i in range(1000)))
    assert Counter(answers)["401 invalid_code"] == 4 and all(a.startswith("4") for a in answers)
    async with one.services.db.read() as session:
        assert await session.scalar(select(OtpCode.attempts)) == 5

    await staff_token(one, Role.CONSULTANT)
    before = await staff_outcomes(one)
    guess = {"login": "consultant", "password": "wrong-password"}
    answers = await asyncio.gather(*(post(nodes[i % 2], STAFF, guess) for i in range(100)))
    assert Counter(answers) == {"401 invalid_credentials": 10, "429 rate_limited": 90}
    after = await staff_outcomes(one)
    assert after["invalid_credentials"] - before["invalid_credentials"] == 10


async def test_login_limits_are_counted_in_the_database_while_redis_is_down(db: Any) -> None:
    """Issue 14: a Redis outage neither lets logins through unlimited nor fails them."""
    import redis.asyncio as aioredis

    from telemed.clock import ManualClock
    from telemed.limits import DbCounters, RedisCounters

    unreachable = aioredis.from_url("redis://127.0.0.1:1/0")
    counters = RedisCounters(unreachable, "test", DbCounters(db))
    now = ManualClock().now()
    try:
        counts = [(await counters.hit("k", timedelta(minutes=1), now)).count for _ in range(3)]
        await counters.refund("k")
        after = await counters.hit("k", timedelta(minutes=1), now)
        await counters.clear("k")
        fresh = await counters.hit("k", timedelta(minutes=1), now)
    finally:
        await unreachable.aclose()
    assert counts == [1, 2, 3] and after.count == 3 and fresh.count == 1
