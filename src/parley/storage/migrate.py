"""Alembic migrations from code: `parley migrate up|down|status|check`, and `parley serve` on start.

`schema_status(url)` answers whether the running code and the database's schema agree: the
revision stamped in the database against the newest one this code ships (pending migrations, or
a database newer than the code after a code rollback), and the tables and columns the code
declares against those the database has (drift made by hand). Preflight and `/readyz` call it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from parley.core.errors import Unavailable
from parley.storage.database import Database, _ensure_sqlite_dir
from parley.storage.errors import translate_db_errors
from parley.storage.schema import SEARCH_VECTOR_COLUMN, is_search_index, metadata

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
T = TypeVar("T")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _blocking(call: Callable[[], T]) -> T:
    """Run a blocking Alembic call; Alembic's env.py runs its own loop, so never on ours."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def upgrade_to_head(url: str) -> None:
    """Bring the database at `url` to the newest schema. Blocking; safe to run repeatedly."""
    upgrade(url, "head")


def upgrade(url: str, target: str = "head") -> None:
    """Apply migrations up to `target` (a revision id, `head`, or `+N`)."""
    _ensure_sqlite_dir(url)
    _blocking(lambda: command.upgrade(alembic_config(url), target))


def downgrade(url: str, target: str) -> None:
    """Undo migrations down to `target` (a revision id, `-N`, or `base`)."""
    _blocking(lambda: command.downgrade(alembic_config(url), target))


@functools.cache
def head_revision() -> str:
    """The newest revision this code ships."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def revisions_between(lower: str | None, upper: str) -> list[str]:
    """Revision ids after `lower` up to and including `upper`, oldest first."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    found = [rev.revision for rev in script.iterate_revisions(upper, lower or "base")]
    return [rev for rev in reversed(found) if rev != lower]


@functools.cache
def _known() -> tuple[str, ...]:
    return tuple(revisions_between(None, head_revision()))


def known_revisions() -> list[str]:
    """Every revision this code ships, oldest first."""
    return list(_known())


def describe_revision(revision: str) -> str:
    """The first line of a revision's docstring (what it does)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    found = script.get_revision(revision)
    return (found.doc or "").strip().splitlines()[0] if found is not None and found.doc else ""


@dataclass
class SchemaStatus:
    """How the database's schema compares with what the running code expects."""

    database_revision: str | None
    code_revision: str
    pending: list[str] = field(default_factory=list)
    # The database is at a revision this code does not know (newer code migrated it).
    unknown_revision: bool = False
    # Differences between the tables the code declares and the database's (made by hand).
    drift: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.pending and not self.unknown_revision and not self.drift

    def problem(self) -> str:
        """One sentence saying what is wrong and what to do; empty when code and schema agree."""
        if self.unknown_revision:
            return (
                f"the database is at revision {self.database_revision}, which this code does not "
                f"know (it expects {self.code_revision}): it was migrated by newer code; deploy "
                "that code, or restore the backup taken before the migration"
            )
        if self.pending:
            return (
                f"{len(self.pending)} migration(s) pending ({', '.join(self.pending)}): "
                "run `parley migrate up`"
            )
        if self.drift:
            return "the schema differs from the code's: " + "; ".join(self.drift[:5])
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "database_revision": self.database_revision,
            "code_revision": self.code_revision,
            "pending": self.pending,
            "unknown_revision": self.unknown_revision,
            "drift": self.drift,
            "agrees": self.agrees,
            "problem": self.problem(),
        }


def _describe_diff(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come grouped
        return ", ".join(_describe_diff(part) for part in diff)
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return f"{kind} {diff[1].name}"
    if kind in ("add_column", "remove_column"):
        return f"{kind} {diff[2]}.{diff[3].name}"
    if kind in ("add_index", "remove_index"):
        return f"{kind} {diff[1].name}"
    if kind.startswith("modify_"):
        return f"{kind} {diff[2]}.{diff[3]}"
    return str(kind)


# What `compare_metadata` reports that is no real disagreement: type and default spellings
# differ per dialect, and SQLite reflects neither named unique constraints nor FKs faithfully.
_IGNORED_DIFFS = (
    "modify_type",
    "modify_default",
    "modify_comment",
    "add_constraint",
    "remove_constraint",
    "add_fk",
    "remove_fk",
    "add_index",
    "remove_index",
)


# Search structures the migrations create by hand and the models don't declare: SQLite's FTS5
# table and its shadow tables (messages_fts, messages_fts_data, ...), PostgreSQL's tsvector.
def _declared(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    if type_ == "table" and name and is_search_index(name):
        return False
    return not (type_ == "column" and name == SEARCH_VECTOR_COLUMN and reflected)


def _compare(connection: Connection) -> tuple[str | None, list[str]]:
    context = MigrationContext.configure(connection, opts={"include_object": _declared})
    current = context.get_current_revision()
    drift = []
    for diff in compare_metadata(context, metadata):
        kinds = {d[0] for d in diff} if isinstance(diff, list) else {diff[0]}
        if kinds <= set(_IGNORED_DIFFS):
            continue
        described = _describe_diff(diff)
        if "alembic_version" not in described:
            drift.append(described)
    return current, drift


async def _read_schema(url: str) -> tuple[str | None, list[str]]:
    _ensure_sqlite_dir(url)
    engine = create_async_engine(url)
    try:
        with translate_db_errors():
            async with engine.connect() as conn:
                return await conn.run_sync(_compare)
    finally:
        await engine.dispose()


async def schema_status(url: str) -> SchemaStatus:
    """Compare the database at `url` with this code's migrations and tables (read-only)."""
    current, drift = await _read_schema(url)
    code = head_revision()
    known = known_revisions()
    if current is not None and current not in known:
        return SchemaStatus(current, code, unknown_revision=True)
    pending = revisions_between(current, code) if current != code else []
    # Before the newest migration ran, the tables legitimately differ from the code's.
    return SchemaStatus(current, code, pending=pending, drift=[] if pending else drift)


async def pending_migrations(url: str) -> list[str]:
    """Revision ids this code ships that the database at `url` has not applied, oldest first.

    For preflight's "pending migrations" check. Raises `Unavailable` when the database does not
    answer, and `RuntimeError` when its revision is one this code does not know.
    """
    status = await schema_status(url)
    if status.unknown_revision:
        raise RuntimeError(status.problem())
    return status.pending


async def revision_of(db: Database) -> str | None:
    """The revision stamped in a running deployment's database (for /readyz); None when the
    database was never migrated (no alembic_version table)."""
    try:
        async with db.read() as conn:
            return (
                await conn.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one_or_none()
    except (Unavailable, DBAPIError):  # SQLite calls a missing table "operational"
        return None


def running_schema_problem(revision: str | None) -> tuple[str, bool]:
    """What /readyz says about the schema, and whether the node can serve at all.

    Behind the code (pending migrations): not ready — queries would fail on missing tables.
    Ahead of it (newer code migrated it, or a rollback kept the database): serving, degraded.
    """
    head = head_revision()
    if revision == head:
        return "ok", True
    if revision is None or revision in known_revisions():
        pending = revisions_between(revision, head)
        return f"migrations pending ({', '.join(pending)}): run `parley migrate up`", False
    return (
        f"the database is at {revision}, newer than this code ({head}): finish the deploy or "
        "restore the pre-deploy backup",
        True,
    )


async def database_revision(url: str) -> str | None:
    """The revision stamped in the database (None: never migrated)."""
    _ensure_sqlite_dir(url)
    engine = create_async_engine(url)
    try:
        with translate_db_errors():
            async with engine.connect() as conn:
                has_table = await conn.run_sync(
                    lambda sync: sync.dialect.has_table(sync, "alembic_version")
                )
                if not has_table:
                    return None
                value = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one_or_none()
                return str(value) if value is not None else None
    finally:
        await engine.dispose()


async def read_revision(db: Database) -> str | None:
    """The schema revision the database is at (None: never migrated); raises when it is down."""
    with translate_db_errors():
        async with db.read() as conn:
            if not await conn.run_sync(_has_version_table):
                return None
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
    return None if row is None else str(row[0])


def _has_version_table(sync: Any) -> bool:
    return bool(sync.dialect.has_table(sync, "alembic_version"))
