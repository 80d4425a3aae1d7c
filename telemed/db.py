"""Engines, sessions and schema upgrades for SQLite (embedded) and PostgreSQL.

Writes on SQLite start with `BEGIN IMMEDIATE`: a deferred transaction that
reads and then writes under WAL fails at once with SQLITE_BUSY when another
writer got in first, instead of waiting `busy_timeout`. Guarded updates then
decide races the same way on both backends. SQLite has one writer at a time
anyway, so the writers of one process also take turns in the event loop, first
come first served: left to SQLite's busy handler (which polls, unfairly), one of
twenty racing writers on a loaded machine waited past `busy_timeout` and its
user got an internal error ("database is locked").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from telemed import sqlite_onehop
from telemed.config import DatabaseSettings
from telemed.events import EVENTS_KEY, DomainEvent, Recorded

log = logging.getLogger("telemed.db")
Publish = Callable[[list[DomainEvent]], Awaitable[None]]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_WRITE = "telemed_write"
_MIGRATION_LOCK = 0x7E1E_3ED


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An async engine; on SQLite with WAL, a busy timeout and foreign keys on; on
    PostgreSQL a pool of `pool_size` resident connections (SQLAlchemy's 5 churned: a burst of
    20 consultants' accepts opened and closed ten connections each time, docs/performance.md).
    Statement parameters are hidden from errors and logs (they hold chat text, names,
    phones)."""
    if not settings.is_sqlite:
        return create_async_engine(
            settings.url,
            echo=settings.echo,
            pool_pre_ping=True,
            hide_parameters=True,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
        )
    _prepare_sqlite_file(settings.url)
    url = make_url(settings.url)
    if url.get_driver_name() == "aiosqlite":  # the same driver, one trip per statement
        url = url.set(drivername=f"sqlite+{sqlite_onehop.DRIVER}")
    engine = create_async_engine(
        url,
        echo=settings.echo,
        hide_parameters=True,
        # Reads run on the event loop's thread, the rest on aiosqlite's (sqlite_onehop.py),
        # one statement at a time per connection.
        connect_args={"check_same_thread": False},
    )
    busy_ms = int(settings.busy_timeout.total_seconds() * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (the pysqlite/aiosqlite default is wrong for us).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        # Straight to the driver: a BEGIN needs none of the statement machinery around it.
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(begin)
        except sqlite3.Error as exc:  # raised as Core raises it ("database is locked")
            raise DBAPIError.instance(begin, None, exc, sqlite3.Error) from exc
        finally:
            cursor.close()

    return engine


@asynccontextmanager
async def _keep_cancellation() -> AsyncIterator[None]:
    """A task cancelled mid-query must still see CancelledError: asyncpg's clean-up turns
    it into "another operation is in progress", and a loop catching Exception carries on
    (so a shutdown waiting for it hangs)."""
    try:
        yield
    except Exception as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError() from exc
        raise


class _WriteTurn:
    """One SQLite write transaction of this process at a time, in arrival order. A task
    that already holds the turn goes through (a nested write then meets SQLite's own
    lock, as before, instead of waiting for itself forever)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None
        self._depth = 0

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None or task is not self._holder:
            await self._lock.acquire()
            self._holder = task
        self._depth += 1

    async def __aexit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._holder = None
            self._lock.release()


class Database:
    """The one way services reach the database: `read()` and `write()` sessions.

    `write()` is also the unit of work of the events its services record
    (`telemed.events.record`): once the transaction has committed, and the SQLite write
    turn is given back, they go to `on_commit` (the live layer's publisher)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._reader = async_sessionmaker(engine, expire_on_commit=False)
        writer_engine = engine.execution_options(**{_WRITE: True}) if self.is_sqlite else engine
        self._writer = async_sessionmaker(writer_engine, expire_on_commit=False)
        self._write_turn = _WriteTurn() if self.is_sqlite else None
        self.on_commit: Publish | None = None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; rolled back at the end."""
        async with _keep_cancellation(), self._reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed if the block ends normally, rolled back on error."""
        turn = self._write_turn if self._write_turn is not None else contextlib.nullcontext()
        recorded = Recorded()
        async with _keep_cancellation(), turn, self._writer() as session, session.begin():
            session.info[EVENTS_KEY] = recorded
            yield session
        publish = self.on_commit
        if recorded.events and publish is not None:
            await _hand_on(publish, recorded.events)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def _hand_on(publish: Publish, events: list[DomainEvent]) -> None:
    """Hand committed events on. The change is made whatever happens here: a failed
    delivery is logged, and clients catch up from the database when they reconnect."""
    try:
        await publish(events)
    except Exception:
        log.exception("publishing %d events failed", len(events))


def alembic_config(url: str | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


async def upgrade_schema(engine: AsyncEngine, revision: str = "heads") -> None:
    """Bring the schema to `revision` with Alembic, on the given engine."""

    def _run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Nodes starting together take turns; the lock ends with the transaction.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)
