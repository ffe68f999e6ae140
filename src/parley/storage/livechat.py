"""LivechatStore: branches, the live-chat state of visitor conversations, and internal notes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.errors import Conflict, ErrorCode
from parley.core.inboxes import WidgetSession
from parley.core.livechat import (
    ACTIVE_STATUSES,
    Branch,
    CannedReply,
    ConversationFilter,
    LastMessage,
    ListedConversation,
    LivechatConversation,
    Note,
    Priority,
    Status,
)
from parley.core.models import ConversationKind, Role, User
from parley.core.visitor_names import DEFAULT_DISPLAY_NAME
from parley.storage.conversations import insert_conversation
from parley.storage.database import Database
from parley.storage.inboxes import insert_widget_session
from parley.storage.rows import _json, now, user_from_row, utc
from parley.storage.schema import (
    branches,
    canned_replies,
    conversations,
    livechat_conversations,
    livechat_notes,
    messages,
    users,
)

_state = livechat_conversations
# A visitor's message reopens a conversation in one of these.
_FINISHED = (Status.RESOLVED.value, Status.CLOSED.value)


def _branch_from_row(row: Any) -> Branch:
    return Branch(
        id=row.id,
        name=row.name,
        operators=[str(o) for o in _json(row.operators)],
        created_at=utc(row.created_at),
    )


def _state_from_row(row: Any) -> LivechatConversation:
    return LivechatConversation(
        conversation_id=row.conversation_id,
        inbox_id=row.inbox_id,
        visitor_id=row.visitor_id,
        status=Status(row.status),
        priority=Priority(row.priority),
        assignee_id=row.assignee_id,
        branch_id=row.branch_id,
        page_url=row.page_url,
        language=row.language,
        country=row.country,
        attributes=dict(_json(row.attributes) or {}),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        last_message_at=utc(row.last_message_at) if row.last_message_at else None,
    )


def _canned_from_row(row: Any) -> CannedReply:
    return CannedReply(
        id=row.id,
        inbox_id=row.inbox_id,
        shortcut=row.shortcut,
        body=row.body,
        created_at=utc(row.created_at),
    )


def _note_from_row(row: Any) -> Note:
    return Note(
        id=row.id,
        conversation_id=row.conversation_id,
        author_id=row.author_id,
        body=row.body,
        created_at=utc(row.created_at),
    )


class LivechatStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Called after a branch changed (committed): nodes' copies drop theirs.
        self.on_change: list[Callable[[], Awaitable[None]]] = []

    async def _changed(self) -> None:
        for listener in self.on_change:
            await listener()

    # -- branches --------------------------------------------------------------------------------

    async def create_branch(self, name: str, operators: list[str]) -> Branch:
        try:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        insert(branches)
                        .values(name=name, operators=operators, created_at=now())
                        .returning(*branches.c)
                    )
                ).one()
        except IntegrityError:
            raise Conflict(f"a branch named {name!r} exists", ErrorCode.NAME_TAKEN) from None
        await self._changed()
        return _branch_from_row(row)

    async def list_branches(self) -> list[Branch]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(branches).order_by(branches.c.id))
            return [_branch_from_row(row) for row in rows]

    async def get_branch(self, branch_id: int) -> Branch | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(branches).where(branches.c.id == branch_id))).first()
        return _branch_from_row(row) if row else None

    async def update_branch(self, branch_id: int, values: dict[str, Any]) -> Branch | None:
        try:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        update(branches)
                        .where(branches.c.id == branch_id)
                        .values(**values)
                        .returning(*branches.c)
                    )
                ).first()
        except IntegrityError:
            raise Conflict("a branch with that name exists", ErrorCode.NAME_TAKEN) from None
        await self._changed()
        return _branch_from_row(row) if row else None

    # -- conversations ---------------------------------------------------------------------------

    async def open_conversation(
        self,
        *,
        inbox_id: int,
        visitor_id: int,
        title: str,
        member_ids: list[int],
        values: dict[str, Any],
    ) -> tuple[LivechatConversation, bool]:
        """The visitor's conversation in this inbox, created with its members if there is none.

        The conversation, its members and its live-chat row commit in one transaction, so the
        loser of a race (UNIQUE inbox_id, visitor_id) rolls back whole and leaves no orphan.
        Returns the state and whether it was created now.
        """
        existing = await self.find_conversation(inbox_id, visitor_id)
        if existing is not None:
            return existing, False
        stamp = now()
        try:
            async with self.db.write() as conn:
                conversation = await insert_conversation(
                    conn,
                    kind=ConversationKind.GROUP,
                    title=title,
                    created_by=visitor_id,
                    member_ids=member_ids,
                )
                row = await _insert_state(
                    conn, conversation.id, inbox_id, visitor_id, stamp=stamp, values=values
                )
                return _state_from_row(row), True
        except IntegrityError:
            found = await self.find_conversation(inbox_id, visitor_id)
            if found is None:
                raise
            return found, False

    async def open_visit(
        self,
        *,
        visitor_name: str,
        inbox_id: int,
        title: str,
        member_ids: list[int],
        values: dict[str, Any],
        session_token_hash: str,
    ) -> tuple[User, LivechatConversation, WidgetSession]:
        """A new anonymous visitor with their conversation (members, live-chat row) and widget
        session, in one transaction: a bootstrap waits for the single writer once, not three
        times, and a failure leaves nothing behind."""
        stamp = now()
        async with self.db.write() as conn:
            user_row = (
                await conn.execute(
                    insert(users)
                    .values(
                        name=visitor_name,
                        display_name=DEFAULT_DISPLAY_NAME,
                        role=Role.MEMBER.value,
                        internal=False,
                        password_hash=None,
                        created_at=stamp,
                        email=None,
                        visitor=True,
                    )
                    .returning(*users.c)
                )
            ).one()
            conversation = await insert_conversation(
                conn,
                kind=ConversationKind.GROUP,
                title=title,
                created_by=user_row.id,
                member_ids=member_ids,
            )
            state_row = await _insert_state(
                conn, conversation.id, inbox_id, user_row.id, stamp=stamp, values=values
            )
            session = await insert_widget_session(
                conn,
                token_hash=session_token_hash,
                inbox_id=inbox_id,
                visitor_id=user_row.id,
                conversation_id=conversation.id,
            )
        return user_from_row(user_row), _state_from_row(state_row), session

    async def find_conversation(
        self, inbox_id: int, visitor_id: int
    ) -> LivechatConversation | None:
        query = select(_state).where(
            _state.c.inbox_id == inbox_id, _state.c.visitor_id == visitor_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return _state_from_row(row) if row else None

    async def get_conversation(self, conversation_id: int) -> ListedConversation | None:
        query = _listing().where(_state.c.conversation_id == conversation_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return _listed_from_row(row) if row else None

    async def list_conversations(self, wanted: ConversationFilter) -> list[ListedConversation]:
        """Newest activity (latest message, else creation) first."""
        query = _listing()
        if wanted.inbox_id is not None:
            query = query.where(_state.c.inbox_id == wanted.inbox_id)
        if wanted.statuses:
            query = query.where(_state.c.status.in_([s.value for s in wanted.statuses]))
        if wanted.priority is not None:
            query = query.where(_state.c.priority == wanted.priority.value)
        if wanted.unassigned:
            query = query.where(_state.c.assignee_id.is_(None))
        elif wanted.assignee_id is not None:
            query = query.where(_state.c.assignee_id == wanted.assignee_id)
        if wanted.visible_inbox_ids is not None:
            visible = [
                _state.c.inbox_id.in_(wanted.visible_inbox_ids),
                _state.c.branch_id.in_(wanted.visible_branch_ids),
            ]
            if wanted.visible_assignee_id is not None:
                visible.append(_state.c.assignee_id == wanted.visible_assignee_id)
            query = query.where(or_(*visible))
        activity = func.coalesce(messages.c.created_at, _state.c.created_at)
        query = query.order_by(activity.desc(), _state.c.conversation_id.desc()).limit(wanted.limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_listed_from_row(row) for row in rows]

    async def update_conversation(
        self, conversation_id: int, values: dict[str, Any]
    ) -> LivechatConversation | None:
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(_state)
                    .where(_state.c.conversation_id == conversation_id)
                    .values(**values, updated_at=now())
                    .returning(*_state.c)
                )
            ).first()
        return _state_from_row(row) if row else None

    async def record_visitor_message(
        self, conversation_id: int
    ) -> tuple[LivechatConversation, bool] | None:
        """A visitor wrote: a resolved or closed conversation opens again.

        Returns the state and whether it was reopened (None: not a live-chat conversation).
        Most messages arrive in an open conversation and need no write at all: a read decides,
        so a visitor's message is one writer transaction (its own), not two. The listing takes
        the time of the last message from the messages themselves.
        """
        query = select(_state).where(_state.c.conversation_id == conversation_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        if row.status not in _FINISHED:
            return _state_from_row(row), False
        stamp = now()
        async with self.db.write() as conn:
            reopened = (
                await conn.execute(
                    update(_state)
                    .where(
                        _state.c.conversation_id == conversation_id,
                        _state.c.status.in_(_FINISHED),
                    )
                    .values(status=Status.OPEN.value, last_message_at=stamp, updated_at=stamp)
                    .returning(*_state.c)
                )
            ).first()
            if reopened is not None:
                return _state_from_row(reopened), True
            row = (await conn.execute(query)).first()
        return (_state_from_row(row), False) if row else None

    async def count_active_assigned(self, assignee_ids: list[int]) -> dict[int, int]:
        """Open and pending conversations assigned to each of these users."""
        if not assignee_ids:
            return {}
        query = (
            select(_state.c.assignee_id, func.count())
            .where(
                _state.c.assignee_id.in_(assignee_ids),
                _state.c.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
            .group_by(_state.c.assignee_id)
        )
        async with self.db.read() as conn:
            counts = {int(uid): int(n) for uid, n in (await conn.execute(query)).all()}
        return {uid: counts.get(uid, 0) for uid in assignee_ids}

    async def list_admins(self) -> list[User]:
        """Admins are staff of every inbox (their number is small; visitors' is not)."""
        query = select(users).where(users.c.role == Role.ADMIN.value).order_by(users.c.id)
        async with self.db.read() as conn:
            return [user_from_row(row) for row in await conn.execute(query)]

    # -- canned replies --------------------------------------------------------------------------

    async def add_canned_reply(self, inbox_id: int, shortcut: str, body: str) -> CannedReply:
        """Raises Conflict when the inbox already has this shortcut."""
        try:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        insert(canned_replies)
                        .values(inbox_id=inbox_id, shortcut=shortcut, body=body, created_at=now())
                        .returning(*canned_replies.c)
                    )
                ).one()
        except IntegrityError:
            raise Conflict(f"the inbox already has a reply /{shortcut}") from None
        return _canned_from_row(row)

    async def list_canned_replies(self, inbox_id: int) -> list[CannedReply]:
        query = (
            select(canned_replies)
            .where(canned_replies.c.inbox_id == inbox_id)
            .order_by(canned_replies.c.shortcut)
        )
        async with self.db.read() as conn:
            return [_canned_from_row(row) for row in await conn.execute(query)]

    async def delete_canned_reply(self, inbox_id: int, reply_id: int) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(canned_replies).where(
                    canned_replies.c.inbox_id == inbox_id, canned_replies.c.id == reply_id
                )
            )
        return bool(result.rowcount)

    # -- notes -----------------------------------------------------------------------------------

    async def add_note(self, conversation_id: int, author_id: int, body: str) -> Note:
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    insert(livechat_notes)
                    .values(
                        conversation_id=conversation_id,
                        author_id=author_id,
                        body=body,
                        created_at=now(),
                    )
                    .returning(*livechat_notes.c)
                )
            ).one()
        return _note_from_row(row)

    async def list_notes(self, conversation_id: int) -> list[Note]:
        query = (
            select(livechat_notes)
            .where(livechat_notes.c.conversation_id == conversation_id)
            .order_by(livechat_notes.c.id)
        )
        async with self.db.read() as conn:
            return [_note_from_row(row) for row in await conn.execute(query)]


def _listing() -> Any:
    """Live-chat rows with their conversation's latest message (if any) beside them."""
    return (
        select(
            _state,
            messages.c.body.label("last_body"),
            messages.c.sender_id.label("last_sender_id"),
            messages.c.seq.label("last_seq"),
            messages.c.created_at.label("last_created_at"),
            messages.c.deleted_at.label("last_deleted_at"),
        )
        .join(conversations, conversations.c.id == _state.c.conversation_id)
        .outerjoin(
            messages,
            and_(
                messages.c.conversation_id == _state.c.conversation_id,
                messages.c.seq == conversations.c.last_seq,
            ),
        )
    )


def _listed_from_row(row: Any) -> ListedConversation:
    last = None
    if row.last_seq is not None:
        last = LastMessage(
            body=row.last_body,
            sender_id=row.last_sender_id,
            seq=row.last_seq,
            created_at=utc(row.last_created_at),
            deleted=row.last_deleted_at is not None,
        )
    return ListedConversation(state=_state_from_row(row), last_message=last)


async def _insert_state(
    conn: AsyncConnection,
    conversation_id: int,
    inbox_id: int,
    visitor_id: int,
    *,
    stamp: datetime,
    values: dict[str, Any],
) -> Any:
    """A new conversation's live-chat row (open, normal priority), in the caller's transaction."""
    return (
        await conn.execute(
            insert(_state)
            .values(
                conversation_id=conversation_id,
                inbox_id=inbox_id,
                visitor_id=visitor_id,
                status=Status.OPEN.value,
                priority=Priority.NORMAL.value,
                created_at=stamp,
                updated_at=stamp,
                **values,
            )
            .returning(*_state.c)
        )
    ).one()
