"""PrivacyStore: legal holds, what retention finds to purge, and scrubbing a person's identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    cast,
    delete,
    func,
    insert,
    literal,
    not_,
    select,
    union,
    update,
)
from sqlalchemy.exc import IntegrityError

from parley.core.disputes import ACTIVE_STATUSES
from parley.core.errors import ParleyError
from parley.core.privacy import LegalHold
from parley.storage.database import Database
from parley.storage.rows import utc
from parley.storage.schema import (
    api_tokens,
    attachments,
    calls,
    conversations,
    dispute_evidence,
    disputes,
    export_jobs,
    inboxes,
    legal_holds,
    livechat_conversations,
    livechat_notes,
    members,
    messages,
    moderation_items,
    moderation_reports,
    notification_deliveries,
    notification_pending,
    notification_preferences,
    push_subscriptions,
    runtime_settings,
    user_identities,
    users,
    widget_identities,
    widget_sessions,
)

ERASED_DISPLAY_NAME = "Deleted user"


def _hold_from_row(row: Any) -> LegalHold:
    return LegalHold(
        id=int(row.id),
        conversation_id=int(row.conversation_id),
        reason=row.reason,
        placed_by=row.placed_by,
        placed_at=utc(row.placed_at),
        released_at=utc(row.released_at) if row.released_at else None,
        released_by=row.released_by,
    )


# Held: an active legal hold, or an active dispute (its conversation is the evidence).
_HELD = union(
    select(legal_holds.c.conversation_id).where(legal_holds.c.released_at.is_(None)),
    select(disputes.c.conversation_id).where(
        disputes.c.status.in_([s.value for s in ACTIVE_STATUSES])
    ),
)
_LIVECHAT = select(livechat_conversations.c.conversation_id)


class PrivacyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Called after an erasure ended widget sessions (committed): nodes' copies drop theirs.
        self.on_change: list[Callable[[], Awaitable[None]]] = []

    # -- legal holds ----------------------------------------------------------------------------

    async def add_hold(
        self, conversation_id: int, reason: str, placed_by: str, at: datetime
    ) -> LegalHold:
        values = {
            "conversation_id": conversation_id,
            "reason": reason,
            "placed_by": placed_by,
            "placed_at": at,
        }
        async with self.db.write() as conn:
            row = (
                await conn.execute(insert(legal_holds).values(values).returning(legal_holds))
            ).one()
        return _hold_from_row(row)

    async def release_hold(self, hold_id: int, released_by: str, at: datetime) -> LegalHold | None:
        """Release an active hold; None when there is no such active hold."""
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(legal_holds)
                    .where(legal_holds.c.id == hold_id, legal_holds.c.released_at.is_(None))
                    .values(released_at=at, released_by=released_by)
                    .returning(legal_holds)
                )
            ).first()
        return _hold_from_row(row) if row else None

    async def get_hold(self, hold_id: int) -> LegalHold | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(legal_holds).where(legal_holds.c.id == hold_id))
            ).first()
        return _hold_from_row(row) if row else None

    async def list_holds(self, *, active_only: bool) -> list[LegalHold]:
        query = select(legal_holds).order_by(legal_holds.c.id)
        if active_only:
            query = query.where(legal_holds.c.released_at.is_(None))
        async with self.db.read() as conn:
            return [_hold_from_row(row) for row in (await conn.execute(query)).all()]

    async def held_conversations_with_messages_of(self, sender_id: int) -> list[int]:
        """Conversations under an active hold that hold messages `sender_id` wrote."""
        query = (
            select(messages.c.conversation_id)
            .where(messages.c.sender_id == sender_id, messages.c.conversation_id.in_(_HELD))
            .distinct()
        )
        async with self.db.read() as conn:
            return sorted(int(r[0]) for r in (await conn.execute(query)).all())

    async def conversation_exists(self, conversation_id: int) -> bool:
        query = select(conversations.c.id).where(conversations.c.id == conversation_id)
        async with self.db.read() as conn:
            return (await conn.execute(query)).first() is not None

    # -- retention ----------------------------------------------------------------------------

    async def list_expired_message_ids(
        self,
        *,
        kind: str,
        cutoff: datetime,
        inbox_id: int | None = None,
        after_id: int = 0,
        limit: int = 500,
    ) -> list[tuple[int, int]]:
        """(message id, conversation id) of live messages older than `cutoff`, oldest id first.

        `kind` is a conversation kind, or `livechat` (then `inbox_id` names the inbox); held
        conversations are left out.
        """
        m = messages.c
        where = _expired(kind, cutoff, inbox_id)
        where += [m.id > after_id, not_(m.conversation_id.in_(_HELD))]
        query = select(m.id, m.conversation_id).where(and_(*where)).order_by(m.id).limit(limit)
        async with self.db.read() as conn:
            return [(int(r.id), int(r.conversation_id)) for r in (await conn.execute(query)).all()]

    async def list_held_with_expired(
        self, *, kind: str, cutoff: datetime, inbox_id: int | None = None
    ) -> list[int]:
        """Held conversations that retention skips: they have messages past `cutoff`."""
        where = [*_expired(kind, cutoff, inbox_id), messages.c.conversation_id.in_(_HELD)]
        query = select(messages.c.conversation_id).where(and_(*where)).distinct()
        async with self.db.read() as conn:
            return sorted(int(r[0]) for r in (await conn.execute(query)).all())

    async def list_inbox_retention(self) -> list[tuple[int, int | None]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(inboxes.c.id, inboxes.c.retention_days))).all()
        return [(int(r.id), r.retention_days) for r in rows]

    # -- erasure -------------------------------------------------------------------------------

    async def list_attachment_ids_of(self, uploader_id: int) -> list[str]:
        query = select(attachments.c.id).where(attachments.c.uploader_id == uploader_id)
        async with self.db.read() as conn:
            return [str(r[0]) for r in (await conn.execute(query)).all()]

    async def forget_client_ids_of(self, sender_id: int) -> None:
        """Client message ids are the client's own strings: after erasure they say nothing."""
        async with self.db.write() as conn:
            await conn.execute(
                update(messages)
                .where(messages.c.sender_id == sender_id)
                .values(client_msg_id=literal("erased-") + cast(messages.c.id, String))
            )

    async def strip_attachments_of(self, sender_id: int) -> None:
        """Drop the file references of a person's messages (anonymize keeps only the text)."""
        async with self.db.write() as conn:
            await conn.execute(
                update(messages).where(messages.c.sender_id == sender_id).values(attachments=[])
            )

    async def delete_attachment_rows(self, ids: list[str]) -> None:
        if ids:
            async with self.db.write() as conn:
                await conn.execute(delete(attachments).where(attachments.c.id.in_(ids)))

    async def scrub_identity(self, user_id: int) -> int:
        """Remove who the person was: name, display name, password, tokens, visitor sessions,
        verified widget identities, what their visits told about them, the names on export jobs
        they asked for. Returns how many widget sessions were ended."""
        erased_name = f"erased-{user_id}"
        async with self.db.write() as conn:
            old_name = (
                await conn.execute(select(users.c.name).where(users.c.id == user_id))
            ).scalar_one()
            # Titles made from their name (a visitor's "Shop: visitor-…") lose it too.
            await conn.execute(
                update(conversations)
                .where(
                    conversations.c.id.in_(
                        select(members.c.conversation_id).where(members.c.user_id == user_id)
                    )
                )
                .values(title=func.replace(conversations.c.title, old_name, ERASED_DISPLAY_NAME))
            )
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(
                    name=erased_name,
                    display_name=ERASED_DISPLAY_NAME,
                    password_hash=None,
                    internal=False,
                )
            )
            await conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
            sessions = await conn.execute(
                delete(widget_sessions).where(widget_sessions.c.visitor_id == user_id)
            )
            await conn.execute(
                delete(widget_identities).where(widget_identities.c.visitor_id == user_id)
            )
            await conn.execute(
                update(livechat_conversations)
                .where(livechat_conversations.c.visitor_id == user_id)
                .values(attributes={}, page_url=None, language=None, country=None)
            )
            await conn.execute(
                update(export_jobs)
                .where(export_jobs.c.requested_by == user_id)
                .values(requested_by_name=erased_name)
            )
            await _scrub_features(conn, user_id)
        for listener in self.on_change:
            await listener()
        return int(sessions.rowcount or 0)

    async def list_export_ids_about(self, user_id: int) -> list[str]:
        """Export jobs whose package holds the person's data (their own exports)."""
        query = select(export_jobs.c.id).where(
            export_jobs.c.kind == "person", export_jobs.c.subject_id == user_id
        )
        async with self.db.read() as conn:
            return [str(r[0]) for r in (await conn.execute(query)).all()]

    # -- once per period, across nodes -----------------------------------------------------------

    async def claim_periodic(self, name: str, now: datetime, every_seconds: float) -> bool:
        """True for exactly one caller per period, whichever node asks (a conditional UPDATE)."""
        key = f"periodic:{name}"
        row = runtime_settings.c
        try:
            async with self.db.write() as conn:
                found = (await conn.execute(select(row.updated_at).where(row.key == key))).first()
                if found is None:
                    await conn.execute(
                        insert(runtime_settings).values(
                            key=key, value={"at": now.isoformat()}, updated_at=now
                        )
                    )
                    return True
                claimed = await conn.execute(
                    update(runtime_settings)
                    .where(row.key == key, row.updated_at < now - timedelta(seconds=every_seconds))
                    .values(value={"at": now.isoformat()}, updated_at=now)
                )
                return bool(claimed.rowcount)
        except (IntegrityError, ParleyError):
            return False  # another node inserted it first


def _expired(kind: str, cutoff: datetime, inbox_id: int | None) -> list[Any]:
    m = messages.c
    where: list[Any] = [m.created_at < cutoff, m.deleted_at.is_(None)]
    if kind == "livechat":
        inbox_conversations = select(livechat_conversations.c.conversation_id).where(
            livechat_conversations.c.inbox_id == inbox_id
        )
        where.append(m.conversation_id.in_(inbox_conversations))
    else:
        of_kind = select(conversations.c.id).where(conversations.c.kind == kind)
        where += [m.conversation_id.in_(of_kind), not_(m.conversation_id.in_(_LIVECHAT))]
    return where


async def _scrub_features(conn: Any, user_id: int) -> None:
    """What the other features keep about a person: sign-in identities and e-mail, notification
    addresses and subscriptions, call network details, copies of their words kept as moderation
    or (settled) dispute evidence, internal notes about them as a visitor."""
    await conn.execute(update(users).where(users.c.id == user_id).values(email=None))
    for table in (
        user_identities,
        notification_preferences,
        push_subscriptions,
        notification_pending,
        notification_deliveries,
    ):
        await conn.execute(delete(table).where(table.c.user_id == user_id))
    for party in (calls.c.caller_id, calls.c.callee_id):
        await conn.execute(
            update(calls)
            .where(party == user_id)
            .values(offer_sdp="", answer_sdp=None, caller_candidates=[], callee_candidates=[])
        )
    await conn.execute(
        update(moderation_items)
        .where(moderation_items.c.sender_id == user_id)
        .values(
            body="",
            attachments=[],
            metadata={},
            client_msg_id=literal("erased-") + cast(moderation_items.c.id, String),
        )
    )
    await conn.execute(
        update(moderation_reports)
        .where(moderation_reports.c.reporter_id == user_id)
        .values(note="")
    )
    await conn.execute(
        update(dispute_evidence)
        .where(dispute_evidence.c.sender_id == user_id)
        .values(body="", attachments=[])
    )
    visits = select(livechat_conversations.c.conversation_id).where(
        livechat_conversations.c.visitor_id == user_id
    )
    await conn.execute(delete(livechat_notes).where(livechat_notes.c.conversation_id.in_(visits)))
