"""Engines and transactions for SQLite (embedded) and PostgreSQL (production).

SQLite allows one writer at a time, so writes go through a one-connection engine that opens
`BEGIN IMMEDIATE` (no lock upgrades, no SQLITE_BUSY mid-transaction) while reads use a pool of
deferred transactions that WAL lets run beside the writer. PostgreSQL uses one pooled engine,
and single statements on the hot paths a small one of their own (autocommit, no pre-ping: see
`append` and `read_single`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from parley.storage.errors import translate_db_errors

T = TypeVar("T")


class Database:
    """The connection pools of one deployment, with `read()` and `write()` transactions."""

    def __init__(
        self, url: str, *, sqlite_synchronous: str = "FULL", timeout: float = 10.0
    ) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            _ensure_sqlite_dir(url)
            self._writer = _sqlite_engine(url, sqlite_synchronous, begin="BEGIN IMMEDIATE", pool=1)
            self._reader = _sqlite_engine(url, sqlite_synchronous, begin="BEGIN", pool=8)
            self._single = self._writer  # unused on SQLite: batches go through run_in_writer
        else:
            # A paused or partitioned server must not hang a request: connecting and every
            # statement give up after `timeout` (a 503, retried by the client).
            options: dict[str, Any] = {
                "pool_timeout": timeout,
                "connect_args": {"timeout": timeout, "command_timeout": timeout},
            }
            engine = create_async_engine(
                url, pool_size=10, max_overflow=20, pool_pre_ping=True, **options
            )
            self._writer = self._reader = engine
            # Connections for single statements on the hot paths (the group commit's batches,
            # the coalesced token and membership look-ups): autocommit (the statement is its
            # own transaction: no BEGIN, no ROLLBACK) and no pre-ping (one more round trip per
            # use, when the use itself is one). A connection lost meanwhile fails its statement
            # with a retryable 503, and the pool reconnects.
            self._single = create_async_engine(
                url,
                pool_size=4,
                max_overflow=8,
                pool_pre_ping=False,
                isolation_level="AUTOCOMMIT",
                **options,
            )

    @property
    def sqlite_file(self) -> Path | None:
        """The embedded database's file (None on PostgreSQL or in memory)."""
        database = make_url(self.url).database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            return None
        return Path(database)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that may write; committed when the block exits without error."""
        with translate_db_errors():
            async with self._writer.begin() as conn:
                yield conn

    @asynccontextmanager
    async def append(self) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL only: a connection for one statement that commits on its own.

        For the message writer's batches: no BEGIN, no COMMIT, no pre-ping round trip.
        """
        with translate_db_errors():
            async with self._single.connect() as conn:
                yield conn

    @asynccontextmanager
    async def read_single(self) -> AsyncIterator[AsyncConnection]:
        """A read of one statement (it needs no snapshot shared with another).

        On PostgreSQL in autocommit on the pool without pre-ping (see `append`): one round trip
        instead of four. On SQLite the same as `read()`.
        """
        if not self.is_postgres:
            async with self.read() as conn:
                yield conn
            return
        with translate_db_errors():
            async with self._single.connect() as conn:
                yield conn

    async def run_in_writer(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """SQLite only: run `work` in one `BEGIN IMMEDIATE` transaction, in the writer's thread.

        The hot write path's shape: aiosqlite hands every statement (and every fetch) to its
        thread and back, which costs the event loop more than SQLite spends on a small batch.
        Here the whole transaction is one hand-off. `work` gets the plain `sqlite3` connection
        and must not touch the event loop; driver errors come out as SQLAlchemy's, so
        `translate_db_errors` treats them like any other statement's.
        """
        with translate_db_errors():
            async with self._writer.connect() as conn:
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection  # the aiosqlite.Connection
                # aiosqlite's one way to run a function in the connection's own thread.
                return await driver._execute(_in_transaction, driver, work)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with translate_db_errors():
            async with self._reader.connect() as conn:
                yield conn

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def clock_offset(self) -> float | None:
        """This process's clock minus PostgreSQL's, in seconds (None on SQLite: one node)."""
        if not self.is_postgres:
            await self.ping()
            return None
        async with self.read() as conn:
            before = time.time()
            server = (
                await conn.execute(text("SELECT extract(epoch FROM clock_timestamp())"))
            ).scalar_one()
            after = time.time()
        return (before + after) / 2 - float(server)

    def pool_status(self) -> dict[str, int]:
        """Connections held by this process's pools: checked out, and open in total."""
        engines = [self._writer] if self._reader is self._writer else [self._writer, self._reader]
        if self.is_postgres:
            engines.append(self._single)
        out = held = 0
        for engine in engines:
            pool: Any = engine.sync_engine.pool
            out += pool.checkedout()
            held += pool.checkedout() + pool.checkedin()
        return {"in_use": out, "open": held}

    async def dispose(self) -> None:
        await self._writer.dispose()
        if self.is_postgres:
            await self._single.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()


def _in_transaction(driver: Any, work: Callable[[sqlite3.Connection], T]) -> T:
    db: sqlite3.Connection = driver._conn  # in its own thread here
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
    return result


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_engine(url: str, synchronous: str, *, begin: str, pool: int) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool, max_overflow=0, pool_timeout=60)

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine
