"""The one-trip SQLite adapter (telemed/sqlite_onehop.py) answers as aiosqlite's does: rows,
row counts (the guarded updates that decide races read them), RETURNING, executemany,
last row ids and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from telemed.config import DatabaseSettings
from telemed.db import create_engine
from telemed.sqlite_onehop import OneHopDialect


async def test_the_configured_sqlite_url_runs_through_the_one_trip_adapter(tmp_path: Path) -> None:
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/t.db"))
    try:
        assert isinstance(engine.dialect, OneHopDialect)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
            inserted = await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
            assert inserted.lastrowid == 1
            many = await conn.execute(
                text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}, {"v": "d"}]
            )
            assert many.rowcount == 3
            guarded = await conn.execute(text("UPDATE t SET v = 'x' WHERE v = 'b' AND id = 2"))
            assert guarded.rowcount == 1
            lost = await conn.execute(text("UPDATE t SET v = 'y' WHERE v = 'b'"))
            assert lost.rowcount == 0
            returned = await conn.execute(
                text("UPDATE t SET v = v || '!' WHERE id > 2 RETURNING id")
            )
            assert sorted(returned.scalars().all()) == [3, 4]
            rows = (await conn.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
            assert [tuple(r) for r in rows] == [(1, "a"), (2, "x"), (3, "c!"), (4, "d!")]
            assert (await conn.execute(text("SELECT v FROM t WHERE id = 99"))).first() is None
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
        async with engine.connect() as conn:  # the failed transaction was rolled back
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 4
    finally:
        await engine.dispose()


async def test_a_write_that_cannot_get_the_lock_fails_as_sqlalchemy_says(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE goes straight to the driver (telemed/db.py); a locked database still
    surfaces as SQLAlchemy's OperationalError, after busy_timeout."""
    from datetime import timedelta

    from sqlalchemy.exc import OperationalError

    from telemed.db import Database

    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    holder = Database(create_engine(DatabaseSettings(url=url)))
    waiter = Database(
        create_engine(DatabaseSettings(url=url, busy_timeout=timedelta(milliseconds=50)))
    )
    try:
        async with holder.write() as session:
            await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        async with holder.write() as session:
            await session.execute(text("INSERT INTO t DEFAULT VALUES"))
            with pytest.raises(OperationalError, match="locked"):
                async with waiter.write() as other:
                    await other.execute(text("INSERT INTO t DEFAULT VALUES"))
        async with waiter.write() as other:  # free again: the waiter's connection still works
            await other.execute(text("INSERT INTO t DEFAULT VALUES"))
        async with waiter.read() as other:
            assert (await other.execute(text("SELECT count(*) FROM t"))).scalar() == 2
    finally:
        await holder.dispose()
        await waiter.dispose()
