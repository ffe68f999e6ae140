"""Search the messages you can read (docs/timeline.md). Any signed-in user; results only ever
come from conversations they are a member of, never from a deleted message."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import SearchOut, SearchResultOut, Text, UserName
from parley.core import limits
from parley.core.search import parse_when
from parley.services.search import SearchFilters

router = APIRouter(prefix="/v1", tags=["search"])

When = Annotated[
    str | None,
    Query(max_length=40, description="A date (2026-01-31) or ISO time; UTC unless zoned."),
]


@router.get("/search", response_model=SearchOut)
async def search(
    user: CurrentUser,
    services: ServicesDep,
    q: Annotated[
        Text(limits.SEARCH_QUERY_MAX_CHARS),  # type: ignore[valid-type]
        Query(
            description="Words (all must match; `word*` for a prefix) and operators "
            "`from:name`, `in:<conversation id>`, `has:attachment`, `after:`, `before:`."
        ),
    ] = "",
    conversation_id: Annotated[int | None, Query(ge=1, le=limits.SEQ_MAX)] = None,
    sender: Annotated[list[UserName] | None, Query(alias="from", max_length=20)] = None,
    after: When = None,
    before: When = None,
    has: Annotated[Literal["attachment"] | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=limits.SEARCH_LIMIT_MAX)] = limits.SEARCH_LIMIT_DEFAULT,
) -> SearchOut:
    """Messages you can read that match, newest first, each with a highlighted snippet."""
    query = services.search.check_query(
        q,
        SearchFilters(
            conversation_id=conversation_id,
            from_names=tuple(sender or ()),
            after=_when(after, "after"),
            before=_when(before, "before"),
            has_attachment=has == "attachment",
        ),
    )
    page = await services.search.search(user, query, cursor=cursor, limit=limit)
    return SearchOut(
        results=[SearchResultOut.of(hit.message, hit.snippet) for hit in page.hits],
        next_cursor=page.next_cursor,
    )


def _when(value: str | None, name: str) -> datetime | None:
    return parse_when(value, name) if value else None
