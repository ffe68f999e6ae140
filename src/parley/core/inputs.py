"""Validated inputs shared by the REST API and the stream transports: the same fields, the
same limits and the same error codes whichever way a client sends them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from parley.core import limits
from parley.core.errors import BadInput, ErrorCode
from parley.core.text import check_metadata, check_text


def _text(value: str) -> str:
    try:
        return check_text(value)
    except BadInput as exc:
        raise PydanticCustomError("invalid_text", exc.message) from None


# The pydantic error type each of our codes travels as (api/errors.py maps them back).
_ERROR_TYPES = {ErrorCode.INVALID_TEXT: "invalid_text", ErrorCode.INVALID_JSON: "json_invalid"}


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_metadata(value)
    except BadInput as exc:
        raise PydanticCustomError(
            _ERROR_TYPES.get(exc.code, "metadata_invalid"), exc.message
        ) from None


def Text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[
        str, Field(min_length=min_length, max_length=max_length), AfterValidator(_text)
    ]


UserName = Annotated[
    str, Field(min_length=1, max_length=limits.USER_NAME_MAX_CHARS, pattern=r"^[A-Za-z0-9._-]+$")
]
Seq = Annotated[int, Field(ge=0, le=limits.SEQ_MAX)]
# Attachment ids are server-made (`att_` + URL-safe base64); anything else cannot name one, and
# checking the shape keeps NUL (which PostgreSQL refuses and SQLite stores) out of queries.
ATTACHMENT_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
AttachmentId = Annotated[str, Field(min_length=1, max_length=40, pattern=ATTACHMENT_ID_PATTERN)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]


class Input(BaseModel):
    """Request bodies: unknown fields and type coercion are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


MessageId = Annotated[int, Field(ge=1, le=limits.SEQ_MAX)]


class SendIn(Input):
    client_msg_id: Text(limits.CLIENT_MSG_ID_MAX_CHARS, min_length=1)  # type: ignore[valid-type]
    body: Text(limits.MESSAGE_BODY_MAX_CHARS) = ""  # type: ignore[valid-type]
    attachments: list[AttachmentId] = Field(
        default_factory=list, max_length=limits.ATTACHMENTS_PER_MESSAGE_MAX
    )
    metadata: Metadata = Field(default_factory=dict)
    # Quote a message of the conversation; post in a message's thread.
    reply_to_id: MessageId | None = None
    thread_root_id: MessageId | None = None


class EditIn(Input):
    body: Text(limits.MESSAGE_BODY_MAX_CHARS)  # type: ignore[valid-type]
    # Retrying an edit with the same id changes the message once.
    client_op_id: Text(limits.CLIENT_OP_ID_MAX_CHARS, min_length=1) | None = None  # type: ignore[valid-type]


class ReceiptIn(Input):
    delivered_seq: Seq | None = None
    read_seq: Seq | None = None


class ThreadReadIn(Input):
    read_seq: Seq
