"""Small helpers shared by the tests: demo people and logins through the real API, and what
the database engine did inside a block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from telemed.db import Database
from telemed.roles import Role
from telemed.services import insured
from telemed.services.audit import Who
from telemed.services.staff import add_staff

ADULT_PHONE = "+79161234567"
CHILD_PHONE = "+79167654321"
CSV_HEADER = "policy_number,purchased_on,valid_from,valid_to,full_name,birth_date,sex,phone\n"
SYSTEM = Who("system", None)


async def add_patients(running: Any, rows: list[str]) -> None:
    """Import insured persons from CSV lines (after the header) through the real importer."""
    svc = running.services
    parsed = insured.parse_insured_csv(
        (CSV_HEADER + "\n".join(rows) + "\n").encode(), today=insured.local_today(svc.clock)
    )
    assert not parsed.errors, parsed.errors
    await insured.import_insured(svc.db, svc.clock, parsed, who=SYSTEM)


async def add_adult(running: Any, phone: str = ADULT_PHONE, policy: str = "P-1") -> None:
    await add_patients(
        running, [f"{policy},2026-01-01,2026-01-01,2027-12-31,Иванов Иван,1980-03-01,M,{phone}"]
    )


async def patient_token(running: Any, phone: str = ADULT_PHONE, consent: bool = True) -> str:
    """Log a patient in with phone + SMS code, and accept the consent unless told not to."""
    client = running.client
    resp = await client.post("/api/v1/auth/otp", json={"phone": phone})
    assert resp.status == 202, await resp.text()
    code = await running.last_code(phone)
    resp = await client.post("/api/v1/auth/otp/verify", json={"phone": phone, "code": code})
    assert resp.status == 200, await resp.text()
    token = str((await resp.json())["token"])
    if consent:
        version = (await (await client.get("/api/v1/consent")).json())["version"]
        resp = await client.post(
            "/api/v1/me/consent", json={"version": version}, headers=bearer(token)
        )
        assert resp.status == 201, await resp.text()
    return token


async def staff_token(running: Any, role: Role, login: str | None = None) -> tuple[str, str]:
    """Create a staff account and log in; returns (token, staff id)."""
    svc = running.services
    login = login or role.value
    staff = await add_staff(
        svc.db,
        svc.clock,
        role=role,
        login=login,
        password="secret-pass",
        full_name=login,
        who=SYSTEM,
    )
    resp = await running.client.post(
        "/api/v1/auth/staff", json={"login": login, "password": "secret-pass"}
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["token"]), staff.id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def engine_events(db: Database, name: str) -> Iterator[list[tuple[Any, ...]]]:
    """Each time the engine of `db` fires event `name` inside the block (`commit`,
    `before_cursor_execute`, ...), the listener's arguments."""
    fired: list[tuple[Any, ...]] = []

    def record(*args: Any) -> None:
        fired.append(args)

    event.listen(db.engine.sync_engine, name, record)
    try:
        yield fired
    finally:
        event.remove(db.engine.sync_engine, name, record)
