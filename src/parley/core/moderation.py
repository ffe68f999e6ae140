"""Moderation's vocabulary and its content rules (pure): what a filter rule says, how the word,
regex, link and attachment rules judge a message, and what the queue and sanctions hold.

Rules are compiled once per change of the rule set (`RuleBook`), with RE2 — linear-time
matching, so a rule an admin writes cannot stall the send path on a hostile message (no
catastrophic backtracking). The rate/flood rule and the external classifier need state and the
network; `features/moderation/filters.py` runs them after these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

import re2

from parley.core.errors import BadInput, InvalidValue
from parley.core.models import AttachmentRef

MAX_TERMS = 1_000
MAX_TERM_CHARS = 200
MAX_PATTERNS = 100
MAX_PATTERN_CHARS = 500
MAX_DOMAINS = 1_000


class Verdict(IntEnum):
    """A filter's outcome, ordered by severity: the pipeline keeps the most severe one."""

    ALLOW = 0
    HOLD_FOR_REVIEW = 1
    REJECT = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Verdict:
        try:
            return cls[value.upper()]
        except KeyError:
            allowed = ", ".join(v.label for v in cls)
            raise InvalidValue(f"verdict {value!r} is not one of {allowed}") from None


class RuleKind(StrEnum):
    WORDS = "words"  # whole words or phrases, case-insensitive, any script
    REGEX = "regex"  # RE2 patterns, case-insensitive
    LINKS = "links"  # URLs in the body: all, or by domain (block or allow list)
    ATTACHMENTS = "attachments"  # by sniffed content type, file extension or size
    FLOOD = "flood"  # too many messages, or the same text repeated, per sender per conversation
    CLASSIFIER = "classifier"  # an external HTTP classifier's score (PARLEY_MODERATION_...)


class ScopeKind(StrEnum):
    """Which sends a rule looks at: all, one conversation kind, or one live-chat inbox's."""

    ALL = "all"
    CONVERSATION_KIND = "conversation_kind"
    INBOX = "inbox"


# Kinds that need no state or network: judged in-process by the compiled book.
CONTENT_KINDS = frozenset({RuleKind.WORDS, RuleKind.REGEX, RuleKind.LINKS, RuleKind.ATTACHMENTS})


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    name: str
    kind: RuleKind
    verdict: Verdict
    scope: ScopeKind
    scope_value: str  # "" for ALL; a ConversationKind value; an inbox id as text
    config: dict[str, Any]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    updated_by: str

    def applies_to(self, conversation_kind: str, inbox_id: int | None) -> bool:
        if self.scope is ScopeKind.ALL:
            return True
        if self.scope is ScopeKind.CONVERSATION_KIND:
            return self.scope_value == conversation_kind
        return inbox_id is not None and self.scope_value == str(inbox_id)


@dataclass(frozen=True, slots=True)
class Finding:
    """Why a send was held or refused: the rule, and a reason fit to show the sender."""

    verdict: Verdict
    rule_id: int | None
    rule_name: str
    kind: str
    reason: str


# -- checking a rule's configuration -------------------------------------------------------------


def _strings(config: dict[str, Any], key: str, *, most: int, longest: int) -> list[str]:
    values = config.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadInput(f"config.{key} is a list of strings")
    values = [v.strip() for v in values if v.strip()]
    if len(values) > most:
        raise BadInput(f"config.{key} holds at most {most} entries")
    if any(len(v) > longest for v in values):
        raise BadInput(f"each of config.{key} is at most {longest} characters")
    return values


def _number(config: dict[str, Any], key: str, *, low: float, high: float) -> float | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadInput(f"config.{key} is a number from {low} to {high}")
    return value


def check_rule_config(kind: RuleKind, config: dict[str, Any]) -> dict[str, Any]:
    """The rule's config, validated and normalized; BadInput says what is wrong."""
    if kind is RuleKind.WORDS:
        words = _strings(config, "words", most=MAX_TERMS, longest=MAX_TERM_CHARS)
        if not words:
            raise BadInput("a words rule needs config.words")
        return {"words": words}
    if kind is RuleKind.REGEX:
        patterns = _strings(config, "patterns", most=MAX_PATTERNS, longest=MAX_PATTERN_CHARS)
        if not patterns:
            raise BadInput("a regex rule needs config.patterns")
        for pattern in patterns:
            try:
                re2.compile(pattern, _options())
            except re2.error as exc:
                raise BadInput(f"pattern {pattern!r} is not valid RE2 syntax: {exc}") from None
        return {"patterns": patterns}
    if kind is RuleKind.LINKS:
        mode = config.get("mode", "any")
        if mode not in ("any", "block_domains", "allow_domains"):
            raise BadInput("config.mode is any, block_domains or allow_domains")
        domains = [
            d.lower().removeprefix("*.")
            for d in _strings(config, "domains", most=MAX_DOMAINS, longest=253)
        ]
        if mode != "any" and not domains:
            raise BadInput(f"a links rule in mode {mode} needs config.domains")
        return {"mode": mode, "domains": domains}
    if kind is RuleKind.ATTACHMENTS:
        types = [t.lower() for t in _strings(config, "content_types", most=100, longest=127)]
        extensions = [
            "." + e.lower().lstrip(".")
            for e in _strings(config, "extensions", most=100, longest=20)
        ]
        max_bytes = _number(config, "max_bytes", low=1, high=2**53)
        every = config.get("any", False)
        if not isinstance(every, bool):
            raise BadInput("config.any is true or false")
        if not (types or extensions or max_bytes or every):
            raise BadInput(
                "an attachments rule needs config.content_types, extensions, max_bytes or any"
            )
        return {
            "content_types": types,
            "extensions": extensions,
            "max_bytes": int(max_bytes) if max_bytes else None,
            "any": every,
        }
    if kind is RuleKind.FLOOD:
        max_messages = _number(config, "max_messages", low=1, high=10_000)
        max_repeats = _number(config, "max_repeats", low=1, high=10_000)
        seconds = _number(config, "per_seconds", low=1, high=86_400)
        if seconds is None or (max_messages is None and max_repeats is None):
            raise BadInput("a flood rule needs config.per_seconds and max_messages or max_repeats")
        return {
            "max_messages": int(max_messages) if max_messages else None,
            "max_repeats": int(max_repeats) if max_repeats else None,
            "per_seconds": int(seconds),
        }
    hold_at = _number(config, "hold_at", low=0, high=1)
    reject_at = _number(config, "reject_at", low=0, high=1)
    on_error = config.get("on_error", "allow")
    if on_error not in ("allow", "hold_for_review"):
        raise BadInput("config.on_error is allow or hold_for_review")
    if hold_at is None and reject_at is None:
        raise BadInput("a classifier rule needs config.hold_at and/or config.reject_at")
    if hold_at is not None and reject_at is not None and hold_at > reject_at:
        raise BadInput("config.hold_at must not be above config.reject_at")
    return {"hold_at": hold_at, "reject_at": reject_at, "on_error": on_error}


# -- the compiled rule book ----------------------------------------------------------------------

# Letters, digits and the underscore of any script: what a "whole word" is bounded by.
_WORD_CHAR = r"[\p{L}\p{N}_]"
# http(s) URLs and bare www. hosts; the host is what domain rules look at.
_URL = re2.compile(r"(?i)(?:https?://|www\.)([a-z0-9\p{L}.-]+)")


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a bad pattern is the admin's 422, not a line on stderr
    return options


def _word_pattern(words: Iterable[str]) -> str:
    alternatives = "|".join(re2.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return f"(?:^|[^\\p{{L}}\\p{{N}}_])(?:{alternatives})(?:$|[^\\p{{L}}\\p{{N}}_])"


def link_hosts(body: str) -> list[str]:
    """Hosts of the links in `body`, lower-cased, without a trailing dot."""
    return [m.lower().rstrip(".") for m in _URL.findall(body)]


def _host_in(host: str, domains: Sequence[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    matcher: Any = None  # a compiled RE2 for words/regex rules


@dataclass(frozen=True, slots=True)
class RuleBook:
    """Every enabled rule, compiled; `content_finding` judges a message against them."""

    rules: tuple[_Compiled, ...] = ()
    needs_inbox: bool = False
    has_stateful: bool = False
    _empty: bool = field(default=True)

    @classmethod
    def compile(cls, rules: Iterable[Rule]) -> RuleBook:
        compiled = []
        for rule in rules:
            if not rule.enabled:
                continue
            matcher = None
            if rule.kind is RuleKind.WORDS:
                matcher = re2.compile(_word_pattern(rule.config["words"]), _options())
            elif rule.kind is RuleKind.REGEX:
                joined = "|".join(f"(?:{p})" for p in rule.config["patterns"])
                matcher = re2.compile(joined, _options())
            compiled.append(_Compiled(rule, matcher))
        return cls(
            rules=tuple(compiled),
            needs_inbox=any(c.rule.scope is ScopeKind.INBOX for c in compiled),
            has_stateful=any(c.rule.kind not in CONTENT_KINDS for c in compiled),
            _empty=not compiled,
        )

    @property
    def empty(self) -> bool:
        return self._empty

    def applicable(self, conversation_kind: str, inbox_id: int | None) -> list[Rule]:
        return [c.rule for c in self.rules if c.rule.applies_to(conversation_kind, inbox_id)]

    def content_finding(
        self,
        body: str,
        attachments: Sequence[AttachmentRef],
        *,
        conversation_kind: str,
        inbox_id: int | None,
    ) -> Finding | None:
        """The most severe content rule this message breaks, or None."""
        worst: Finding | None = None
        for compiled in self.rules:
            rule = compiled.rule
            if rule.kind not in CONTENT_KINDS or not rule.applies_to(conversation_kind, inbox_id):
                continue
            if worst is not None and rule.verdict <= worst.verdict:
                continue
            reason = _breaks(compiled, body, attachments)
            if reason is not None:
                worst = Finding(rule.verdict, rule.id, rule.name, rule.kind.value, reason)
                if worst.verdict is Verdict.REJECT:
                    break
        return worst


def _breaks(compiled: _Compiled, body: str, attachments: Sequence[AttachmentRef]) -> str | None:
    """The reason `compiled` objects to this message (shown to the sender), or None."""
    rule, config = compiled.rule, compiled.rule.config
    if rule.kind is RuleKind.WORDS:
        return "the message contains a blocked word" if compiled.matcher.search(body) else None
    if rule.kind is RuleKind.REGEX:
        return "the message matches a blocked pattern" if compiled.matcher.search(body) else None
    if rule.kind is RuleKind.LINKS:
        hosts = link_hosts(body)
        if not hosts:
            return None
        mode, domains = config["mode"], config["domains"]
        if mode == "any":
            return "links are not allowed here"
        if mode == "block_domains" and any(_host_in(h, domains) for h in hosts):
            return "the message links to a blocked site"
        if mode == "allow_domains" and not all(_host_in(h, domains) for h in hosts):
            return "the message links to a site that is not allowed here"
        return None
    for attachment in attachments:
        if config["any"]:
            return "attachments are reviewed here"
        content_type = attachment.content_type.lower()
        for wanted in config["content_types"]:
            if content_type == wanted or (
                wanted.endswith("/*") and content_type.startswith(wanted[:-1])
            ):
                return f"files of type {attachment.content_type} are not allowed"
        name = attachment.file_name.lower()
        if any(name.endswith(ext) for ext in config["extensions"]):
            return "this kind of file is not allowed"
        if config["max_bytes"] and attachment.size > config["max_bytes"]:
            return f"files larger than {config['max_bytes']} bytes are not allowed"
    return None


# -- the queue and sanctions ---------------------------------------------------------------------


class ItemKind(StrEnum):
    REPORT = "report"  # a delivered message members reported
    HELD = "held"  # a send the filters held back: not in the timeline until approved


class ItemStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Resolution(StrEnum):
    APPROVED = "approved"  # held: appended to the timeline; report: dismissed, message stays
    REMOVED = "removed"  # held: discarded; report: the message becomes a tombstone


class Action(StrEnum):
    """What a moderator does with a queue item."""

    APPROVE = "approve"
    REMOVE = "remove"
    WARN = "warn"
    MUTE = "mute"
    BAN = "ban"
    ESCALATE = "escalate"


class Tier(IntEnum):
    """Tier 1 is the moderators' queue; escalated items need an admin."""

    MODERATORS = 1
    ADMINS = 2


class ReportReason(StrEnum):
    SPAM = "spam"
    ABUSE = "abuse"
    HARASSMENT = "harassment"
    ILLEGAL = "illegal"
    OTHER = "other"


class SanctionKind(StrEnum):
    WARN = "warn"  # a notice to the user; nothing is blocked
    MUTE = "mute"  # may read, may not send
    BAN = "ban"  # a conversation: removed and may not return; global: no sends, no streams


@dataclass(frozen=True, slots=True)
class Sanction:
    id: int
    user_id: int
    kind: SanctionKind
    conversation_id: int | None  # None: deployment-wide
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    lifted_at: datetime | None = None
    lifted_by: str | None = None
    item_id: int | None = None

    def active(self, now: datetime) -> bool:
        if self.lifted_at is not None or self.kind is SanctionKind.WARN:
            return False
        return self.expires_at is None or self.expires_at > now

    def covers(self, conversation_id: int | None) -> bool:
        return self.conversation_id is None or self.conversation_id == conversation_id


@dataclass(frozen=True, slots=True)
class QueueItem:
    id: int
    kind: ItemKind
    status: ItemStatus
    tier: Tier
    conversation_id: int
    message_id: int | None
    sender_id: int
    client_msg_id: str
    body: str
    attachments: list[AttachmentRef]
    metadata: dict[str, Any]
    rule: str  # the rule that held it, or "" for a report
    reason: str
    reports: int
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: Resolution | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    id: int
    item_id: int
    reporter_id: int
    reason: ReportReason
    note: str
    created_at: datetime
