"""Apply Alembic migrations from code (`parley migrate`, and `parley serve` on start)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from parley.storage.database import Database, _ensure_sqlite_dir
from parley.storage.errors import translate_db_errors

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Bring the database at `url` to the newest schema. Blocking; safe to run repeatedly.

    Alembic's env.py runs its own event loop, so under a running loop this uses a thread.
    """
    _ensure_sqlite_dir(url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(url), "head")
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, alembic_config(url), "head").result()


def head_revision() -> str:
    """The newest schema revision this code knows (Alembic's head)."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    return head or ""


async def read_revision(db: Database) -> str | None:
    """The schema revision the database is at (None: never migrated)."""
    with translate_db_errors():
        async with db.read() as conn:
            if not await conn.run_sync(_has_version_table):
                return None
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
    return None if row is None else str(row[0])


def _has_version_table(sync: Any) -> bool:
    return bool(sync.dialect.has_table(sync, "alembic_version"))
