"""Parsing what people type: search queries and snippets, mentions, reactions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.errors import BadInput
from parley.core.mentions import find_mentions
from parley.core.search import Term, parse_search, snippet
from parley.core.text import check_emoji


def test_words_are_lower_cased_letters_and_digits_and_a_star_makes_a_prefix() -> None:
    query = parse_search("Invoice e-mail Счёт inv* 2026")

    assert query.terms == (
        Term("invoice"),
        Term("e"),
        Term("mail"),
        Term("счёт"),
        Term("inv", prefix=True),
        Term("2026"),
    )


def test_operators_become_filters() -> None:
    query = parse_search(
        "report from:alice from:@bob in:12 has:attachment after:2026-01-31 "
        "before:2026-02-01T09:30:00+03:00"
    )

    assert query.terms == (Term("report"),)
    assert query.from_names == ("alice", "bob")
    assert query.conversation_id == 12
    assert query.has_attachment
    assert query.after == datetime(2026, 1, 31, tzinfo=UTC)
    assert query.before is not None and query.before.utcoffset() is not None


@pytest.mark.parametrize(
    "text",
    [
        "from:",
        "from:a/b",
        "in:x",
        "in:0",
        "has:link",
        "after:31/01/2026",
        "before:soon",
        "x" * 501,
        " ".join(f"w{n}" for n in range(11)),
    ],
)
def test_malformed_queries_are_refused_with_what_to_write(text: str) -> None:
    with pytest.raises(BadInput):
        parse_search(text)


def test_a_query_with_nothing_to_search_is_empty() -> None:
    assert parse_search("  ... !!! ").empty
    assert not parse_search("has:attachment").empty


def test_snippets_mark_every_hit_and_keep_the_text_as_written() -> None:
    fragments = snippet("Deploy the <b>deploy</b> deployment", (Term("deploy"),)).fragments

    assert [(f.text, f.hit) for f in fragments] == [
        ("Deploy", True),
        (" the <b>", False),
        ("deploy", True),
        ("</b> deployment", False),
    ]


def test_a_late_hit_gets_a_window_around_it_with_ellipses() -> None:
    body = "filler " * 100 + "needle" + " tail" * 100

    fragments = snippet(body, (Term("needle"),)).fragments

    assert fragments[0].text == "…" and fragments[-1].text == "…"
    assert [f.text for f in fragments if f.hit] == ["needle"]
    assert sum(len(f.text) for f in fragments) <= 162


@given(
    body=st.text(max_size=400), word=st.from_regex(r"[a-z\u0430-\u044f0-9]{1,8}", fullmatch=True)
)
def test_a_snippet_is_always_a_piece_of_the_body(body: str, word: str) -> None:
    fragments = snippet(body, (Term(word),)).fragments
    text = "".join(f.text for f in fragments).removeprefix("…").removesuffix("…")

    assert text in body
    # A hit is the word (cut short only where the snippet ends).
    assert all(word.startswith(f.text.lower()) for f in fragments if f.hit)


def test_mentions_find_names_and_here_but_not_addresses() -> None:
    found = find_mentions("hi @bob. and @carol_x, mail me at a@b.com or @@eve; @HERE!")

    assert found.here
    assert found.names == ["bob.", "bob", "carol_x"]


@pytest.mark.parametrize("emoji", ["👍", "👨\u200d👩\u200d👧", ":party:", "+1", "ok"])
def test_reactions_may_be_emoji_or_short_names(emoji: str) -> None:
    assert check_emoji(emoji) == emoji


@pytest.mark.parametrize("emoji", ["", "two words", "a/b", "x" * 33, "bell\x07", "\x00"])
def test_reactions_with_spaces_slashes_or_controls_are_refused(emoji: str) -> None:
    with pytest.raises(BadInput):
        check_emoji(emoji)
