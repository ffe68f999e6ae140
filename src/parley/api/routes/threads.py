"""Threads, unread counts and "mark all read" (docs/timeline.md). For members only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.routes.conversations import ConversationId
from parley.api.schemas import (
    MessageOut,
    ReadAllIn,
    ThreadItemOut,
    ThreadOut,
    ThreadReadIn,
    ThreadReadOut,
    ThreadsOut,
    UnreadOut,
)
from parley.core import limits

router = APIRouter(prefix="/v1", tags=["threads"])

RootId = Annotated[int, Path(ge=1, le=limits.SEQ_MAX, description="The thread's first message.")]


@router.get("/conversations/{conversation_id}/threads", response_model=ThreadsOut)
async def list_threads(
    conversation_id: ConversationId,
    user: CurrentUser,
    services: ServicesDep,
    before_seq: Annotated[int | None, Query(ge=0, le=limits.SEQ_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=limits.THREADS_LIMIT_MAX)] = 50,
) -> ThreadsOut:
    """The conversation's threads, newest reply first; `before_seq` pages by `last_reply_seq`."""
    found = await services.threads.list_threads(
        user, conversation_id, before_seq=before_seq, limit=limit
    )
    return ThreadsOut(
        threads=[
            ThreadItemOut(
                root=MessageOut.of(item.root),
                following=item.following,
                read_seq=item.read_seq,
                unread=item.unread,
            )
            for item in found
        ]
    )


@router.get("/conversations/{conversation_id}/threads/{root_id}", response_model=ThreadOut)
async def get_thread(
    conversation_id: ConversationId,
    root_id: RootId,
    user: CurrentUser,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, le=limits.SEQ_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=limits.PAGE_LIMIT_MAX)] = limits.PAGE_LIMIT_DEFAULT,
) -> ThreadOut:
    """A thread's root and its replies by seq, after `after`; with your unread count."""
    thread = await services.threads.get_thread(
        user, conversation_id, root_id, after=after, limit=limit
    )
    return ThreadOut(
        root=MessageOut.of(thread.root),
        replies=[MessageOut.of(reply) for reply in thread.replies],
        following=thread.following,
        read_seq=thread.read_seq,
        unread=thread.unread,
    )


@router.post(
    "/conversations/{conversation_id}/threads/{root_id}/read", response_model=ThreadReadOut
)
async def read_thread(
    conversation_id: ConversationId,
    root_id: RootId,
    body: ThreadReadIn,
    user: CurrentUser,
    services: ServicesDep,
) -> ThreadReadOut:
    """Mark a thread read up to `read_seq` (and follow it). Lower values are ignored."""
    outcome = await services.threads.do_thread_read(user, conversation_id, root_id, body.read_seq)
    return ThreadReadOut(read_seq=outcome.read_seq, ignored=outcome.ignored)


@router.get("/unread", response_model=UnreadOut)
async def unread(
    user: CurrentUser,
    services: ServicesDep,
    conversation_id: Annotated[int | None, Query(ge=1, le=limits.SEQ_MAX)] = None,
) -> UnreadOut:
    """Unread messages and mentions per conversation, with the followed threads that have any."""
    return UnreadOut.of(await services.threads.list_unread(user, conversation_id))


@router.post("/unread/read-all", response_model=UnreadOut)
async def read_all(body: ReadAllIn, user: CurrentUser, services: ServicesDep) -> UnreadOut:
    """Mark every conversation (or one) read, with every thread you follow in it."""
    return UnreadOut.of(await services.threads.do_read_all(user, body.conversation_id))
