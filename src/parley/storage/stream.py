"""StreamStore: what resuming and gap-filling read, and deployment-wide runtime settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from parley.core.models import ChangeKind, Member, Message, MessageChange
from parley.storage.database import Database
from parley.storage.rows import member_from_row, message_from_row, now, utc
from parley.storage.schema import (
    conversations,
    members,
    message_changes,
    messages,
    runtime_settings,
    stream_head,
)


class StreamStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_head(self) -> int:
        """The last stream position handed out (every position up to it is committed)."""
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(select(stream_head.c.pos).where(stream_head.c.id == 1))
                ).scalar_one()
            )

    async def list_conversation_ids(self, user_id: int) -> list[int]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(members.c.conversation_id).where(members.c.user_id == user_id)
            )
            return [int(r) for r in rows.scalars()]

    async def list_messages_between(
        self,
        after: int,
        upto: int,
        *,
        conversation_ids: list[int] | None = None,
        limit: int = 500,
    ) -> list[Message]:
        """Messages with `after < pos <= upto` by position, optionally of some conversations."""
        query = select(messages).where(messages.c.pos > after, messages.c.pos <= upto)
        if conversation_ids is not None:
            query = query.where(messages.c.conversation_id.in_(conversation_ids))
        async with self.db.read() as conn:
            rows = await conn.execute(query.order_by(messages.c.pos).limit(limit))
            return [message_from_row(row) for row in rows]

    async def list_changes_between(
        self,
        after: int,
        upto: int,
        *,
        conversation_ids: list[int] | None = None,
        limit: int = 500,
    ) -> list[MessageChange]:
        """Edits, deletions and reaction changes with `after < pos <= upto`, by position, each
        with its message as it is now."""
        query = (
            select(
                messages,
                message_changes.c.pos.label("change_pos"),
                message_changes.c.kind.label("change_kind"),
            )
            .select_from(
                message_changes.join(messages, messages.c.id == message_changes.c.message_id)
            )
            .where(message_changes.c.pos > after, message_changes.c.pos <= upto)
        )
        if conversation_ids is not None:
            query = query.where(message_changes.c.conversation_id.in_(conversation_ids))
        async with self.db.read() as conn:
            rows = await conn.execute(query.order_by(message_changes.c.pos).limit(limit))
            return [
                MessageChange(
                    pos=row.change_pos,
                    kind=ChangeKind(row.change_kind),
                    message=message_from_row(row),
                )
                for row in rows
            ]

    async def get_message_time(self, pos: int) -> datetime | None:
        """When the message (or the change to one) at stream position `pos` was stored."""
        async with self.db.read() as conn:
            value = (
                await conn.execute(select(messages.c.created_at).where(messages.c.pos == pos))
            ).scalar_one_or_none()
            if value is None:
                value = (
                    await conn.execute(
                        select(message_changes.c.created_at).where(message_changes.c.pos == pos)
                    )
                ).scalar_one_or_none()
        return utc(value) if value is not None else None

    async def list_members_updated_since(
        self, conversation_ids: list[int], pos: int
    ) -> list[Member]:
        """Members of these conversations whose receipt cursors moved at or after `pos`."""
        if not conversation_ids:
            return []
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(members).where(
                    members.c.conversation_id.in_(conversation_ids),
                    members.c.updated_pos >= pos,
                )
            )
            return [member_from_row(row) for row in rows]

    async def list_conversations_changed_since(
        self, conversation_ids: list[int], pos: int
    ) -> dict[int, list[int]]:
        """Member ids of the conversations whose membership changed at or after `pos`."""
        if not conversation_ids:
            return {}
        async with self.db.read() as conn:
            changed = (
                (
                    await conn.execute(
                        select(conversations.c.id).where(
                            conversations.c.id.in_(conversation_ids),
                            conversations.c.updated_pos >= pos,
                        )
                    )
                )
                .scalars()
                .all()
            )
            result: dict[int, list[int]] = {int(cid): [] for cid in changed}
            if changed:
                pairs = await conn.execute(
                    select(members.c.conversation_id, members.c.user_id).where(
                        members.c.conversation_id.in_(changed)
                    )
                )
                for cid, uid in pairs:
                    result[int(cid)].append(int(uid))
        return result

    async def get_runtime_setting(self, key: str) -> Any:
        async with self.db.read() as conn:
            return (
                await conn.execute(
                    select(runtime_settings.c.value).where(runtime_settings.c.key == key)
                )
            ).scalar_one_or_none()

    async def set_runtime_setting(self, key: str, value: Any, updated_by: int | None) -> None:
        async with self.db.write() as conn:
            changed = await conn.execute(
                update(runtime_settings)
                .where(runtime_settings.c.key == key)
                .values(value=value, updated_at=now(), updated_by=updated_by)
            )
            if not changed.rowcount:
                await conn.execute(
                    insert(runtime_settings).values(
                        key=key, value=value, updated_at=now(), updated_by=updated_by
                    )
                )
