"""ExportStore: export jobs, and the reads a package is built from (page by page, never all)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update

from parley.core.exports import ExportJob, ExportKind, ExportStatus
from parley.core.models import Attachment, Conversation, Member, Message, User
from parley.storage.database import Database
from parley.storage.rows import (
    _json,
    attachment_from_row,
    conversation_from_row,
    member_from_row,
    message_from_row,
    user_from_row,
    utc,
)
from parley.storage.schema import (
    api_tokens,
    attachments,
    calls,
    conversations,
    export_jobs,
    members,
    messages,
    moderation_sanctions,
    notification_mutes,
    notification_preferences,
    push_subscriptions,
    user_identities,
    users,
)


def _job_from_row(row: Any) -> ExportJob:
    return ExportJob(
        id=row.id,
        kind=ExportKind(row.kind),
        subject_id=int(row.subject_id),
        requested_by=row.requested_by,
        requested_by_name=row.requested_by_name,
        status=ExportStatus(row.status),
        done=int(row.done),
        total=int(row.total),
        size=row.size,
        sha256=row.sha256,
        error=row.error,
        params=_json(row.params) or {},
        created_at=utc(row.created_at),
        finished_at=utc(row.finished_at) if row.finished_at else None,
        expires_at=utc(row.expires_at) if row.expires_at else None,
    )


class ExportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- jobs --------------------------------------------------------------------------------

    async def add_job(self, values: dict[str, Any]) -> ExportJob:
        async with self.db.write() as conn:
            row = (
                await conn.execute(insert(export_jobs).values(values).returning(export_jobs))
            ).one()
        return _job_from_row(row)

    async def get_job(self, job_id: str) -> ExportJob | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(export_jobs).where(export_jobs.c.id == job_id))
            ).first()
        return _job_from_row(row) if row else None

    async def latest_job(self, kind: ExportKind, subject_id: int) -> ExportJob | None:
        query = (
            select(export_jobs)
            .where(export_jobs.c.kind == kind.value, export_jobs.c.subject_id == subject_id)
            .order_by(export_jobs.c.created_at.desc())
            .limit(1)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return _job_from_row(row) if row else None

    async def claim_job(
        self, runner: str, now: datetime, stale_before: datetime
    ) -> ExportJob | None:
        """Take the oldest queued job, or one whose runner went quiet; None when there is none.

        A conditional UPDATE, so two runners (nodes) never take the same job.
        """
        c = export_jobs.c
        claimable = or_(
            c.status == ExportStatus.QUEUED.value,
            and_(c.status == ExportStatus.RUNNING.value, c.heartbeat_at < stale_before),
        )
        async with self.db.read() as conn:
            candidates = (
                await conn.execute(
                    select(c.id, c.status, c.heartbeat_at)
                    .where(claimable)
                    .order_by(c.created_at)
                    .limit(5)
                )
            ).all()
        for candidate in candidates:
            async with self.db.write() as conn:
                taken = await conn.execute(
                    update(export_jobs)
                    .where(
                        c.id == candidate.id,
                        c.status == candidate.status,
                        c.heartbeat_at.is_(None)
                        if candidate.heartbeat_at is None
                        else c.heartbeat_at == candidate.heartbeat_at,
                    )
                    .values(status=ExportStatus.RUNNING.value, runner=runner, heartbeat_at=now)
                    .returning(export_jobs)
                )
                row = taken.first()
            if row is not None:
                return _job_from_row(row)
        return None

    async def update_job(self, job_id: str, values: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(export_jobs).where(export_jobs.c.id == job_id).values(values))

    async def list_expired_jobs(self, now: datetime) -> list[ExportJob]:
        query = select(export_jobs).where(export_jobs.c.expires_at < now)
        async with self.db.read() as conn:
            return [_job_from_row(row) for row in (await conn.execute(query)).all()]

    async def delete_jobs(self, job_ids: list[str]) -> None:
        if job_ids:
            async with self.db.write() as conn:
                await conn.execute(delete(export_jobs).where(export_jobs.c.id.in_(job_ids)))

    # -- what a package is made of -------------------------------------------------------------

    async def get_conversation(self, conversation_id: int) -> Conversation | None:
        query = select(conversations).where(conversations.c.id == conversation_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return conversation_from_row(row) if row else None

    async def list_members(self, conversation_id: int) -> list[Member]:
        query = select(members).where(members.c.conversation_id == conversation_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(members.c.user_id))).all()
        return [member_from_row(row) for row in rows]

    async def list_memberships_of(self, user_id: int) -> list[tuple[Conversation, Member]]:
        query = (
            select(conversations, *[c.label(f"m_{c.name}") for c in members.c])
            .join(members, members.c.conversation_id == conversations.c.id)
            .where(members.c.user_id == user_id)
            .order_by(conversations.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [(conversation_from_row(row), member_from_row(row, prefix="m_")) for row in rows]

    async def find_users(self, user_ids: list[int]) -> list[User]:
        if not user_ids:
            return []
        async with self.db.read() as conn:
            rows = (await conn.execute(select(users).where(users.c.id.in_(user_ids)))).all()
        return [user_from_row(row) for row in rows]

    async def list_messages_page(
        self, conversation_id: int, after_seq: int, limit: int
    ) -> list[Message]:
        query = (
            select(messages)
            .where(messages.c.conversation_id == conversation_id, messages.c.seq > after_seq)
            .order_by(messages.c.seq)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [message_from_row(row) for row in (await conn.execute(query)).all()]

    async def list_messages_by_sender_page(
        self, sender_id: int, after_id: int, limit: int
    ) -> list[Message]:
        query = (
            select(messages)
            .where(messages.c.sender_id == sender_id, messages.c.id > after_id)
            .order_by(messages.c.id)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [message_from_row(row) for row in (await conn.execute(query)).all()]

    async def count_messages_by_sender(self, sender_id: int) -> int:
        from sqlalchemy import func

        query = select(func.count()).where(messages.c.sender_id == sender_id)
        async with self.db.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def find_attachments(self, ids: list[str]) -> list[Attachment]:
        if not ids:
            return []
        query = select(attachments).where(attachments.c.id.in_(ids))
        async with self.db.read() as conn:
            return [attachment_from_row(row) for row in (await conn.execute(query)).all()]

    async def list_attachments_by_uploader(self, user_id: int) -> list[Attachment]:
        query = (
            select(attachments)
            .where(attachments.c.uploader_id == user_id)
            .order_by(attachments.c.created_at)
        )
        async with self.db.read() as conn:
            return [attachment_from_row(row) for row in (await conn.execute(query)).all()]

    async def list_token_labels(self, user_id: int) -> list[dict[str, Any]]:
        """A person's API tokens as they may see them: label and dates, never the hash."""
        c = api_tokens.c
        query = select(c.label, c.created_at, c.expires_at, c.revoked_at).where(
            c.user_id == user_id
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(c.id))).all()
        return [
            {
                "label": row.label,
                "created_at": utc(row.created_at),
                "expires_at": utc(row.expires_at) if row.expires_at else None,
                "revoked_at": utc(row.revoked_at) if row.revoked_at else None,
            }
            for row in rows
        ]

    async def list_person_records(self, user_id: int) -> dict[str, Any]:
        """What the other features keep about a person, as they may see it (no secrets: push
        endpoints are capability URLs, so only their host is shown)."""
        sections: dict[str, Any] = {}
        async with self.db.read() as conn:
            email = (
                await conn.execute(select(users.c.email).where(users.c.id == user_id))
            ).scalar_one_or_none()
            sections["email"] = email
            sections["sso_identities"] = [
                {"provider": r.provider, "subject": r.subject, "email": r.email,
                 "linked_at_utc": utc(r.created_at), "last_login_at_utc": utc(r.last_login_at)}
                for r in await conn.execute(
                    select(user_identities).where(user_identities.c.user_id == user_id)
                )
            ]  # fmt: skip
            prefs = (
                await conn.execute(
                    select(notification_preferences).where(
                        notification_preferences.c.user_id == user_id
                    )
                )
            ).first()
            sections["notification_preferences"] = (
                {
                    "email": prefs.email,
                    "email_enabled": bool(prefs.email_enabled),
                    "push_enabled": bool(prefs.push_enabled),
                    "telegram_enabled": bool(prefs.telegram_enabled),
                    "telegram_chat_id": prefs.telegram_chat_id,
                    "quiet_hours": _json(prefs.quiet_hours),
                }
                if prefs
                else None
            )
            sections["muted_conversations"] = [
                {"conversation_id": r.conversation_id, "muted_until_utc": r.muted_until}
                for r in await conn.execute(
                    select(notification_mutes).where(notification_mutes.c.user_id == user_id)
                )
            ]
            sections["push_subscriptions"] = [
                {"service": _host(r.endpoint), "user_agent": r.user_agent,
                 "created_at_utc": utc(r.created_at)}
                for r in await conn.execute(
                    select(push_subscriptions).where(push_subscriptions.c.user_id == user_id)
                )
            ]  # fmt: skip
            sections["calls"] = [
                {"id": r.id, "conversation_id": r.conversation_id,
                 "role": "caller" if r.caller_id == user_id else "callee", "media": r.media,
                 "state": r.state, "end_reason": r.end_reason,
                 "started_at_utc": utc(r.created_at),
                 "ended_at_utc": utc(r.ended_at) if r.ended_at else None}
                for r in await conn.execute(
                    select(calls)
                    .where(or_(calls.c.caller_id == user_id, calls.c.callee_id == user_id))
                    .order_by(calls.c.created_at)
                )
            ]  # fmt: skip
            sections["moderation_sanctions"] = [
                {"kind": r.kind, "reason": r.reason, "created_at_utc": utc(r.created_at),
                 "expires_at_utc": utc(r.expires_at) if r.expires_at else None,
                 "lifted_at_utc": utc(r.lifted_at) if r.lifted_at else None}
                for r in await conn.execute(
                    select(moderation_sanctions).where(moderation_sanctions.c.user_id == user_id)
                )
            ]  # fmt: skip
        return sections


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""
