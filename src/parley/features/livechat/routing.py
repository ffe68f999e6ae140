"""Which branch a new visitor conversation goes to: pure functions, no I/O.

An inbox's `routing_rules` are tried in order; each rule names a `branch_id` and any of the
conditions below, all of which must match; the first matching rule wins. Then the inbox's own
`branch_id`, then the deployment's default branch, else none.

    {"url_prefix": "https://shop.example.com/ru/", "branch_id": 2}
    {"language": "de", "country": "AT", "branch_id": 3}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from parley.core.errors import InvalidValue

CONDITIONS = ("url_contains", "url_prefix", "language", "country")
MAX_RULES = 100
MAX_CONDITION_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Visit:
    """What routing knows about a visitor when their conversation opens."""

    page_url: str | None = None
    language: str | None = None
    country: str | None = None


def rule_matches(rule: dict[str, Any], visit: Visit) -> bool:
    """Every condition the rule gives holds; a rule with none matches everyone."""
    url = visit.page_url or ""
    if "url_contains" in rule and (not url or rule["url_contains"] not in url):
        return False
    if "url_prefix" in rule and (not url or not url.startswith(rule["url_prefix"])):
        return False
    if "language" in rule and not language_matches(rule["language"], visit.language):
        return False
    return "country" not in rule or (
        visit.country is not None and visit.country.upper() == str(rule["country"]).upper()
    )


def language_matches(wanted: str, language: str | None) -> bool:
    """`ru` matches `ru`, `RU-ru`, `ru-RU`; not `rue` (a prefix of whole subtags)."""
    if not language:
        return False
    wanted, language = wanted.lower(), language.lower().replace("_", "-")
    return language == wanted or language.startswith(wanted + "-")


def route(
    rules: Iterable[dict[str, Any]],
    visit: Visit,
    *,
    inbox_branch_id: int | None = None,
    default_branch_id: int | None = None,
) -> int | None:
    """The branch id for this visit: first matching rule, else the inbox's, else the default."""
    for rule in rules:
        if rule_matches(rule, visit):
            return int(rule["branch_id"])
    return inbox_branch_id if inbox_branch_id is not None else default_branch_id


def check_rules(rules: Any) -> list[dict[str, Any]]:
    """Validate an inbox's rules (shape only; the caller checks the branch ids exist)."""
    if not isinstance(rules, list):
        raise InvalidValue("routing_rules is a list of rules")
    if len(rules) > MAX_RULES:
        raise InvalidValue(f"at most {MAX_RULES} routing rules")
    return [_check_rule(i, rule) for i, rule in enumerate(rules)]


def rule_branch_ids(rules: Iterable[dict[str, Any]]) -> list[int]:
    return list(dict.fromkeys(int(rule["branch_id"]) for rule in rules))


def _check_rule(index: int, rule: Any) -> dict[str, Any]:
    where = f"routing_rules[{index}]"
    if not isinstance(rule, dict):
        raise InvalidValue(f"{where} is not an object")
    unknown = sorted(set(rule) - {*CONDITIONS, "branch_id"})
    if unknown:
        raise InvalidValue(
            f"{where} has unknown keys {', '.join(unknown)}; "
            f"allowed: {', '.join(CONDITIONS)}, branch_id"
        )
    branch_id = rule.get("branch_id")
    if isinstance(branch_id, bool) or not isinstance(branch_id, int) or branch_id < 1:
        raise InvalidValue(f"{where} needs a branch_id (a positive integer)")
    checked: dict[str, Any] = {}
    for key in CONDITIONS:
        if key not in rule:
            continue
        value = rule[key]
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_CONDITION_CHARS:
            raise InvalidValue(f"{where}.{key} must be a non-empty string")
        if key == "country":
            if len(value) != 2 or not value.isascii() or not value.isalpha():
                raise InvalidValue(f"{where}.country is a two-letter ISO code like DE")
            value = value.upper()
        if key == "language" and (len(value) > 35 or not value.replace("-", "").isalnum()):
            raise InvalidValue(f"{where}.language is a language tag like ru or pt-BR")
        checked[key] = value
    checked["branch_id"] = branch_id
    return checked
