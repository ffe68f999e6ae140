"""ThreadStore: threads, the cursors of those who follow them, and unread and mention counts.

A thread is the replies whose `thread_root_id` names one message. A user follows it once they
wrote the root, replied, were mentioned in it, or marked it read: each of those leaves a row in
`thread_reads` with their cursor, which only moves forward. Unread counts leave out the user's
own messages and tombstones; a conversation's own count leaves out thread replies (they count
in their thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.models import ConversationUnread, Message, ThreadUnread
from parley.storage.database import Database
from parley.storage.rows import message_from_row
from parley.storage.schema import (
    conversations,
    members,
    message_mentions,
    messages,
    thread_reads,
)


def greatest(db: Database, a: Any, b: Any) -> ColumnElement[Any]:
    """The larger of two values (`greatest` on PostgreSQL, two-argument `max` on SQLite)."""
    return func.greatest(a, b) if db.is_postgres else func.max(a, b)


class ThreadFollows:
    """Thread cursors to create or move forward in one statement (at most one row per key)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], dict[str, int]] = {}

    def add(self, root_id: int, user_id: int, conversation_id: int, read_seq: int) -> None:
        row = self.rows.setdefault(
            (root_id, user_id),
            {
                "root_id": root_id,
                "user_id": user_id,
                "conversation_id": conversation_id,
                "read_seq": read_seq,
            },
        )
        row["read_seq"] = max(row["read_seq"], read_seq)

    async def store(self, conn: AsyncConnection, db: Database) -> None:
        if not self.rows:
            return
        insert = pg_insert if db.is_postgres else sqlite_insert
        statement = insert(thread_reads).values(list(self.rows.values()))
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[thread_reads.c.root_id, thread_reads.c.user_id],
                set_={
                    "read_seq": greatest(db, thread_reads.c.read_seq, statement.excluded.read_seq)
                },
            )
        )


def main_unread(user_id: int) -> Any:
    """Correlated count of a member's unread main-timeline messages (beside `members`)."""
    return (
        select(func.count())
        .where(
            messages.c.conversation_id == members.c.conversation_id,
            messages.c.seq > members.c.read_seq,
            messages.c.sender_id != user_id,
            messages.c.thread_root_id.is_(None),
            messages.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )


async def count_mentions(
    conn: AsyncConnection, user_id: int, conversation_ids: list[int] | None = None
) -> dict[tuple[int, int | None], int]:
    """Unread mentions of a user by (conversation, thread root or None for the main timeline).

    Walks the user's own mention rows, so it costs what they were mentioned, not conversation
    sizes.
    """
    cursor = case(
        (message_mentions.c.thread_root_id.is_(None), members.c.read_seq),
        else_=func.coalesce(thread_reads.c.read_seq, 0),
    )
    query = (
        select(
            message_mentions.c.conversation_id,
            message_mentions.c.thread_root_id,
            func.count().label("n"),
        )
        .join(
            members,
            and_(
                members.c.conversation_id == message_mentions.c.conversation_id,
                members.c.user_id == message_mentions.c.user_id,
            ),
        )
        .join(messages, messages.c.id == message_mentions.c.message_id)
        .outerjoin(
            thread_reads,
            and_(
                thread_reads.c.root_id == message_mentions.c.thread_root_id,
                thread_reads.c.user_id == message_mentions.c.user_id,
            ),
        )
        .where(
            message_mentions.c.user_id == user_id,
            messages.c.deleted_at.is_(None),
            message_mentions.c.seq > cursor,
        )
        .group_by(message_mentions.c.conversation_id, message_mentions.c.thread_root_id)
    )
    if conversation_ids is not None:
        query = query.where(message_mentions.c.conversation_id.in_(conversation_ids))
    rows = await conn.execute(query)
    return {(row.conversation_id, row.thread_root_id): int(row.n) for row in rows}


def _thread_unread(user_id: int) -> Any:
    """Correlated count of unread replies in the thread of `thread_reads`' row."""
    replies = messages.alias("replies")
    return (
        select(func.count())
        .where(
            replies.c.thread_root_id == thread_reads.c.root_id,
            replies.c.seq > thread_reads.c.read_seq,
            replies.c.sender_id != user_id,
            replies.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )


class ThreadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_replies(self, root_id: int, *, after: int = 0, limit: int) -> list[Message]:
        """A thread's replies by seq (tombstones included: they hold their place)."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(messages)
                .where(messages.c.thread_root_id == root_id, messages.c.seq > after)
                .order_by(messages.c.seq)
                .limit(limit)
            )
            return [message_from_row(row) for row in rows]

    async def count_unread_replies(self, root_id: int, user_id: int, read_seq: int) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            messages.c.thread_root_id == root_id,
                            messages.c.seq > read_seq,
                            messages.c.sender_id != user_id,
                            messages.c.deleted_at.is_(None),
                        )
                    )
                ).scalar_one()
            )

    async def get_thread_read(self, root_id: int, user_id: int) -> int | None:
        """The user's cursor in a thread, or None when they do not follow it."""
        async with self.db.read() as conn:
            return (
                await conn.execute(
                    select(thread_reads.c.read_seq).where(
                        thread_reads.c.root_id == root_id, thread_reads.c.user_id == user_id
                    )
                )
            ).scalar_one_or_none()

    async def list_threads(
        self, conversation_id: int, user_id: int, *, before_seq: int | None, limit: int
    ) -> list[tuple[Message, int | None, int]]:
        """Roots with replies, newest reply first: (root, the user's cursor or None, unread)."""
        replies = messages.alias("replies")
        unread = (
            select(func.count())
            .where(
                replies.c.thread_root_id == messages.c.id,
                replies.c.seq > thread_reads.c.read_seq,
                replies.c.sender_id != user_id,
                replies.c.deleted_at.is_(None),
            )
            .scalar_subquery()
        )
        query = (
            select(
                messages,
                thread_reads.c.read_seq.label("thread_read_seq"),
                case((thread_reads.c.read_seq.is_(None), 0), else_=unread).label("unread"),
            )
            .outerjoin(
                thread_reads,
                and_(thread_reads.c.root_id == messages.c.id, thread_reads.c.user_id == user_id),
            )
            .where(
                messages.c.conversation_id == conversation_id,
                messages.c.last_reply_seq.is_not(None),
            )
            .order_by(messages.c.last_reply_seq.desc())
            .limit(limit)
        )
        if before_seq is not None:
            query = query.where(messages.c.last_reply_seq < before_seq)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [(message_from_row(row), row.thread_read_seq, int(row.unread)) for row in rows]

    async def apply_thread_read(
        self,
        root_id: int,
        user_id: int,
        conversation_id: int,
        advance: Callable[[int, int], int],
    ) -> tuple[int, int]:
        """Set the user's thread cursor to `advance(current, last_seq)`; (before, after)."""
        async with self.db.write() as conn:
            current = (
                await conn.execute(
                    select(thread_reads.c.read_seq).where(
                        thread_reads.c.root_id == root_id, thread_reads.c.user_id == user_id
                    )
                )
            ).scalar_one_or_none()
            last_seq = (
                await conn.execute(
                    select(conversations.c.last_seq).where(conversations.c.id == conversation_id)
                )
            ).scalar_one()
            before = int(current or 0)
            after = advance(before, int(last_seq))
            follows = ThreadFollows()
            follows.add(root_id, user_id, conversation_id, after)
            await follows.store(conn, self.db)
        return before, after

    async def read_all_threads(
        self, user_id: int, conversation_ids: list[int]
    ) -> list[tuple[int, int, int]]:
        """Move every thread cursor of the user in these conversations to its conversation's
        last seq; returns (conversation_id, root_id, read_seq) of those that moved."""
        if not conversation_ids:
            return []
        last_seq = (
            select(conversations.c.last_seq)
            .where(conversations.c.id == thread_reads.c.conversation_id)
            .scalar_subquery()
        )
        async with self.db.write() as conn:
            rows = await conn.execute(
                update(thread_reads)
                .where(
                    thread_reads.c.user_id == user_id,
                    thread_reads.c.conversation_id.in_(conversation_ids),
                    thread_reads.c.read_seq < last_seq,
                )
                .values(read_seq=last_seq)
                .returning(
                    thread_reads.c.conversation_id,
                    thread_reads.c.root_id,
                    thread_reads.c.read_seq,
                )
            )
            return [(row.conversation_id, row.root_id, int(row.read_seq)) for row in rows]

    async def list_unread(
        self, user_id: int, conversation_id: int | None = None
    ) -> list[ConversationUnread]:
        """Every conversation of the user (or one) with its unread counts, and the threads they
        follow that have unread replies."""
        query = (
            select(
                members.c.conversation_id,
                members.c.read_seq,
                conversations.c.last_seq,
                main_unread(user_id).label("unread"),
            )
            .join(conversations, conversations.c.id == members.c.conversation_id)
            .where(members.c.user_id == user_id)
            .order_by(members.c.conversation_id)
        )
        threads_query = (
            select(
                thread_reads.c.conversation_id,
                thread_reads.c.root_id,
                thread_reads.c.read_seq,
                messages.c.last_reply_seq,
                _thread_unread(user_id).label("unread"),
            )
            .join(messages, messages.c.id == thread_reads.c.root_id)
            .join(
                members,
                and_(
                    members.c.conversation_id == thread_reads.c.conversation_id,
                    members.c.user_id == thread_reads.c.user_id,
                ),
            )
            .where(
                thread_reads.c.user_id == user_id,
                messages.c.last_reply_seq > thread_reads.c.read_seq,
            )
            .order_by(thread_reads.c.conversation_id, messages.c.last_reply_seq.desc())
        )
        ids = None
        if conversation_id is not None:
            ids = [conversation_id]
            query = query.where(members.c.conversation_id == conversation_id)
            threads_query = threads_query.where(thread_reads.c.conversation_id == conversation_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            thread_rows = (await conn.execute(threads_query)).all()
            mentions = await count_mentions(conn, user_id, ids)
        threads: dict[int, list[ThreadUnread]] = {}
        for row in thread_rows:
            thread_mentions = mentions.get((row.conversation_id, row.root_id), 0)
            if row.unread or thread_mentions:
                threads.setdefault(row.conversation_id, []).append(
                    ThreadUnread(
                        conversation_id=row.conversation_id,
                        root_id=row.root_id,
                        last_reply_seq=int(row.last_reply_seq),
                        read_seq=int(row.read_seq),
                        unread=int(row.unread),
                        mentions=thread_mentions,
                    )
                )
        return [
            ConversationUnread(
                conversation_id=row.conversation_id,
                last_seq=int(row.last_seq),
                read_seq=int(row.read_seq),
                unread=int(row.unread),
                mentions=sum(n for (cid, _), n in mentions.items() if cid == row.conversation_id),
                threads=threads.get(row.conversation_id, []),
            )
            for row in rows
        ]
