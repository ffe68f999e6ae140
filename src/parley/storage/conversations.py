"""ConversationStore: conversations, their members, and the members' receipt cursors."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Row, and_, delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.models import (
    Conversation,
    ConversationKind,
    ConversationSummary,
    Member,
    MemberRole,
)
from parley.core.receipts import ReceiptUpdate
from parley.storage.database import Database
from parley.storage.rows import conversation_from_row, member_from_row, now
from parley.storage.schema import conversations, members, stream_head, users
from parley.storage.threads import count_mentions, main_unread

# The stream position now: stamped on what changed, so a resuming client gets it again.
_HEAD = select(stream_head.c.pos).where(stream_head.c.id == 1).scalar_subquery()
# `updated_pos` of a member who just joined: their receipt cursors (0, 0) have not moved, so no
# resume or poll cursor (>= 0) lists them. Stamping the head instead made every long-poll whose
# cursor is that head return the whole new membership at once, again and again until the next
# message moved the head (live chat: 200 visitor conversations x 21 members, per operator poll).
UNMOVED_POS = -1

# Member columns are labelled with this prefix where they are selected beside a conversation's.
MEMBER_PREFIX = "member_"
_MEMBERSHIPS = select(
    conversations, *[c.label(f"{MEMBER_PREFIX}{c.name}") for c in members.c]
).join(members, members.c.conversation_id == conversations.c.id)


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Told the conversation's id once a change to its members is committed (or may have
        # been: also when the write fails), before the caller hears of it: the timeline's
        # membership cache forgets the conversation here.
        self.on_members_changed: list[Callable[[int], None]] = []

    def _members_changed(self, conversation_id: int) -> None:
        for listener in self.on_members_changed:
            listener(conversation_id)

    async def create_conversation(
        self,
        *,
        kind: ConversationKind,
        title: str,
        created_by: int,
        member_ids: list[int],
        direct_key: str | None = None,
    ) -> tuple[Conversation, bool]:
        """Create a conversation with its members; for a direct pair that exists, return it.

        Returns the conversation and whether it was created now.
        """
        try:
            async with self.db.write() as conn:
                row = await insert_conversation(
                    conn,
                    kind=kind,
                    title=title,
                    created_by=created_by,
                    member_ids=member_ids,
                    direct_key=direct_key,
                )
                return conversation_from_row(row), True
        except IntegrityError:
            if direct_key is None:
                raise
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(conversations).where(conversations.c.direct_key == direct_key)
                )
            ).one()
        return conversation_from_row(row), False

    async def get_membership(
        self, conversation_id: int, user_id: int
    ) -> tuple[Conversation, Member] | None:
        """The conversation and the user's membership, or None when they are not a member."""
        found = await self.find_memberships([(conversation_id, user_id)])
        return found.get((conversation_id, user_id))

    async def find_memberships(
        self, pairs: list[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[Conversation, Member]]:
        """`get_membership` for many `(conversation_id, user_id)` pairs in one query."""
        query = _MEMBERSHIPS.where(tuple_(members.c.conversation_id, members.c.user_id).in_(pairs))
        async with self.db.read_single() as conn:
            rows = (await conn.execute(query)).all()
        return {
            (row.id, row.member_user_id): (
                conversation_from_row(row),
                member_from_row(row, prefix=MEMBER_PREFIX),
            )
            for row in rows
        }

    async def list_conversations_for(self, user_id: int) -> list[ConversationSummary]:
        query = (
            select(
                conversations,
                *[c.label(f"{MEMBER_PREFIX}{c.name}") for c in members.c],
                main_unread(user_id).label("unread"),
            )
            .join(members, members.c.conversation_id == conversations.c.id)
            .where(members.c.user_id == user_id)
            .order_by(conversations.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            ids = [row.id for row in rows]
            member_ids: dict[int, list[int]] = defaultdict(list)
            with_visitor: set[int] = set()
            if ids:
                pairs = await conn.execute(
                    select(members.c.conversation_id, members.c.user_id, users.c.visitor)
                    .join(users, users.c.id == members.c.user_id)
                    .where(members.c.conversation_id.in_(ids))
                    .order_by(members.c.conversation_id, members.c.user_id)
                )
                for conversation_id, member_id, visitor in pairs:
                    member_ids[conversation_id].append(member_id)
                    if visitor:
                        with_visitor.add(conversation_id)
            mentions: dict[int, int] = defaultdict(int)
            for (conversation_id, _thread), count in (await count_mentions(conn, user_id)).items():
                mentions[conversation_id] += count
        return [
            ConversationSummary(
                conversation=conversation_from_row(row),
                member=member_from_row(row, prefix=MEMBER_PREFIX),
                unread=row.unread,
                member_ids=member_ids[row.id],
                mentions=mentions[row.id],
                live_chat=row.id in with_visitor,
            )
            for row in rows
        ]

    async def find_members_named(
        self, conversation_id: int, names: list[str], *, everyone: bool = False
    ) -> dict[str, int]:
        """Member ids by user name: of `names`, or of every member when `everyone`."""
        query = (
            select(users.c.name, users.c.id)
            .join(members, members.c.user_id == users.c.id)
            .where(members.c.conversation_id == conversation_id)
        )
        if not everyone:
            query = query.where(users.c.name.in_(names))
        async with self.db.read() as conn:
            return {row.name: int(row.id) for row in await conn.execute(query)}

    async def list_members(self, conversation_id: int) -> list[Member]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(members)
                .where(members.c.conversation_id == conversation_id)
                .order_by(members.c.user_id)
            )
            return [member_from_row(row) for row in rows]

    async def add_members(self, conversation_id: int, user_ids: list[int]) -> list[int]:
        """Add users who are not members yet; returns the ids actually added."""
        try:
            return await self._add_members(conversation_id, user_ids)
        finally:
            self._members_changed(conversation_id)

    async def _add_members(self, conversation_id: int, user_ids: list[int]) -> list[int]:
        async with self.db.write() as conn:
            existing = set(
                (
                    await conn.execute(
                        select(members.c.user_id).where(
                            members.c.conversation_id == conversation_id,
                            members.c.user_id.in_(user_ids),
                        )
                    )
                ).scalars()
            )
            added = [uid for uid in dict.fromkeys(user_ids) if uid not in existing]
            if added:
                joined = now()
                await conn.execute(
                    insert(members),
                    [
                        {
                            "conversation_id": conversation_id,
                            "user_id": uid,
                            "role": MemberRole.MEMBER.value,
                            "delivered_seq": 0,
                            "read_seq": 0,
                            "joined_at": joined,
                            "updated_pos": UNMOVED_POS,
                        }
                        for uid in added
                    ],
                )
                await _touch_conversation(conn, conversation_id)
        return added

    async def has_visitor(self, conversation_id: int) -> bool:
        """Whether a website visitor is a member (a live-chat conversation)."""
        query = (
            select(members.c.user_id)
            .join(users, users.c.id == members.c.user_id)
            .where(members.c.conversation_id == conversation_id, users.c.visitor.is_(True))
            .limit(1)
        )
        async with self.db.read() as conn:
            return (await conn.execute(query)).first() is not None

    async def remove_member(self, conversation_id: int, user_id: int) -> bool:
        try:
            async with self.db.write() as conn:
                result = await conn.execute(
                    delete(members).where(
                        members.c.conversation_id == conversation_id, members.c.user_id == user_id
                    )
                )
                await _touch_conversation(conn, conversation_id)
        finally:
            # After the commit: a membership read before it may not be cached again (the
            # cache's token), one read after it sees the removal.
            self._members_changed(conversation_id)
        return bool(result.rowcount)

    async def apply_receipt(
        self,
        conversation_id: int,
        user_id: int,
        advance: Callable[[Member, int], ReceiptUpdate],
    ) -> ReceiptUpdate | None:
        """Apply `advance(member, last_seq)` to the member's cursors under a row lock.

        Returns None when the user is not a member.
        """
        locked = (
            select(members, conversations.c.last_seq.label("last_seq"))
            .join(conversations, conversations.c.id == members.c.conversation_id)
            .where(members.c.conversation_id == conversation_id, members.c.user_id == user_id)
        )
        if self.db.is_postgres:
            locked = locked.with_for_update(of=members)
        async with self.db.write() as conn:
            row = (await conn.execute(locked)).first()
            if row is None:
                return None
            outcome = advance(member_from_row(row), row.last_seq)
            await conn.execute(
                update(members)
                .where(
                    and_(
                        members.c.conversation_id == conversation_id,
                        members.c.user_id == user_id,
                    )
                )
                .values(
                    delivered_seq=outcome.delivered_seq,
                    read_seq=outcome.read_seq,
                    updated_pos=_HEAD,
                )
            )
        return outcome


async def _touch_conversation(conn: AsyncConnection, conversation_id: int) -> None:
    await conn.execute(
        update(conversations).where(conversations.c.id == conversation_id).values(updated_pos=_HEAD)
    )


async def insert_conversation(
    conn: AsyncConnection,
    *,
    kind: ConversationKind,
    title: str,
    created_by: int,
    member_ids: list[int],
    direct_key: str | None = None,
) -> Row[Any]:
    """Insert a conversation and its members inside the caller's transaction.

    Other stores call it so that what they keep beside a conversation commits with it.
    """
    joined = now()
    row = (
        await conn.execute(
            insert(conversations)
            .values(
                kind=kind.value,
                title=title,
                created_by=created_by,
                created_at=joined,
                last_seq=0,
                direct_key=direct_key,
                updated_pos=_HEAD,
            )
            .returning(*conversations.c)
        )
    ).one()
    await conn.execute(
        insert(members),
        [
            {
                "conversation_id": row.id,
                "user_id": user_id,
                "role": (MemberRole.OWNER if user_id == created_by else MemberRole.MEMBER).value,
                "delivered_seq": 0,
                "read_seq": 0,
                "joined_at": joined,
                "updated_pos": UNMOVED_POS,
            }
            for user_id in dict.fromkeys([created_by, *member_ids])
        ],
    )
    return row
