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
    # Unread messages that mention the member (main timeline and followed threads).
    mentions: int = 0
    # A website visitor is a member: the conversation belongs to an inbox's console.
    live_chat: bool = False


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
class ReactionCount:
    """One emoji on a message: how many reacted with it, and (the first 100 of) who."""

    emoji: str
    count: int
    user_ids: list[int]


class DeletedBy(StrEnum):
    """Who turned a message into a tombstone."""

    AUTHOR = "author"
    STAFF = "staff"  # an admin or moderator (moderation)
    SYSTEM = "system"  # no person: personal-data erasure, retention


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
    reply_to_id: int | None = None
    thread_root_id: int | None = None
    reply_count: int = 0
    last_reply_seq: int | None = None
    mentions: list[int] = field(default_factory=list)
    mentions_here: bool = False
    reactions: list[ReactionCount] = field(default_factory=list)
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    deleted_by: DeletedBy | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A send accepted by the checks, waiting for the writer to give it a `seq`.

    `mentions` are the members named with @name; `here_ids` the other members an @here reached.
    Both become mention rows; only `mentions` (and `mentions_here`) show on the message.
    `thread_root_sender_id` is the author of `thread_root_id`, who follows the thread from now.
    """

    conversation_id: int
    sender_id: int
    client_msg_id: str
    body: str
    attachments: list[AttachmentRef] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    reply_to_id: int | None = None
    thread_root_id: int | None = None
    thread_root_sender_id: int | None = None
    mentions: list[int] = field(default_factory=list)
    mentions_here: bool = False
    here_ids: list[int] = field(default_factory=list)

    @property
    def idempotency_key(self) -> tuple[int, int, str]:
        return (self.conversation_id, self.sender_id, self.client_msg_id)

    @property
    def has_extras(self) -> bool:
        """True when storing it takes more than the message row (mentions, a thread)."""
        return bool(self.mentions or self.here_ids or self.thread_root_id)


@dataclass(frozen=True, slots=True)
class Appended:
    """The writer's answer to one send: the stored message, and whether this send created it."""

    message: Message
    created: bool


class ChangeKind(StrEnum):
    """What happened to a stored message (each change gets its own stream position)."""

    EDITED = "edited"
    DELETED = "deleted"
    REACTIONS = "reactions"


@dataclass(frozen=True, slots=True)
class Changed:
    """The answer to an edit, delete or reaction: the message now, and the change's position.

    `pos` is None when nothing changed (a retry, an edit to the same text, a second delete).
    """

    message: Message
    pos: int | None

    @property
    def changed(self) -> bool:
        return self.pos is not None


@dataclass(frozen=True, slots=True)
class MessageChange:
    """A change as the stream carries it: its position, its kind, the message as it is now."""

    pos: int
    kind: ChangeKind
    message: Message


@dataclass(frozen=True, slots=True)
class MessageVersion:
    """One version of a message's text (version 1 is what was sent)."""

    version: int
    body: str
    written_at: datetime
    editor_id: int | None
    current: bool


@dataclass(frozen=True, slots=True)
class Mention:
    """A user a message mentions; `via_here` when only @here reached them."""

    user_id: int
    via_here: bool


@dataclass(frozen=True, slots=True)
class ThreadUnread:
    """A thread a user follows: its newest reply, their read cursor, what is unread in it."""

    conversation_id: int
    root_id: int
    last_reply_seq: int
    read_seq: int
    unread: int
    mentions: int


@dataclass(frozen=True, slots=True)
class ConversationUnread:
    """A conversation's unread messages (main timeline), mentions, and its unread threads."""

    conversation_id: int
    last_seq: int
    read_seq: int
    unread: int
    mentions: int
    threads: list[ThreadUnread] = field(default_factory=list)
