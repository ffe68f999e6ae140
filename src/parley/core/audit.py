"""The audit log's vocabulary: who did what to which target, when, with before/after and why.

Every staff action lands here (moderation, assignment, role and token changes, flag and rollout
changes, inbox and branch changes, exports, deletions). Entries are append-only: no code path
updates or deletes one, and the database refuses it too (triggers, migration 0005).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from parley.core.models import User

# Actor labels of actions no person took directly.
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a signed-in user (`id` set), a CLI operator (`cli:<login>`), or the system."""

    label: str
    id: int | None = None
    source: str = "api"  # api | cli | system

    @classmethod
    def of(cls, actor: User | Actor | str) -> Actor:
        if isinstance(actor, Actor):
            return actor
        if isinstance(actor, User):
            return cls(actor.name, actor.id, "api")
        if actor.startswith("cli:"):
            return cls(actor, None, "cli")
        return cls(actor, None, "system" if actor in {SYSTEM, "watcher"} else "api")


@dataclass(frozen=True, slots=True)
class Target:
    """What was acted on: a kind (`flag`, `rollout`, `conversation`, `user`...) and its id."""

    kind: str
    id: str

    @classmethod
    def of(cls, kind: str, ident: object) -> Target:
        return cls(kind, str(ident))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    actor_id: int | None
    source: str
    action: str
    target_kind: str
    target_id: str
    before: Any
    after: Any
    reason: str


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """A search of the log. `action` matches a prefix (`flag.` finds every flag action)."""

    actor: str | None = None
    action: str | None = None
    target_kind: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # paging: entries older than this id
    after_id: int | None = None  # following: entries newer than this id
    limit: int = 100
