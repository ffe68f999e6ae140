"""Privacy REST: legal holds (admins, dispute officers), erasure and retention (admins), and the
public privacy page (`/privacy`, linked by the widget when no other privacy URL is set)."""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path as FilePath
from string import Template
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import Input, Text
from parley.core.limits import SEQ_MAX
from parley.core.privacy import ErasurePolicy, LegalHold
from parley.features.privacy.service import check_admin

router = APIRouter(tags=["privacy"])

Id = Annotated[int, Path(ge=1, le=SEQ_MAX)]
PAGE = FilePath(__file__).resolve().parents[2] / "static" / "privacy" / "privacy.html"
KIND_NAMES = {
    "direct": "one-to-one conversations",
    "group": "group conversations",
    "room": "rooms",
    "livechat": "website chat conversations",
}


class HoldIn(Input):
    conversation_id: int = Field(ge=1, le=SEQ_MAX)
    reason: Text(500, min_length=1)  # type: ignore[valid-type]


class ReasonIn(Input):
    reason: Text(500, min_length=1)  # type: ignore[valid-type]


class EraseIn(Input):
    policy: Literal["tombstone", "anonymize"]
    reason: Text(500, min_length=1) = Field(  # type: ignore[valid-type]
        description="Why (the request's reference), for the audit log."
    )


class RetentionIn(Input):
    dry_run: bool = False


class HoldOut(BaseModel):
    id: int
    conversation_id: int
    reason: str
    placed_by: str
    placed_at: datetime
    released_at: datetime | None
    released_by: str | None

    @classmethod
    def of(cls, hold: LegalHold) -> HoldOut:
        return cls(
            id=hold.id,
            conversation_id=hold.conversation_id,
            reason=hold.reason,
            placed_by=hold.placed_by,
            placed_at=hold.placed_at,
            released_at=hold.released_at,
            released_by=hold.released_by,
        )


class ErasureOut(BaseModel):
    user_id: int
    policy: str
    messages_tombstoned: int
    attachments_deleted: int
    widget_sessions_ended: int


class RetentionOut(BaseModel):
    dry_run: bool
    purged: int = Field(description="Messages made tombstones (or that would be, on a dry run).")
    conversations: int
    held_conversations: list[int] = Field(description="Skipped: under legal hold.")


@router.get("/privacy", response_class=HTMLResponse, name="privacy_page", include_in_schema=False)
async def privacy_page(services: ServicesDep) -> HTMLResponse:
    """The deployment's privacy page (public): who, what, why, how long, your rights."""
    settings = services.settings
    days = dict(settings.retention_days)
    lines = [
        f"<li>{KIND_NAMES[kind].capitalize()}: messages are deleted after {days[kind]} days.</li>"
        for kind in KIND_NAMES
        if kind in days
    ]
    if len(lines) < len(KIND_NAMES):
        lines.append("<li>Other conversations: kept until you or we delete them.</li>")
    page = Template(PAGE.read_text(encoding="utf-8")).substitute(
        controller=html.escape(settings.privacy_controller or "the operator of this service"),
        contact=html.escape(settings.privacy_contact or "the operator of this service"),
        retention="\n".join(lines),
    )
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'self'",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/v1/admin/legal-holds", tags=["admin"])
async def list_holds(
    user: CurrentUser, services: ServicesDep, include_released: bool = False
) -> list[HoldOut]:
    """Legal holds (active ones unless `include_released`). Admins and dispute officers."""
    services.privacy.check_hold_keeper(user)
    holds = await services.privacy.list_holds(active_only=not include_released)
    return [HoldOut.of(hold) for hold in holds]


@router.post("/v1/admin/legal-holds", status_code=201, tags=["admin"])
async def place_hold(body: HoldIn, user: CurrentUser, services: ServicesDep) -> HoldOut:
    """Keep a conversation from retention and erasure. Admins and dispute officers."""
    services.privacy.check_hold_keeper(user)
    return HoldOut.of(await services.privacy.do_place_hold(user, body.conversation_id, body.reason))


@router.post("/v1/admin/legal-holds/{hold_id}/release", tags=["admin"])
async def release_hold(
    hold_id: Id, body: ReasonIn, user: CurrentUser, services: ServicesDep
) -> HoldOut:
    """Release a hold. Admins and dispute officers."""
    services.privacy.check_hold_keeper(user)
    return HoldOut.of(await services.privacy.do_release_hold(user, hold_id, body.reason))


@router.post("/v1/admin/users/{user_id}/erase", tags=["admin"])
async def erase_user(
    user_id: Id, body: EraseIn, user: CurrentUser, services: ServicesDep
) -> ErasureOut:
    """Erase a person (admins): messages per policy, files, identity; 409 ERR_LEGAL_HOLD while a
    held conversation holds their messages."""
    check_admin(user, "erase people")
    done = await services.privacy.do_erase(
        user, user_id, policy=ErasurePolicy(body.policy), reason=body.reason
    )
    return ErasureOut(
        user_id=done.user_id,
        policy=done.policy.value,
        messages_tombstoned=done.messages,
        attachments_deleted=done.attachments,
        widget_sessions_ended=done.sessions,
    )


@router.post("/v1/admin/retention/run", tags=["admin"])
async def run_retention(
    body: RetentionIn, user: CurrentUser, services: ServicesDep
) -> RetentionOut:
    """Run the retention job now (admins); `dry_run` counts without deleting."""
    check_admin(user, "run retention")
    run = await services.privacy.do_retention(user, dry_run=body.dry_run)
    return RetentionOut(
        dry_run=run.dry_run,
        purged=run.purged,
        conversations=run.conversations,
        held_conversations=run.held,
    )
