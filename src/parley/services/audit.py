"""The audit log as staff and features use it: record an action; search and export (admins)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from parley import metrics
from parley.core.audit import Actor, AuditEntry, AuditFilter, Target
from parley.core.errors import Forbidden
from parley.core.models import Role, User
from parley.storage.audit import AuditStore

EXPORT_FORMATS = ("jsonl", "csv")
CSV_COLUMNS = (
    "id",
    "at",
    "actor",
    "actor_id",
    "source",
    "action",
    "target_kind",
    "target_id",
    "before",
    "after",
    "reason",
)


def _plain(value: Any) -> Any:
    """A JSON-able copy of `value` (dataclasses, enums, sets and datetimes included)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if hasattr(value, "model_dump"):  # a pydantic model
        return _plain(value.model_dump(mode="json"))
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return str(value)


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat().replace("+00:00", "Z"),
        "actor": entry.actor,
        "actor_id": entry.actor_id,
        "source": entry.source,
        "action": entry.action,
        "target_kind": entry.target_kind,
        "target_id": entry.target_id,
        "before": entry.before,
        "after": entry.after,
        "reason": entry.reason,
    }


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def check_auditor(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden("only admins read the audit log")


class AuditLog:
    def __init__(
        self, store: AuditStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock

    async def record(
        self,
        actor: User | Actor | str,
        action: str,
        target: Target,
        *,
        before: Any = None,
        after: Any = None,
        reason: str = "",
    ) -> AuditEntry:
        """Append one staff action. Never pass a credential in `before`/`after`."""
        who = Actor.of(actor)
        entry = await self.store.append_entry(
            at=self.clock(),
            actor=who.label,
            actor_id=who.id,
            source=who.source,
            action=action,
            target_kind=target.kind,
            target_id=target.id,
            before=_plain(before),
            after=_plain(after),
            reason=reason,
        )
        metrics.AUDIT_ENTRIES.labels(action).inc()
        return entry

    async def search(self, reader: User | None, query: AuditFilter) -> list[AuditEntry]:
        """Entries matching `query` (admins only; `reader=None` is the CLI on the database)."""
        if reader is not None:
            check_auditor(reader)
        return await self.store.list_entries(query)

    async def export(self, reader: User | None, query: AuditFilter, fmt: str) -> AsyncIterator[str]:
        """The matching entries as JSON lines or CSV, oldest first, streamed page by page."""
        if reader is not None:
            check_auditor(reader)
        return self._export(query, fmt)

    async def _export(self, query: AuditFilter, fmt: str) -> AsyncIterator[str]:
        if fmt == "csv":
            yield ",".join(CSV_COLUMNS) + "\r\n"
        async for entry in self.store.iter_entries(query):
            row = entry_json(entry)
            if fmt == "jsonl":
                yield json.dumps(row, ensure_ascii=False) + "\n"
                continue
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(
                _cell(
                    json.dumps(row[c], ensure_ascii=False) if c in ("before", "after") else row[c]
                )
                for c in CSV_COLUMNS
            )
            yield buffer.getvalue()
