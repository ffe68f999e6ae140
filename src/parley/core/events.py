"""Every event Parley sends to clients, one pydantic model each; all transports use these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class MessageEvent(BaseModel):
    type: Literal["message"] = "message"
    conversation_id: int
    seq: int
    message: dict[str, Any]


class ReceiptEvent(BaseModel):
    type: Literal["receipt"] = "receipt"
    conversation_id: int
    user_id: int
    delivered_seq: int
    read_seq: int


class ConversationUpdatedEvent(BaseModel):
    type: Literal["conversation.updated"] = "conversation.updated"
    conversation_id: int
    member_ids: list[int]


Event = MessageEvent | ReceiptEvent | ConversationUpdatedEvent
