"""MessageChangeStore: edits, tombstones and reactions, each with its own stream position.

Every change takes the stream head's row lock first — as every message batch does — then
changes the message, then takes the next position(s) for it, all in one transaction. So
positions stay gapless and in commit order across nodes, and no two transactions lock the head
and a message row in opposite orders. The change row records only what happened; the event is
made from the message as it is, so a tombstone never carries what it replaced.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, literal, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core import limits
from parley.core.errors import Conflict, ErrorCode, NotFound
from parley.core.models import (
    Changed,
    ChangeKind,
    DeletedBy,
    Message,
    MessageVersion,
    ReactionCount,
)
from parley.storage.database import Database
from parley.storage.rows import message_from_row, now, utc
from parley.storage.schema import (
    attachments,
    message_changes,
    message_edits,
    message_mentions,
    message_reactions,
    messages,
    stream_head,
)
from parley.storage.threads import greatest

_PG_LOCK_HEAD = text("SELECT pos FROM stream_head WHERE id = 1 FOR UPDATE")


@dataclass(frozen=True, slots=True)
class MentionRows:
    """Who an edited text mentions: named members, and the others an @here reached."""

    named: list[int] = field(default_factory=list)
    here: bool = False
    here_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Tombstones:
    """What a delete did: one `Changed` per message asked for, and the files no message uses
    any more (their rows are gone; the caller removes the bytes)."""

    changes: list[Changed]
    orphaned_attachments: list[str]


class MessageChangeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- edits -----------------------------------------------------------------------------------

    async def edit_message(
        self,
        message_id: int,
        *,
        actor_id: int,
        client_op_id: str | None,
        body: str,
        mentions: MentionRows,
    ) -> Changed:
        """Replace a message's text, keeping the old one as a version. Refuses a tombstone.

        A retry of `client_op_id`, or the text it has already, changes nothing (`pos` None).
        """
        async with self.db.write() as conn:
            head = await self._lock_head(conn)
            message = await _load(conn, message_id)
            if client_op_id is not None and await _op_seen(
                conn, message_id, actor_id, client_op_id
            ):
                return Changed(message, None)
            if message.deleted:
                raise Conflict("the message was deleted", ErrorCode.MESSAGE_DELETED)
            if message.body == body:
                return Changed(message, None)
            edited_at = now()
            await self._keep_version(conn, message)
            row = (
                await conn.execute(
                    update(messages)
                    .where(messages.c.id == message_id)
                    .values(
                        body=body,
                        mentions=mentions.named,
                        mentions_here=mentions.here,
                        edited_at=edited_at,
                    )
                    .returning(*messages.c)
                )
            ).one()
            edited = message_from_row(row)
            await conn.execute(
                delete(message_mentions).where(message_mentions.c.message_id == message_id)
            )
            await _insert_mentions(conn, edited, mentions)
            pos = await self._record(
                conn, head, [edited], ChangeKind.EDITED, actor_id, client_op_id, edited_at
            )
        return Changed(edited, pos[0])

    async def _keep_version(self, conn: AsyncConnection, message: Message) -> None:
        """Store the text being replaced, with when and by whom it was written."""
        version = (
            await conn.execute(
                select(func.coalesce(func.max(message_edits.c.version), 0)).where(
                    message_edits.c.message_id == message.id
                )
            )
        ).scalar_one()
        last_editor = (
            await conn.execute(
                select(message_changes.c.actor_id)
                .where(
                    message_changes.c.message_id == message.id,
                    message_changes.c.kind == ChangeKind.EDITED.value,
                )
                .order_by(message_changes.c.pos.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        await conn.execute(
            insert(message_edits).values(
                message_id=message.id,
                version=int(version) + 1,
                body=message.body,
                written_at=message.edited_at or message.created_at,
                editor_id=last_editor if version else message.sender_id,
            )
        )

    async def list_versions(self, message: Message) -> list[MessageVersion]:
        """Every version of a message's text, oldest first; the last is the current one."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(message_edits)
                    .where(message_edits.c.message_id == message.id)
                    .order_by(message_edits.c.version)
                )
            ).all()
            last_editor = (
                await conn.execute(
                    select(message_changes.c.actor_id)
                    .where(
                        message_changes.c.message_id == message.id,
                        message_changes.c.kind == ChangeKind.EDITED.value,
                    )
                    .order_by(message_changes.c.pos.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
        versions = [
            MessageVersion(
                version=row.version,
                body=row.body,
                written_at=utc(row.written_at),
                editor_id=row.editor_id,
                current=False,
            )
            for row in rows
        ]
        versions.append(
            MessageVersion(
                version=len(versions) + 1,
                body=message.body,
                written_at=message.edited_at or message.created_at,
                editor_id=last_editor if versions else message.sender_id,
                current=True,
            )
        )
        return versions

    # -- tombstones --------------------------------------------------------------------------------

    async def delete_messages(
        self,
        message_ids: list[int],
        *,
        by: DeletedBy,
        actor_id: int | None,
        reason: str | None,
    ) -> Tombstones:
        """Turn messages into tombstones in one transaction: each keeps its id and seq and gets
        a change position; its text, files, metadata, mentions, reactions and versions go.

        Messages deleted already come back unchanged (`pos` None); unknown ids are skipped.
        """
        async with self.db.write() as conn:
            head = await self._lock_head(conn)
            found = {
                message.id: message
                for message in await _load_many(conn, list(dict.fromkeys(message_ids)))
            }
            fresh = [m for m in found.values() if not m.deleted]
            if not fresh:
                return Tombstones([Changed(found[i], None) for i in message_ids if i in found], [])
            ids = [m.id for m in fresh]
            deleted_at = now()
            rows = await conn.execute(
                update(messages)
                .where(messages.c.id.in_(ids))
                .values(
                    body="",
                    attachments=[],
                    metadata={},
                    mentions=[],
                    mentions_here=False,
                    reactions=[],
                    edited_at=None,
                    deleted_at=deleted_at,
                    deleted_by=by.value,
                    deleted_by_id=actor_id,
                    delete_reason=reason,
                )
                .returning(*messages.c)
            )
            tombstones = {row.id: message_from_row(row) for row in rows}
            for table in (message_edits, message_reactions, message_mentions):
                await conn.execute(delete(table).where(table.c.message_id.in_(ids)))
            await self._uncount_replies(conn, fresh)
            orphaned = await self._drop_unused_files(conn, fresh)
            ordered = [tombstones[m.id] for m in fresh]
            positions = await self._record(
                conn, head, ordered, ChangeKind.DELETED, actor_id, None, deleted_at
            )
        changed = {message.id: pos for message, pos in zip(ordered, positions, strict=True)}
        return Tombstones(
            [
                Changed(tombstones.get(i, found[i]), changed.get(i))
                for i in message_ids
                if i in found
            ],
            orphaned,
        )

    async def _uncount_replies(self, conn: AsyncConnection, fresh: list[Message]) -> None:
        per_root: dict[int, int] = defaultdict(int)
        for message in fresh:
            if message.thread_root_id is not None:
                per_root[message.thread_root_id] += 1
        if per_root:
            await conn.execute(
                update(messages)
                .where(messages.c.id == bindparam("root_id"))
                .values(
                    reply_count=greatest(self.db, messages.c.reply_count - bindparam("gone"), 0)
                ),
                [{"root_id": root, "gone": n} for root, n in per_root.items()],
            )

    async def _drop_unused_files(self, conn: AsyncConnection, fresh: list[Message]) -> list[str]:
        """Delete the rows of files only the deleted messages used; returns their ids."""
        wanted = {
            (message.conversation_id, ref.id) for message in fresh for ref in message.attachments
        }
        orphaned = [
            attachment_id
            for conversation_id, attachment_id in sorted(wanted)
            if not await self._file_still_used(conn, conversation_id, attachment_id)
        ]
        if orphaned:
            await conn.execute(delete(attachments).where(attachments.c.id.in_(orphaned)))
        return orphaned

    async def _file_still_used(
        self, conn: AsyncConnection, conversation_id: int, attachment_id: str
    ) -> bool:
        """Another message of the conversation (not a tombstone) carries this file."""
        if self.db.is_postgres:
            carries = messages.c.attachments.op("@>")(literal([{"id": attachment_id}], JSONB))
        else:
            carries = text(
                "EXISTS (SELECT 1 FROM json_each(messages.attachments) "
                "WHERE json_extract(json_each.value, '$.id') = :attachment_id)"
            ).bindparams(attachment_id=attachment_id)
        found = await conn.execute(
            select(messages.c.id)
            .where(
                messages.c.conversation_id == conversation_id,
                messages.c.deleted_at.is_(None),
                carries,
            )
            .limit(1)
        )
        return found.first() is not None

    # -- reactions ---------------------------------------------------------------------------------

    async def react(self, message_id: int, *, user_id: int, emoji: str, add: bool) -> Changed:
        """Add or remove one user's emoji; doing what is done already changes nothing."""
        async with self.db.write() as conn:
            head = await self._lock_head(conn)
            message = await _load(conn, message_id)
            if message.deleted:
                raise Conflict("the message was deleted", ErrorCode.MESSAGE_DELETED)
            key = (
                message_reactions.c.message_id == message_id,
                message_reactions.c.emoji == emoji,
                message_reactions.c.user_id == user_id,
            )
            present = (await conn.execute(select(func.count()).where(*key))).scalar_one() > 0
            if present == add:
                return Changed(message, None)
            if add:
                if emoji not in {reaction.emoji for reaction in message.reactions} and (
                    len(message.reactions) >= limits.REACTIONS_PER_MESSAGE_MAX
                ):
                    raise Conflict(
                        f"a message has at most {limits.REACTIONS_PER_MESSAGE_MAX} different "
                        "reactions; add one of those it has",
                        ErrorCode.TOO_MANY_REACTIONS,
                    )
                await conn.execute(
                    insert(message_reactions).values(
                        message_id=message_id, emoji=emoji, user_id=user_id, created_at=now()
                    )
                )
            else:
                await conn.execute(delete(message_reactions).where(*key))
            summary = await _summarize_reactions(conn, message_id)
            row = (
                await conn.execute(
                    update(messages)
                    .where(messages.c.id == message_id)
                    .values(reactions=[_reaction_json(r) for r in summary])
                    .returning(*messages.c)
                )
            ).one()
            changed = message_from_row(row)
            pos = await self._record(
                conn, head, [changed], ChangeKind.REACTIONS, user_id, None, now()
            )
        return Changed(changed, pos[0])

    async def list_reactions(self, message_id: int) -> list[ReactionCount]:
        """Every reaction of a message with everyone who reacted (the message lists 100)."""
        async with self.db.read() as conn:
            return await _summarize_reactions(conn, message_id, users_shown=None)

    # -- shared ------------------------------------------------------------------------------------

    async def _lock_head(self, conn: AsyncConnection) -> int:
        """The stream head, locked until commit (SQLite's one writer is the lock there)."""
        if self.db.is_postgres:
            return int((await conn.execute(_PG_LOCK_HEAD)).scalar_one())
        return int(
            (
                await conn.execute(select(stream_head.c.pos).where(stream_head.c.id == 1))
            ).scalar_one()
        )

    async def _record(
        self,
        conn: AsyncConnection,
        head: int,
        changed: list[Message],
        kind: ChangeKind,
        actor_id: int | None,
        client_op_id: str | None,
        at: datetime,
    ) -> list[int]:
        """Give each changed message the next stream position, and record the change."""
        positions = list(range(head + 1, head + 1 + len(changed)))
        await conn.execute(
            update(stream_head).where(stream_head.c.id == 1).values(pos=head + len(changed))
        )
        await conn.execute(
            insert(message_changes),
            [
                {
                    "pos": pos,
                    "conversation_id": message.conversation_id,
                    "message_id": message.id,
                    "kind": kind.value,
                    "actor_id": actor_id,
                    "client_op_id": client_op_id,
                    "created_at": at,
                }
                for pos, message in zip(positions, changed, strict=True)
            ],
        )
        return positions


async def _load(conn: AsyncConnection, message_id: int) -> Message:
    found = await _load_many(conn, [message_id])
    if not found:
        raise NotFound("no such message")
    return found[0]


async def _load_many(conn: AsyncConnection, message_ids: list[int]) -> list[Message]:
    rows = await conn.execute(select(messages).where(messages.c.id.in_(message_ids)))
    return [message_from_row(row) for row in rows]


async def _op_seen(
    conn: AsyncConnection, message_id: int, actor_id: int, client_op_id: str
) -> bool:
    found = await conn.execute(
        select(message_changes.c.pos).where(
            message_changes.c.message_id == message_id,
            message_changes.c.actor_id == actor_id,
            message_changes.c.client_op_id == client_op_id,
        )
    )
    return found.first() is not None


async def _insert_mentions(conn: AsyncConnection, message: Message, mentions: MentionRows) -> None:
    named = set(mentions.named)
    rows: dict[int, dict[str, Any]] = {}
    for user_id in (*mentions.named, *mentions.here_ids):
        if user_id != message.sender_id and user_id not in rows:
            rows[user_id] = {
                "message_id": message.id,
                "user_id": user_id,
                "conversation_id": message.conversation_id,
                "seq": message.seq,
                "thread_root_id": message.thread_root_id,
                "via_here": user_id not in named,
            }
    if rows:
        await conn.execute(insert(message_mentions), list(rows.values()))


async def _summarize_reactions(
    conn: AsyncConnection,
    message_id: int,
    users_shown: int | None = limits.REACTION_USERS_SHOWN,
) -> list[ReactionCount]:
    """Emoji in the order they were first used; users in the order they reacted."""
    rows = await conn.execute(
        select(message_reactions.c.emoji, message_reactions.c.user_id)
        .where(message_reactions.c.message_id == message_id)
        .order_by(message_reactions.c.created_at, message_reactions.c.user_id)
    )
    by_emoji: dict[str, list[int]] = {}
    for emoji, user_id in rows:
        by_emoji.setdefault(emoji, []).append(int(user_id))
    return [
        ReactionCount(emoji=emoji, count=len(users), user_ids=_first(users, users_shown))
        for emoji, users in by_emoji.items()
    ]


def _first(users: list[int], shown: int | None) -> list[int]:
    return users if shown is None else users[:shown]


def _reaction_json(reaction: ReactionCount) -> dict[str, Any]:
    return {"emoji": reaction.emoji, "count": reaction.count, "user_ids": reaction.user_ids}
