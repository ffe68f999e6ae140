"""NotifyStore: the outbox, the pending queue, deliveries, preferences, mutes, push subscriptions.

The worker's three steps each run in one transaction, so a crash (kill -9) at any point leaves
either everything of a step or nothing of it:

- `expand_outbox`: new messages → one pending row per member to tell (then the outbox row goes);
- `process_due`: a member's due pending rows → deliveries (the unique deduplication key refuses
  a second one for the same user, message or digest, channel and address) or a later look;
- `claim_deliveries` / `finish_delivery`: a lease on a send, then its outcome.

PostgreSQL workers claim rows with `FOR UPDATE SKIP LOCKED`, so any number of them share the
work; SQLite serializes every write transaction, which makes one claim at a time the rule there.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.notify import DeliveryStatus, Preferences, QuietHours, Unread
from parley.storage.database import Database
from parley.storage.rows import _json, now, utc
from parley.storage.schema import (
    conversations,
    inboxes,
    livechat_conversations,
    members,
    messages,
    notification_deliveries,
    notification_mutes,
    notification_outbox,
    notification_pending,
    notification_preferences,
    push_subscriptions,
    runtime_settings,
    users,
)


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: int
    role: str
    internal: bool
    muted: bool


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A new message and the members who might hear of it (its sender excluded)."""

    message_id: int
    conversation_id: int
    sender_id: int
    seq: int
    created_at: datetime
    body: str
    metadata: dict[str, Any]
    livechat: bool
    recipients: list[Recipient]
    # Who the message names with @name, and whether it said @here (the rich timeline).
    mentions: list[int] = field(default_factory=list)
    mentions_here: bool = False

    def mentions_user(self, user_id: int) -> bool:
        return self.mentions_here or user_id in self.mentions


@dataclass(frozen=True, slots=True)
class PushSubscription:
    id: int
    user_id: int
    endpoint: str
    p256dh: str
    auth: str
    user_agent: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """What a notification says about one message."""

    message_id: int
    conversation_id: int
    conversation_title: str
    sender_name: str
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LivechatInfo:
    conversation_id: int
    visitor_id: int
    inbox_id: int
    inbox_name: str
    page_url: str | None


@dataclass
class DueBatch:
    """Everything the worker needs to decide about some members' due messages."""

    items: dict[int, list[Unread]]  # per user, only those still unread and still a member
    read_away: list[tuple[int, int]]  # (user, message) read or left since: drop
    preferences: dict[int, Preferences]
    subscriptions: dict[int, list[PushSubscription]]
    messages: dict[int, MessageInfo]
    livechat: dict[int, LivechatInfo]


@dataclass
class DuePlan:
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    done: list[tuple[int, int]] = field(default_factory=list)  # (user, message): remove
    defer: list[tuple[int, int, datetime]] = field(default_factory=list)  # (user, msg, until)
    notified: list[int] = field(default_factory=list)  # users: last_notified_at = now


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    user_id: int
    channel: str
    subject: str
    target: str
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        user_id=row.user_id,
        channel=row.channel,
        subject=row.subject,
        target=row.target,
        payload=dict(row.payload),
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=utc(row.next_attempt_at),
        last_error=row.last_error,
        created_at=utc(row.created_at),
        finished_at=utc(row.finished_at) if row.finished_at else None,
    )


def _preferences(row: Any) -> Preferences:
    quiet = row.quiet_hours
    return Preferences(
        user_id=row.user_id,
        email=row.email,
        email_enabled=bool(row.email_enabled),
        push_enabled=bool(row.push_enabled),
        telegram_enabled=bool(row.telegram_enabled),
        telegram_chat_id=row.telegram_chat_id,
        quiet_hours=QuietHours.model_validate(quiet) if quiet else None,
        last_notified_at=utc(row.last_notified_at) if row.last_notified_at else None,
    )


def _subscription(row: Any) -> PushSubscription:
    return PushSubscription(
        id=row.id,
        user_id=row.user_id,
        endpoint=row.endpoint,
        p256dh=row.p256dh,
        auth=row.auth,
        user_agent=row.user_agent,
        created_at=utc(row.created_at),
    )


_DEFAULT_PREFERENCES = {
    "email": None,
    "email_enabled": True,
    "push_enabled": True,
    "telegram_enabled": True,
    "telegram_chat_id": None,
    "telegram_pending": None,
    "quiet_hours": None,
    "last_notified_at": None,
}


class NotifyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert(self, table: Any) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING in this database's dialect."""
        dialect = postgresql if self.db.is_postgres else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    # -- step 1: outbox → pending ------------------------------------------------------------

    async def expand_outbox(
        self,
        limit: int,
        plan: Callable[[list[OutboxItem]], list[dict[str, Any]]],
        *,
        livechat_only: bool = False,
    ) -> tuple[int, int, int]:
        """Turn up to `limit` outbox rows into pending rows (as `plan` says), in one transaction.

        `livechat_only`: the caller knows only live-chat messages can notify anyone (the beta
        flag is off), so the others are taken without reading their bodies and members.

        Returns (messages taken, pending rows created, pending rows refused as duplicates).
        """
        # A read first: an idle worker must not take SQLite's one write connection every round.
        async with self.db.read() as conn:
            if (await conn.execute(select(notification_outbox.c.id).limit(1))).first() is None:
                return 0, 0, 0
        async with self.db.write() as conn:
            query = select(notification_outbox).order_by(notification_outbox.c.id).limit(limit)
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            outbox = (await conn.execute(query)).all()
            if not outbox:
                return 0, 0, 0
            wanted = outbox
            if livechat_only:
                livechat = await self._livechat_ids(conn, {row.conversation_id for row in outbox})
                wanted = [row for row in outbox if row.conversation_id in livechat]
            items = await self._outbox_items(conn, wanted) if wanted else []
            rows = plan(items)
            created = 0
            if rows:
                inserted = await conn.execute(
                    self._insert(notification_pending).returning(notification_pending.c.user_id),
                    rows,
                )
                created = len(inserted.all())
            await conn.execute(
                delete(notification_outbox).where(
                    notification_outbox.c.id.in_([row.id for row in outbox])
                )
            )
        return len(outbox), created, len(rows) - created

    async def _outbox_items(self, conn: AsyncConnection, outbox: Sequence[Any]) -> list[OutboxItem]:
        message_ids = [row.message_id for row in outbox]
        conversation_ids = sorted({row.conversation_id for row in outbox})
        columns = (messages.c.id, messages.c.body, messages.c.metadata)
        mentions = (messages.c.mentions, messages.c.mentions_here)
        bodies = {
            row.id: (row.body, dict(row.metadata or {}), row)
            for row in await conn.execute(
                select(*columns, *mentions).where(messages.c.id.in_(message_ids))
            )
        }
        at = now()
        muted = {
            (row.user_id, row.conversation_id)
            for row in await conn.execute(
                select(notification_mutes.c.user_id, notification_mutes.c.conversation_id).where(
                    notification_mutes.c.conversation_id.in_(conversation_ids),
                    or_(
                        notification_mutes.c.muted_until.is_(None),
                        notification_mutes.c.muted_until > at,
                    ),
                )
            )
        }
        people: dict[int, list[Recipient]] = {}
        found = await conn.execute(
            select(members.c.conversation_id, users.c.id, users.c.role, users.c.internal)
            .join(users, users.c.id == members.c.user_id)
            .where(members.c.conversation_id.in_(conversation_ids))
        )
        for row in found:
            people.setdefault(row.conversation_id, []).append(
                Recipient(
                    user_id=row.id,
                    role=row.role,
                    internal=bool(row.internal),
                    muted=(row.id, row.conversation_id) in muted,
                )
            )
        livechat = await self._livechat_ids(conn, conversation_ids)
        items = []
        for row in outbox:
            body, metadata, found = bodies.get(row.message_id, ("", {}, None))
            items.append(
                OutboxItem(
                    message_id=row.message_id,
                    conversation_id=row.conversation_id,
                    sender_id=row.sender_id,
                    seq=row.seq,
                    created_at=utc(row.created_at),
                    body=body,
                    metadata=metadata or {},
                    livechat=row.conversation_id in livechat,
                    recipients=[
                        r for r in people.get(row.conversation_id, []) if r.user_id != row.sender_id
                    ],
                    mentions=[int(u) for u in _json(found.mentions)] if found else [],
                    mentions_here=bool(found.mentions_here) if found else False,
                )
            )
        return items

    async def _livechat_ids(
        self, conn: AsyncConnection, conversation_ids: Iterable[int]
    ) -> set[int]:
        """Which of the conversations are website visitors' live chats."""
        query = select(livechat_conversations.c.conversation_id).where(
            livechat_conversations.c.conversation_id.in_(sorted(conversation_ids))
        )
        return {int(row.conversation_id) for row in await conn.execute(query)}

    async def count_outbox(self) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(select(func.count()).select_from(notification_outbox))
                ).scalar_one()
            )

    # -- step 2: pending → deliveries --------------------------------------------------------

    async def list_due_users(self, at: datetime, limit: int) -> list[int]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(notification_pending.c.user_id)
                .where(notification_pending.c.due_at <= at)
                .group_by(notification_pending.c.user_id)
                .order_by(func.min(notification_pending.c.due_at))
                .limit(limit)
            )
            return [row.user_id for row in rows]

    async def process_due(
        self, user_ids: list[int], at: datetime, plan: Callable[[DueBatch], DuePlan]
    ) -> tuple[DuePlan, int]:
        """Lock these users' due rows, let `plan` decide, apply it; one transaction.

        Returns the plan and how many of its deliveries the deduplication key refused.
        """
        async with self.db.write() as conn:
            query = select(notification_pending).where(
                notification_pending.c.user_id.in_(user_ids),
                notification_pending.c.due_at <= at,
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            pending = (await conn.execute(query)).all()
            if not pending:
                return DuePlan(), 0
            batch = await self._due_batch(conn, pending)
            decided = plan(batch)
            done = decided.done + batch.read_away
            refused = 0
            if decided.deliveries:
                inserted = await conn.execute(
                    self._insert(notification_deliveries).returning(notification_deliveries.c.id),
                    decided.deliveries,
                )
                refused = len(decided.deliveries) - len(inserted.all())
            if done:
                await conn.execute(
                    delete(notification_pending).where(
                        tuple_(
                            notification_pending.c.user_id, notification_pending.c.message_id
                        ).in_(done)
                    )
                )
            for user_id, message_id, until in decided.defer:
                await conn.execute(
                    update(notification_pending)
                    .where(
                        notification_pending.c.user_id == user_id,
                        notification_pending.c.message_id == message_id,
                    )
                    .values(due_at=until)
                )
            for user_id in decided.notified:
                await self._upsert_preferences(conn, user_id, {"last_notified_at": at})
        return decided, refused

    async def _due_batch(self, conn: AsyncConnection, pending: Sequence[Any]) -> DueBatch:
        user_ids = sorted({row.user_id for row in pending})
        conversation_ids = sorted({row.conversation_id for row in pending})
        read = {
            (row.user_id, row.conversation_id): row.read_seq
            for row in await conn.execute(
                select(members.c.user_id, members.c.conversation_id, members.c.read_seq).where(
                    members.c.user_id.in_(user_ids),
                    members.c.conversation_id.in_(conversation_ids),
                )
            )
        }
        items: dict[int, list[Unread]] = {}
        read_away: list[tuple[int, int]] = []
        for row in pending:
            cursor = read.get((row.user_id, row.conversation_id))
            if cursor is None or cursor >= row.seq:
                read_away.append((row.user_id, row.message_id))
                continue
            items.setdefault(row.user_id, []).append(
                Unread(
                    user_id=row.user_id,
                    message_id=row.message_id,
                    conversation_id=row.conversation_id,
                    seq=row.seq,
                    created_at=utc(row.created_at),
                    due_at=utc(row.due_at),
                    urgent=bool(row.urgent),
                )
            )
        prefs = {
            row.user_id: _preferences(row)
            for row in await conn.execute(
                select(notification_preferences).where(
                    notification_preferences.c.user_id.in_(user_ids)
                )
            )
        }
        subs: dict[int, list[PushSubscription]] = {}
        for row in await conn.execute(
            select(push_subscriptions)
            .where(push_subscriptions.c.user_id.in_(user_ids))
            .order_by(push_subscriptions.c.id)
        ):
            subs.setdefault(row.user_id, []).append(_subscription(row))
        message_ids = [item.message_id for rows in items.values() for item in rows]
        sender = users.alias("sender")
        infos = {
            row.id: MessageInfo(
                message_id=row.id,
                conversation_id=row.conversation_id,
                conversation_title=row.title,
                sender_name=row.display_name,
                body=row.body,
                created_at=utc(row.created_at),
            )
            for row in await conn.execute(
                select(
                    messages.c.id,
                    messages.c.conversation_id,
                    messages.c.body,
                    messages.c.created_at,
                    conversations.c.title,
                    sender.c.display_name,
                )
                .join(conversations, conversations.c.id == messages.c.conversation_id)
                .join(sender, sender.c.id == messages.c.sender_id)
                .where(messages.c.id.in_(message_ids or [-1]))
            )
        }
        livechat = {
            row.conversation_id: LivechatInfo(
                conversation_id=row.conversation_id,
                visitor_id=row.visitor_id,
                inbox_id=row.inbox_id,
                inbox_name=row.name,
                page_url=row.page_url,
            )
            for row in await conn.execute(
                select(
                    livechat_conversations.c.conversation_id,
                    livechat_conversations.c.visitor_id,
                    livechat_conversations.c.inbox_id,
                    livechat_conversations.c.page_url,
                    inboxes.c.name,
                )
                .join(inboxes, inboxes.c.id == livechat_conversations.c.inbox_id)
                .where(livechat_conversations.c.conversation_id.in_(conversation_ids))
            )
        }
        return DueBatch(
            items=items,
            read_away=read_away,
            preferences=prefs,
            subscriptions=subs,
            messages=infos,
            livechat=livechat,
        )

    async def count_pending(self) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(select(func.count()).select_from(notification_pending))
                ).scalar_one()
            )

    # -- step 3: sending ---------------------------------------------------------------------

    async def claim_deliveries(
        self, at: datetime, limit: int, *, lease_until: datetime, max_attempts: int
    ) -> tuple[list[Delivery], int]:
        """Lease up to `limit` due deliveries; first, take back leases their worker lost.

        Returns the claimed deliveries and how many lost leases were dead-lettered (their
        worker died on the last allowed attempt).
        """
        table = notification_deliveries
        lost = and_(table.c.status == DeliveryStatus.SENDING.value, table.c.lease_until < at)
        due = and_(table.c.status == DeliveryStatus.PENDING.value, table.c.next_attempt_at <= at)
        async with self.db.read() as conn:
            if (
                await conn.execute(select(table.c.id).where(or_(lost, due)).limit(1))
            ).first() is None:
                return [], 0
        async with self.db.write() as conn:
            dead = await conn.execute(
                update(table)
                .where(lost, table.c.attempts >= max_attempts)
                .values(
                    status=DeliveryStatus.DEAD.value,
                    finished_at=at,
                    lease_until=None,
                    last_error="the worker stopped during the last attempt",
                )
            )
            await conn.execute(
                update(table)
                .where(lost)
                .values(status=DeliveryStatus.PENDING.value, next_attempt_at=at, lease_until=None)
            )
            query = (
                select(table.c.id)
                .where(
                    table.c.status == DeliveryStatus.PENDING.value, table.c.next_attempt_at <= at
                )
                .order_by(table.c.next_attempt_at, table.c.id)
                .limit(limit)
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = [row.id for row in await conn.execute(query)]
            if not ids:
                return [], dead.rowcount or 0
            claimed = await conn.execute(
                update(table)
                .where(table.c.id.in_(ids))
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=table.c.attempts + 1,
                    lease_until=lease_until,
                )
                .returning(*table.c)
            )
            found = sorted((_delivery(row) for row in claimed), key=lambda d: d.id)
        return found, dead.rowcount or 0

    async def finish_delivery(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        *,
        at: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Record a send's outcome, if this worker still holds the lease; False if it does not."""
        table = notification_deliveries
        values: dict[str, Any] = {"status": status.value, "lease_until": None, "last_error": error}
        if status is DeliveryStatus.PENDING:
            values["next_attempt_at"] = retry_at or at
        else:
            values["finished_at"] = at
        async with self.db.write() as conn:
            result = await conn.execute(
                update(table)
                .where(table.c.id == delivery_id, table.c.status == DeliveryStatus.SENDING.value)
                .values(**values)
            )
        return bool(result.rowcount)

    async def add_deliveries(self, rows: list[dict[str, Any]]) -> int:
        """Deliveries made outside the worker's steps (offline-form receipts); returns refused."""
        if not rows:
            return 0
        async with self.db.write() as conn:
            inserted = await conn.execute(
                self._insert(notification_deliveries).returning(notification_deliveries.c.id), rows
            )
            return len(rows) - len(inserted.all())

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        user_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        table = notification_deliveries
        query = select(table).order_by(table.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(table.c.status == status.value)
        if user_id is not None:
            query = query.where(table.c.user_id == user_id)
        async with self.db.read() as conn:
            return [_delivery(row) for row in await conn.execute(query)]

    async def retry_dead(self, ids: list[int] | None, at: datetime) -> int:
        """Dead letters back to pending with fresh attempts (all of them when `ids` is None)."""
        table = notification_deliveries
        query = update(table).where(table.c.status == DeliveryStatus.DEAD.value)
        if ids is not None:
            query = query.where(table.c.id.in_(ids))
        async with self.db.write() as conn:
            result = await conn.execute(
                query.values(
                    status=DeliveryStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=at,
                    finished_at=None,
                )
            )
        return result.rowcount or 0

    async def count_outcomes(self, since: datetime) -> dict[str, dict[str, int]]:
        """Per channel, deliveries finished since `since` by status (sent, dead, expired)."""
        table = notification_deliveries
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(table.c.channel, table.c.status, func.count())
                .where(table.c.finished_at >= since)
                .group_by(table.c.channel, table.c.status)
            )
            counts: dict[str, dict[str, int]] = {}
            for channel, status, count in rows:
                counts.setdefault(channel, {})[status] = int(count)
            return counts

    async def count_by_status(self) -> dict[str, int]:
        table = notification_deliveries
        async with self.db.read() as conn:
            rows = await conn.execute(select(table.c.status, func.count()).group_by(table.c.status))
            return {status: int(count) for status, count in rows}

    # -- preferences, mutes, subscriptions ---------------------------------------------------

    async def get_preferences(self, user_id: int) -> Preferences:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(notification_preferences).where(
                        notification_preferences.c.user_id == user_id
                    )
                )
            ).first()
        return _preferences(row) if row else Preferences(user_id=user_id)

    async def get_telegram_pending(self, user_id: int) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            value = (
                await conn.execute(
                    select(notification_preferences.c.telegram_pending).where(
                        notification_preferences.c.user_id == user_id
                    )
                )
            ).scalar_one_or_none()
        return dict(value) if value else None

    async def update_preferences(self, user_id: int, values: dict[str, Any]) -> Preferences:
        async with self.db.write() as conn:
            await self._upsert_preferences(conn, user_id, values)
        return await self.get_preferences(user_id)

    async def _upsert_preferences(
        self, conn: AsyncConnection, user_id: int, values: dict[str, Any]
    ) -> None:
        values = {**values, "updated_at": now()}
        changed = await conn.execute(
            update(notification_preferences)
            .where(notification_preferences.c.user_id == user_id)
            .values(**values)
        )
        if not changed.rowcount:
            await conn.execute(
                self._insert(notification_preferences).values(
                    user_id=user_id, **{**_DEFAULT_PREFERENCES, **values}
                )
            )

    async def find_users_by_telegram_chat(self, chat_id: str) -> list[int]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(notification_preferences.c.user_id).where(
                    notification_preferences.c.telegram_chat_id == chat_id
                )
            )
            return [row.user_id for row in rows]

    async def set_mute(self, user_id: int, conversation_id: int, until: datetime | None) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                delete(notification_mutes).where(
                    notification_mutes.c.user_id == user_id,
                    notification_mutes.c.conversation_id == conversation_id,
                )
            )
            await conn.execute(
                insert(notification_mutes).values(
                    user_id=user_id,
                    conversation_id=conversation_id,
                    muted_until=until,
                    created_at=now(),
                )
            )

    async def delete_mute(self, user_id: int, conversation_id: int) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(notification_mutes).where(
                    notification_mutes.c.user_id == user_id,
                    notification_mutes.c.conversation_id == conversation_id,
                )
            )
        return bool(result.rowcount)

    async def list_mutes(self, user_id: int) -> list[tuple[int, datetime | None]]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(notification_mutes)
                .where(notification_mutes.c.user_id == user_id)
                .order_by(notification_mutes.c.conversation_id)
            )
            return [
                (row.conversation_id, utc(row.muted_until) if row.muted_until else None)
                for row in rows
            ]

    async def add_subscription(
        self, user_id: int, *, endpoint: str, p256dh: str, auth: str, user_agent: str
    ) -> PushSubscription:
        """Store a browser's subscription; the same endpoint again replaces the old one."""
        async with self.db.write() as conn:
            await conn.execute(
                delete(push_subscriptions).where(push_subscriptions.c.endpoint == endpoint)
            )
            row = (
                await conn.execute(
                    insert(push_subscriptions)
                    .values(
                        user_id=user_id,
                        endpoint=endpoint,
                        p256dh=p256dh,
                        auth=auth,
                        user_agent=user_agent,
                        created_at=now(),
                    )
                    .returning(*push_subscriptions.c)
                )
            ).one()
        return _subscription(row)

    async def list_subscriptions(self, user_id: int) -> list[PushSubscription]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(push_subscriptions)
                .where(push_subscriptions.c.user_id == user_id)
                .order_by(push_subscriptions.c.id)
            )
            return [_subscription(row) for row in rows]

    async def get_subscription(self, subscription_id: int) -> PushSubscription | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(push_subscriptions).where(push_subscriptions.c.id == subscription_id)
                )
            ).first()
        return _subscription(row) if row else None

    async def delete_subscription(self, subscription_id: int, user_id: int | None = None) -> bool:
        query = delete(push_subscriptions).where(push_subscriptions.c.id == subscription_id)
        if user_id is not None:
            query = query.where(push_subscriptions.c.user_id == user_id)
        async with self.db.write() as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    # -- the signing key ---------------------------------------------------------------------

    async def signing_key(self, name: str) -> str:
        """A random key kept in the database, made on first use: every node and worker shares it."""
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    select(runtime_settings.c.value).where(runtime_settings.c.key == name)
                )
            ).scalar_one_or_none()
        if found:
            return str(found)
        async with self.db.write() as conn:
            await conn.execute(
                self._insert(runtime_settings).values(
                    key=name, value=secrets.token_hex(32), updated_at=now(), updated_by=None
                )
            )
            value = (
                await conn.execute(
                    select(runtime_settings.c.value).where(runtime_settings.c.key == name)
                )
            ).scalar_one()
        return str(value)
