"""Feature flags: what a flag says, and whether it is on for one caller (pure, no I/O).

Percentage rollouts bucket a stable key exactly as Unleash does — MurmurHash3 (x86, 32-bit,
seed 0) of `"{group}:{key}"`, `bucket = hash % 100 + 1`, in when `bucket <= percent` — so the
same user (or contract, inbox, room) lands in the same cohort as in any Unleash SDK, and raising
the percentage only ever adds keys: nobody who was in drops out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import mmh3

# The release whose percentage the rollout stage sets, and the transport rollback switch.
RELEASE_FLAG = "chat_full_release"
TRANSPORT_FLAG = "transport_sse_only"


class Stickiness(StrEnum):
    """Which key a percentage buckets by: the same key always gets the same answer."""

    USER = "user"
    CONTRACT = "contract"
    INBOX = "inbox"
    ROOM = "room"


class Reason(StrEnum):
    """Why a flag evaluated as it did (OpenFeature's `reason`, in our words)."""

    OFF = "off"
    ON = "on"
    ALLOW_LIST = "allow_list"
    INTERNAL_ONLY = "internal_only"
    ROLE = "role"
    NO_KEY = "no_key"
    PERCENTAGE = "percentage"
    OUTSIDE_PERCENTAGE = "outside_percentage"


@dataclass(frozen=True, slots=True)
class Flag:
    """One flag and its targeting rules, checked in this order:

    off → off for everyone; allow-listed user or key → on; internal-only and not internal →
    off; roles set and the caller's role not among them → off; a percentage → on for the keys
    whose bucket is within it; otherwise on.
    """

    key: str
    description: str = ""
    enabled: bool = False
    internal_only: bool = False
    percentage: int | None = None
    stickiness: Stickiness = Stickiness.USER
    # Unleash's groupId: flags sharing a group share cohorts. Empty means the flag's key.
    group: str = ""
    allow_users: frozenset[int] = frozenset()
    allow_keys: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    updated_at: datetime | None = None
    updated_by: str = ""

    @property
    def bucket_group(self) -> str:
        return self.group or self.key

    def with_changes(self, **changes: Any) -> Flag:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class FlagContext:
    """Who is asking: the user's id, role and internal mark, and any other stable keys."""

    user_id: int | None = None
    role: str = ""
    internal: bool = False
    keys: Mapping[str, str] = field(default_factory=dict)

    def key_for(self, stickiness: Stickiness) -> str | None:
        if stickiness is Stickiness.USER:
            return str(self.user_id) if self.user_id is not None else None
        return self.keys.get(stickiness.value) or None


@dataclass(frozen=True, slots=True)
class Evaluation:
    key: str
    value: bool
    reason: Reason


def bucket(key: str, group: str) -> int:
    """Unleash's normalized bucket of `key` in `group`: 1..100."""
    return int(mmh3.hash(f"{group}:{key}", 0, signed=False)) % 100 + 1


def evaluate(flag: Flag, context: FlagContext) -> Evaluation:
    """Whether `flag` is on for `context`, and why."""

    def answer(value: bool, reason: Reason) -> Evaluation:
        return Evaluation(flag.key, value, reason)

    if not flag.enabled:
        return answer(False, Reason.OFF)
    if context.user_id is not None and context.user_id in flag.allow_users:
        return answer(True, Reason.ALLOW_LIST)
    key = context.key_for(flag.stickiness)
    if key is not None and key in flag.allow_keys:
        return answer(True, Reason.ALLOW_LIST)
    if flag.internal_only and not context.internal:
        return answer(False, Reason.INTERNAL_ONLY)
    if flag.roles and context.role not in flag.roles:
        return answer(False, Reason.ROLE)
    if flag.percentage is None:
        return answer(True, Reason.ON)
    if key is None:
        return answer(False, Reason.NO_KEY)
    if bucket(key, flag.bucket_group) <= flag.percentage:
        return answer(True, Reason.PERCENTAGE)
    return answer(False, Reason.OUTSIDE_PERCENTAGE)


def evaluate_all(flags: list[Flag], context: FlagContext) -> dict[str, Evaluation]:
    return {flag.key: evaluate(flag, context) for flag in flags}
