"""The operator console's REST (`/v1/livechat/...`, staff only) and `/v1/admin/branches`.

Operators read and reply through the ordinary `/v1/conversations/{id}/...` endpoints; these
add what only staff see: status, priority, assignee, branch, internal notes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import Input, Text, UserName
from parley.core.livechat import Branch, CannedReply
from parley.features.livechat.service import conversation_item

router = APIRouter(prefix="/v1/livechat", tags=["livechat"])
admin_router = APIRouter(prefix="/v1/admin/branches", tags=["admin", "livechat"])

Id = Annotated[int, Path(ge=1, le=2**53)]
NOTE_MAX_CHARS = 10_000
CANNED_MAX_CHARS = 4_000


class InboxRef(BaseModel):
    id: int
    name: str


class InboxRefsOut(BaseModel):
    inboxes: list[InboxRef]


class ConversationsOut(BaseModel):
    conversations: list[dict[str, Any]]


class ConversationPatch(Input):
    # Plain strings: a value outside the set is a 400 ERR_INVALID_VALUE from the service.
    status: Annotated[str, Field(max_length=20)] | None = None
    priority: Annotated[str, Field(max_length=20)] | None = None
    assignee_id: Annotated[int, Field(ge=1, le=2**53)] | None = None


class NoteIn(Input):
    body: Text(NOTE_MAX_CHARS, min_length=1)  # type: ignore[valid-type]


class NotesOut(BaseModel):
    notes: list[dict[str, Any]]


class CannedReplyIn(Input):
    shortcut: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
    body: Text(CANNED_MAX_CHARS, min_length=1)  # type: ignore[valid-type]


class CannedReplyOut(BaseModel):
    id: int
    inbox_id: int
    shortcut: str
    body: str
    created_at: datetime

    @classmethod
    def of(cls, reply: CannedReply) -> CannedReplyOut:
        return cls(
            id=reply.id,
            inbox_id=reply.inbox_id,
            shortcut=reply.shortcut,
            body=reply.body,
            created_at=reply.created_at,
        )


class CannedRepliesOut(BaseModel):
    canned_replies: list[CannedReplyOut]


class ActivityOut(BaseModel):
    activity: list[dict[str, Any]]


class StaffOut(BaseModel):
    id: int
    name: str
    display_name: str
    online: bool


class StaffListOut(BaseModel):
    staff: list[StaffOut]


@router.get("/inboxes", response_model=InboxRefsOut)
async def list_inboxes(user: CurrentUser, services: ServicesDep) -> InboxRefsOut:
    """The inboxes whose conversations the caller works on (admins: all)."""
    inboxes = await services.livechat.list_inboxes(user)
    return InboxRefsOut(inboxes=[InboxRef(id=i.id, name=i.name) for i in inboxes])


@router.get("/conversations", response_model=ConversationsOut)
async def list_conversations(
    user: CurrentUser,
    services: ServicesDep,
    inbox_id: Annotated[int | None, Query(ge=1, le=2**53)] = None,
    status: Annotated[
        str | None, Query(max_length=60, description="one status, or several comma-separated")
    ] = None,
    assignee: Annotated[
        str | None, Query(max_length=20, description="me, none or a user id")
    ] = None,
    priority: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ConversationsOut:
    """Visitor conversations the caller is staff of, newest activity first."""
    views = await services.livechat.list_conversations(
        user,
        inbox_id=inbox_id,
        status=status,
        priority=priority,
        assignee=assignee,
        limit=limit,
    )
    return ConversationsOut(conversations=[conversation_item(v) for v in views])


@router.get("/conversations/{conversation_id}")
async def get_conversation(
    conversation_id: Id, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """One conversation with its internal notes and activity (assigned, status, priority)."""
    view = await services.livechat.access_conversation(user, conversation_id)
    return {
        **conversation_item(view),
        "notes": await services.livechat.list_notes(view),
        "activity": await services.livechat.list_activity(view),
    }


@router.get("/conversations/{conversation_id}/activity", response_model=ActivityOut)
async def list_activity(
    conversation_id: Id, user: CurrentUser, services: ServicesDep
) -> ActivityOut:
    """Staff only: who assigned it or changed its status or priority, and when."""
    view = await services.livechat.access_conversation(user, conversation_id)
    return ActivityOut(activity=await services.livechat.list_activity(view))


@router.patch("/conversations/{conversation_id}")
async def update_conversation(
    conversation_id: Id, body: ConversationPatch, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Change status, priority or assignee (`assignee_id: null` unassigns)."""
    view = await services.livechat.access_conversation(user, conversation_id)
    updated = await services.livechat.do_update(
        user,
        view,
        status=body.status,
        priority=body.priority,
        assign="assignee_id" in body.model_fields_set,
        assignee_id=body.assignee_id,
    )
    return conversation_item(updated)


@router.post("/conversations/{conversation_id}/assign-me")
async def assign_me(
    conversation_id: Id, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    view = await services.livechat.access_conversation(user, conversation_id)
    updated = await services.livechat.do_update(user, view, assign=True, assignee_id=user.id)
    return conversation_item(updated)


@router.get("/conversations/{conversation_id}/notes", response_model=NotesOut)
async def list_notes(conversation_id: Id, user: CurrentUser, services: ServicesDep) -> NotesOut:
    view = await services.livechat.access_conversation(user, conversation_id)
    return NotesOut(notes=await services.livechat.list_notes(view))


@router.post("/conversations/{conversation_id}/notes", status_code=201)
async def add_note(
    conversation_id: Id, body: NoteIn, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """An internal note: staff see it, the visitor never does."""
    view = await services.livechat.access_conversation(user, conversation_id)
    return await services.livechat.do_add_note(user, view, body.body)


@router.get("/inboxes/{inbox_id}/canned-replies", response_model=CannedRepliesOut)
async def list_canned_replies(
    inbox_id: Id, user: CurrentUser, services: ServicesDep
) -> CannedRepliesOut:
    """The inbox's saved answers (its staff; 404 to anyone else)."""
    replies = await services.livechat.list_canned_replies(user, inbox_id)
    return CannedRepliesOut(canned_replies=[CannedReplyOut.of(r) for r in replies])


@router.post("/inboxes/{inbox_id}/canned-replies", response_model=CannedReplyOut, status_code=201)
async def add_canned_reply(
    inbox_id: Id, body: CannedReplyIn, user: CurrentUser, services: ServicesDep
) -> CannedReplyOut:
    """Admins only (403 for operators); a shortcut taken in the inbox is 409."""
    reply = await services.livechat.do_add_canned_reply(user, inbox_id, body.shortcut, body.body)
    return CannedReplyOut.of(reply)


@router.delete("/inboxes/{inbox_id}/canned-replies/{reply_id}", status_code=204)
async def delete_canned_reply(
    inbox_id: Id, reply_id: Id, user: CurrentUser, services: ServicesDep
) -> Response:
    """Admins only."""
    await services.livechat.do_delete_canned_reply(user, inbox_id, reply_id)
    return Response(status_code=204)


@router.get("/staff", response_model=StaffListOut)
async def list_staff(
    user: CurrentUser,
    services: ServicesDep,
    inbox_id: Annotated[int, Query(ge=1, le=2**53)],
) -> StaffListOut:
    """Who a conversation of this inbox may be assigned to, and who of them is online."""
    staff = await services.livechat.list_staff(user, inbox_id)
    return StaffListOut(
        staff=[
            StaffOut(
                id=s.user.id, name=s.user.name, display_name=s.user.display_name, online=s.online
            )
            for s in staff
        ]
    )


# -- branches (admins) ---------------------------------------------------------------------------


class BranchIn(Input):
    name: Text(100, min_length=1)  # type: ignore[valid-type]
    operators: list[UserName] = Field(default_factory=list, max_length=500)


class BranchPatch(Input):
    name: Text(100, min_length=1) | None = None  # type: ignore[valid-type]
    operators: list[UserName] | None = Field(default=None, max_length=500)


class BranchOut(BaseModel):
    id: int
    name: str
    operators: list[str]
    created_at: datetime

    @classmethod
    def of(cls, branch: Branch) -> BranchOut:
        return cls(
            id=branch.id,
            name=branch.name,
            operators=branch.operators,
            created_at=branch.created_at,
        )


class BranchesOut(BaseModel):
    branches: list[BranchOut]


@admin_router.post("", response_model=BranchOut, status_code=201)
async def create_branch(body: BranchIn, user: CurrentUser, services: ServicesDep) -> BranchOut:
    services.branches.access_admin(user)
    return BranchOut.of(await services.branches.do_create(user, body.name, body.operators))


@admin_router.get("", response_model=BranchesOut)
async def list_branches(user: CurrentUser, services: ServicesDep) -> BranchesOut:
    services.branches.access_admin(user)
    return BranchesOut(branches=[BranchOut.of(b) for b in await services.branches.list_branches()])


@admin_router.patch("/{branch_id}", response_model=BranchOut)
async def update_branch(
    branch_id: Id, body: BranchPatch, user: CurrentUser, services: ServicesDep
) -> BranchOut:
    branch = await services.branches.access_branch(user, branch_id)
    updated = await services.branches.do_update(
        user, branch, name=body.name, operators=body.operators
    )
    return BranchOut.of(updated)
