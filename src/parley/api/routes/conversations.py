"""Conversations and their members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import (
    ConversationIn,
    ConversationListItem,
    ConversationOut,
    ConversationsOut,
    MemberOut,
    MembersIn,
    MembersOut,
)
from parley.assembly import Services
from parley.core.limits import SEQ_MAX
from parley.core.models import ConversationKind, User

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

ConversationId = Annotated[int, Path(ge=1, le=SEQ_MAX, description="A conversation id.")]
UserId = Annotated[int, Path(ge=1, le=SEQ_MAX, description="A user id.")]


@router.post(
    "",
    response_model=ConversationOut,
    status_code=201,
    responses={200: {"description": "The direct conversation with that user exists"}},
)
async def create_conversation(
    body: ConversationIn, user: CurrentUser, services: ServicesDep, response: Response
) -> ConversationOut:
    conversation, created = await services.timeline.do_create_conversation(
        user, kind=ConversationKind(body.kind), title=body.title, member_names=body.members
    )
    if not created:
        response.status_code = 200
    return ConversationOut.of(conversation)


@router.get("", response_model=ConversationsOut)
async def list_conversations(user: CurrentUser, services: ServicesDep) -> ConversationsOut:
    summaries = await services.timeline.list_conversations(user)
    return ConversationsOut(
        conversations=[ConversationListItem.of_summary(summary) for summary in summaries]
    )


@router.get("/{conversation_id}", response_model=ConversationOut)
async def get_conversation(
    conversation_id: ConversationId, user: CurrentUser, services: ServicesDep
) -> ConversationOut:
    access = await services.timeline.access_conversation(user, conversation_id)
    return ConversationOut.of(access.conversation)


@router.get("/{conversation_id}/members", response_model=MembersOut)
async def list_members(
    conversation_id: ConversationId, user: CurrentUser, services: ServicesDep
) -> MembersOut:
    return await _members_out(services, user, conversation_id)


@router.post("/{conversation_id}/members", response_model=MembersOut)
async def add_members(
    conversation_id: ConversationId, body: MembersIn, user: CurrentUser, services: ServicesDep
) -> MembersOut:
    await services.timeline.do_add_members(user, conversation_id, body.members)
    return await _members_out(services, user, conversation_id)


async def _members_out(services: Services, user: User, conversation_id: int) -> MembersOut:
    members = await services.timeline.list_members(user, conversation_id)
    return MembersOut(members=[MemberOut.of(member, who) for member, who in members])


@router.delete("/{conversation_id}/members/{user_id}", status_code=204)
async def remove_member(
    conversation_id: ConversationId, user_id: UserId, user: CurrentUser, services: ServicesDep
) -> None:
    await services.timeline.do_remove_member(user, conversation_id, user_id)
