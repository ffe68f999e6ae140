"""MessageStore: appends batches of messages with their `seq`s, and pages through a timeline.

`append_batch` is the one function that assigns sequence numbers. It stores a whole batch of
sends in one transaction (the group commit of `core.writer`): sends already stored (retries of a
`client_msg_id`) come back as they are, new ones get the next `seq`s of their conversation, in
the order they arrived, and the conversation's `last_seq` moves in the same transaction.
Each stored message also gets the next deployment-wide stream position (`pos`), taken under the
`stream_head` row lock, so positions are gapless and follow commit order on every node.
On PostgreSQL the batch is one statement that takes the head's lock before any conversation's
(one round trip, and its own transaction when the batch has no mention or thread rows); on
SQLite, a few statements inside one `BEGIN IMMEDIATE` transaction (one fsync). Every new
message also gets its row in the notification outbox in that same transaction
(`features/notify` reads it). On PostgreSQL `created_at` is the database's clock, not the
node's: nodes whose clocks disagree still stamp one timeline consistently (order never depends
on it either way: it is `seq` and `pos`).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import bindparam, case, func, insert, select, text, tuple_, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.errors import Unavailable
from parley.core.models import Appended, Mention, Message, NewMessage
from parley.storage.database import Database
from parley.storage.rows import message_from_row, now, utc
from parley.storage.schema import (
    conversations,
    message_mentions,
    messages,
    notification_outbox,
    stream_head,
)
from parley.storage.threads import ThreadFollows, greatest

Key = tuple[int, int, str]

# Unique violations (a concurrent writer on another node stored the same client_msg_id first) and
# deadlocks (two nodes bumping the same conversations in another order) abort the whole batch;
# nothing is stored, so running it again is safe and, with the winner now visible, correct.
_RETRIES = 5

# The columns a stored message is read with: named, not `*`, so PostgreSQL's search vector
# (a stored generated column, migration 0006) never travels back with a batch.
_COLUMNS = ", ".join(column.name for column in messages.c)
_PG_APPEND = text(
    """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(CAST(:batch AS jsonb)) AS x(
        idx int, conversation_id bigint, sender_id bigint, client_msg_id text, body text,
        attachments jsonb, metadata jsonb, reply_to_id bigint, thread_root_id bigint,
        mentions jsonb, mentions_here boolean)
),
firsts AS (
    SELECT DISTINCT ON (conversation_id, sender_id, client_msg_id) * FROM input
    ORDER BY conversation_id, sender_id, client_msg_id, idx
),
existing AS (
    SELECT m.id, m.conversation_id, m.sender_id, m.client_msg_id, m.seq, m.pos, m.created_at
      FROM messages m JOIN firsts f
      ON m.conversation_id = f.conversation_id AND m.sender_id = f.sender_id
     AND m.client_msg_id = f.client_msg_id
),
fresh AS (
    SELECT f.* FROM firsts f WHERE NOT EXISTS (
        SELECT 1 FROM existing e WHERE e.conversation_id = f.conversation_id
           AND e.sender_id = f.sender_id AND e.client_msg_id = f.client_msg_id)
),
counts AS (SELECT conversation_id, count(*) AS n FROM fresh GROUP BY conversation_id),
head AS (
    UPDATE stream_head SET pos = pos + (SELECT count(*) FROM fresh) WHERE id = 1
    RETURNING pos - (SELECT count(*) FROM fresh) AS base
),
bumped AS (
    -- Joined to `head`: no conversation row is locked before the head's row is.
    UPDATE conversations c SET last_seq = c.last_seq + counts.n
    FROM counts CROSS JOIN head WHERE c.id = counts.conversation_id
    RETURNING c.id, c.last_seq, counts.n, head.base
),
numbered AS (
    SELECT f.*, b.last_seq - b.n
           + row_number() OVER (PARTITION BY f.conversation_id ORDER BY f.idx) AS seq,
           b.base + row_number() OVER (ORDER BY f.idx) AS pos
    FROM fresh f JOIN bumped b ON b.id = f.conversation_id
),
inserted AS (
    INSERT INTO messages (conversation_id, seq, pos, sender_id, client_msg_id, body,
                          attachments, metadata, created_at, reply_to_id, thread_root_id,
                          mentions, mentions_here)
    SELECT conversation_id, seq, pos, sender_id, client_msg_id, body, attachments, metadata,
           now(), reply_to_id, thread_root_id, mentions, mentions_here FROM numbered
    RETURNING id, conversation_id, sender_id, client_msg_id, seq, pos, created_at
),
outboxed AS (
    INSERT INTO notification_outbox (message_id, conversation_id, sender_id, seq, created_at)
    SELECT id, conversation_id, sender_id, seq, created_at FROM inserted
)
SELECT inserted.*, true AS created FROM inserted
UNION ALL
SELECT existing.*, false AS created FROM existing
"""
)


class MessageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append_batch(self, batch: list[NewMessage]) -> list[Appended]:
        """Store `batch` in one transaction; one `Appended` per send, in the same order."""
        for attempt in range(_RETRIES):
            try:
                if self.db.is_postgres:
                    stored = await self._append_postgres(batch)
                elif not any(send.has_extras for send in batch):
                    # The common batch (no mentions, no thread): one hop to SQLite's thread.
                    stored = await self.db.run_in_writer(partial(_append_sqlite, batch, now()))
                else:
                    stored = await self._append_generic(batch)
                break
            except (IntegrityError, DBAPIError) as exc:
                if attempt == _RETRIES - 1 or not _is_retryable(exc):
                    raise
            except Unavailable as exc:
                # A pooled connection the server had dropped (a restart; the writer's pool does
                # not pre-ping). Its statement committed wholly or not at all, and running the
                # batch again answers either way (client_msg_id); the pool now reconnects.
                if attempt == _RETRIES - 1 or not _lost_connection(exc):
                    raise
        return _answer_each(batch, stored)

    async def _append_postgres(self, batch: list[NewMessage]) -> dict[Key, Appended]:
        payload = json.dumps(
            [
                {
                    "idx": idx,
                    "conversation_id": send.conversation_id,
                    "sender_id": send.sender_id,
                    "client_msg_id": send.client_msg_id,
                    "body": send.body,
                    "attachments": [asdict(ref) for ref in send.attachments],
                    "metadata": send.metadata,
                    **_rich_columns(send),
                }
                for idx, send in enumerate(batch)
            ]
        )
        if not any(send.has_extras for send in batch):
            # The common batch: one statement, its own transaction, one round trip.
            async with self.db.append() as conn:
                rows = (await conn.execute(_PG_APPEND, {"batch": payload})).all()
                return await _stored_postgres(conn, batch, rows)
        async with self.db.write() as conn:
            rows = (await conn.execute(_PG_APPEND, {"batch": payload})).all()
            stored = await _stored_postgres(conn, batch, rows)
            await self._store_extras(conn, batch, stored)
        return stored

    async def _append_generic(self, batch: list[NewMessage]) -> dict[Key, Appended]:
        firsts: dict[Key, NewMessage] = {}
        for send in batch:
            firsts.setdefault(send.idempotency_key, send)
        created_at = now()
        async with self.db.write() as conn:
            stored: dict[Key, Appended] = {}
            found = await conn.execute(
                select(messages).where(
                    tuple_(
                        messages.c.conversation_id, messages.c.sender_id, messages.c.client_msg_id
                    ).in_(list(firsts))
                )
            )
            for row in found:
                message = message_from_row(row)
                stored[(message.conversation_id, message.sender_id, message.client_msg_id)] = (
                    Appended(message, created=False)
                )
            fresh = [send for key, send in firsts.items() if key not in stored]
            if not fresh:
                return stored
            head = (
                await conn.execute(
                    update(stream_head)
                    .where(stream_head.c.id == 1)
                    .values(pos=stream_head.c.pos + len(fresh))
                    .returning(stream_head.c.pos)
                )
            ).scalar_one()
            next_pos = head - len(fresh) + 1
            counts = Counter(send.conversation_id for send in fresh)
            # One statement bumps every conversation of the batch (not one per conversation).
            bumped = await conn.execute(
                update(conversations)
                .where(conversations.c.id.in_(list(counts)))
                .values(
                    last_seq=conversations.c.last_seq
                    + case(dict(counts), value=conversations.c.id, else_=0)
                )
                .returning(conversations.c.id, conversations.c.last_seq)
            )
            next_seq = {cid: last - counts[cid] + 1 for cid, last in bumped}
            rows: list[dict[str, Any]] = []
            for pos, send in enumerate(fresh, start=next_pos):
                seq = next_seq[send.conversation_id]
                next_seq[send.conversation_id] = seq + 1
                rows.append(
                    {
                        "conversation_id": send.conversation_id,
                        "seq": seq,
                        "pos": pos,
                        "sender_id": send.sender_id,
                        "client_msg_id": send.client_msg_id,
                        "body": send.body,
                        "attachments": [asdict(ref) for ref in send.attachments],
                        "metadata": send.metadata,
                        "created_at": created_at,
                        **_rich_columns(send),
                    }
                )
            inserted = await conn.execute(insert(messages).returning(*messages.c), rows)
            created = [message_from_row(row) for row in inserted]
            # The notification outbox, in the same transaction: one statement for the batch.
            await conn.execute(
                insert(notification_outbox),
                [
                    {
                        "message_id": m.id,
                        "conversation_id": m.conversation_id,
                        "sender_id": m.sender_id,
                        "seq": m.seq,
                        "created_at": m.created_at,
                    }
                    for m in created
                ],
            )
            for message in created:
                stored[(message.conversation_id, message.sender_id, message.client_msg_id)] = (
                    Appended(message, created=True)
                )
            await self._store_extras(conn, fresh, stored)
        return stored

    async def _store_extras(
        self, conn: AsyncConnection, batch: list[NewMessage], stored: dict[Key, Appended]
    ) -> None:
        """Mention rows, thread counters and thread followers of the new messages that have any.

        Run only for batches that need them, so a plain send costs no extra statement.
        """
        firsts: dict[Key, NewMessage] = {}
        for send in batch:
            firsts.setdefault(send.idempotency_key, send)
        extras = [
            (send, stored[key].message)
            for key, send in firsts.items()
            if send.has_extras and stored[key].created
        ]
        if not extras:
            return
        mention_rows: dict[tuple[int, int], dict[str, Any]] = {}
        replies: dict[int, list[int]] = {}
        follows = ThreadFollows()
        for send, message in extras:
            explicit = set(send.mentions)
            mentioned = [uid for uid in (*send.mentions, *send.here_ids) if uid != send.sender_id]
            for user_id in mentioned:
                mention_rows.setdefault(
                    (message.id, user_id),
                    {
                        "message_id": message.id,
                        "user_id": user_id,
                        "conversation_id": message.conversation_id,
                        "seq": message.seq,
                        "thread_root_id": message.thread_root_id,
                        "via_here": user_id not in explicit,
                    },
                )
            root = message.thread_root_id
            if root is None:
                continue
            replies.setdefault(root, []).append(message.seq)
            # Writing in a thread reads it; its root's author and whoever is named follow it.
            follows.add(root, send.sender_id, message.conversation_id, message.seq)
            for user_id in (send.thread_root_sender_id, *mentioned):
                if user_id is not None and user_id != send.sender_id:
                    follows.add(root, user_id, message.conversation_id, 0)
        if mention_rows:
            await conn.execute(insert(message_mentions), list(mention_rows.values()))
        if replies:
            await conn.execute(
                update(messages)
                .where(messages.c.id == bindparam("root_id"))
                .values(
                    reply_count=messages.c.reply_count + bindparam("replies"),
                    last_reply_seq=greatest(
                        self.db,
                        func.coalesce(messages.c.last_reply_seq, 0),
                        bindparam("last_seq"),
                    ),
                ),
                [
                    {"root_id": root, "replies": len(seqs), "last_seq": max(seqs)}
                    for root, seqs in replies.items()
                ],
            )
        await follows.store(conn, self.db)

    async def list_messages(
        self,
        conversation_id: int,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int,
    ) -> list[Message]:
        """Messages by `seq`, ascending. With only `before`, the newest `limit` before it."""
        query = select(messages).where(messages.c.conversation_id == conversation_id)
        if after is not None:
            query = query.where(messages.c.seq > after)
        if before is not None:
            query = query.where(messages.c.seq < before)
        newest_first = before is not None and after is None
        query = query.order_by(messages.c.seq.desc() if newest_first else messages.c.seq)
        async with self.db.read() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        found = [message_from_row(row) for row in rows]
        return found[::-1] if newest_first else found

    async def get_message(self, message_id: int) -> Message | None:
        found = await self.find_messages([message_id])
        return found[0] if found else None

    async def find_messages(self, message_ids: list[int]) -> list[Message]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(messages).where(messages.c.id.in_(message_ids)))
            return [message_from_row(row) for row in rows]

    async def find_by_client_msg_id(
        self, conversation_id: int, sender_id: int, client_msg_id: str
    ) -> Message | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(messages).where(
                        messages.c.conversation_id == conversation_id,
                        messages.c.sender_id == sender_id,
                        messages.c.client_msg_id == client_msg_id,
                    )
                )
            ).first()
        return message_from_row(row) if row else None

    async def list_mentions(self, message_id: int) -> list[Mention]:
        """Who `message_id` mentions: named members, and (`via_here`) those @here reached."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(message_mentions.c.user_id, message_mentions.c.via_here)
                .where(message_mentions.c.message_id == message_id)
                .order_by(message_mentions.c.user_id)
            )
            return [Mention(user_id=row.user_id, via_here=bool(row.via_here)) for row in rows]

    async def list_message_ids_by_sender(
        self, sender_id: int, *, after_id: int = 0, limit: int = 500, deleted: bool = False
    ) -> list[int]:
        """Ids of a user's messages (not deleted ones, unless asked) by id, for paging."""
        query = select(messages.c.id).where(
            messages.c.sender_id == sender_id, messages.c.id > after_id
        )
        if not deleted:
            query = query.where(messages.c.deleted_at.is_(None))
        async with self.db.read() as conn:
            rows = await conn.execute(query.order_by(messages.c.id).limit(limit))
            return [int(value) for value in rows.scalars()]


_MessageRow = NamedTuple(  # the fields are the table's columns
    "_MessageRow", [(column.name, Any) for column in messages.c]
)
_SQLITE_INSERT = (
    "INSERT INTO messages (conversation_id, seq, pos, sender_id, client_msg_id, body,"
    " attachments, metadata, created_at, reply_to_id, thread_root_id, mentions, mentions_here)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_OUTBOX = (
    "INSERT INTO notification_outbox (message_id, conversation_id, sender_id, seq, created_at)"
    " SELECT id, conversation_id, sender_id, seq, created_at FROM messages"
    " WHERE pos BETWEEN ? AND ?"
)


def _append_sqlite(
    batch: list[NewMessage], created_at: datetime, db: sqlite3.Connection
) -> dict[Key, Appended]:
    """`append_batch` for SQLite, run in the writer's thread (`Database.run_in_writer`).

    Sends without mention rows or thread counters (a reply that only quotes is one): the
    statements and values are those of the generic path, written out for `sqlite3` so the
    batch is one hand-off.
    """
    firsts: dict[Key, NewMessage] = {}
    for send in batch:
        firsts.setdefault(send.idempotency_key, send)
    stored: dict[Key, Appended] = {}
    keys = list(firsts)
    # Placeholders only: the count of the batch, never its content, is formatted in.
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM messages WHERE (conversation_id, sender_id, client_msg_id)"  # noqa: S608
        f" IN (VALUES {', '.join(['(?, ?, ?)'] * len(keys))})",
        [value for key in keys for value in key],
    ).fetchall()
    for row in rows:
        message = message_from_row(_MessageRow(*row))
        stored[(message.conversation_id, message.sender_id, message.client_msg_id)] = Appended(
            message, created=False
        )
    fresh = [send for key, send in firsts.items() if key not in stored]
    if not fresh:
        return stored
    (head,) = db.execute(
        "UPDATE stream_head SET pos = pos + ? WHERE id = 1 RETURNING pos", (len(fresh),)
    ).fetchone()
    first_pos = head - len(fresh) + 1
    next_seq: dict[int, int] = {}
    for cid, count in Counter(send.conversation_id for send in fresh).items():
        bumped = db.execute(
            "UPDATE conversations SET last_seq = last_seq + ? WHERE id = ? RETURNING last_seq",
            (count, cid),
        ).fetchone()
        if bumped is None:
            raise LookupError(f"conversation {cid} is gone")
        next_seq[cid] = bumped[0] - count + 1
    # As SQLAlchemy writes a DateTime on SQLite (message_from_row reads it back either way).
    stamp = created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    values = []
    numbered = []
    for pos, send in enumerate(fresh, start=first_pos):
        seq = next_seq[send.conversation_id]
        next_seq[send.conversation_id] = seq + 1
        numbered.append((pos, seq, send))
        values.append(
            (
                send.conversation_id,
                seq,
                pos,
                send.sender_id,
                send.client_msg_id,
                send.body,
                json.dumps([asdict(ref) for ref in send.attachments]),
                json.dumps(send.metadata),
                stamp,
                send.reply_to_id,
                send.thread_root_id,
                json.dumps(send.mentions),
                send.mentions_here,
            )
        )
    db.executemany(_SQLITE_INSERT, values)
    last_pos = first_pos + len(fresh) - 1
    ids = dict(
        db.execute(
            "SELECT pos, id FROM messages WHERE pos BETWEEN ? AND ?", (first_pos, last_pos)
        ).fetchall()
    )
    # The notification outbox, in the same transaction, copied from the rows just written.
    db.execute(_SQLITE_OUTBOX, (first_pos, last_pos))
    for pos, seq, send in numbered:
        message = Message(
            id=ids[pos],
            conversation_id=send.conversation_id,
            seq=seq,
            pos=pos,
            sender_id=send.sender_id,
            client_msg_id=send.client_msg_id,
            body=send.body,
            attachments=list(send.attachments),
            metadata=send.metadata,
            created_at=created_at,
            reply_to_id=send.reply_to_id,
            thread_root_id=send.thread_root_id,
            mentions=list(send.mentions),
            mentions_here=send.mentions_here,
        )
        stored[send.idempotency_key] = Appended(message, created=True)
    return stored


async def _stored_postgres(
    conn: AsyncConnection, batch: list[NewMessage], rows: Iterable[Any]
) -> dict[Key, Appended]:
    """The answers to a PostgreSQL batch from what the statement returned: the database's
    id, seq, pos and clock for each new message (the rest is the send, as on SQLite: no row
    decoded back), and the stored rows of sends that were already there (retries: rare)."""
    firsts: dict[Key, NewMessage] = {}
    for send in batch:
        firsts.setdefault(send.idempotency_key, send)
    stored: dict[Key, Appended] = {}
    repeated: list[int] = []
    for row in rows:
        if not row.created:
            repeated.append(row.id)
            continue
        send = firsts[(row.conversation_id, row.sender_id, row.client_msg_id)]
        message = Message(
            id=row.id,
            conversation_id=send.conversation_id,
            seq=row.seq,
            pos=row.pos,
            sender_id=send.sender_id,
            client_msg_id=send.client_msg_id,
            body=send.body,
            attachments=list(send.attachments),
            metadata=send.metadata,
            created_at=utc(row.created_at),
            reply_to_id=send.reply_to_id,
            thread_root_id=send.thread_root_id,
            mentions=list(send.mentions),
            mentions_here=send.mentions_here,
        )
        stored[send.idempotency_key] = Appended(message, created=True)
    if repeated:
        for row in await conn.execute(select(messages).where(messages.c.id.in_(repeated))):
            message = message_from_row(row)
            key = (message.conversation_id, message.sender_id, message.client_msg_id)
            stored[key] = Appended(message, created=False)
    return stored


def _rich_columns(send: NewMessage) -> dict[str, Any]:
    return {
        "reply_to_id": send.reply_to_id,
        "thread_root_id": send.thread_root_id,
        "mentions": send.mentions,
        "mentions_here": send.mentions_here,
    }


def _answer_each(batch: list[NewMessage], stored: dict[Key, Appended]) -> list[Appended]:
    """One answer per send; a repeat of a key within the batch is a retry of the first."""
    answered: set[Key] = set()
    results = []
    for send in batch:
        first = stored[send.idempotency_key]
        repeat = send.idempotency_key in answered
        answered.add(send.idempotency_key)
        results.append(Appended(first.message, created=first.created and not repeat))
    return results


def _lost_connection(exc: Unavailable) -> bool:
    cause = exc.__cause__
    return isinstance(cause, DBAPIError) and cause.connection_invalidated


def _is_retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return "client_msg_id" in str(exc.orig)
    return "deadlock" in str(exc.orig).lower()
