"""Request and response bodies of the REST API, with every field's documented maximum."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from parley.core import limits
from parley.core.inputs import (  # noqa: F401 - re-exported: the API's field types
    ATTACHMENT_ID_PATTERN,
    AttachmentId,
    EditIn,
    Input,
    MessageId,
    Metadata,
    ReceiptIn,
    SendIn,
    Seq,
    Text,
    ThreadReadIn,
    UserName,
)
from parley.core.models import (
    AttachmentRef,
    Conversation,
    ConversationSummary,
    ConversationUnread,
    Member,
    Message,
    MessageVersion,
    ReactionCount,
    ThreadUnread,
    User,
)
from parley.core.search import Snippet


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


class ReactionOut(BaseModel):
    emoji: str
    count: int
    user_ids: list[int] = Field(description="Who reacted, in order (the first 100 on a message).")

    @classmethod
    def of(cls, reaction: ReactionCount) -> ReactionOut:
        return cls(emoji=reaction.emoji, count=reaction.count, user_ids=reaction.user_ids)


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
    reply_to_id: int | None = Field(None, description="The message this one quotes.")
    thread_root_id: int | None = Field(None, description="The thread this reply is in.")
    reply_count: int = Field(0, description="On a thread's root: its replies (not deleted).")
    last_reply_seq: int | None = None
    mentions: list[int] = Field(default_factory=list, description="Members named with @name.")
    mentions_here: bool = False
    reactions: list[ReactionOut] = Field(default_factory=list)
    edited_at: datetime | None = None
    deleted_at: datetime | None = Field(
        None, description="Set on a tombstone: body, attachments and reactions are gone."
    )
    deleted_by: Literal["author", "staff", "system"] | None = None

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
            reply_to_id=message.reply_to_id,
            thread_root_id=message.thread_root_id,
            reply_count=message.reply_count,
            last_reply_seq=message.last_reply_seq,
            mentions=message.mentions,
            mentions_here=message.mentions_here,
            reactions=[ReactionOut.of(reaction) for reaction in message.reactions],
            edited_at=message.edited_at,
            deleted_at=message.deleted_at,
            deleted_by=message.deleted_by.value if message.deleted_by else None,
        )


class ReactionsOut(BaseModel):
    reactions: list[ReactionOut]


class VersionOut(BaseModel):
    version: int
    body: str
    written_at: datetime
    editor_id: int | None
    current: bool

    @classmethod
    def of(cls, version: MessageVersion) -> VersionOut:
        return cls(
            version=version.version,
            body=version.body,
            written_at=version.written_at,
            editor_id=version.editor_id,
            current=version.current,
        )


class VersionsOut(BaseModel):
    versions: list[VersionOut]


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
    unread: int = Field(description="Unread messages of others (thread replies count in threads).")
    mentions: int = Field(description="Unread messages that mention you, threads included.")
    delivered_seq: int
    read_seq: int
    member_ids: list[int]
    live_chat: bool = Field(
        default=False,
        description="A website visitor's conversation: the console shows it, the chat app not.",
    )

    @classmethod
    def of_summary(cls, summary: ConversationSummary) -> ConversationListItem:
        return cls(
            **ConversationOut.of(summary.conversation).model_dump(),
            unread=summary.unread,
            mentions=summary.mentions,
            delivered_seq=summary.member.delivered_seq,
            read_seq=summary.member.read_seq,
            member_ids=summary.member_ids,
            live_chat=summary.live_chat,
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


class ThreadOut(BaseModel):
    root: MessageOut
    replies: list[MessageOut]
    following: bool = Field(description="You wrote in it, were mentioned, or marked it read.")
    read_seq: int
    unread: int


class ThreadItemOut(BaseModel):
    root: MessageOut
    following: bool
    read_seq: int
    unread: int


class ThreadsOut(BaseModel):
    threads: list[ThreadItemOut]


class ThreadReadOut(BaseModel):
    read_seq: int
    ignored: bool = Field(description="True when the value was lower than the stored cursor.")


class ThreadUnreadOut(BaseModel):
    root_id: int
    last_reply_seq: int
    read_seq: int
    unread: int
    mentions: int

    @classmethod
    def of(cls, thread: ThreadUnread) -> ThreadUnreadOut:
        return cls(
            root_id=thread.root_id,
            last_reply_seq=thread.last_reply_seq,
            read_seq=thread.read_seq,
            unread=thread.unread,
            mentions=thread.mentions,
        )


class ConversationUnreadOut(BaseModel):
    conversation_id: int
    last_seq: int
    read_seq: int
    unread: int
    mentions: int
    threads: list[ThreadUnreadOut]

    @classmethod
    def of(cls, unread: ConversationUnread) -> ConversationUnreadOut:
        return cls(
            conversation_id=unread.conversation_id,
            last_seq=unread.last_seq,
            read_seq=unread.read_seq,
            unread=unread.unread,
            mentions=unread.mentions,
            threads=[ThreadUnreadOut.of(thread) for thread in unread.threads],
        )


class UnreadOut(BaseModel):
    conversations: list[ConversationUnreadOut]
    unread: int = Field(description="All unread messages: conversations and followed threads.")
    mentions: int

    @classmethod
    def of(cls, found: list[ConversationUnread]) -> UnreadOut:
        return cls(
            conversations=[ConversationUnreadOut.of(unread) for unread in found],
            unread=sum(c.unread + sum(t.unread for t in c.threads) for c in found),
            mentions=sum(c.mentions for c in found),
        )


class ReadAllIn(Input):
    conversation_id: MessageId | None = Field(None, description="Only this conversation.")


class FragmentOut(BaseModel):
    text: str
    hit: bool


class SearchResultOut(BaseModel):
    message: MessageOut
    snippet: list[FragmentOut] = Field(
        description="Plain-text pieces of the body; `hit` marks matches. Render as text."
    )

    @classmethod
    def of(cls, message: Message, snippet: Snippet) -> SearchResultOut:
        return cls(
            message=MessageOut.of(message),
            snippet=[FragmentOut(text=f.text, hit=f.hit) for f in snippet.fragments],
        )


class SearchOut(BaseModel):
    results: list[SearchResultOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")
