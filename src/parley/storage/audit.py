"""AuditStore: append and read the audit log. There is no update or delete, on purpose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import Select, insert, select

from parley.core.audit import AuditEntry, AuditFilter
from parley.storage.database import Database
from parley.storage.rows import utc
from parley.storage.schema import audit_log


def _entry_from_row(row: Any) -> AuditEntry:
    return AuditEntry(
        id=int(row.id),
        at=utc(row.at),
        actor=row.actor,
        actor_id=row.actor_id,
        source=row.source,
        action=row.action,
        target_kind=row.target_kind,
        target_id=row.target_id,
        before=row.before,
        after=row.after,
        reason=row.reason,
    )


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append_entry(
        self,
        *,
        at: datetime,
        actor: str,
        actor_id: int | None,
        source: str,
        action: str,
        target_kind: str,
        target_id: str,
        before: Any,
        after: Any,
        reason: str,
    ) -> AuditEntry:
        values = {
            "at": at,
            "actor": actor,
            "actor_id": actor_id,
            "source": source,
            "action": action,
            "target_kind": target_kind,
            "target_id": target_id,
            "before": before,
            "after": after,
            "reason": reason,
        }
        async with self.db.write() as conn:
            row = (await conn.execute(insert(audit_log).values(values).returning(audit_log))).one()
        return _entry_from_row(row)

    async def list_entries(self, query: AuditFilter) -> list[AuditEntry]:
        """Newest first, unless following (`after_id`): then oldest first."""
        statement = self._filtered(query).limit(query.limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [_entry_from_row(row) for row in rows]

    async def iter_entries(
        self, query: AuditFilter, *, page: int = 500
    ) -> AsyncIterator[AuditEntry]:
        """Every matching entry, oldest first, a page at a time (exports never hold it all)."""
        after_id = query.after_id or 0
        while True:
            statement = (
                self._filtered(query, ascending=True).where(audit_log.c.id > after_id).limit(page)
            )
            async with self.db.read() as conn:
                rows = (await conn.execute(statement)).all()
            for row in rows:
                yield _entry_from_row(row)
            if len(rows) < page:
                return
            after_id = int(rows[-1].id)

    def _filtered(self, query: AuditFilter, *, ascending: bool = False) -> Select[Any]:
        c = audit_log.c
        statement = select(audit_log)
        if query.actor:
            statement = statement.where(c.actor == query.actor)
        if query.action:
            statement = statement.where(
                c.action.like(_escape_like(query.action) + "%", escape="\\")
            )
        if query.target_kind:
            statement = statement.where(c.target_kind == query.target_kind)
        if query.target_id:
            statement = statement.where(c.target_id == query.target_id)
        if query.since:
            statement = statement.where(c.at >= query.since)
        if query.until:
            statement = statement.where(c.at < query.until)
        if query.before_id:
            statement = statement.where(c.id < query.before_id)
        if query.after_id and not ascending:
            return statement.where(c.id > query.after_id).order_by(c.id.asc())
        return statement.order_by(c.id.asc() if ascending else c.id.desc())
