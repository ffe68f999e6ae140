"""SearchStore: full-text search over the messages a user can read, newest first.

SQLite matches in the FTS5 table `messages_fts`; PostgreSQL in the GIN index on
`to_tsvector('simple', body)` (migration 0006). Both are limited in the same statement to the
conversations the user is a member of now and to messages that are not tombstones, so a result
the user may not read cannot come back, whatever the filters say.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select, text

from parley.core.models import Message
from parley.core.search import SearchQuery, Term
from parley.storage.database import Database
from parley.storage.rows import message_from_row
from parley.storage.schema import members, messages

# The very expression the GIN index is built on: PostgreSQL uses the index only for it.
_PG_MATCH = (
    "to_tsvector('simple'::regconfig, messages.body) @@ to_tsquery('simple'::regconfig, :tsquery)"
)
_SQLITE_MATCH = "messages.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :fts)"


class SearchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search_messages(
        self,
        user_id: int,
        query: SearchQuery,
        *,
        sender_ids: list[int] | None,
        before_id: int | None,
        limit: int,
    ) -> list[Message]:
        """Messages matching `query` that `user_id` can read, by id descending."""
        readable = select(members.c.conversation_id).where(members.c.user_id == user_id)
        statement: Select[Any] = select(messages).where(
            messages.c.conversation_id.in_(readable), messages.c.deleted_at.is_(None)
        )
        if query.terms:
            statement = statement.where(self._match(query.terms))
        if query.conversation_id is not None:
            statement = statement.where(messages.c.conversation_id == query.conversation_id)
        if sender_ids is not None:
            statement = statement.where(messages.c.sender_id.in_(sender_ids))
        if query.after is not None:
            statement = statement.where(messages.c.created_at >= query.after)
        if query.before is not None:
            statement = statement.where(messages.c.created_at < query.before)
        if query.has_attachment:
            length = func.jsonb_array_length if self.db.is_postgres else func.json_array_length
            statement = statement.where(length(messages.c.attachments) > 0)
        if before_id is not None:
            statement = statement.where(messages.c.id < before_id)
        statement = statement.order_by(messages.c.id.desc()).limit(limit)
        async with self.db.read() as conn:
            rows = await conn.execute(statement)
            return [message_from_row(row) for row in rows]

    def _match(self, terms: tuple[Term, ...]) -> Any:
        # Terms are letters and digits only (core.search), so quoting them is all the escaping
        # either query language needs; they still travel as bound parameters.
        if self.db.is_postgres:
            tsquery = " & ".join(f"'{t.text}'{':*' if t.prefix else ''}" for t in terms)
            return text(_PG_MATCH).bindparams(tsquery=tsquery)
        fts = " ".join(f'"{t.text}"{"*" if t.prefix else ""}' for t in terms)
        return text(_SQLITE_MATCH).bindparams(fts=fts)
