"""Domain objects shared by every layer: users, conversations, members, messages, attachments."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    """What a user may do across the whole deployment."""

    MEMBER = "member"
    OPERATOR = "operator"
    MODERATOR = "moderator"
    DISPUTE_OPS = "dispute_ops"
    ADMIN = "admin"


class ConversationKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    ROOM = "room"


class MemberRole(StrEnum):
    """What a member may do inside one conversation."""

    OWNER = "owner"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    display_name: str
    role: Role
    internal: bool
    created_at: datetime
    # A website visitor (widget): reachable in their own live-chat conversations only.
    visitor: bool = False
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    kind: ConversationKind
    title: str
    created_by: int
    created_at: datetime
    last_seq: int


@dataclass(frozen=True, slots=True)
class Member:
    conversation_id: int
    user_id: int
    role: MemberRole
    delivered_seq: int
    read_seq: int
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A conversation as one of its members sees it in their list."""

    conversation: Conversation
    member: Member
    unread: int
    member_ids: list[int]


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """What a message carries about each of its files."""

    id: str
    file_name: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Attachment:
    id: str
    conversation_id: int
    uploader_id: int
    file_name: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime

    def ref(self) -> AttachmentRef:
        return AttachmentRef(self.id, self.file_name, self.content_type, self.size)


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    conversation_id: int
    seq: int
    pos: int
    sender_id: int
    client_msg_id: str
    body: str
    attachments: list[AttachmentRef]
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A send accepted by the checks, waiting for the writer to give it a `seq`."""

    conversation_id: int
    sender_id: int
    client_msg_id: str
    body: str
    attachments: list[AttachmentRef] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> tuple[int, int, str]:
        return (self.conversation_id, self.sender_id, self.client_msg_id)


@dataclass(frozen=True, slots=True)
class Appended:
    """The writer's answer to one send: the stored message, and whether this send created it."""

    message: Message
    created: bool
