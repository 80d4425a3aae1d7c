"""SQLite through aiosqlite, with a read costing no trip to a thread and a write one.

SQLAlchemy's aiosqlite adapter makes four trips to aiosqlite's worker thread for every
statement (open a cursor, execute, fetch, close), each a queue put, a thread wake-up, the
GIL handed over and a callback back into the event loop. A connect's reads took 27 such
trips and two thirds of its CPU (docs/performance.md). Here:

- what cannot wait runs on the event loop's own thread: a read outside a write
  transaction (`SELECT`, a deferred `BEGIN`, the rollback that ends a read session; under
  WAL a reader never waits for a writer) and every statement inside a write transaction
  (this process's writers take turns, telemed/db.py, and the one holding the write lock
  waits for nobody). Each takes the microseconds of its own work, less than one trip
  (the rows are built holding the GIL either way);
- what may wait runs in one trip to aiosqlite's thread (execute, fetch and close as one
  function): `BEGIN IMMEDIATE` (another process may hold the lock, up to `busy_timeout`),
  the commit (the disk), and anything else outside a write transaction.

The SQL, the transactions and the errors are exactly aiosqlite's. `create_engine`
(telemed/db.py) uses it for the configured `sqlite+aiosqlite` URL.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util import EMPTY_DICT

DRIVER = "onehop"

Outcome = tuple[Any, int, int | None, list[Any]]


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> Outcome:
    """On aiosqlite's thread: execute, fetch every row, close; what the adapter needs."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement runs in one trip; its results kept here."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # no aiosqlite cursor is opened
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        """Nothing to close: the statement's cursor was closed on the thread."""

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> None:
        adapted: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        conn = self._connection._conn
        if not many and adapted.runs_here(operation):
            outcome = _run(conn, operation, parameters, many)
        else:
            adapted.writing = adapted.writing or operation == "BEGIN IMMEDIATE"
            async with adapted._execute_mutex:
                outcome = await self._connection._execute(_run, conn, operation, parameters, many)
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        await self._trip(operation, seq_of_parameters, many=True)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """Knows whether it holds the write lock (from `BEGIN IMMEDIATE` to commit or rollback)."""

    __slots__ = ("writing",)
    _cursor_cls = OneHopCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.writing = False

    def runs_here(self, operation: str) -> bool:
        """Whether a statement cannot wait for a lock or the disk (see the module's doc)."""
        if self.writing:
            return True  # the write lock is held; the commit goes through `commit()`
        return operation == "BEGIN" or operation.startswith("SELECT")

    def rollback(self) -> None:
        if not self.writing and self._connection._connection:
            self._connection._conn.rollback()  # a read's end: no lock held, nothing to wait for
            return
        try:
            super().rollback()
        finally:
            self.writing = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.writing = False


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)


class OneHopDialect(SQLiteDialect_aiosqlite):
    """aiosqlite's dialect with the one-trip cursor (`sqlite+onehop://`)."""

    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> OneHopDBAPI:
        return OneHopDBAPI(__import__("aiosqlite"), sqlite3)


registry.register(f"sqlite.{DRIVER}", __name__, "OneHopDialect")
