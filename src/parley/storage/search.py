"""SearchStore: full-text search over the messages a user can read, newest first.

SQLite matches in the FTS5 table `messages_fts`; PostgreSQL in the stored `search_vector` column
and its GIN index (migration 0006). Every statement is limited, in itself, to the conversations
the user is a member of now and to messages that are not tombstones, so a result the user may
not read cannot come back, whatever the filters say.

Two plans, picked by how many messages the user could possibly see (the sum of their
conversations' last seq, one cheap query) — measured on a million messages, docs/benchmarks.md:

- few: walk those messages and test each for the words. Cost follows the candidates, whatever
  the words: right for `in:` one conversation, where the index would hand back matches from
  everywhere else first.
- many: let the index drive. SQLite's FTS5 hands matches back newest first and the statement
  stops at the page (a fraction of a microsecond per match passed over); PostgreSQL's planner
  picks the GIN index (rare words) or a walk back from the newest message testing the stored
  vector (common words). A GIN index cannot hand matches back in order, so PostgreSQL scans
  candidates up to a much larger set.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, column, func, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.models import Message
from parley.core.search import SearchQuery, Term
from parley.storage.database import Database
from parley.storage.rows import message_from_row
from parley.storage.schema import conversations, members, messages

# Up to this many candidates, the candidates drive (an FTS5 probe per row costs ~45 µs on
# SQLite; a stored vector test ~2 µs on PostgreSQL).
SQLITE_CANDIDATES_SCANNED = 1_000
POSTGRES_CANDIDATES_SCANNED = 20_000
_fts = table("messages_fts", column("rowid"))
_PG_MATCH = "messages.search_vector @@ to_tsquery('simple'::regconfig, :tsquery)"
_SQLITE_PROBE = (
    "EXISTS (SELECT 1 FROM messages_fts WHERE messages_fts MATCH :fts "
    "AND messages_fts.rowid = messages.id)"
)


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
        async with self.db.read() as conn:
            if self.db.is_postgres:
                # A cached generic plan knows neither the words nor the page size, and picks a
                # plan that reads every match (minutes for a common word, measured): plan each.
                await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
            most = POSTGRES_CANDIDATES_SCANNED if self.db.is_postgres else SQLITE_CANDIDATES_SCANNED
            if sender_ids is not None:
                # Only the senders' messages get the costly test: scan further.
                most = POSTGRES_CANDIDATES_SCANNED
            scan = bool(query.terms) and (
                await self._candidates(conn, user_id, query.conversation_id) <= most
            )
            statement = self._statement(user_id, query, sender_ids, before_id, scan=scan)
            rows = await conn.execute(statement.limit(limit))
            return [message_from_row(row) for row in rows]

    async def _candidates(
        self, conn: AsyncConnection, user_id: int, conversation_id: int | None
    ) -> int:
        """How many messages the user's conversations (or the one asked for) hold."""
        query = (
            select(func.coalesce(func.sum(conversations.c.last_seq), 0))
            .join(members, members.c.conversation_id == conversations.c.id)
            .where(members.c.user_id == user_id)
        )
        if conversation_id is not None:
            query = query.where(conversations.c.id == conversation_id)
        return int((await conn.execute(query)).scalar_one())

    def _statement(
        self,
        user_id: int,
        query: SearchQuery,
        sender_ids: list[int] | None,
        before_id: int | None,
        *,
        scan: bool,
    ) -> Select[Any]:
        readable = select(members.c.conversation_id).where(members.c.user_id == user_id)
        statement: Select[Any] = select(messages).where(
            messages.c.conversation_id.in_(readable), messages.c.deleted_at.is_(None)
        )
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
        if not query.terms:
            return statement.order_by(messages.c.id.desc())
        if self.db.is_postgres:
            statement = statement.where(text(_PG_MATCH).bindparams(tsquery=_tsquery(query.terms)))
        elif scan:
            statement = statement.where(text(_SQLITE_PROBE).bindparams(fts=_fts_query(query.terms)))
        else:
            # The FTS table drives, newest match first (FTS5 serves ORDER BY rowid DESC itself).
            statement = (
                statement.select_from(_fts)
                .join_from(_fts, messages, messages.c.id == _fts.c.rowid)
                .where(text("messages_fts MATCH :fts").bindparams(fts=_fts_query(query.terms)))
            )
            return statement.order_by(_fts.c.rowid.desc())
        if scan:
            # `id + 0`: the id index must not drive (it would walk every message newest first);
            # the user's conversations do, and their few messages are sorted.
            return statement.order_by((messages.c.id + 0).desc())
        return statement.order_by(messages.c.id.desc())


# Terms are letters and digits only (core.search), so quoting them is all the escaping either
# query language needs; they still travel as bound parameters.


def _tsquery(terms: tuple[Term, ...]) -> str:
    return " & ".join(f"'{t.text}'{':*' if t.prefix else ''}" for t in terms)


def _fts_query(terms: tuple[Term, ...]) -> str:
    return " ".join(f'"{t.text}"{"*" if t.prefix else ""}' for t in terms)
