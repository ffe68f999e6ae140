"""Content rules, compiled (pure): words, regexes, links, attachments, scopes and severity."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.errors import BadInput
from parley.core.models import AttachmentRef
from parley.core.moderation import (
    Rule,
    RuleBook,
    RuleKind,
    ScopeKind,
    Verdict,
    check_rule_config,
    link_hosts,
)

NOW = datetime(2026, 12, 7, tzinfo=UTC)
_ids = iter(range(1, 10_000))


def rule(
    kind: RuleKind,
    config: dict[str, Any],
    verdict: Verdict = Verdict.HOLD_FOR_REVIEW,
    scope: ScopeKind = ScopeKind.ALL,
    scope_value: str = "",
) -> Rule:
    rule_id = next(_ids)
    return Rule(
        id=rule_id,
        name=f"{kind}-{rule_id}",
        kind=kind,
        verdict=verdict,
        scope=scope,
        scope_value=scope_value,
        config=check_rule_config(kind, config),
        enabled=True,
        created_at=NOW,
        updated_at=NOW,
        updated_by="test",
    )


def judge(book: RuleBook, body: str, *files: AttachmentRef, kind: str = "group", inbox=None):
    return book.content_finding(body, list(files), conversation_kind=kind, inbox_id=inbox)


def test_words_match_whole_words_in_any_case_and_script() -> None:
    book = RuleBook.compile([rule(RuleKind.WORDS, {"words": ["scam", "мошенник", "free money"]})])

    assert judge(book, "This is a SCAM!") is not None
    assert judge(book, "Ты мошенник.") is not None
    assert judge(book, "get free   money") is None  # a phrase is matched as written
    assert judge(book, "get Free Money now") is not None
    assert judge(book, "scampi and мошенники") is None


def test_regex_rules_use_re2_and_bad_patterns_are_refused() -> None:
    book = RuleBook.compile([rule(RuleKind.REGEX, {"patterns": [r"\+?\d{3}[- ]?\d{3}[- ]?\d{4}"]})])
    assert judge(book, "call me at 555-123-4567") is not None
    assert judge(book, "call me maybe") is None
    with pytest.raises(BadInput, match="not valid RE2"):
        check_rule_config(RuleKind.REGEX, {"patterns": [r"(a)\1"]})  # backreferences: not RE2


def test_a_pathological_pattern_stays_linear() -> None:
    book = RuleBook.compile([rule(RuleKind.REGEX, {"patterns": [r"(a+)+$"]})])
    # Catastrophic for a backtracking engine; RE2 answers at once.
    assert judge(book, "a" * 16_000 + "!") is None


def test_link_rules_by_mode() -> None:
    # A bare "www." link counts too (its host is what follows "www.").
    assert link_hosts("see https://Shop.Example.com/x and www.other.org.") == [
        "shop.example.com",
        "other.org",
    ]
    block = RuleBook.compile(
        [rule(RuleKind.LINKS, {"mode": "block_domains", "domains": ["*.evil.test"]})]
    )
    allow = RuleBook.compile(
        [rule(RuleKind.LINKS, {"mode": "allow_domains", "domains": ["shop.test"]})]
    )
    assert judge(block, "go to https://login.evil.test") is not None
    assert judge(block, "go to https://notevil.test") is None
    assert judge(allow, "https://shop.test/cart and https://www.shop.test") is None
    assert judge(allow, "https://shop.test and https://elsewhere.test") is not None
    assert judge(allow, "no links at all") is None


def test_attachment_rules_by_type_extension_and_size() -> None:
    book = RuleBook.compile(
        [
            rule(
                RuleKind.ATTACHMENTS,
                {"content_types": ["image/*"], "extensions": ["exe"], "max_bytes": 1000},
            )
        ]
    )
    png = AttachmentRef("a1", "cat.png", "image/png", 10)
    exe = AttachmentRef("a2", "SETUP.EXE", "application/octet-stream", 10)
    big = AttachmentRef("a3", "notes.txt", "text/plain", 5000)
    small = AttachmentRef("a4", "notes.txt", "text/plain", 10)
    assert judge(book, "", png) is not None
    assert judge(book, "", exe) is not None
    assert judge(book, "", big) is not None
    assert judge(book, "", small) is None


def test_scopes_pick_the_conversations_a_rule_sees() -> None:
    words = {"words": ["promo"]}
    book = RuleBook.compile(
        [
            rule(RuleKind.WORDS, words, scope=ScopeKind.CONVERSATION_KIND, scope_value="room"),
            rule(RuleKind.WORDS, words, Verdict.REJECT, scope=ScopeKind.INBOX, scope_value="7"),
        ]
    )
    assert book.needs_inbox
    assert judge(book, "promo", kind="group") is None
    assert judge(book, "promo", kind="room").verdict is Verdict.HOLD_FOR_REVIEW
    assert judge(book, "promo", kind="group", inbox=7).verdict is Verdict.REJECT
    assert judge(book, "promo", kind="group", inbox=8) is None


@given(st.permutations([Verdict.HOLD_FOR_REVIEW, Verdict.REJECT, Verdict.HOLD_FOR_REVIEW]))
def test_the_most_severe_verdict_wins_whatever_the_rule_order(verdicts: list[Verdict]) -> None:
    book = RuleBook.compile([rule(RuleKind.WORDS, {"words": ["x"]}, v) for v in verdicts])
    assert judge(book, "x").verdict is Verdict.REJECT


def test_an_empty_book_judges_nothing_and_disabled_rules_are_left_out() -> None:
    off = rule(RuleKind.WORDS, {"words": ["x"]})
    book = RuleBook.compile([Rule(**{**_fields(off), "enabled": False})])
    assert book.empty and judge(book, "x") is None
    assert not RuleBook.compile([rule(RuleKind.WORDS, {"words": ["x"]})]).has_stateful
    assert RuleBook.compile(
        [rule(RuleKind.FLOOD, {"max_messages": 3, "per_seconds": 5})]
    ).has_stateful


def _fields(found: Rule) -> dict[str, Any]:
    return {name: getattr(found, name) for name in Rule.__slots__}
