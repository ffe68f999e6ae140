"""Client frames of the WebSocket protocol, validated like REST bodies (same limits)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from parley.core.errors import BadInput, ErrorCode
from parley.core.inputs import Input, ReceiptIn, SendIn
from parley.core.limits import SEQ_MAX

ConversationId = Field(ge=1, le=SEQ_MAX)


class SendFrame(SendIn):
    type: Literal["send"]
    conversation_id: int = ConversationId


class ReceiptFrame(ReceiptIn):
    type: Literal["receipt"]
    conversation_id: int = ConversationId


class TypingFrame(Input):
    type: Literal["typing"]
    conversation_id: int = ConversationId


F = TypeVar("F", bound=BaseModel)


def parse_frame(model: type[F], frame: dict[str, Any]) -> F:
    try:
        return model.model_validate(frame)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        code = ErrorCode.INVALID_TEXT if first["type"] == "invalid_text" else ErrorCode.VALIDATION
        raise BadInput(f"{where}: {first['msg']}", code) from None
