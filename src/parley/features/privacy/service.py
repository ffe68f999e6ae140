"""Privacy: legal holds, the retention job, and erasing a person (docs/privacy.md).

Roles: legal holds — admins and dispute officers (`dispute_ops`); retention runs and erasure —
admins (or the CLI on the database). Every action is in the audit log, without the personal
data it removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from parley import metrics
from parley.core.audit import Target
from parley.core.errors import Conflict, ErrorCode, Forbidden, InvalidValue, NotFound
from parley.core.models import DeletedBy, Role, User
from parley.core.ports import BlobStore
from parley.core.privacy import (
    RETENTION_KINDS,
    Erasure,
    ErasurePolicy,
    LegalHold,
    RetentionRun,
)
from parley.services.audit import AuditLog
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.privacy import PrivacyStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
PAGE = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_admin(actor: User | None, what: str) -> None:
    if actor is not None and actor.role is not Role.ADMIN:
        raise Forbidden(f"only admins {what}")


def check_retention_settings(days: dict[str, int]) -> dict[str, int]:
    unknown = sorted(set(days) - set(RETENTION_KINDS))
    if unknown:
        raise InvalidValue(
            f"PARLEY_RETENTION_DAYS names unknown kinds {unknown}; use {', '.join(RETENTION_KINDS)}"
        )
    if any(value < 1 for value in days.values()):
        raise InvalidValue("PARLEY_RETENTION_DAYS values are days, 1 or more")
    return days


class Privacy:
    def __init__(
        self,
        *,
        settings: Settings,
        store: PrivacyStore,
        timeline: Timeline,
        blobs: BlobStore,
        audit: AuditLog,
        remove_export: Callable[[str], None] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.timeline = timeline
        self.blobs = blobs
        self.audit = audit
        self.remove_export = remove_export
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    # -- legal holds -----------------------------------------------------------------------------

    def check_hold_keeper(self, actor: User) -> None:
        if actor.role not in (Role.ADMIN, Role.DISPUTE_OPS):
            raise Forbidden("only admins and dispute officers manage legal holds")

    async def do_place_hold(
        self, actor: User | str, conversation_id: int, reason: str
    ) -> LegalHold:
        if not await self.store.conversation_exists(conversation_id):
            raise NotFound("no such conversation")
        name = actor.name if isinstance(actor, User) else actor
        hold = await self.store.add_hold(conversation_id, reason, name, self.clock())
        await self.audit.record(
            actor,
            "privacy.hold_place",
            Target.of("conversation", conversation_id),
            after={"hold_id": hold.id},
            reason=reason,
        )
        return hold

    async def do_release_hold(self, actor: User | str, hold_id: int, reason: str) -> LegalHold:
        name = actor.name if isinstance(actor, User) else actor
        hold = await self.store.release_hold(hold_id, name, self.clock())
        if hold is None:
            raise NotFound("no active legal hold with that id")
        await self.audit.record(
            actor,
            "privacy.hold_release",
            Target.of("conversation", hold.conversation_id),
            before={"hold_id": hold.id, "reason": hold.reason},
            reason=reason,
        )
        return hold

    async def list_holds(self, *, active_only: bool = True) -> list[LegalHold]:
        return await self.store.list_holds(active_only=active_only)

    # -- retention -------------------------------------------------------------------------------

    async def do_retention(self, actor: User | str, *, dry_run: bool = False) -> RetentionRun:
        """Turn every message past its retention into a tombstone (held conversations skipped)."""
        now = self.clock()
        days = check_retention_settings(dict(self.settings.retention_days))
        run = RetentionRun(at=now, dry_run=dry_run)
        touched: set[int] = set()
        scopes: list[tuple[str, int | None, int]] = [
            (kind, None, days[kind]) for kind in ("direct", "group", "room") if kind in days
        ]
        for inbox_id, inbox_days in await self.store.list_inbox_retention():
            chosen = inbox_days or days.get("livechat")
            if chosen:
                scopes.append(("livechat", inbox_id, chosen))
        held: set[int] = set()
        for kind, inbox_id, keep_days in scopes:
            cutoff = now - timedelta(days=keep_days)
            held |= set(
                await self.store.list_held_with_expired(kind=kind, cutoff=cutoff, inbox_id=inbox_id)
            )
            after = 0
            while found := await self.store.list_expired_message_ids(
                kind=kind, cutoff=cutoff, inbox_id=inbox_id, after_id=after, limit=PAGE
            ):
                after = found[-1][0]
                touched |= {cid for _, cid in found}
                if dry_run:
                    run.purged += len(found)
                    continue
                changes = await self.timeline.do_delete_messages(
                    [mid for mid, _ in found],
                    actor=None,
                    reason=f"retention: older than {keep_days} days",
                    by=DeletedBy.SYSTEM,
                )
                run.purged += sum(1 for change in changes if change.changed)
        run.held = sorted(held)
        run.conversations = len(touched)
        if not dry_run:
            metrics.RETENTION_PURGED.inc(run.purged)
        await self.audit.record(
            actor,
            "privacy.retention_dry_run" if dry_run else "privacy.retention_run",
            Target.of("retention", "*"),
            after={
                "purged": run.purged,
                "conversations": run.conversations,
                "held": run.held,
                "days": days,
            },
        )
        return run

    def start(self) -> None:
        if self.settings.retention_every_hours > 0 and self.settings.retention_days:
            self._task = asyncio.create_task(self._retention_forever(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _retention_forever(self) -> None:
        every = self.settings.retention_every_hours * 3600
        while True:
            with contextlib.suppress(Exception):
                if await self.store.claim_periodic("retention", self.clock(), every):
                    try:
                        await self.do_retention("system")
                    except Exception:
                        log.exception("the retention job failed; it runs again next period")
            await asyncio.sleep(min(every, 3600))

    # -- erasure ---------------------------------------------------------------------------------

    async def do_erase(
        self,
        actor: User | str,
        user_id: int,
        *,
        policy: ErasurePolicy,
        reason: str,
    ) -> Erasure:
        """Erase a person: messages per `policy`, files, identity. Others' timelines keep every
        seq. Refused (409 ERR_LEGAL_HOLD) while a held conversation holds their messages."""
        person = await self.timeline.users.get_user(user_id)
        if person is None:
            raise NotFound("no such user")
        if isinstance(actor, User) and actor.id == user_id:
            raise Conflict("admins cannot erase themselves; ask another admin")
        held = await self.store.held_conversations_with_messages_of(user_id)
        if held:
            raise Conflict(
                f"conversations {held} are under legal hold and hold this person's messages; "
                "release the holds first (parley privacy hold list)",
                ErrorCode.LEGAL_HOLD,
                details={"conversations": held},
            )
        files = await self.store.list_attachment_ids_of(user_id)
        if policy is ErasurePolicy.TOMBSTONE:
            messages = await self.timeline.do_delete_messages_from(
                user_id, reason="personal data erased"
            )
        else:
            messages = 0
            await self.store.strip_attachments_of(user_id)
        for attachment_id in files:  # tombstones took their messages' files; the rest go here
            await self.blobs.delete(attachment_id)
        await self.store.delete_attachment_rows(files)
        if self.remove_export is not None:
            for export_id in await self.store.list_export_ids_about(user_id):
                self.remove_export(export_id)
        await self.store.forget_client_ids_of(user_id)
        sessions = await self.store.scrub_identity(user_id)
        erasure = Erasure(
            user_id=user_id,
            policy=policy,
            messages=messages,
            attachments=len(files),
            sessions=sessions,
        )
        # The log keeps that it happened, to whom (an id) and by whom; nothing of who they were.
        await self.audit.record(
            actor,
            "privacy.erase",
            Target.of("user", user_id),
            after={
                "policy": policy.value,
                "messages_tombstoned": messages,
                "attachments_deleted": len(files),
                "widget_sessions_ended": sessions,
            },
            reason=reason,
        )
        metrics.ERASURES.labels(policy.value).inc()
        return erasure
