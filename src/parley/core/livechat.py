"""Live chat as the domain sees it: branches, a visitor conversation's state, internal notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Where a visitor conversation stands; a visitor's new message reopens resolved/closed."""

    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


# Conversations that still need an operator: what auto-assign balances on.
ACTIVE_STATUSES = (Status.OPEN, Status.PENDING)


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


@dataclass(frozen=True, slots=True)
class Branch:
    """A team of operators that routed conversations go to."""

    id: int
    name: str
    operators: list[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LivechatConversation:
    conversation_id: int
    inbox_id: int
    visitor_id: int
    status: Status
    priority: Priority
    assignee_id: int | None
    branch_id: int | None
    page_url: str | None
    language: str | None
    country: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None


@dataclass(frozen=True, slots=True)
class LastMessage:
    body: str
    sender_id: int
    seq: int
    created_at: datetime
    deleted: bool = False  # a tombstone (unsent or removed): its body is empty


@dataclass(frozen=True, slots=True)
class ListedConversation:
    """A conversation as the console lists it: its state and its latest message."""

    state: LivechatConversation
    last_message: LastMessage | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Staff only: notes are not messages, so nothing that carries messages can carry them."""

    id: int
    conversation_id: int
    author_id: int
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CannedReply:
    """An inbox's saved answer; `/shortcut` in the console's message box picks it."""

    id: int
    inbox_id: int
    shortcut: str
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    """What the console asks for; `visible_*` narrow it to what a non-admin may see."""

    inbox_id: int | None = None
    statuses: tuple[Status, ...] = ()  # empty: any status
    priority: Priority | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    limit: int = 50
    # None: everything (admins). Otherwise: conversations of these inboxes or these branches,
    # or assigned to `visible_assignee_id`.
    visible_inbox_ids: list[int] | None = None
    visible_branch_ids: list[int] = field(default_factory=list)
    visible_assignee_id: int | None = None
