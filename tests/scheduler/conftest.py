"""Fixtures for the clock-driven rules: an app with a file push backend, a doctor with
working hours, and the scheduler's `tick` driven by the manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from appkit import Running
from clinic import ADULT, CHILD, Clinic
from helpers import add_patients, staff_token

from telemed.roles import Role


@pytest.fixture
def clinic_db_url(sqlite_url: str) -> str:
    """The clinic's database: SQLite; a test module overrides it to run on both."""
    return sqlite_url


@pytest.fixture
async def clinic(
    start_app: Callable[..., Any], clinic_db_url: str, tmp_path: Path
) -> AsyncIterator[Clinic]:
    push_file = tmp_path / "push.jsonl"
    app: Running = await start_app(
        clinic_db_url,
        push={"backend": "file", "path": str(push_file)},
        storage={"documents_dir": str(tmp_path / "documents")},
        signalling={"queue_refresh_interval": "10ms"},
        scheduler={"enabled": False},  # the tests move the clock and tick themselves
    )
    await add_patients(app, [ADULT, CHILD])
    c = Clinic(app, push_file, str(app.client.make_url("/")))
    c.admin = (await staff_token(app, Role.ADMIN))[0]
    c.consultant, c.consultant_id = await staff_token(app, Role.CONSULTANT)
    yield c
    for client in c.clients:
        await client.close()
