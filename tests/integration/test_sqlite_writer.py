"""The SQLite writer's one-hand-off transactions (`Database.run_in_writer`), and the plain-send
batch that runs in them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from parley.storage.database import Database


async def test_work_that_raises_leaves_nothing_behind(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    try:
        await db.run_in_writer(lambda c: c.execute("CREATE TABLE t (v INTEGER UNIQUE)"))
        await db.run_in_writer(lambda c: c.execute("INSERT INTO t VALUES (1)"))

        def half_then_fail(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t VALUES (2)")
            c.execute("INSERT INTO t VALUES (1)")  # unique violation: the whole batch goes

        with pytest.raises(DBAPIError):
            await db.run_in_writer(half_then_fail)
        rows = await db.run_in_writer(lambda c: c.execute("SELECT v FROM t").fetchall())
    finally:
        await db.dispose()

    assert rows == [(1,)]
