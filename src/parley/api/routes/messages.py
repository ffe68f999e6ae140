"""The timeline of one conversation: send, page, receipts; edit, delete and react.

Every route is for members of the conversation (anyone else gets the 404 of a conversation that
does not exist). Editing is for the message's author; deleting for its author or staff (admins
and moderators who are members).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.routes.conversations import ConversationId
from parley.api.schemas import (
    EditIn,
    MessageOut,
    MessagesOut,
    ReactionOut,
    ReactionsOut,
    ReceiptIn,
    ReceiptOut,
    SendIn,
    Text,
    VersionOut,
    VersionsOut,
)
from parley.core import limits
from parley.core.text import check_emoji

router = APIRouter(prefix="/v1/conversations", tags=["messages"])

Cursor = Annotated[int | None, Query(ge=0, le=limits.SEQ_MAX)]
MessageId = Annotated[int, Path(ge=1, le=limits.SEQ_MAX, description="A message id.")]
Emoji = Annotated[
    str,
    Path(
        min_length=1,
        max_length=limits.EMOJI_MAX_CHARS,
        description="An emoji, or a short name like `:party:` (URL-encoded).",
    ),
]
Reason = Annotated[
    Text(limits.DELETE_REASON_MAX_CHARS) | None,  # type: ignore[valid-type]
    Query(description="Why (staff deletes); kept for moderation, never shown to members."),
]


@router.post(
    "/{conversation_id}/messages",
    response_model=MessageOut,
    status_code=201,
    responses={200: {"description": "A retry: the message stored for this client_msg_id"}},
)
async def send_message(
    conversation_id: ConversationId,
    body: SendIn,
    user: CurrentUser,
    services: ServicesDep,
    response: Response,
) -> MessageOut:
    """Store a message; answers only once it is durable. Retries return the original."""
    appended = await services.timeline.do_send(
        user,
        conversation_id,
        client_msg_id=body.client_msg_id,
        body=body.body,
        attachment_ids=body.attachments,
        metadata=body.metadata,
        reply_to_id=body.reply_to_id,
        thread_root_id=body.thread_root_id,
    )
    if not appended.created:
        response.status_code = 200
    return MessageOut.of(appended.message)


@router.get("/{conversation_id}/messages", response_model=MessagesOut)
async def list_messages(
    conversation_id: ConversationId,
    user: CurrentUser,
    services: ServicesDep,
    after: Cursor = None,
    before: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=limits.PAGE_LIMIT_MAX)] = limits.PAGE_LIMIT_DEFAULT,
) -> MessagesOut:
    """Messages ordered by `seq`: after a cursor (oldest first), or the newest before one."""
    conversation, found = await services.timeline.list_messages(
        user, conversation_id, after=after, before=before, limit=limit
    )
    return MessagesOut(
        messages=[MessageOut.of(message) for message in found],
        last_seq=max([conversation.last_seq, *(m.seq for m in found)]),
    )


@router.post("/{conversation_id}/receipts", response_model=ReceiptOut)
async def post_receipt(
    conversation_id: ConversationId, body: ReceiptIn, user: CurrentUser, services: ServicesDep
) -> ReceiptOut:
    """Move delivered/read cursors forward. Lower values are ignored (and counted)."""
    outcome = await services.timeline.do_receipt(
        user, conversation_id, delivered_seq=body.delivered_seq, read_seq=body.read_seq
    )
    return ReceiptOut(
        delivered_seq=outcome.delivered_seq,
        read_seq=outcome.read_seq,
        ignored=outcome.rollbacks_ignored > 0,
    )


@router.get("/{conversation_id}/messages/{message_id}", response_model=MessageOut)
async def get_message(
    conversation_id: ConversationId, message_id: MessageId, user: CurrentUser, services: ServicesDep
) -> MessageOut:
    """One message (a tombstone too), e.g. the one a reply quotes."""
    return MessageOut.of(await services.timeline.access_message(user, conversation_id, message_id))


@router.patch("/{conversation_id}/messages/{message_id}", response_model=MessageOut)
async def edit_message(
    conversation_id: ConversationId,
    message_id: MessageId,
    body: EditIn,
    user: CurrentUser,
    services: ServicesDep,
) -> MessageOut:
    """Edit your message's text within the edit window; the old text stays in its history.

    A retry with the same `client_op_id` (or the same text) changes nothing and answers the
    message as it is.
    """
    message = await services.timeline.access_message(user, conversation_id, message_id)
    services.timeline.check_may_edit(user, message)
    changed = await services.timeline.do_edit_message(
        user, conversation_id, message_id, body=body.body, client_op_id=body.client_op_id
    )
    return MessageOut.of(changed.message)


@router.delete("/{conversation_id}/messages/{message_id}", response_model=MessageOut)
async def delete_message(
    conversation_id: ConversationId,
    message_id: MessageId,
    user: CurrentUser,
    services: ServicesDep,
    reason: Reason = None,
) -> MessageOut:
    """Unsend: the message becomes a tombstone for every member (its seq stays). Deleting it
    again answers the tombstone."""
    message = await services.timeline.access_message(user, conversation_id, message_id)
    by_staff = services.timeline.check_may_delete(user, message)
    changed = await services.timeline.do_delete_message(
        user, conversation_id, message_id, reason=reason, by_staff=by_staff
    )
    return MessageOut.of(changed.message)


@router.get("/{conversation_id}/messages/{message_id}/history", response_model=VersionsOut)
async def message_history(
    conversation_id: ConversationId, message_id: MessageId, user: CurrentUser, services: ServicesDep
) -> VersionsOut:
    """Every version of the message's text, oldest first (none for a tombstone)."""
    versions = await services.timeline.list_versions(user, conversation_id, message_id)
    return VersionsOut(versions=[VersionOut.of(version) for version in versions])


@router.get("/{conversation_id}/messages/{message_id}/reactions", response_model=ReactionsOut)
async def list_reactions(
    conversation_id: ConversationId, message_id: MessageId, user: CurrentUser, services: ServicesDep
) -> ReactionsOut:
    """Every reaction with everyone who reacted (the message itself lists the first 100)."""
    found = await services.timeline.list_reactions(user, conversation_id, message_id)
    return ReactionsOut(reactions=[ReactionOut.of(reaction) for reaction in found])


@router.put("/{conversation_id}/messages/{message_id}/reactions/{emoji}", response_model=MessageOut)
async def add_reaction(
    conversation_id: ConversationId,
    message_id: MessageId,
    emoji: Emoji,
    user: CurrentUser,
    services: ServicesDep,
) -> MessageOut:
    """React; reacting again with the same emoji changes nothing (safe to retry)."""
    changed = await services.timeline.do_react(
        user, conversation_id, message_id, check_emoji(emoji), add=True
    )
    return MessageOut.of(changed.message)


@router.delete(
    "/{conversation_id}/messages/{message_id}/reactions/{emoji}", response_model=MessageOut
)
async def remove_reaction(
    conversation_id: ConversationId,
    message_id: MessageId,
    emoji: Emoji,
    user: CurrentUser,
    services: ServicesDep,
) -> MessageOut:
    """Take your reaction back; taking back one you do not have changes nothing."""
    changed = await services.timeline.do_react(
        user, conversation_id, message_id, check_emoji(emoji), add=False
    )
    return MessageOut.of(changed.message)
