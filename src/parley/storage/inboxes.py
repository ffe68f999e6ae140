"""InboxStore: website inboxes and the visitor sessions their widgets open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.errors import Conflict
from parley.core.inboxes import Inbox, WidgetSession, WorkingHours
from parley.core.models import User
from parley.storage.database import Database
from parley.storage.rows import _json, now, user_from_row, utc
from parley.storage.schema import attachments, conversations, inboxes, users, widget_sessions


def inbox_from_row(row: Any) -> Inbox:
    hours = _json(row.working_hours)
    return Inbox(
        id=row.id,
        name=row.name,
        widget_token=row.widget_token,
        allowed_domains=[str(d) for d in _json(row.allowed_domains)],
        operators=[str(o) for o in _json(row.operators)],
        privacy_url=row.privacy_url,
        privacy_text=row.privacy_text,
        working_hours=WorkingHours.model_validate(hours) if hours else None,
        offline_message=row.offline_message,
        enabled=bool(row.enabled),
        identity_secret=row.identity_secret,
        created_at=utc(row.created_at),
        routing_rules=list(_json(row.routing_rules) or []),
        branch_id=row.branch_id,
        allow_attachments=bool(row.allow_attachments),
        auto_assign=bool(row.auto_assign),
        retention_days=row.retention_days,
        greeting=row.greeting,
        reply_time=row.reply_time,
    )


def session_from_row(row: Any) -> WidgetSession:
    return WidgetSession(
        id=row.id,
        inbox_id=row.inbox_id,
        visitor_id=row.visitor_id,
        conversation_id=row.conversation_id,
        external_id=row.external_id,
    )


class InboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Called after an inbox or a session changed (committed): nodes' copies drop theirs.
        self.on_change: list[Callable[[], Awaitable[None]]] = []

    async def _changed(self) -> None:
        for listener in self.on_change:
            await listener()

    async def create_inbox(self, values: dict[str, Any]) -> Inbox:
        try:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        insert(inboxes).values(**values, created_at=now()).returning(*inboxes.c)
                    )
                ).one()
        except IntegrityError:
            raise Conflict("that widget token is taken") from None
        await self._changed()
        return inbox_from_row(row)

    async def list_inboxes(self) -> list[Inbox]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(inboxes).order_by(inboxes.c.id))
            return [inbox_from_row(row) for row in rows]

    async def get_inbox(self, inbox_id: int) -> Inbox | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(inboxes).where(inboxes.c.id == inbox_id))).first()
        return inbox_from_row(row) if row else None

    async def find_inbox_by_token(self, widget_token: str) -> Inbox | None:
        query = select(inboxes).where(inboxes.c.widget_token == widget_token)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return inbox_from_row(row) if row else None

    async def update_inbox(self, inbox_id: int, values: dict[str, Any]) -> Inbox | None:
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(inboxes)
                    .where(inboxes.c.id == inbox_id)
                    .values(**values)
                    .returning(*inboxes.c)
                )
            ).first()
        await self._changed()
        return inbox_from_row(row) if row else None

    async def add_widget_session(
        self,
        *,
        token_hash: str,
        inbox_id: int,
        visitor_id: int,
        conversation_id: int,
        external_id: str | None = None,
    ) -> WidgetSession:
        async with self.db.write() as conn:
            return await insert_widget_session(
                conn,
                token_hash=token_hash,
                inbox_id=inbox_id,
                visitor_id=visitor_id,
                conversation_id=conversation_id,
                external_id=external_id,
            )

    async def find_visit(self, token_hash: str) -> tuple[WidgetSession, Inbox, User] | None:
        """A session with its inbox and visitor, in one query (every widget request needs all)."""
        tables = {"s_": widget_sessions, "i_": inboxes, "u_": users}
        query = (
            select(*(c.label(p + c.name) for p, t in tables.items() for c in t.c))
            .join(inboxes, inboxes.c.id == widget_sessions.c.inbox_id)
            .join(users, users.c.id == widget_sessions.c.visitor_id)
            .where(widget_sessions.c.token_hash == token_hash)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        part = {p: SimpleNamespace() for p in tables}
        for key, value in row._mapping.items():
            setattr(part[key[:2]], key[2:], value)
        return (
            session_from_row(part["s_"]),
            inbox_from_row(part["i_"]),
            user_from_row(part["u_"]),  # type: ignore[arg-type]
        )

    async def list_verified_visitor_ids(self, inbox_id: int) -> list[int]:
        """The visitors of this inbox with a session opened by a verified identity."""
        query = (
            select(widget_sessions.c.visitor_id)
            .where(
                widget_sessions.c.inbox_id == inbox_id, widget_sessions.c.external_id.is_not(None)
            )
            .distinct()
        )
        async with self.db.read() as conn:
            return [int(v) for v in (await conn.execute(query)).scalars()]

    async def find_widget_session(self, token_hash: str) -> WidgetSession | None:
        query = select(widget_sessions).where(widget_sessions.c.token_hash == token_hash)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return session_from_row(row) if row else None

    async def touch_widget_session(self, session_id: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(widget_sessions)
                .where(widget_sessions.c.id == session_id)
                .values(last_seen_at=now())
            )

    async def prune_idle_visits(self, idle_before: datetime) -> int:
        """Delete anonymous visits nobody wrote in, idle since before `idle_before`.

        A visit goes with its conversation (and, by cascade, its members, session and live-chat
        row) and its visitor user. Visits with a message, a file or a verified identity stay.
        """
        uploaded = exists().where(attachments.c.uploader_id == widget_sessions.c.visitor_id)
        idle = (
            select(widget_sessions.c.visitor_id, widget_sessions.c.conversation_id)
            .join(conversations, conversations.c.id == widget_sessions.c.conversation_id)
            .where(
                widget_sessions.c.last_seen_at < idle_before,
                widget_sessions.c.external_id.is_(None),
                conversations.c.last_seq == 0,
                ~uploaded,
            )
        )
        async with self.db.write() as conn:
            found = (await conn.execute(idle)).all()
            if not found:
                return 0
            conversation_ids = sorted({row.conversation_id for row in found})
            visitor_ids = sorted({row.visitor_id for row in found})
            gone = conversations.c.id.in_(conversation_ids)
            await conn.execute(delete(conversations).where(gone))
            # A visitor still in some other conversation (another session) keeps their user.
            still_used = select(widget_sessions.c.visitor_id)
            await conn.execute(
                delete(users).where(users.c.id.in_(visitor_ids), users.c.id.not_in(still_used))
            )
        await self._changed()
        return len(conversation_ids)


async def insert_widget_session(
    conn: AsyncConnection,
    *,
    token_hash: str,
    inbox_id: int,
    visitor_id: int,
    conversation_id: int,
    external_id: str | None = None,
) -> WidgetSession:
    """A widget session, inside the caller's transaction (a bootstrap writes it beside the
    visitor and their conversation)."""
    stamp = now()
    row = (
        await conn.execute(
            insert(widget_sessions)
            .values(
                token_hash=token_hash,
                inbox_id=inbox_id,
                visitor_id=visitor_id,
                conversation_id=conversation_id,
                external_id=external_id,
                created_at=stamp,
                last_seen_at=stamp,
            )
            .returning(*widget_sessions.c)
        )
    ).one()
    return session_from_row(row)
