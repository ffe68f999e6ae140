"""Admin REST for inboxes: `/v1/admin/inboxes` (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

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
            created_at=inbox.created_at,
        )


class InboxesOut(BaseModel):
    inboxes: list[InboxOut]


def _set_fields(body: InboxFields) -> dict[str, object]:
    """Only the fields the request named; `working_hours: null` means always online."""
    fields = {name: getattr(body, name) for name in body.model_fields_set}
    return {name: value for name, value in fields.items() if value is not None or name in _NULLABLE}


_NULLABLE = {"privacy_url", "privacy_text", "working_hours"}


@router.post("", response_model=InboxOut, status_code=201)
async def create_inbox(body: InboxIn, user: CurrentUser, services: ServicesDep) -> InboxOut:
    """A new inbox; its `widget_token` is made by the server and goes in the embed snippet."""
    services.inboxes.access_admin(user)
    fields = _set_fields(body)
    name = fields.pop("name")
    return InboxOut.of(await services.inboxes.do_create_inbox(str(name), **fields))


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
    return InboxOut.of(await services.inboxes.do_update_inbox(inbox, **_set_fields(body)))
