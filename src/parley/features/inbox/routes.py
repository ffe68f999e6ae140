"""Admin REST for inboxes: `/v1/admin/inboxes` (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import Input, Text, UserName
from parley.core.inboxes import Inbox, WorkingHours

router = APIRouter(prefix="/v1/admin/inboxes", tags=["admin", "inbox"])

InboxId = Annotated[int, Path(ge=1, le=2**53)]
# A host name (`example.com`) or a wildcard for its subdomains (`*.example.com`).
Domain = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^(\*\.)?[A-Za-z0-9.-]+$")]


class InboxFields(Input):
    allowed_domains: list[Domain] | None = Field(default=None, max_length=100)
    operators: list[UserName] | None = Field(default=None, max_length=100)
    privacy_url: Text(2000) | None = None  # type: ignore[valid-type]
    privacy_text: Text(2000) | None = None  # type: ignore[valid-type]
    working_hours: WorkingHours | None = None
    offline_message: Text(2000) | None = None  # type: ignore[valid-type]
    enabled: bool | None = None
    # Live-chat routing (docs/livechat.md): rules are checked in the service, so a wrong key or
    # an unknown branch is a 400 that says which.
    routing_rules: list[dict[str, Any]] | None = Field(default=None, max_length=100)
    branch_id: int | None = Field(default=None, ge=1, le=2**53)
    allow_attachments: bool | None = None
    auto_assign: bool | None = None
    # Days messages are kept (null: the deployment's default for live chat; docs/privacy.md).
    retention_days: int | None = Field(default=None, ge=1, le=36_500)
    # What the widget shows on open: a welcome and how soon answers usually come (null: none).
    greeting: Text(500) | None = None  # type: ignore[valid-type]
    reply_time: Text(200) | None = None  # type: ignore[valid-type]


class InboxIn(InboxFields):
    name: Text(100, min_length=1)  # type: ignore[valid-type]


class InboxPatch(InboxFields):
    name: Text(100, min_length=1) | None = None  # type: ignore[valid-type]


class InboxOut(BaseModel):
    id: int
    name: str
    widget_token: str
    allowed_domains: list[str]
    operators: list[str]
    privacy_url: str | None
    privacy_text: str | None
    working_hours: WorkingHours | None
    offline_message: str
    enabled: bool
    identity_verification: bool
    routing_rules: list[dict[str, Any]]
    branch_id: int | None
    allow_attachments: bool
    auto_assign: bool
    retention_days: int | None
    greeting: str | None
    reply_time: str | None
    created_at: datetime

    @classmethod
    def of(cls, inbox: Inbox) -> InboxOut:
        return cls(
            id=inbox.id,
            name=inbox.name,
            widget_token=inbox.widget_token,
            allowed_domains=inbox.allowed_domains,
            operators=inbox.operators,
            privacy_url=inbox.privacy_url,
            privacy_text=inbox.privacy_text,
            working_hours=inbox.working_hours,
            offline_message=inbox.offline_message,
            enabled=inbox.enabled,
            identity_verification=inbox.identity_secret is not None,
            routing_rules=inbox.routing_rules,
            branch_id=inbox.branch_id,
            allow_attachments=inbox.allow_attachments,
            auto_assign=inbox.auto_assign,
            retention_days=inbox.retention_days,
            greeting=inbox.greeting,
            reply_time=inbox.reply_time,
            created_at=inbox.created_at,
        )


class InboxesOut(BaseModel):
    inboxes: list[InboxOut]


def _set_fields(body: InboxFields) -> dict[str, object]:
    """Only the fields the request named; `working_hours: null` means always online."""
    fields = {name: getattr(body, name) for name in body.model_fields_set}
    return {name: value for name, value in fields.items() if value is not None or name in _NULLABLE}


_NULLABLE = {
    "privacy_url",
    "privacy_text",
    "working_hours",
    "branch_id",
    "retention_days",
    "greeting",
    "reply_time",
}


@router.post("", response_model=InboxOut, status_code=201)
async def create_inbox(body: InboxIn, user: CurrentUser, services: ServicesDep) -> InboxOut:
    """A new inbox; its `widget_token` is made by the server and goes in the embed snippet."""
    services.inboxes.access_admin(user)
    fields = _set_fields(body)
    name = fields.pop("name")
    return InboxOut.of(await services.inboxes.do_create_inbox(user, str(name), **fields))


@router.get("", response_model=InboxesOut)
async def list_inboxes(user: CurrentUser, services: ServicesDep) -> InboxesOut:
    services.inboxes.access_admin(user)
    return InboxesOut(inboxes=[InboxOut.of(i) for i in await services.inboxes.list_inboxes()])


@router.get("/{inbox_id}", response_model=InboxOut)
async def get_inbox(inbox_id: InboxId, user: CurrentUser, services: ServicesDep) -> InboxOut:
    return InboxOut.of(await services.inboxes.access_inbox(user, inbox_id))


@router.patch("/{inbox_id}", response_model=InboxOut)
async def update_inbox(
    inbox_id: InboxId, body: InboxPatch, user: CurrentUser, services: ServicesDep
) -> InboxOut:
    """Change the named fields; `enabled: false` is the inbox's kill switch."""
    inbox = await services.inboxes.access_inbox(user, inbox_id)
    return InboxOut.of(await services.inboxes.do_update_inbox(user, inbox, **_set_fields(body)))


class IdentitySecretOut(BaseModel):
    identity_secret: str = Field(
        description="Shown once: the site's backend signs visitor identity tokens with it."
    )


@router.post("/{inbox_id}/identity-secret", response_model=IdentitySecretOut)
async def rotate_identity_secret(
    inbox_id: InboxId, user: CurrentUser, services: ServicesDep
) -> IdentitySecretOut:
    """Turn identity verification on, or rotate its secret (old tokens stop working at once)."""
    inbox = await services.inboxes.access_inbox(user, inbox_id)
    _, secret = await services.inboxes.do_set_identity_secret(user, inbox, enabled=True)
    return IdentitySecretOut(identity_secret=secret)


@router.delete("/{inbox_id}/identity-secret", status_code=204)
async def remove_identity_secret(
    inbox_id: InboxId, user: CurrentUser, services: ServicesDep
) -> None:
    """Turn identity verification off: bootstraps no longer need (or check) identity tokens."""
    inbox = await services.inboxes.access_inbox(user, inbox_id)
    await services.inboxes.do_set_identity_secret(user, inbox, enabled=False)
