"""Search: full-text search over the messages a user can read, with filters and snippets.

Results are only ever messages of conversations the user is a member of now, never a tombstone
(the store's statement says so, whatever the query); this module parses the query, resolves
`from:` names, and marks where each result matched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from parley.core.errors import BadInput
from parley.core.models import Message, User
from parley.core.search import SearchQuery, Snippet, parse_search, snippet
from parley.storage.search import SearchStore
from parley.storage.users import UserStore


@dataclass(frozen=True, slots=True)
class SearchHit:
    message: Message
    snippet: Snippet


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[SearchHit]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Filters given as request parameters; they narrow what the query text says."""

    conversation_id: int | None = None
    from_names: tuple[str, ...] = ()
    after: datetime | None = None
    before: datetime | None = None
    has_attachment: bool = False


class Search:
    def __init__(self, *, store: SearchStore, users: UserStore) -> None:
        self.store = store
        self.users = users

    def check_query(self, text: str, filters: SearchFilters) -> SearchQuery:
        query = parse_search(text)
        if filters.conversation_id is not None:
            query = replace(query, conversation_id=filters.conversation_id)
        if filters.from_names:
            query = replace(query, from_names=(*query.from_names, *filters.from_names))
        if filters.after is not None:
            query = replace(query, after=filters.after)
        if filters.before is not None:
            query = replace(query, before=filters.before)
        if filters.has_attachment:
            query = replace(query, has_attachment=True)
        if query.empty:
            raise BadInput("search for some words, or give a filter (from:, in:, has:, after:)")
        return query

    async def search(
        self, actor: User, query: SearchQuery, *, cursor: str | None, limit: int
    ) -> SearchPage:
        """A page of the messages `actor` can read that match, newest first."""
        before_id = _parse_cursor(cursor)
        sender_ids = None
        if query.from_names:
            found = await self.users.find_users_by_name(list(query.from_names))
            sender_ids = [user.id for user in found]  # an unknown name matches nothing
        messages = await self.store.search_messages(
            actor.id, query, sender_ids=sender_ids, before_id=before_id, limit=limit
        )
        hits = [SearchHit(message, snippet(message.body, query.terms)) for message in messages]
        next_cursor = str(messages[-1].id) if len(messages) == limit else None
        return SearchPage(hits=hits, next_cursor=next_cursor)


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 16:
        raise BadInput("cursor must be the next_cursor of a previous page")
    return int(cursor)
