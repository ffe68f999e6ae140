"""The values the Python client hands to its caller: messages, events, acks and errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TransportName = Literal["ws", "sse", "poll"]
# The fallback chain: a transport that cannot connect hands over to the next one.
TRANSPORT_CHAIN: tuple[TransportName, ...] = ("ws", "sse", "poll")


@dataclass(slots=True)
class Message:
    """One message of a timeline, in the REST `MessageOut` shape.

    One built from a WebSocket ack is `local` (no `created_at`, attachment ids only) until
    the stream delivers the stored copy, which then replaces it.
    """

    id: int
    conversation_id: int
    seq: int
    client_msg_id: str
    body: str
    sender_id: int | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    pos: int | None = None
    local: bool = False
    reply_to_id: int | None = None
    thread_root_id: int | None = None
    reply_count: int = 0
    last_reply_seq: int | None = None
    mentions: list[int] = field(default_factory=list)
    mentions_here: bool = False
    # [{"emoji", "count", "user_ids"}], as the server sent them.
    reactions: list[dict[str, Any]] = field(default_factory=list)
    edited_at: str | None = None
    deleted_at: str | None = None
    deleted_by: str | None = None

    @property
    def deleted(self) -> bool:
        """A tombstone: the message was unsent or removed; its seq stays, its content is gone."""
        return self.deleted_at is not None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        """Build from a REST message or the `message` of a stream event."""
        return cls(
            id=int(data["id"]),
            conversation_id=int(data["conversation_id"]),
            seq=int(data["seq"]),
            client_msg_id=str(data.get("client_msg_id", "")),
            body=str(data.get("body", "")),
            sender_id=data.get("sender_id"),
            attachments=list(data.get("attachments") or []),
            metadata=dict(data.get("metadata") or {}),
            created_at=data.get("created_at"),
            pos=data.get("pos"),
            reply_to_id=data.get("reply_to_id"),
            thread_root_id=data.get("thread_root_id"),
            reply_count=int(data.get("reply_count") or 0),
            last_reply_seq=data.get("last_reply_seq"),
            mentions=list(data.get("mentions") or []),
            mentions_here=bool(data.get("mentions_here", False)),
            reactions=list(data.get("reactions") or []),
            edited_at=data.get("edited_at"),
            deleted_at=data.get("deleted_at"),
            deleted_by=data.get("deleted_by"),
        )


MessageSource = Literal["stream", "ack", "history", "fill", "update"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event for the caller; `data` is its JSON object as the server sent it.

    A `message` event comes once per message, the first time the client learns of it, with
    `message` parsed and `source` saying how: `stream`, `ack` (its own send; the stream's copy
    then replaces it in the timeline silently), `history` (a full-state or history page) or
    `fill` (a gap filled over REST). A `message.updated` event comes when a held message
    changed (edited, deleted — a tombstone —, or its reactions), from the stream or (`source`
    "update") from this client's own edit, delete or reaction; `message` is the new state.
    A `receipt` event carries the maximum seen so far, and comes only when that moved.
    `resync` says the server could not resume: state is reloaded.
    """

    type: str
    data: dict[str, Any]
    transport: TransportName
    message: Message | None = None
    source: MessageSource = "stream"

    @property
    def conversation_id(self) -> int | None:
        value = self.data.get("conversation_id")
        return int(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class Ack:
    """The server's answer to a send: the message is durable with this `seq`.

    `duplicate` is true when the `client_msg_id` had been stored before (a retry);
    `pos` is the stream position, known on WebSocket acks only.
    """

    conversation_id: int
    client_msg_id: str
    id: int
    seq: int
    duplicate: bool
    transport: TransportName
    pos: int | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A member's delivered/read cursors in one conversation, as the stream last reported."""

    user_id: int
    delivered_seq: int
    read_seq: int


class ParleyClientError(Exception):
    """An error the server reported (`code` is its stable error code), or a client failure."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """True when retrying the same request later may succeed."""
        return self.code in TRANSIENT_CODES or (self.status is not None and self.status >= 500)


class Unauthenticated(ParleyClientError):
    """The token was refused; the client stops (sign in again and make a new client)."""


class ClientClosed(ParleyClientError):
    """The client was closed while the call was waiting."""

    def __init__(self) -> None:
        super().__init__("ERR_CLIENT_CLOSED", "the client is closed")


TRANSIENT_CODES = frozenset(
    {"ERR_UNAVAILABLE", "ERR_RATE_LIMITED", "ERR_INTERNAL", "ERR_RESYNC_THROTTLED", "ERR_TIMEOUT"}
)
