"""Shared fixtures: a real database (SQLite file or PostgreSQL) with the real migrations,
and a manual clock."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from telemed.clock import ManualClock
from telemed.config import DatabaseSettings
from telemed.db import Database, create_engine, upgrade_schema

PG_ADMIN_DSN = os.environ.get(
    "TELEMED_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated with Alembic; each test gets a copy (fast and real)."""
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def build() -> None:
        engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
        await upgrade_schema(engine)
        await engine.dispose()

    asyncio.run(build())
    return path


@pytest.fixture
def sqlite_url(migrated_sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "telemed.db"
    shutil.copy(migrated_sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated by the tests that use it, dropped afterwards.

    Never skipped: CI starts PostgreSQL before the tests.
    """
    name = f"telemed_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_url(request: pytest.FixtureRequest) -> str:
    """Run a test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


async def _open(url: str, migrate: bool) -> Database:
    engine = create_engine(DatabaseSettings(url=url))
    if migrate:
        await upgrade_schema(engine)
    return Database(engine)


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[Database]:
    """A migrated SQLite database of this test."""
    database = await _open(sqlite_url, migrate=False)
    yield database
    await database.dispose()


@pytest.fixture
async def any_db(any_db_url: str) -> AsyncIterator[Database]:
    """A migrated database, once on SQLite and once on PostgreSQL."""
    database = await _open(any_db_url, migrate=not any_db_url.startswith("sqlite"))
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# --- the HTTP app, with the real `file` SMS backend ---------------------------------------

from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from appkit import Running, make_settings  # noqa: E402

from telemed.app import create_app  # noqa: E402

AppFactory = Callable[..., Any]


@pytest.fixture
def start_app(aiohttp_client: Any, tmp_path: Path, clock: ManualClock) -> Callable[..., Any]:
    """Start the real app on a database URL with config overrides: `await start_app(url, ...)`."""

    async def start(
        db_url: str, *, push_session: Callable[[], Any] | None = None, **overrides: Any
    ) -> Running:
        sms_file = tmp_path / "sms.jsonl"
        settings = make_settings(db_url, sms_file, **overrides)
        client = await aiohttp_client(create_app(settings, clock=clock, push_session=push_session))
        return Running(client=client, clock=clock, sms_file=sms_file, settings=settings)

    return start


@pytest.fixture
async def app(start_app: Callable[..., Any], sqlite_url: str) -> Running:
    """The app on this test's SQLite database."""
    running: Running = await start_app(sqlite_url)
    return running
