"""MessageStore: appends batches of messages with their `seq`s, and pages through a timeline.

`append_batch` is the one function that assigns sequence numbers. It stores a whole batch of
sends in one transaction (the group commit of `core.writer`): sends already stored (retries of a
`client_msg_id`) come back as they are, new ones get the next `seq`s of their conversation, in
the order they arrived, and the conversation's `last_seq` moves in the same transaction.
Each stored message also gets the next deployment-wide stream position (`pos`), taken under the
`stream_head` row lock, so positions are gapless and follow commit order on every node.
On PostgreSQL the batch is one statement after the head lock; on SQLite, a few statements inside
one `BEGIN IMMEDIATE` transaction (one fsync). On PostgreSQL `created_at` is the database's
clock, not the node's: nodes whose clocks disagree still stamp one timeline consistently (order
never depends on it either way: it is `seq` and `pos`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from typing import Any

from sqlalchemy import case, insert, select, text, tuple_, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from parley.core.models import Appended, Message, NewMessage
from parley.storage.database import Database
from parley.storage.rows import message_from_row, now
from parley.storage.schema import conversations, messages, stream_head

Key = tuple[int, int, str]

# Unique violations (a concurrent writer on another node stored the same client_msg_id first) and
# deadlocks (two nodes bumping the same conversations in another order) abort the whole batch;
# nothing is stored, so running it again is safe and, with the winner now visible, correct.
_RETRIES = 5

_PG_APPEND = text(
    """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(CAST(:batch AS jsonb)) AS x(
        idx int, conversation_id bigint, sender_id bigint, client_msg_id text, body text,
        attachments jsonb, metadata jsonb)
),
firsts AS (
    SELECT DISTINCT ON (conversation_id, sender_id, client_msg_id) * FROM input
    ORDER BY conversation_id, sender_id, client_msg_id, idx
),
existing AS (
    SELECT m.* FROM messages m JOIN firsts f
      ON m.conversation_id = f.conversation_id AND m.sender_id = f.sender_id
     AND m.client_msg_id = f.client_msg_id
),
fresh AS (
    SELECT f.* FROM firsts f WHERE NOT EXISTS (
        SELECT 1 FROM existing e WHERE e.conversation_id = f.conversation_id
           AND e.sender_id = f.sender_id AND e.client_msg_id = f.client_msg_id)
),
counts AS (SELECT conversation_id, count(*) AS n FROM fresh GROUP BY conversation_id),
bumped AS (
    UPDATE conversations c SET last_seq = c.last_seq + counts.n
    FROM counts WHERE c.id = counts.conversation_id
    RETURNING c.id, c.last_seq, counts.n
),
head AS (
    UPDATE stream_head SET pos = pos + (SELECT count(*) FROM fresh) WHERE id = 1
),
numbered AS (
    SELECT f.*, b.last_seq - b.n
           + row_number() OVER (PARTITION BY f.conversation_id ORDER BY f.idx) AS seq,
           CAST(:head AS bigint) + row_number() OVER (ORDER BY f.idx) AS pos
    FROM fresh f JOIN bumped b ON b.id = f.conversation_id
),
inserted AS (
    INSERT INTO messages (conversation_id, seq, pos, sender_id, client_msg_id, body,
                          attachments, metadata, created_at)
    SELECT conversation_id, seq, pos, sender_id, client_msg_id, body, attachments, metadata,
           now() FROM numbered
    RETURNING *
)
SELECT inserted.*, true AS created FROM inserted
UNION ALL
SELECT existing.*, false AS created FROM existing
"""
)


_PG_LOCK_HEAD = text("SELECT pos FROM stream_head WHERE id = 1 FOR UPDATE")


class MessageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append_batch(self, batch: list[NewMessage]) -> list[Appended]:
        """Store `batch` in one transaction; one `Appended` per send, in the same order."""
        for attempt in range(_RETRIES):
            try:
                if self.db.is_postgres:
                    stored = await self._append_postgres(batch)
                else:
                    stored = await self._append_generic(batch)
                break
            except (IntegrityError, DBAPIError) as exc:
                if attempt == _RETRIES - 1 or not _is_retryable(exc):
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
                }
                for idx, send in enumerate(batch)
            ]
        )
        async with self.db.write() as conn:
            # Every batch takes the stream head's row lock first: positions follow commit order
            # across nodes, and no two batches can lock conversations in opposite orders.
            head = (await conn.execute(_PG_LOCK_HEAD)).scalar_one()
            rows = (await conn.execute(_PG_APPEND, {"batch": payload, "head": head})).all()
        return {
            (row.conversation_id, row.sender_id, row.client_msg_id): Appended(
                message_from_row(row), created=row.created
            )
            for row in rows
        }

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
                    }
                )
            inserted = await conn.execute(insert(messages).returning(*messages.c), rows)
            for row in inserted:
                message = message_from_row(row)
                stored[(message.conversation_id, message.sender_id, message.client_msg_id)] = (
                    Appended(message, created=True)
                )
        return stored

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


def _is_retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return "client_msg_id" in str(exc.orig)
    return "deadlock" in str(exc.orig).lower()
