"""Apply Alembic migrations from code (`parley migrate`, and `parley serve` on start)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from parley.storage.database import _ensure_sqlite_dir

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Bring the database at `url` to the newest schema. Blocking; safe to run repeatedly."""
    _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), "head")


async def upgrade_to_head_async(url: str) -> None:
    """The same, from inside a running event loop (Alembic's env.py runs its own loop)."""
    await asyncio.to_thread(upgrade_to_head, url)
