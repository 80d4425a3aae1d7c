"""The Alembic migrations build exactly the schema the models describe, on SQLite and
PostgreSQL, and upgrading twice is harmless."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from telemed.db import Database, alembic_config, upgrade_schema
from telemed.models import Base


async def test_the_migrations_match_the_models(any_db: Database) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with any_db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


def _schema(connection: Connection) -> tuple[list[str | None], dict[str, list[str]]]:
    """The revision the database is at and every table with its columns."""
    revision = MigrationContext.configure(connection).get_current_heads()
    inspector = inspect(connection)
    tables = {
        name: sorted(column["name"] for column in inspector.get_columns(name))
        for name in inspector.get_table_names()
    }
    return sorted(revision), tables


async def test_upgrading_an_up_to_date_schema_changes_nothing(any_db: Database) -> None:
    await upgrade_schema(any_db.engine)
    async with any_db.engine.connect() as conn:
        before = await conn.run_sync(_schema)
    await upgrade_schema(any_db.engine)
    async with any_db.engine.connect() as conn:
        after = await conn.run_sync(_schema)
    heads, tables = after
    assert after == before
    assert heads == sorted(ScriptDirectory.from_config(alembic_config()).get_heads())
    assert "patients" in tables and "timezone_confirmed_at" in tables["patients"]


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(db: Database) -> None:
    async with db.engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    assert mode == "wal" and timeout == 5000 and fks == 1
