"""Request and response bodies of the REST API, with every field's documented maximum."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from parley.core import limits
from parley.core.inputs import (  # noqa: F401 - re-exported: the API's field types
    ATTACHMENT_ID_PATTERN,
    AttachmentId,
    Input,
    Metadata,
    ReceiptIn,
    SendIn,
    Seq,
    Text,
    UserName,
)
from parley.core.models import (
    AttachmentRef,
    Conversation,
    ConversationSummary,
    Member,
    Message,
    User,
)


class LoginIn(Input):
    name: UserName
    password: Text(limits.PASSWORD_MAX_CHARS, min_length=1)  # type: ignore[valid-type]


class ConversationIn(Input):
    kind: Literal["direct", "group", "room"]
    title: Text(limits.TITLE_MAX_CHARS) = ""  # type: ignore[valid-type]
    members: list[UserName] = Field(default_factory=list, max_length=limits.MEMBERS_PER_REQUEST_MAX)


class MembersIn(Input):
    members: list[UserName] = Field(min_length=1, max_length=limits.MEMBERS_PER_REQUEST_MAX)


class UserOut(BaseModel):
    id: int
    name: str
    display_name: str
    role: str
    internal: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            name=user.name,
            display_name=user.display_name,
            role=user.role.value,
            internal=user.internal,
        )


class TokenOut(BaseModel):
    token: str
    user: UserOut


class AttachmentOut(BaseModel):
    id: str
    file_name: str
    content_type: str
    size: int

    @classmethod
    def of(cls, ref: AttachmentRef) -> AttachmentOut:
        return cls(id=ref.id, file_name=ref.file_name, content_type=ref.content_type, size=ref.size)


class MessageOut(BaseModel):
    id: int
    conversation_id: int
    seq: int
    pos: int = Field(description="Stream position: pass as `cursor` to resume after this message.")
    sender_id: int
    client_msg_id: str
    body: str
    attachments: list[AttachmentOut]
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, message: Message) -> MessageOut:
        return cls(
            id=message.id,
            conversation_id=message.conversation_id,
            seq=message.seq,
            pos=message.pos,
            sender_id=message.sender_id,
            client_msg_id=message.client_msg_id,
            body=message.body,
            attachments=[AttachmentOut.of(ref) for ref in message.attachments],
            metadata=message.metadata,
            created_at=message.created_at,
        )


class MemberOut(BaseModel):
    user_id: int
    name: str
    display_name: str
    role: str
    delivered_seq: int
    read_seq: int

    @classmethod
    def of(cls, member: Member, user: User) -> MemberOut:
        return cls(
            user_id=member.user_id,
            name=user.name,
            display_name=user.display_name,
            role=member.role.value,
            delivered_seq=member.delivered_seq,
            read_seq=member.read_seq,
        )


class ConversationOut(BaseModel):
    id: int
    kind: str
    title: str
    created_by: int
    created_at: datetime
    last_seq: int

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationOut:
        return cls(
            id=conversation.id,
            kind=conversation.kind.value,
            title=conversation.title,
            created_by=conversation.created_by,
            created_at=conversation.created_at,
            last_seq=conversation.last_seq,
        )


class ConversationListItem(ConversationOut):
    unread: int
    delivered_seq: int
    read_seq: int
    member_ids: list[int]

    @classmethod
    def of_summary(cls, summary: ConversationSummary) -> ConversationListItem:
        return cls(
            **ConversationOut.of(summary.conversation).model_dump(),
            unread=summary.unread,
            delivered_seq=summary.member.delivered_seq,
            read_seq=summary.member.read_seq,
            member_ids=summary.member_ids,
        )


class ConversationsOut(BaseModel):
    conversations: list[ConversationListItem]


class MessagesOut(BaseModel):
    messages: list[MessageOut]
    last_seq: int


class ReceiptOut(BaseModel):
    delivered_seq: int
    read_seq: int
    ignored: bool = Field(description="True when a value was lower than the stored cursor.")


class MembersOut(BaseModel):
    members: list[MemberOut]
