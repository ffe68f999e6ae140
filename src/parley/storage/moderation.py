"""ModerationStore: filter rules, sanctions, the moderation queue and its reports.

Every change to rules or sanctions bumps `moderation_revision` in the same transaction; nodes
cache both and reload only when the revision moves (see features/moderation/filters.py).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.models import AttachmentRef, Message, NewMessage
from parley.core.moderation import (
    ItemKind,
    ItemStatus,
    QueueItem,
    Report,
    ReportReason,
    Resolution,
    Rule,
    RuleKind,
    Sanction,
    SanctionKind,
    ScopeKind,
    Tier,
    Verdict,
)
from parley.storage.database import Database
from parley.storage.rows import _json, message_from_row, now, utc
from parley.storage.schema import (
    conversations,
    livechat_conversations,
    messages,
    moderation_items,
    moderation_reports,
    moderation_revision,
    moderation_rules,
    moderation_sanctions,
)

_items = moderation_items


def _rule_from_row(row: Any) -> Rule:
    return Rule(
        id=int(row.id),
        name=row.name,
        kind=RuleKind(row.kind),
        verdict=Verdict.parse(row.verdict),
        scope=ScopeKind(row.scope),
        scope_value=row.scope_value,
        config=dict(_json(row.config)),
        enabled=bool(row.enabled),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        updated_by=row.updated_by,
    )


def _sanction_from_row(row: Any) -> Sanction:
    return Sanction(
        id=int(row.id),
        user_id=int(row.user_id),
        kind=SanctionKind(row.kind),
        conversation_id=row.conversation_id,
        reason=row.reason,
        created_by=row.created_by,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at) if row.expires_at else None,
        lifted_at=utc(row.lifted_at) if row.lifted_at else None,
        lifted_by=row.lifted_by,
        item_id=row.item_id,
    )


def _item_from_row(row: Any) -> QueueItem:
    return QueueItem(
        id=int(row.id),
        kind=ItemKind(row.kind),
        status=ItemStatus(row.status),
        tier=Tier(row.tier),
        conversation_id=int(row.conversation_id),
        message_id=row.message_id,
        sender_id=int(row.sender_id),
        client_msg_id=row.client_msg_id,
        body=row.body,
        attachments=[AttachmentRef(**ref) for ref in _json(row.attachments)],
        metadata=dict(_json(row.metadata)),
        rule=row.rule,
        reason=row.reason,
        reports=int(row.reports),
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        resolved_at=utc(row.resolved_at) if row.resolved_at else None,
        resolved_by=row.resolved_by,
        resolution=Resolution(row.resolution) if row.resolution else None,
        note=row.note,
    )


def _report_from_row(row: Any) -> Report:
    return Report(
        id=int(row.id),
        item_id=int(row.item_id),
        reporter_id=int(row.reporter_id),
        reason=ReportReason(row.reason),
        note=row.note,
        created_at=utc(row.created_at),
    )


async def _bump(conn: AsyncConnection) -> None:
    await conn.execute(
        update(moderation_revision)
        .where(moderation_revision.c.id == 1)
        .values(revision=moderation_revision.c.revision + 1)
    )


class ModerationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- what every node caches ------------------------------------------------------------------

    async def get_revision(self) -> int:
        async with self.db.read() as conn:
            query = select(moderation_revision.c.revision).where(moderation_revision.c.id == 1)
            return int((await conn.execute(query)).scalar_one())

    async def load_policy(self, at: datetime) -> tuple[int, list[Rule], list[Sanction]]:
        """The revision, every rule, and the mutes and bans in force at `at`, read together."""
        async with self.db.read() as conn:
            query = select(moderation_revision.c.revision).where(moderation_revision.c.id == 1)
            revision = int((await conn.execute(query)).scalar_one())
            rules = [
                _rule_from_row(r)
                for r in await conn.execute(
                    select(moderation_rules).order_by(moderation_rules.c.id)
                )
            ]
            s = moderation_sanctions.c
            active = await conn.execute(
                select(moderation_sanctions).where(
                    s.kind != SanctionKind.WARN.value,
                    s.lifted_at.is_(None),
                    or_(s.expires_at.is_(None), s.expires_at > at),
                )
            )
            sanctions = [_sanction_from_row(r) for r in active]
        return revision, rules, sanctions

    # -- rules ------------------------------------------------------------------------------------

    async def list_rules(self) -> list[Rule]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(moderation_rules).order_by(moderation_rules.c.id))
            return [_rule_from_row(r) for r in rows]

    async def get_rule(self, rule_id: int) -> Rule | None:
        async with self.db.read() as conn:
            query = select(moderation_rules).where(moderation_rules.c.id == rule_id)
            row = (await conn.execute(query)).first()
        return _rule_from_row(row) if row else None

    async def add_rule(self, values: dict[str, Any], *, by: str) -> Rule | None:
        """A new rule; None when its name is taken."""
        moment = now()
        row_values = {**values, "created_at": moment, "updated_at": moment, "updated_by": by}
        try:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        insert(moderation_rules).values(row_values).returning(moderation_rules)
                    )
                ).one()
                await _bump(conn)
        except IntegrityError:
            return None
        return _rule_from_row(row)

    async def update_rule(self, rule_id: int, changes: dict[str, Any], *, by: str) -> Rule | None:
        values = {**changes, "updated_at": now(), "updated_by": by}
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(moderation_rules)
                    .where(moderation_rules.c.id == rule_id)
                    .values(values)
                    .returning(moderation_rules)
                )
            ).first()
            if row is not None:
                await _bump(conn)
        return _rule_from_row(row) if row else None

    async def delete_rule(self, rule_id: int) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                moderation_rules.delete().where(moderation_rules.c.id == rule_id)
            )
            if result.rowcount:
                await _bump(conn)
        return bool(result.rowcount)

    # -- sanctions --------------------------------------------------------------------------------

    async def add_sanction(
        self,
        *,
        user_id: int,
        kind: SanctionKind,
        conversation_id: int | None,
        reason: str,
        by: str,
        expires_at: datetime | None,
        item_id: int | None = None,
    ) -> Sanction:
        values = {
            "user_id": user_id,
            "kind": kind.value,
            "conversation_id": conversation_id,
            "reason": reason,
            "created_by": by,
            "created_at": now(),
            "expires_at": expires_at,
            "item_id": item_id,
        }
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    insert(moderation_sanctions).values(values).returning(moderation_sanctions)
                )
            ).one()
            await _bump(conn)
        return _sanction_from_row(row)

    async def get_sanction(self, sanction_id: int) -> Sanction | None:
        async with self.db.read() as conn:
            query = select(moderation_sanctions).where(moderation_sanctions.c.id == sanction_id)
            row = (await conn.execute(query)).first()
        return _sanction_from_row(row) if row else None

    async def lift_sanction(self, sanction_id: int, *, by: str) -> Sanction | None:
        """Lift a sanction still in place; None when it was already lifted (or is unknown)."""
        s = moderation_sanctions.c
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(moderation_sanctions)
                    .where(s.id == sanction_id, s.lifted_at.is_(None))
                    .values(lifted_at=now(), lifted_by=by)
                    .returning(moderation_sanctions)
                )
            ).first()
            if row is not None:
                await _bump(conn)
        return _sanction_from_row(row) if row else None

    async def list_sanctions(
        self, *, user_id: int | None, active_at: datetime | None, limit: int
    ) -> list[Sanction]:
        """Newest first; `active_at` keeps only mutes and bans in force then."""
        s = moderation_sanctions.c
        query = select(moderation_sanctions)
        if user_id is not None:
            query = query.where(s.user_id == user_id)
        if active_at is not None:
            query = query.where(
                s.kind != SanctionKind.WARN.value,
                s.lifted_at.is_(None),
                or_(s.expires_at.is_(None), s.expires_at > active_at),
            )
        async with self.db.read() as conn:
            rows = await conn.execute(query.order_by(s.id.desc()).limit(limit))
            return [_sanction_from_row(r) for r in rows]

    # -- messages, as moderation reads them --------------------------------------------------------

    async def get_message(self, conversation_id: int, message_id: int) -> Message | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(messages).where(
                        messages.c.conversation_id == conversation_id, messages.c.id == message_id
                    )
                )
            ).first()
        return message_from_row(row) if row else None

    async def find_sent(self, key: tuple[int, int, str]) -> Message | None:
        """The message stored for a send's idempotency key, if any."""
        conversation_id, sender_id, client_msg_id = key
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(messages).where(
                        messages.c.conversation_id == conversation_id,
                        messages.c.sender_id == sender_id,
                        messages.c.client_msg_id == client_msg_id,
                    )
                )
            ).first()
        return message_from_row(row) if row else None

    async def get_conversation_inbox(self, conversation_id: int) -> int | None:
        """The live-chat inbox of a visitor conversation; None for any other conversation."""
        async with self.db.read() as conn:
            query = select(livechat_conversations.c.inbox_id).where(
                livechat_conversations.c.conversation_id == conversation_id
            )
            return (await conn.execute(query)).scalar_one_or_none()

    async def conversation_exists(self, conversation_id: int) -> bool:
        async with self.db.read() as conn:
            query = select(conversations.c.id).where(conversations.c.id == conversation_id)
            return (await conn.execute(query)).first() is not None

    # -- the queue --------------------------------------------------------------------------------

    async def hold_send(
        self, send: NewMessage, *, rule: str, reason: str
    ) -> tuple[QueueItem, bool]:
        """Keep a held send in the queue; a retry of the same send gets the first one back."""
        moment = now()
        values = {
            "kind": ItemKind.HELD.value,
            "status": ItemStatus.OPEN.value,
            "tier": int(Tier.MODERATORS),
            "conversation_id": send.conversation_id,
            "message_id": None,
            "sender_id": send.sender_id,
            "client_msg_id": send.client_msg_id,
            "body": send.body,
            "attachments": [asdict(ref) for ref in send.attachments],
            "metadata": send.metadata,
            "rule": rule,
            "reason": reason,
            "reports": 0,
            "created_at": moment,
            "updated_at": moment,
            "note": "",
        }
        try:
            async with self.db.write() as conn:
                row = (await conn.execute(insert(_items).values(values).returning(_items))).one()
            return _item_from_row(row), True
        except IntegrityError:
            found = await self.find_held(send.idempotency_key)
            if found is None:
                raise
            return found, False

    async def find_held(self, key: tuple[int, int, str]) -> QueueItem | None:
        conversation_id, sender_id, client_msg_id = key
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(_items).where(
                        _items.c.kind == ItemKind.HELD.value,
                        _items.c.conversation_id == conversation_id,
                        _items.c.sender_id == sender_id,
                        _items.c.client_msg_id == client_msg_id,
                    )
                )
            ).first()
        return _item_from_row(row) if row else None

    async def report_message(
        self, message: Message, *, reporter_id: int, reason: ReportReason, note: str
    ) -> tuple[QueueItem, bool]:
        """Add a member's report to the message's open item (made if needed).

        Returns the item and whether this report is new (a member reports a message once).
        """
        for _ in range(3):  # a concurrent first report of the same message wins the insert
            try:
                async with self.db.write() as conn:
                    item_id = await self._open_report_item(conn, message)
                    added = await self._add_report(conn, item_id, reporter_id, reason, note)
                    row = (await conn.execute(select(_items).where(_items.c.id == item_id))).one()
                return _item_from_row(row), added
            except IntegrityError:
                continue
        raise RuntimeError("could not file the report")  # pragma: no cover - three lost races

    async def _open_report_item(self, conn: AsyncConnection, message: Message) -> int:
        found = (
            await conn.execute(
                select(_items.c.id).where(
                    _items.c.kind == ItemKind.REPORT.value,
                    _items.c.status == ItemStatus.OPEN.value,
                    _items.c.message_id == message.id,
                )
            )
        ).scalar_one_or_none()
        if found is not None:
            return int(found)
        moment = now()
        inserted = await conn.execute(
            insert(_items)
            .values(
                kind=ItemKind.REPORT.value,
                status=ItemStatus.OPEN.value,
                tier=int(Tier.MODERATORS),
                conversation_id=message.conversation_id,
                message_id=message.id,
                sender_id=message.sender_id,
                client_msg_id=message.client_msg_id,
                body=message.body,
                attachments=[asdict(ref) for ref in message.attachments],
                metadata=message.metadata,
                rule="",
                reason="",
                reports=0,
                created_at=moment,
                updated_at=moment,
                note="",
            )
            .returning(_items.c.id)
        )
        return int(inserted.scalar_one())

    async def _add_report(
        self, conn: AsyncConnection, item_id: int, reporter_id: int, reason: ReportReason, note: str
    ) -> bool:
        r = moderation_reports.c
        exists = await conn.execute(
            select(r.id).where(r.item_id == item_id, r.reporter_id == reporter_id)
        )
        if exists.first() is not None:
            return False
        await conn.execute(
            insert(moderation_reports).values(
                item_id=item_id,
                reporter_id=reporter_id,
                reason=reason.value,
                note=note,
                created_at=now(),
            )
        )
        await conn.execute(
            update(_items)
            .where(_items.c.id == item_id)
            .values(
                reports=_items.c.reports + 1,
                updated_at=now(),
                reason=func.coalesce(func.nullif(_items.c.reason, ""), reason.value),
            )
        )
        return True

    async def get_item(self, item_id: int) -> QueueItem | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(_items).where(_items.c.id == item_id))).first()
        return _item_from_row(row) if row else None

    async def list_items(
        self,
        *,
        status: ItemStatus | None,
        kind: ItemKind | None,
        tier: Tier | None,
        before_id: int | None,
        limit: int,
    ) -> list[QueueItem]:
        """Open items oldest first (work the queue in order); others newest first."""
        query = select(_items)
        if status is not None:
            query = query.where(_items.c.status == status.value)
        if kind is not None:
            query = query.where(_items.c.kind == kind.value)
        if tier is not None:
            query = query.where(_items.c.tier == int(tier))
        oldest_first = status is ItemStatus.OPEN
        if before_id is not None:
            query = query.where(
                _items.c.id > before_id if oldest_first else _items.c.id < before_id
            )
        order = _items.c.id.asc() if oldest_first else _items.c.id.desc()
        async with self.db.read() as conn:
            rows = await conn.execute(query.order_by(order).limit(limit))
            return [_item_from_row(r) for r in rows]

    async def list_reports(self, item_ids: list[int]) -> list[Report]:
        if not item_ids:
            return []
        r = moderation_reports.c
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(moderation_reports).where(r.item_id.in_(item_ids)).order_by(r.id)
            )
            return [_report_from_row(row) for row in rows]

    async def resolve_item(
        self, item_id: int, resolution: Resolution, *, by: str, note: str, message_id: int | None
    ) -> QueueItem | None:
        """Close an open item; None when someone else closed it first (one decision wins)."""
        values: dict[str, Any] = {
            "status": ItemStatus.RESOLVED.value,
            "resolution": resolution.value,
            "resolved_at": now(),
            "resolved_by": by,
            "updated_at": now(),
            "note": note,
        }
        if message_id is not None:
            values["message_id"] = message_id
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(_items)
                    .where(_items.c.id == item_id, _items.c.status == ItemStatus.OPEN.value)
                    .values(values)
                    .returning(_items)
                )
            ).first()
        return _item_from_row(row) if row else None

    async def note_message(self, item_id: int, message_id: int) -> QueueItem | None:
        """Remember the message an approved held send became."""
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(_items)
                    .where(_items.c.id == item_id)
                    .values(message_id=message_id)
                    .returning(_items)
                )
            ).first()
        return _item_from_row(row) if row else None

    async def reopen_item(self, item_id: int) -> None:
        """Undo a decision whose action could not be carried out (the database failed)."""
        async with self.db.write() as conn:
            await conn.execute(
                update(_items)
                .where(_items.c.id == item_id)
                .values(
                    status=ItemStatus.OPEN.value,
                    resolution=None,
                    resolved_at=None,
                    resolved_by=None,
                )
            )

    async def escalate_item(self, item_id: int, *, note: str) -> QueueItem | None:
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(_items)
                    .where(
                        and_(
                            _items.c.id == item_id,
                            _items.c.status == ItemStatus.OPEN.value,
                            _items.c.tier < int(Tier.ADMINS),
                        )
                    )
                    .values(tier=int(Tier.ADMINS), updated_at=now(), note=note)
                    .returning(_items)
                )
            ).first()
        return _item_from_row(row) if row else None

    async def count_open(self) -> dict[tuple[str, int], int]:
        """Open items by (kind, tier): the backlog."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(_items.c.kind, _items.c.tier, func.count())
                .where(_items.c.status == ItemStatus.OPEN.value)
                .group_by(_items.c.kind, _items.c.tier)
            )
            return {(kind, int(tier)): int(n) for kind, tier, n in rows}

    async def oldest_open_at(self) -> datetime | None:
        async with self.db.read() as conn:
            value = (
                await conn.execute(
                    select(func.min(_items.c.created_at)).where(
                        _items.c.status == ItemStatus.OPEN.value
                    )
                )
            ).scalar_one_or_none()
        return utc(value) if value else None
