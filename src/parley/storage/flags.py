"""FlagStore: feature flags, their rules, and the revision that tells nodes something changed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.flags import Flag, Stickiness
from parley.storage.database import Database
from parley.storage.rows import _json, now, utc
from parley.storage.schema import flag_revision, flags

# Columns an update may set, by Flag field name.
_COLUMNS = {
    "description": "description",
    "enabled": "enabled",
    "internal_only": "internal_only",
    "percentage": "percentage",
    "stickiness": "stickiness",
    "group": "bucket_group",
    "allow_users": "allow_users",
    "allow_keys": "allow_keys",
    "roles": "roles",
}


def flag_from_row(row: Any) -> Flag:
    return Flag(
        key=row.key,
        description=row.description,
        enabled=bool(row.enabled),
        internal_only=bool(row.internal_only),
        percentage=row.percentage,
        stickiness=Stickiness(row.stickiness),
        group=row.bucket_group,
        allow_users=frozenset(int(u) for u in _json(row.allow_users)),
        allow_keys=frozenset(str(k) for k in _json(row.allow_keys)),
        roles=frozenset(str(r) for r in _json(row.roles)),
        updated_at=utc(row.updated_at),
        updated_by=row.updated_by,
    )


def _column_values(changes: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if isinstance(value, frozenset | set):
            value = sorted(value)
        elif isinstance(value, Stickiness):
            value = value.value
        values[_COLUMNS[name]] = value
    return values


class FlagStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_flags(self) -> list[Flag]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(flags).order_by(flags.c.key))
            return [flag_from_row(row) for row in rows]

    async def get_flag(self, key: str) -> Flag | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(flags).where(flags.c.key == key))).first()
        return flag_from_row(row) if row else None

    async def update_flag(
        self, key: str, changes: dict[str, Any], *, updated_by: str, announced: bool
    ) -> Flag | None:
        """Change some of a flag's rules and bump the revision; None if there is no such flag.

        `announced`: the caller tells clients itself (after commit), so no node has to.
        """
        async with self.db.write() as conn:
            result = await conn.execute(
                update(flags)
                .where(flags.c.key == key)
                .values(**_column_values(changes), updated_at=now(), updated_by=updated_by)
            )
            if not result.rowcount:
                return None
            await bump_revision(conn, announced=announced)
            row = (await conn.execute(select(flags).where(flags.c.key == key))).one()
            return flag_from_row(row)

    async def touch_revision(self, *, announced: bool) -> int:
        """Bump the revision for a change stored elsewhere (the transport switch)."""
        async with self.db.write() as conn:
            return await bump_revision(conn, announced=announced)

    async def get_revision(self) -> tuple[int, int]:
        """(revision, published revision)."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(flag_revision).where(flag_revision.c.id == 1))).one()
            return int(row.revision), int(row.published)

    async def claim_revision(self, revision: int) -> bool:
        """Mark `revision` announced; True for exactly one caller (one node tells clients)."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(flag_revision)
                .where(flag_revision.c.id == 1, flag_revision.c.published < revision)
                .values(published=revision)
            )
            return bool(result.rowcount)


async def bump_revision(conn: AsyncConnection, *, announced: bool) -> int:
    """Inside a write transaction: one more flag revision (and announced, if so)."""
    values: dict[str, Any] = {"revision": flag_revision.c.revision + 1}
    if announced:
        values["published"] = flag_revision.c.revision + 1
    await conn.execute(update(flag_revision).where(flag_revision.c.id == 1).values(**values))
    row = (await conn.execute(select(flag_revision.c.revision))).one()
    return int(row.revision)
