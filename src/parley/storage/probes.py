"""ProbeStore: trimming the Go/No-Go probe conversation to its newest messages."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from parley.storage.database import Database
from parley.storage.rows import _json
from parley.storage.schema import attachments, conversations, messages


@dataclass(frozen=True, slots=True)
class Trimmed:
    messages: int
    attachment_ids: list[str]
    kept_from_seq: int


class ProbeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def trim_conversation(self, conversation_id: int, keep: int) -> Trimmed:
        """Delete all but the newest `keep` messages, and attachments none of those carry.

        Seqs are never reused: the conversation's history simply starts later.
        """
        async with self.db.write() as conn:
            last_seq = (
                await conn.execute(
                    select(conversations.c.last_seq).where(conversations.c.id == conversation_id)
                )
            ).scalar_one()
            cut = max(0, int(last_seq) - keep)
            removed = await conn.execute(
                delete(messages).where(
                    messages.c.conversation_id == conversation_id, messages.c.seq <= cut
                )
            )
            kept = await conn.execute(
                select(messages.c.attachments).where(messages.c.conversation_id == conversation_id)
            )
            carried = {ref["id"] for (refs,) in kept for ref in _json(refs) or []}
            uploaded = await conn.execute(
                select(attachments.c.id).where(attachments.c.conversation_id == conversation_id)
            )
            orphans = sorted(row.id for row in uploaded if row.id not in carried)
            if orphans:
                await conn.execute(delete(attachments).where(attachments.c.id.in_(orphans)))
        return Trimmed(int(removed.rowcount or 0), orphans, cut + 1)
