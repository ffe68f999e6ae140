"""The timeline of one conversation: send, page, and receipts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.routes.conversations import ConversationId
from parley.api.schemas import MessageOut, MessagesOut, ReceiptIn, ReceiptOut, SendIn
from parley.core import limits

router = APIRouter(prefix="/v1/conversations", tags=["messages"])

Cursor = Annotated[int | None, Query(ge=0, le=limits.SEQ_MAX)]


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
