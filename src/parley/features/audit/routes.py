"""`/v1/admin/audit`: search and export the audit log. Admins only; read-only by design."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.core.audit import AuditFilter, Target
from parley.core.errors import BadInput
from parley.services.audit import check_auditor, entry_json

router = APIRouter(prefix="/v1/admin/audit", tags=["audit"])

Text = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]
EntryId = Annotated[int | None, Query(ge=1, le=2**62)]


class AuditEntryOut(BaseModel):
    id: int
    at: str
    actor: str
    actor_id: int | None
    source: str = Field(description="api | cli | system")
    action: str
    target_kind: str
    target_id: str
    before: object | None
    after: object | None
    reason: str


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next_before_id: int | None = Field(
        description="Pass as `before_id` for the next (older) page; null when there is none."
    )


def _filter(
    *,
    actor: str | None,
    action: str | None,
    target_kind: str | None,
    target_id: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> AuditFilter:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise BadInput(f"{name} needs a time zone (e.g. 2026-12-07T10:00:00Z)")
    return AuditFilter(
        actor=actor,
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        since=since,
        until=until,
        before_id=before_id,
        after_id=after_id,
        limit=limit,
    )


@router.get("", response_model=AuditPageOut)
async def search_audit(
    user: CurrentUser,
    services: ServicesDep,
    actor: Text = None,
    action: Text = None,
    target_kind: Text = None,
    target_id: Text = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: EntryId = None,
    after_id: EntryId = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPageOut:
    """Entries newest first (oldest first with `after_id`, to follow the log). `action` is a
    prefix: `flag.` finds every flag change. Admins only."""
    query = _filter(
        actor=actor,
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        since=since,
        until=until,
        before_id=before_id,
        after_id=after_id,
        limit=limit,
    )
    entries = await services.audit.search(user, query)
    more = len(entries) == limit and after_id is None
    return AuditPageOut(
        entries=[AuditEntryOut(**entry_json(e)) for e in entries],
        next_before_id=entries[-1].id if more else None,
    )


@router.get("/export")
async def export_audit(
    user: CurrentUser,
    services: ServicesDep,
    format: Literal["jsonl", "csv"] = "jsonl",
    actor: Text = None,
    action: Text = None,
    target_kind: Text = None,
    target_id: Text = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> StreamingResponse:
    """Every matching entry, oldest first, as JSON lines or CSV (streamed). Admins only; the
    export itself is recorded in the log."""
    check_auditor(user)
    query = _filter(
        actor=actor,
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        since=since,
        until=until,
    )
    await services.audit.record(
        user,
        "audit.export",
        Target.of("audit_log", "*"),
        after={"format": format, **{k: v for k, v in _plain_filter(query).items() if v}},
    )
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        await services.audit.export(user, query, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="parley-audit.{format}"'},
    )


def _plain_filter(query: AuditFilter) -> dict[str, object]:
    return {
        "actor": query.actor,
        "action": query.action,
        "target_kind": query.target_kind,
        "target_id": query.target_id,
        "since": query.since.isoformat() if query.since else None,
        "until": query.until.isoformat() if query.until else None,
    }
