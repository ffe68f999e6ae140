"""Every event Parley sends to clients, one pydantic model each; all transports use these."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from parley.core.models import Message, MessageChange


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def message_payload(message: Message) -> dict[str, Any]:
    """A message as clients see it, on the stream and over REST alike.

    A tombstone (`deleted_at` set) keeps its id and seq; its body, attachments, metadata,
    mentions and reactions are empty.
    """
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "pos": message.pos,
        "sender_id": message.sender_id,
        "client_msg_id": message.client_msg_id,
        "body": message.body,
        "attachments": [asdict(ref) for ref in message.attachments],
        "metadata": message.metadata,
        "created_at": _iso(message.created_at),
        "reply_to_id": message.reply_to_id,
        "thread_root_id": message.thread_root_id,
        "reply_count": message.reply_count,
        "last_reply_seq": message.last_reply_seq,
        "mentions": message.mentions,
        "mentions_here": message.mentions_here,
        "reactions": [asdict(reaction) for reaction in message.reactions],
        "edited_at": _iso(message.edited_at),
        "deleted_at": _iso(message.deleted_at),
        "deleted_by": message.deleted_by.value if message.deleted_by else None,
    }


class MessageEvent(BaseModel):
    type: Literal["message"] = "message"
    pos: int
    conversation_id: int
    seq: int
    message: dict[str, Any]

    @classmethod
    def of(cls, message: Message) -> MessageEvent:
        return cls(
            pos=message.pos,
            conversation_id=message.conversation_id,
            seq=message.seq,
            message=message_payload(message),
        )


class MessageUpdatedEvent(BaseModel):
    """A stored message changed: edited, deleted (a tombstone) or its reactions.

    `pos` is the change's own stream position; `message` is the whole message as it is now
    (replace the one with this `seq`), so applying it twice, or out of date, is harmless.
    """

    type: Literal["message.updated"] = "message.updated"
    pos: int
    conversation_id: int
    seq: int
    change: Literal["edited", "deleted", "reactions"]
    message: dict[str, Any]

    @classmethod
    def of(cls, change: MessageChange) -> MessageUpdatedEvent:
        return cls(
            pos=change.pos,
            conversation_id=change.message.conversation_id,
            seq=change.message.seq,
            change=change.kind.value,
            message=message_payload(change.message),
        )


class ThreadReceiptEvent(BaseModel):
    """To the reader's own sessions only: their read cursor in a thread moved."""

    type: Literal["thread.receipt"] = "thread.receipt"
    conversation_id: int
    root_id: int
    user_id: int
    read_seq: int


class ReceiptEvent(BaseModel):
    type: Literal["receipt"] = "receipt"
    conversation_id: int
    user_id: int
    delivered_seq: int
    read_seq: int


class TypingEvent(BaseModel):
    type: Literal["typing"] = "typing"
    conversation_id: int
    user_id: int
    expires_in_ms: int


class PresenceEvent(BaseModel):
    type: Literal["presence"] = "presence"
    user_id: int
    status: Literal["online", "offline"]


class ConversationUpdatedEvent(BaseModel):
    type: Literal["conversation.updated"] = "conversation.updated"
    conversation_id: int
    member_ids: list[int]
    removed_ids: list[int] = []


class ControlEvent(BaseModel):
    """To every connection, or only to `user_ids`' when set (e.g. a banned user's streams)."""

    type: Literal["control"] = "control"
    # maintenance: mode "on" | "off", reason = the operators' message (docs/operations.md);
    # revoked: the token this stream was opened with is no longer valid; the stream ends.
    op: Literal["transport", "reconnect", "maintenance", "revoked"]
    mode: str | None = None
    reason: str | None = None
    user_ids: list[int] = Field(default_factory=list, exclude=True)


class CredentialsRevokedEvent(BaseModel):
    """Between nodes only, never sent to a client: close the streams opened with these tokens,
    and with `all_streams` every stream of the user (disabled, role or password changed).
    """

    type: Literal["credentials.revoked"] = "credentials.revoked"
    user_id: int
    token_ids: list[int] = []
    all_streams: bool = False
    reason: str


class HelloEvent(BaseModel):
    type: Literal["hello"] = "hello"
    cursor: str
    transport: str
    mode: str
    resumed: int


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    code: str
    message: str
    ref: str | None = None
    retry_after: float | None = None


class AckEvent(BaseModel):
    type: Literal["ack"] = "ack"
    ref: str
    conversation_id: int
    id: int
    seq: int
    pos: int
    duplicate: bool


class FlagsUpdatedEvent(BaseModel):
    """Feature flags changed: fetch `GET /v1/flags` again (values differ per user)."""

    type: Literal["flags.updated"] = "flags.updated"
    revision: int
    keys: list[str] = []


class LivechatChangedEvent(BaseModel):
    """Between nodes only, never sent to a client: inboxes, branches or widget sessions changed,
    so each node drops its copy of them (`features/livechat/directory.py`)."""

    type: Literal["livechat.changed"] = "livechat.changed"


class LivechatConversationEvent(BaseModel):
    """Staff only: a live-chat conversation was opened or changed, or its visitor wrote.

    `staff_ids` is the audience, never sent: admins, the inbox's and the branch's operators,
    and the assignee. The visitor is never in it.
    """

    type: Literal["livechat.conversation"] = "livechat.conversation"
    conversation: dict[str, Any]
    staff_ids: list[int] = Field(default_factory=list, exclude=True)


class LivechatNoteEvent(BaseModel):
    """Staff only: a new internal note (same audience as `livechat.conversation`)."""

    type: Literal["livechat.note"] = "livechat.note"
    note: dict[str, Any]
    staff_ids: list[int] = Field(default_factory=list, exclude=True)


class ModerationNoticeEvent(BaseModel):
    """To one user: a moderator warned, muted or banned them, or removed their message.

    `conversation_id` is None for a deployment-wide sanction; `expires_at` None: until lifted.
    """

    type: Literal["moderation.notice"] = "moderation.notice"
    action: Literal["warn", "mute", "ban", "removed", "lifted"]
    conversation_id: int | None = None
    reason: str = ""
    expires_at: str | None = None
    user_ids: list[int] = Field(default_factory=list, exclude=True)


class ModerationItemEvent(BaseModel):
    """Moderators and admins only: a queue item was added, reported again, decided or escalated."""

    type: Literal["moderation.item"] = "moderation.item"
    item: dict[str, Any]
    staff_ids: list[int] = Field(default_factory=list, exclude=True)


class DisputeUpdatedEvent(BaseModel):
    """dispute_ops (and the parties, without staff notes): a dispute was opened or changed."""

    type: Literal["dispute.updated"] = "dispute.updated"
    change: str
    dispute: dict[str, Any]
    user_ids: list[int] = Field(default_factory=list, exclude=True)


StaffEvent = LivechatConversationEvent | LivechatNoteEvent

CallEventType = Literal[
    "call.offer",
    "call.answer",
    "call.ice",
    "call.reject",
    "call.busy",
    "call.hangup",
    "call.missed",
    "call.sync",
]


class CallEvent(BaseModel):
    """A call's signal or change of state, for its two parties only (every stream of theirs).

    `type` says what happened: `call.offer` carries the offer's `sdp` and the caller's ICE
    `candidates` so far; `call.answer` the answer's `sdp`; `call.ice` one `candidate`;
    `call.reject`, `call.busy` and `call.hangup` end the call, and so does the server's
    `call.missed` when nobody answered. A stream that opens while one of its user's calls is
    live gets `call.offer` (ringing, for the callee) or `call.sync` (the peer's SDP and
    candidates so far). `call` is the call after the change; `from_device` the device that
    sent it (devices ignore what is not for them). `audience`, the two parties, is never sent.
    """

    type: CallEventType
    call: dict[str, Any]
    from_user_id: int | None = None
    from_device: str | None = None
    sdp: str | None = None
    candidate: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] | None = None
    audience: list[int] = Field(default_factory=list, exclude=True)


class CallAckEvent(BaseModel):
    """The answer to a call frame sent over the WebSocket with a `ref`: the call after it."""

    type: Literal["call.ack"] = "call.ack"
    ref: str
    call: dict[str, Any]
    duplicate: bool = False


Event = (
    MessageEvent
    | MessageUpdatedEvent
    | ThreadReceiptEvent
    | ReceiptEvent
    | TypingEvent
    | PresenceEvent
    | ConversationUpdatedEvent
    | ControlEvent
    | CredentialsRevokedEvent
    | FlagsUpdatedEvent
    | LivechatChangedEvent
    | LivechatConversationEvent
    | LivechatNoteEvent
    | ModerationNoticeEvent
    | ModerationItemEvent
    | DisputeUpdatedEvent
    | CallEvent
)
