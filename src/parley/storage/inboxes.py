"""InboxStore: website inboxes and the visitor sessions their widgets open."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from parley.core.errors import Conflict
from parley.core.inboxes import Inbox, WidgetSession, WorkingHours
from parley.storage.database import Database
from parley.storage.rows import _json, now, utc
from parley.storage.schema import inboxes, widget_sessions


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
    )


def _session_from_row(row: Any) -> WidgetSession:
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
        stamp = now()
        async with self.db.write() as conn:
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
        return _session_from_row(row)

    async def find_widget_session(self, token_hash: str) -> WidgetSession | None:
        query = select(widget_sessions).where(widget_sessions.c.token_hash == token_hash)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return _session_from_row(row) if row else None

    async def touch_widget_session(self, session_id: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(widget_sessions)
                .where(widget_sessions.c.id == session_id)
                .values(last_seen_at=now())
            )
