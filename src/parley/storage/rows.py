"""Turn table rows into domain objects (one place, so every store reads rows the same way)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from parley.core.models import (
    Attachment,
    AttachmentRef,
    Conversation,
    ConversationKind,
    DeletedBy,
    Member,
    MemberRole,
    Message,
    ReactionCount,
    Role,
    User,
)


def utc(value: datetime | str) -> datetime:
    """SQLite hands timestamps back without a zone (or as text); they were written in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def user_from_row(row: Row[Any]) -> User:
    return User(
        id=row.id,
        name=row.name,
        display_name=row.display_name,
        role=Role(row.role),
        internal=bool(row.internal),
        created_at=utc(row.created_at),
    )


def conversation_from_row(row: Row[Any]) -> Conversation:
    return Conversation(
        id=row.id,
        kind=ConversationKind(row.kind),
        title=row.title,
        created_by=row.created_by,
        created_at=utc(row.created_at),
        last_seq=row.last_seq,
    )


def member_from_row(row: Row[Any], prefix: str = "") -> Member:
    """`prefix` reads a member whose columns were labelled `{prefix}{name}` in a join."""
    m = row._mapping
    return Member(
        conversation_id=m[f"{prefix}conversation_id"],
        user_id=m[f"{prefix}user_id"],
        role=MemberRole(m[f"{prefix}role"]),
        delivered_seq=m[f"{prefix}delivered_seq"],
        read_seq=m[f"{prefix}read_seq"],
        joined_at=utc(m[f"{prefix}joined_at"]),
    )


def message_from_row(row: Row[Any]) -> Message:
    return Message(
        id=row.id,
        conversation_id=row.conversation_id,
        seq=row.seq,
        pos=row.pos,
        sender_id=row.sender_id,
        client_msg_id=row.client_msg_id,
        body=row.body,
        attachments=[AttachmentRef(**ref) for ref in _json(row.attachments)],
        metadata=_json(row.metadata),
        created_at=utc(row.created_at),
        reply_to_id=row.reply_to_id,
        thread_root_id=row.thread_root_id,
        reply_count=row.reply_count,
        last_reply_seq=row.last_reply_seq,
        mentions=list(_json(row.mentions)),
        mentions_here=bool(row.mentions_here),
        reactions=[ReactionCount(**reaction) for reaction in _json(row.reactions)],
        edited_at=_utc_or_none(row.edited_at),
        deleted_at=_utc_or_none(row.deleted_at),
        deleted_by=DeletedBy(row.deleted_by) if row.deleted_by else None,
    )


def _utc_or_none(value: datetime | str | None) -> datetime | None:
    return utc(value) if value is not None else None


def attachment_from_row(row: Row[Any]) -> Attachment:
    return Attachment(
        id=row.id,
        conversation_id=row.conversation_id,
        uploader_id=row.uploader_id,
        file_name=row.file_name,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
        created_at=utc(row.created_at),
    )
