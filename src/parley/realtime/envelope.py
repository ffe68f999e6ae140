"""Envelope: one event serialized once, with who it is for and its stream position."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.frames import Frame, Opcode

from parley.core.events import (
    CallEvent,
    ControlEvent,
    ConversationUpdatedEvent,
    CredentialsRevokedEvent,
    DisputeUpdatedEvent,
    Event,
    FlagsUpdatedEvent,
    LivechatChangedEvent,
    LivechatConversationEvent,
    LivechatNoteEvent,
    MessageEvent,
    MessageUpdatedEvent,
    ModerationItemEvent,
    ModerationNoticeEvent,
    PresenceEvent,
    ThreadReceiptEvent,
)


@dataclass(slots=True)
class Envelope:
    """An event on its way to connections.

    `data` is the event's JSON, made once and sent as-is by every transport. Message events (new
    messages and changes to them) carry their stream position `pos`; the rest are delivered as
    they come. The audience is the members
    of `conversation_ids`, plus `user_ids`, or everyone when `broadcast`.
    """

    type: str
    data: str
    pos: int | None = None
    conversation_ids: tuple[int, ...] = ()
    user_ids: tuple[int, ...] = ()
    broadcast: bool = False
    committed_at: float = field(default_factory=time.time)
    _sse: bytes | None = None
    _ws: bytes | None = None

    def sse_frame(self) -> bytes:
        """The Server-Sent Events frame, made once per envelope."""
        if self._sse is None:
            event_id = f"id: {self.pos}\n" if self.pos is not None else ""
            self._sse = f"{event_id}event: {self.type}\ndata: {self.data}\n\n".encode()
        return self._sse

    def ws_frame(self) -> bytes:
        """The WebSocket text frame a server sends (unmasked, uncompressed), made once per
        envelope: fanning an event out to its connections then writes the same bytes to each."""
        if self._ws is None:
            self._ws = Frame(Opcode.TEXT, self.data.encode()).serialize(mask=False)
        return self._ws

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "data": self.data,
            "pos": self.pos,
            "conversation_ids": list(self.conversation_ids),
            "user_ids": list(self.user_ids),
            "broadcast": self.broadcast,
            "committed_at": self.committed_at,
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Envelope:
        return cls(
            type=wire["type"],
            data=wire["data"],
            pos=wire["pos"],
            conversation_ids=tuple(wire["conversation_ids"]),
            user_ids=tuple(wire["user_ids"]),
            broadcast=wire["broadcast"],
            committed_at=wire["committed_at"],
        )


def envelope_for(event: Event, *, audience: tuple[int, ...] = ()) -> Envelope:
    """Wrap an event; `audience` is the conversations a presence change concerns."""
    data = event.model_dump_json()
    if isinstance(event, MessageEvent | MessageUpdatedEvent):
        return Envelope(event.type, data, pos=event.pos, conversation_ids=(event.conversation_id,))
    if isinstance(event, ThreadReceiptEvent):
        # The reader's own sessions only: what someone has read in a thread is theirs.
        return Envelope(event.type, data, user_ids=(event.user_id,))
    if isinstance(event, ConversationUpdatedEvent):
        return Envelope(
            event.type,
            data,
            conversation_ids=(event.conversation_id,),
            user_ids=(*event.member_ids, *event.removed_ids),
        )
    if isinstance(event, PresenceEvent):
        return Envelope(event.type, data, conversation_ids=audience)
    if isinstance(event, ControlEvent) and event.user_ids:
        return Envelope(event.type, data, user_ids=tuple(event.user_ids))
    if isinstance(
        event, ControlEvent | FlagsUpdatedEvent | CredentialsRevokedEvent | LivechatChangedEvent
    ):
        return Envelope(event.type, data, broadcast=True)
    if isinstance(event, LivechatConversationEvent | LivechatNoteEvent | ModerationItemEvent):
        # Addressed to staff users only: no conversation id, so no member (the visitor) gets it.
        return Envelope(event.type, data, user_ids=tuple(event.staff_ids))
    if isinstance(event, ModerationNoticeEvent | DisputeUpdatedEvent):
        return Envelope(event.type, data, user_ids=tuple(event.user_ids))
    if isinstance(event, CallEvent):
        # The two parties only: SDP and candidates carry their network addresses.
        return Envelope(event.type, data, user_ids=tuple(event.audience))
    return Envelope(event.type, data, conversation_ids=(event.conversation_id,))


def encode_batch(node_id: str, envelopes: list[Envelope]) -> str:
    return json.dumps({"node": node_id, "envelopes": [e.to_wire() for e in envelopes]})


def decode_batch(payload: str | bytes) -> tuple[str, list[Envelope]]:
    decoded = json.loads(payload)
    return decoded["node"], [Envelope.from_wire(wire) for wire in decoded["envelopes"]]
