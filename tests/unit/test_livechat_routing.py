"""Routing a new visitor conversation to a branch: rules in order, then the fallbacks."""

from __future__ import annotations

import pytest

from parley.core.errors import InvalidValue
from parley.features.livechat.routing import Visit, check_rules, language_matches, route

RULES = [
    {"url_prefix": "https://shop.example.com/ru/", "branch_id": 1},
    {"language": "de", "country": "AT", "branch_id": 2},
    {"url_contains": "/pricing", "branch_id": 3},
    {"language": "de", "branch_id": 4},
]


def test_first_matching_rule_wins() -> None:
    visit = Visit(page_url="https://shop.example.com/ru/pricing", language="de")
    assert route(RULES, visit) == 1


def test_every_condition_of_a_rule_must_match() -> None:
    assert route(RULES, Visit(language="de-AT", country="at")) == 2
    assert route(RULES, Visit(language="de-AT", country="DE")) == 4
    assert route(RULES, Visit(language="fr", country="AT")) is None


def test_url_rules_need_a_url() -> None:
    assert route(RULES, Visit(page_url="https://shop.example.com/en/pricing")) == 3
    assert route(RULES, Visit(page_url=None)) is None


@pytest.mark.parametrize(
    ("wanted", "language", "matches"),
    [
        ("ru", "ru", True),
        ("ru", "ru-RU", True),
        ("RU", "ru-ru", True),
        ("ru", "ru_RU", True),
        ("pt-BR", "pt-br", True),
        ("ru", "rue", False),
        ("pt-BR", "pt", False),
        ("ru", None, False),
    ],
)
def test_language_is_a_case_insensitive_prefix_of_whole_subtags(
    wanted: str, language: str | None, matches: bool
) -> None:
    assert language_matches(wanted, language) is matches


def test_no_rule_falls_back_to_the_inbox_then_the_default_branch() -> None:
    visit = Visit(language="fr")
    assert route(RULES, visit, inbox_branch_id=7, default_branch_id=9) == 7
    assert route(RULES, visit, default_branch_id=9) == 9
    assert route([], visit) is None


def test_a_rule_without_conditions_matches_everyone() -> None:
    assert route([{"branch_id": 5}], Visit()) == 5


def test_check_rules_normalises_country_and_keeps_order() -> None:
    checked = check_rules([{"country": "de", "branch_id": 2}, {"branch_id": 1}])
    assert checked == [{"country": "DE", "branch_id": 2}, {"branch_id": 1}]


@pytest.mark.parametrize(
    ("rules", "says"),
    [
        ({"branch_id": 1}, "a list"),
        ([{"url": "x", "branch_id": 1}], "unknown keys url"),
        ([{"language": "ru"}], "needs a branch_id"),
        ([{"language": "ru", "branch_id": "2"}], "needs a branch_id"),
        ([{"language": "ru", "branch_id": True}], "needs a branch_id"),
        ([{"country": "Germany", "branch_id": 1}], "two-letter"),
        ([{"language": "", "branch_id": 1}], "non-empty"),
        ([{"language": "r u", "branch_id": 1}], "language tag"),
        (["ru"], "not an object"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(rules: object, says: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        check_rules(rules)
    assert says in caught.value.message
    assert caught.value.status == 400
