"""Database snapshots for backup and restore, and the fingerprints that prove a restore whole.

- SQLite: the online backup API (`sqlite3.Connection.backup`) copies a live database page by
  page, consistent even while the server writes; `PRAGMA integrity_check` checks a copy.
- PostgreSQL: `pg_dump -Fc` inside an exported snapshot, so the fingerprints taken in the same
  transaction describe exactly the rows in the dump; `pg_restore` into a new database.
- Fingerprint: per table, its row count and the sha256 of its rows in primary-key order. Two
  databases of one dialect with equal fingerprints hold the same data.

Credentials never reach an argument list or a log line: libpq tools get the password through
the environment (PGPASSWORD).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from parley.storage.errors import translate_db_errors
from parley.storage.schema import is_search_index

_PAGE = 2_000


@dataclass(frozen=True, slots=True)
class TableFingerprint:
    rows: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "sha256": self.sha256}

    @classmethod
    def of(cls, data: dict[str, Any]) -> TableFingerprint:
        return cls(int(data["rows"]), str(data["sha256"]))


Fingerprints = dict[str, TableFingerprint]


class SnapshotError(Exception):
    """A database tool failed, or a database is not what an operation needs."""


# -- fingerprints --------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _row_bytes(row: Any) -> bytes:
    return (
        json.dumps(list(row), default=_plain, sort_keys=True, separators=(",", ":")) + "\n"
    ).encode()


def _tables_and_keys(sync: Connection) -> list[tuple[str, list[str], list[str]]]:
    inspector = inspect(sync)
    found = []
    for table in sorted(inspector.get_table_names()):
        if is_search_index(table):
            continue  # derived from messages (compared there), and SQLite's differs by page
        columns = [c["name"] for c in inspector.get_columns(table)]
        keys = inspector.get_pk_constraint(table).get("constrained_columns") or columns
        found.append((table, columns, keys))
    return found


def _quote(conn: AsyncConnection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


async def fingerprint(conn: AsyncConnection) -> Fingerprints:
    """Every table's row count and content hash, read in this connection's transaction."""
    result: Fingerprints = {}
    for table, columns, keys in await conn.run_sync(_tables_and_keys):
        select_list = ", ".join(_quote(conn, c) for c in columns)
        order = ", ".join(_quote(conn, k) for k in keys)
        digest = hashlib.sha256()
        rows = 0
        stream = await conn.stream(
            text(f"SELECT {select_list} FROM {_quote(conn, table)} ORDER BY {order}")  # noqa: S608
        )
        async for page in stream.partitions(_PAGE):
            for row in page:
                digest.update(_row_bytes(row))
                rows += 1
        result[table] = TableFingerprint(rows, digest.hexdigest())
    return result


async def fingerprint_url(url: str) -> Fingerprints:
    engine = create_async_engine(url)
    try:
        with translate_db_errors():
            async with engine.connect() as conn:
                return await fingerprint(conn)
    finally:
        await engine.dispose()


def compare(expected: Fingerprints, actual: Fingerprints) -> list[str]:
    """What differs between two sets of fingerprints, one line per table; empty when equal."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"{table}: present after restore but not in the backup")
        elif got is None:
            problems.append(f"{table}: missing after restore ({want.rows} rows expected)")
        elif want.rows != got.rows:
            problems.append(f"{table}: {got.rows} rows, expected {want.rows}")
        elif want.sha256 != got.sha256:
            problems.append(f"{table}: same {got.rows} rows but different content (checksum)")
    return problems


# -- URLs ------------------------------------------------------------------------------------------


def dialect_of(url: str) -> str:
    return make_url(url).get_backend_name()


def public_url(url: str) -> str:
    """The URL fit for a manifest or a log line: no password."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise SnapshotError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string without the password, and the environment that carries it."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )
    return plain.render_as_string(hide_password=False), env


def database_name(url: str) -> str:
    return make_url(url).database or ""


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


async def _run_tool(args: list[str], env: dict[str, str], what: str) -> str:
    try:
        process = await asyncio.create_subprocess_exec(
            *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError:
        raise SnapshotError(
            f"{args[0]} is not installed: install PostgreSQL's client tools (Debian: "
            "postgresql-client), of the server's major version or newer"
        ) from None
    out, err = await process.communicate()
    if process.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        raise SnapshotError(f"{what} failed: {' / '.join(detail[-3:]) or process.returncode}")
    return out.decode(errors="replace")


# -- SQLite ----------------------------------------------------------------------------------------


def sqlite_backup(
    source: Path, target: Path, progress: Callable[[int, int], None] | None = None
) -> None:
    """Copy a live SQLite database with the online backup API (consistent under writes)."""
    if not source.exists():
        raise SnapshotError(f"no SQLite database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:

        def step(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        src.backup(dst, pages=1024, progress=step)
        # One self-contained file: no -wal beside it, whatever mode the source runs in.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def sqlite_put(source: Path, url: str) -> None:
    """Make the database at `url` a copy of `source`: copied beside it, then swapped in at once.

    The old file's `-wal` and `-shm` go first: a write-ahead log left by the replaced database
    would otherwise be replayed into the new one on its next open.
    """
    target = sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".restoring")
    shutil.copyfile(source, partial)
    check = sqlite3.connect(partial)  # readable before it replaces anything
    try:
        check.execute("PRAGMA schema_version").fetchone()
    finally:
        check.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    partial.replace(target)


def sqlite_integrity(path: Path) -> str:
    """`ok`, or what SQLite's integrity check found wrong (a damaged or foreign file)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    found = [str(row[0]) for row in rows]
    return "ok" if found == ["ok"] else "; ".join(found[:5])


# -- PostgreSQL ------------------------------------------------------------------------------------


async def pg_dump_with_fingerprints(url: str, target: Path) -> Fingerprints:
    """`pg_dump -Fc` of the database at `url`, and fingerprints of exactly what it dumped.

    One REPEATABLE READ transaction exports its snapshot; pg_dump reads through that snapshot
    while the same transaction computes the fingerprints.
    """
    dsn, env = _libpq(url)
    engine = create_async_engine(url)
    try:
        with translate_db_errors():
            async with engine.connect() as raw:
                conn = await raw.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                async with conn.begin():
                    snapshot = (
                        await conn.execute(text("SELECT pg_export_snapshot()"))
                    ).scalar_one()
                    dump = asyncio.create_task(
                        _run_tool(
                            [
                                "pg_dump",
                                "--format=custom",
                                f"--snapshot={snapshot}",
                                "--no-owner",
                                "--no-privileges",
                                f"--file={target}",
                                f"--dbname={dsn}",
                            ],
                            env,
                            "pg_dump",
                        )
                    )
                    try:
                        prints = await fingerprint(conn)
                    finally:
                        await asyncio.gather(dump, return_exceptions=True)
                    dump.result()  # pg_dump's own failure, if any
                    return prints
    finally:
        await engine.dispose()


async def pg_dump_contents(dump: Path) -> str:
    """The archive's table of contents (`pg_restore --list`): fails on a damaged archive."""
    return await _run_tool(["pg_restore", "--list", str(dump)], dict(os.environ), "pg_restore")


async def pg_restore(url: str, dump: Path) -> None:
    dsn, env = _libpq(url)
    await _run_tool(
        [
            "pg_restore",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            f"--dbname={dsn}",
            str(dump),
        ],
        env,
        "pg_restore",
    )


async def _admin_execute(url: str, statement: str) -> None:
    """Run a statement that cannot run in a transaction, on the server's `postgres` database."""
    engine = create_async_engine(
        with_database(url, "postgres"), isolation_level="AUTOCOMMIT", pool_size=1
    )
    try:
        with translate_db_errors():
            async with engine.connect() as conn:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def pg_database_exists(url: str) -> bool:
    name = make_url(url).database
    engine = create_async_engine(with_database(url, "postgres"), pool_size=1)
    try:
        with translate_db_errors():
            async with engine.connect() as conn:
                found = await conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
                return found.first() is not None
    finally:
        await engine.dispose()


async def pg_create_database(url: str) -> None:
    name = make_url(url).database or ""
    await _admin_execute(url, f'CREATE DATABASE "{_pg_name(name)}"')


async def pg_drop_database(url: str) -> None:
    name = make_url(url).database or ""
    await _admin_execute(url, f'DROP DATABASE IF EXISTS "{_pg_name(name)}" WITH (FORCE)')


def _pg_name(name: str) -> str:
    if not name or '"' in name or "\x00" in name or len(name) > 63:
        raise SnapshotError(f"not a usable database name: {name!r}")
    return name


async def pg_clear_schema(url: str) -> None:
    """Empty the `public` schema (tables, triggers, functions), for a restore in place."""
    engine = create_async_engine(url)
    try:
        with translate_db_errors():
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def table_names(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        with translate_db_errors():
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: sorted(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
