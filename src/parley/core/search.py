"""Search queries and snippets: parsing what a person typed, and marking where it matched.

A query is words plus operators: `from:alice`, `in:12` (a conversation id), `has:attachment`,
`after:2026-01-31`, `before:2026-02-01` (dates or ISO times, UTC when no zone is given). A word
ending in `*` matches as a prefix. Words are runs of letters and digits, lower-cased — the same
rule the databases' full-text tokenizers use (SQLite FTS5 `unicode61`, PostgreSQL `simple`) — so
"e-mail" searches for "e" and "mail". Every word must match (AND).

Snippets are fragments of plain text, each marked as a hit or not: clients render them as text
(a `<mark>` around hits built with DOM calls), so nothing from a message is ever parsed as HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from parley.core.errors import BadInput, ErrorCode
from parley.core.limits import SEARCH_QUERY_MAX_CHARS, SEARCH_TERMS_MAX, USER_NAME_MAX_CHARS

WORD = re.compile(r"[^\W_]+")
SNIPPET_CHARS = 160
_OPERATOR = re.compile(r"^(from|in|has|after|before):(.*)$", re.IGNORECASE)
_USER_NAME = re.compile(rf"^[A-Za-z0-9._-]{{1,{USER_NAME_MAX_CHARS}}}$")
HAS_VALUES = ("attachment", "file")


@dataclass(frozen=True, slots=True)
class Term:
    text: str  # lower-cased letters and digits
    prefix: bool = False

    def matches(self, word: str) -> bool:
        word = word.lower()
        return word.startswith(self.text) if self.prefix else word == self.text


@dataclass(frozen=True, slots=True)
class SearchQuery:
    terms: tuple[Term, ...] = ()
    conversation_id: int | None = None
    from_names: tuple[str, ...] = ()
    after: datetime | None = None
    before: datetime | None = None
    has_attachment: bool = False

    @property
    def empty(self) -> bool:
        """Nothing to search by: no word and no filter (a listing of everything is refused)."""
        return not (
            self.terms
            or self.conversation_id
            or self.from_names
            or self.after
            or self.before
            or self.has_attachment
        )


@dataclass(frozen=True, slots=True)
class Fragment:
    text: str
    hit: bool = False


@dataclass(frozen=True, slots=True)
class Snippet:
    fragments: list[Fragment] = field(default_factory=list)


def parse_search(text: str) -> SearchQuery:
    """Parse what a person typed; a malformed operator is a 422 that says what to write."""
    if len(text) > SEARCH_QUERY_MAX_CHARS:
        raise BadInput(f"a search is at most {SEARCH_QUERY_MAX_CHARS} characters")
    terms: dict[Term, None] = {}
    conversation_id: int | None = None
    from_names: list[str] = []
    after = before = None
    has_attachment = False
    for token in text.split():
        operator = _OPERATOR.match(token)
        if operator is None:
            for term in _terms_of(token):
                terms[term] = None
            continue
        name, value = operator.group(1).lower(), operator.group(2)
        if name == "from":
            if not _USER_NAME.match(value.lstrip("@")):
                raise BadInput(f"from:{value}: write a user name, e.g. from:alice")
            from_names.append(value.lstrip("@"))
        elif name == "in":
            if not value.isdigit() or not 0 < int(value) < 2**53:
                raise BadInput(f"in:{value}: write a conversation id, e.g. in:12")
            conversation_id = int(value)
        elif name == "has":
            if value.lower() not in HAS_VALUES:
                raise BadInput(f"has:{value}: only has:attachment is known")
            has_attachment = True
        elif name == "after":
            after = parse_when(value, "after")
        else:
            before = parse_when(value, "before")
    if len(terms) > SEARCH_TERMS_MAX:
        raise BadInput(f"a search has at most {SEARCH_TERMS_MAX} words")
    return SearchQuery(
        terms=tuple(terms),
        conversation_id=conversation_id,
        from_names=tuple(dict.fromkeys(from_names)),
        after=after,
        before=before,
        has_attachment=has_attachment,
    )


def _terms_of(token: str) -> list[Term]:
    words = WORD.findall(token.lower())
    if not words:
        return []
    prefix = token.endswith("*")
    return [Term(word) for word in words[:-1]] + [Term(words[-1], prefix=prefix)]


def parse_when(value: str, name: str) -> datetime:
    """A date (midnight UTC) or an ISO time (UTC unless it has a zone)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(
            f"{name}:{value}: write a date like 2026-01-31 or a time like 2026-01-31T09:00Z",
            ErrorCode.VALIDATION,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def snippet(body: str, terms: tuple[Term, ...], width: int = SNIPPET_CHARS) -> Snippet:
    """Up to `width` characters of `body` around its first hit, the hits marked."""
    hits = [
        (m.start(), m.end())
        for m in WORD.finditer(body)
        if any(term.matches(m.group()) for term in terms)
    ]
    start = 0
    if hits and hits[0][1] > width:
        start = max(0, hits[0][0] - width // 3)
        space = body.rfind(" ", 0, start + 1)
        start = space + 1 if space > start - 20 else start
    end = min(len(body), start + width)
    fragments: list[Fragment] = []
    if start > 0:
        fragments.append(Fragment("…"))
    cursor = start
    for hit_start, hit_end in hits:
        if hit_end <= start or hit_start >= end:
            continue
        hit_start, hit_end = max(hit_start, start), min(hit_end, end)
        if hit_start > cursor:
            fragments.append(Fragment(body[cursor:hit_start]))
        fragments.append(Fragment(body[hit_start:hit_end], hit=True))
        cursor = hit_end
    if cursor < end:
        fragments.append(Fragment(body[cursor:end]))
    if end < len(body):
        fragments.append(Fragment("…"))
    return Snippet(fragments)
