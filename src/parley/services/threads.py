"""Threads and unread counts as a member sees them: a thread's replies, its read cursor, the
unread and mention counts of every conversation and followed thread, and "mark all read".

Read cursors only move forward and never pass the conversation's last seq, as receipts do
(core.receipts): a stale thread receipt is ignored and counted like a stale read receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from parley.core.errors import BadInput, ErrorCode, NotFound
from parley.core.events import ThreadReceiptEvent
from parley.core.models import ConversationUnread, Message, User
from parley.services.timeline import Publish, Timeline
from parley.storage.threads import ThreadStore


@dataclass(frozen=True, slots=True)
class Thread:
    """A thread's root, a page of its replies, and where the reader stands in it."""

    root: Message
    replies: list[Message]
    following: bool
    read_seq: int
    unread: int


@dataclass(frozen=True, slots=True)
class ThreadItem:
    root: Message
    following: bool
    read_seq: int
    unread: int


@dataclass(frozen=True, slots=True)
class ThreadRead:
    read_seq: int
    ignored: bool


class Threads:
    def __init__(
        self,
        *,
        timeline: Timeline,
        store: ThreadStore,
        publish: Publish | None = None,
        on_read_rollback: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self.timeline = timeline
        self.store = store
        self._publish = publish
        self.on_read_rollback = on_read_rollback

    async def publish(self, event: ThreadReceiptEvent) -> None:
        await (self._publish or self.timeline.publish)(event)

    async def access_root(self, actor: User, conversation_id: int, root_id: int) -> Message:
        root = await self.timeline.access_message(actor, conversation_id, root_id)
        if root.thread_root_id is not None:
            raise NotFound("no such thread: that message is a reply in another thread")
        return root

    async def get_thread(
        self, actor: User, conversation_id: int, root_id: int, *, after: int, limit: int
    ) -> Thread:
        root = await self.access_root(actor, conversation_id, root_id)
        replies = await self.store.list_replies(root_id, after=after, limit=limit)
        read_seq = await self.store.get_thread_read(root_id, actor.id)
        unread = 0
        if read_seq is not None:
            unread = await self.store.count_unread_replies(root_id, actor.id, read_seq)
        return Thread(
            root=root,
            replies=replies,
            following=read_seq is not None,
            read_seq=read_seq or 0,
            unread=unread,
        )

    async def list_threads(
        self, actor: User, conversation_id: int, *, before_seq: int | None, limit: int
    ) -> list[ThreadItem]:
        """The conversation's threads, the one with the newest reply first."""
        await self.timeline.access_conversation(actor, conversation_id)
        found = await self.store.list_threads(
            conversation_id, actor.id, before_seq=before_seq, limit=limit
        )
        return [
            ThreadItem(root=root, following=read is not None, read_seq=read or 0, unread=unread)
            for root, read, unread in found
        ]

    async def do_thread_read(
        self, actor: User, conversation_id: int, root_id: int, read_seq: int
    ) -> ThreadRead:
        """Move the actor's cursor in a thread forward (and follow it); stale values are
        ignored and counted, values past the conversation's last seq refused."""
        await self.access_root(actor, conversation_id, root_id)
        stale: list[bool] = []

        def advance(current: int, last_seq: int) -> int:
            if read_seq > last_seq:
                raise BadInput(
                    f"read_seq={read_seq} is past the conversation's last_seq={last_seq}",
                    ErrorCode.RECEIPT_BEYOND_LAST_SEQ,
                )
            stale.append(read_seq < current)
            return max(current, read_seq)

        before, after = await self.store.apply_thread_read(
            root_id, actor.id, conversation_id, advance
        )
        if stale and stale[-1]:
            self.on_read_rollback(1)
        if after != before:
            await self.publish(
                ThreadReceiptEvent(
                    conversation_id=conversation_id,
                    root_id=root_id,
                    user_id=actor.id,
                    read_seq=after,
                )
            )
        return ThreadRead(read_seq=after, ignored=bool(stale and stale[-1]))

    async def list_unread(
        self, actor: User, conversation_id: int | None = None
    ) -> list[ConversationUnread]:
        if conversation_id is not None:
            await self.timeline.access_conversation(actor, conversation_id)
        return await self.store.list_unread(actor.id, conversation_id)

    async def do_read_all(
        self, actor: User, conversation_id: int | None = None
    ) -> list[ConversationUnread]:
        """Mark everything read: each conversation up to its last seq, and every thread the
        actor follows in it. Answers the unread counts afterwards (zero, unless new messages
        came meanwhile)."""
        if conversation_id is not None:
            await self.timeline.access_conversation(actor, conversation_id)
        summaries = await self.store.list_unread(actor.id, conversation_id)
        ids = [summary.conversation_id for summary in summaries]
        for summary in summaries:
            if summary.read_seq < summary.last_seq:
                await self.timeline.do_receipt(
                    actor,
                    summary.conversation_id,
                    delivered_seq=summary.last_seq,
                    read_seq=summary.last_seq,
                )
        for cid, root_id, read_seq in await self.store.read_all_threads(actor.id, ids):
            await self.publish(
                ThreadReceiptEvent(
                    conversation_id=cid, root_id=root_id, user_id=actor.id, read_seq=read_seq
                )
            )
        return await self.store.list_unread(actor.id, conversation_id)
