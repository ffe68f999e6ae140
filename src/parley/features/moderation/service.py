"""Moderation: members report, the queue collects reports and held sends, moderators decide.

Moderators and admins work the queue (approve, remove, warn, mute, ban, escalate) and manage
the filter rules and sanctions; an escalated item (tier 2) is decided by an admin. Every
decision is one conditional UPDATE on the item (two moderators cannot both decide it), lands in
the audit log, and is announced live to the queue's staff (`moderation.item`) and, for a
sanction, to the user concerned (`moderation.notice`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta
from enum import Enum
from typing import Any, TypeVar

from parley import metrics
from parley.core.audit import Target
from parley.core.errors import BadInput, Conflict, ErrorCode, Forbidden, InvalidValue, NotFound
from parley.core.events import (
    ControlEvent,
    ConversationUpdatedEvent,
    Event,
    ModerationItemEvent,
    ModerationNoticeEvent,
)
from parley.core.models import ConversationKind, Message, NewMessage, Role, User
from parley.core.moderation import (
    Action,
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
    check_rule_config,
)
from parley.features.moderation.filters import ModerationGuard, iso
from parley.services.audit import AuditLog
from parley.services.timeline import Timeline
from parley.storage.moderation import ModerationStore
from parley.storage.users import UserStore

log = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[None]]
E = TypeVar("E", bound=Enum)
MAX_SANCTION_SECONDS = 10 * 365 * 86400


async def _publish_nowhere(_event: Event) -> None:
    return None


def check_moderator(user: User) -> None:
    if user.role not in (Role.MODERATOR, Role.ADMIN):
        raise Forbidden("only moderators and admins work the moderation queue")


def parse_enum(enum: type[E], value: Any, what: str) -> E:
    """`enum(value)`, or a 400 ERR_INVALID_VALUE that lists the allowed values."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum)
        raise InvalidValue(f"{what} {value!r} is not one of {allowed}") from None


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "kind": rule.kind.value,
        "verdict": rule.verdict.label,
        "scope": rule.scope.value,
        "scope_value": rule.scope_value,
        "config": rule.config,
        "enabled": rule.enabled,
        "created_at": iso(rule.created_at),
        "updated_at": iso(rule.updated_at),
        "updated_by": rule.updated_by,
    }


def sanction_json(sanction: Sanction, user: User | None = None) -> dict[str, Any]:
    return {
        "id": sanction.id,
        "user": {"id": sanction.user_id, "name": user.name if user else ""},
        "kind": sanction.kind.value,
        "conversation_id": sanction.conversation_id,
        "reason": sanction.reason,
        "created_by": sanction.created_by,
        "created_at": iso(sanction.created_at),
        "expires_at": iso(sanction.expires_at),
        "lifted_at": iso(sanction.lifted_at),
        "lifted_by": sanction.lifted_by,
        "item_id": sanction.item_id,
    }


def item_json(
    item: QueueItem, sender: User | None = None, reports: list[Report] | None = None
) -> dict[str, Any]:
    """A queue item as the moderation page shows it (REST and `moderation.item` alike)."""
    return {
        "id": item.id,
        "kind": item.kind.value,
        "status": item.status.value,
        "tier": int(item.tier),
        "escalated": item.tier is Tier.ADMINS,
        "conversation_id": item.conversation_id,
        "message_id": item.message_id,
        "sender": {"id": item.sender_id, "name": sender.name if sender else ""},
        "body": item.body,
        "attachments": [asdict(ref) for ref in item.attachments],
        "rule": item.rule,
        "reason": item.reason,
        "reports": item.reports,
        "report_details": [
            {
                "reporter_id": r.reporter_id,
                "reason": r.reason.value,
                "note": r.note,
                "at": iso(r.created_at),
            }
            for r in reports or []
        ],
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "resolved_at": iso(item.resolved_at),
        "resolved_by": item.resolved_by,
        "resolution": item.resolution.value if item.resolution else None,
        "note": item.note,
    }


class Moderation:
    def __init__(
        self,
        *,
        store: ModerationStore,
        guard: ModerationGuard,
        timeline: Timeline,
        users: UserStore,
        audit: AuditLog,
        classifier_configured: bool,
        publish: Publish = _publish_nowhere,
        live: Callable[[], bool] = lambda: True,
        on_released: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.guard = guard
        self.timeline = timeline
        self.users = users
        self.audit = audit
        self.classifier_configured = classifier_configured
        self._publish = publish
        # False off-server (the CLI): nobody is connected here to tell.
        self.live = live
        # Told (conversation_id, sender_id) when an approved held send reaches the timeline
        # (live chat reopens a visitor's conversation as for any visitor message).
        self.on_released = on_released
        guard.on_held = self._announce_item_id

    # -- members report --------------------------------------------------------------------------

    async def do_report(
        self, actor: User, conversation_id: int, message_id: int, reason: str, note: str
    ) -> tuple[QueueItem, bool]:
        """A member reports a message of a conversation they are in; repeats are one report."""
        await self.timeline.access_conversation(actor, conversation_id)
        why = parse_enum(ReportReason, reason, "reason")
        message = await self.store.get_message(conversation_id, message_id)
        if message is None or _is_tombstone(message):
            raise NotFound("no such message")
        if message.sender_id == actor.id:
            raise InvalidValue("you cannot report your own message")
        item, added = await self.store.report_message(
            message, reporter_id=actor.id, reason=why, note=note
        )
        if added:
            metrics.MODERATION_REPORTS.inc()
            await self._announce(item)
        return item, added

    # -- the queue -------------------------------------------------------------------------------

    async def list_queue(
        self,
        actor: User,
        *,
        status: str | None,
        kind: str | None,
        tier: int | None,
        before_id: int | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        check_moderator(actor)
        items = await self.store.list_items(
            status=parse_enum(ItemStatus, status, "status") if status else None,
            kind=parse_enum(ItemKind, kind, "kind") if kind else None,
            tier=parse_enum(Tier, tier, "tier") if tier is not None else None,
            before_id=before_id,
            limit=limit,
        )
        return await self._items_json(items)

    async def access_item(self, actor: User, item_id: int) -> QueueItem:
        check_moderator(actor)
        item = await self.store.get_item(item_id)
        if item is None:
            raise NotFound("no such queue item")
        return item

    async def item_detail(self, item: QueueItem) -> dict[str, Any]:
        (found,) = await self._items_json([item])
        return found

    async def do_act(
        self,
        actor: User,
        item: QueueItem,
        action: str,
        *,
        reason: str = "",
        scope: str = "conversation",
        duration_seconds: int | None = None,
        remove_content: bool = True,
    ) -> dict[str, Any]:
        """Decide a queue item: approve, remove, warn/mute/ban its sender, or escalate it."""
        chosen = parse_enum(Action, action, "action")
        if item.status is not ItemStatus.OPEN:
            raise Conflict(f"item {item.id} was already decided ({item.resolution})")
        if item.tier is Tier.ADMINS and actor.role is not Role.ADMIN:
            raise Forbidden("this item was escalated: an admin decides it", ErrorCode.ESCALATED)
        reason = reason.strip()
        before = {"status": item.status.value, "tier": int(item.tier)}
        after: dict[str, Any]
        if chosen is Action.ESCALATE:
            if not reason:
                raise BadInput("say why you escalate (reason)")
            updated = await self.store.escalate_item(item.id, note=reason)
            if updated is None:
                raise Conflict("the item is already at the highest tier, or was decided")
            after = {"status": updated.status.value, "tier": int(updated.tier)}
        else:
            sanctioning = chosen in (Action.WARN, Action.MUTE, Action.BAN)
            where = item.conversation_id if scope == "conversation" else None
            if sanctioning:  # refused before the item is decided, not after
                await self._check_sanction(
                    actor,
                    item.sender_id,
                    SanctionKind(chosen.value),
                    where,
                    scope,
                    duration_seconds,
                )
            approve = chosen is Action.APPROVE or (sanctioning and not remove_content)
            updated = await self._decide(actor, item, approve=approve, reason=reason)
            after = {
                "status": updated.status.value,
                "resolution": updated.resolution.value if updated.resolution else None,
                "message_id": updated.message_id,
            }
            if sanctioning:
                sanction = await self._sanction(
                    actor,
                    item.sender_id,
                    SanctionKind(chosen.value),
                    conversation_id=where,
                    scope=scope,
                    duration_seconds=duration_seconds,
                    reason=reason,
                    item_id=item.id,
                )
                after["sanction"] = sanction_json(sanction)
        metrics.MODERATION_ACTIONS.labels(chosen.value).inc()
        await self.audit.record(
            actor,
            f"moderation.{chosen.value}",
            Target.of("moderation_item", item.id),
            before=before,
            after=after,
            reason=reason,
        )
        await self._announce(updated)
        return await self.item_detail(updated)

    async def _decide(
        self, actor: User, item: QueueItem, *, approve: bool, reason: str
    ) -> QueueItem:
        """Close the item (claimed first: one decision wins), then act on the message."""
        resolution = Resolution.APPROVED if approve else Resolution.REMOVED
        claimed = await self.store.resolve_item(
            item.id, resolution, by=actor.name, note=reason, message_id=None
        )
        if claimed is None:
            raise Conflict(f"item {item.id} was decided by someone else meanwhile")
        try:
            if item.kind is ItemKind.HELD and approve:
                # Held sends are not in the timeline: approving appends them now (their seq is
                # the next one), under their own client_msg_id, delivered live like any message.
                appended = await self.timeline.writer.append(
                    NewMessage(
                        conversation_id=item.conversation_id,
                        sender_id=item.sender_id,
                        client_msg_id=item.client_msg_id,
                        body=item.body,
                        attachments=list(item.attachments),
                        metadata=dict(item.metadata),
                    )
                )
                noted = await self.store.note_message(item.id, appended.message.id)
                if appended.created:
                    await self._released(item)
                return noted or claimed
            if item.kind is ItemKind.REPORT and not approve and item.message_id is not None:
                await self._remove_delivered(actor, item, reason)
        except BaseException:
            await self.store.reopen_item(item.id)  # not carried out: it must be decided again
            raise
        if item.kind is ItemKind.REPORT and not approve:
            await self._notify(
                item.sender_id,
                ModerationNoticeEvent(
                    action="removed", conversation_id=item.conversation_id, reason=reason
                ),
            )
        return claimed

    async def _released(self, item: QueueItem) -> None:
        if self.on_released is None:
            return
        try:
            await self.on_released(item.conversation_id, item.sender_id)
        except Exception:  # the message is delivered; what follows it is best effort
            log.exception("after approving item %d", item.id)

    async def _remove_delivered(self, actor: User, item: QueueItem, reason: str) -> None:
        """A reported message, already delivered, becomes a tombstone for every member, live.

        Its seq stays (the timeline remains gapless); the queue item keeps the original text
        as evidence. `Timeline.do_delete_message` (issue 17, rich timeline) stores the tombstone
        with its own stream position and sends `message.updated` to the members.
        """
        if item.message_id is None:
            return
        # The rich timeline's tombstone: the seq stays, every member's client replaces it live.
        await self.timeline.do_delete_message(
            actor, item.conversation_id, item.message_id, reason=reason, by_staff=True
        )

    # -- sanctions -------------------------------------------------------------------------------

    async def do_sanction(
        self,
        actor: User | str,
        user_id: int,
        kind: str,
        *,
        conversation_id: int | None,
        duration_seconds: int | None,
        reason: str,
    ) -> Sanction:
        """Warn, mute or ban a user outside the queue (here, or everywhere); `actor` may be
        `cli:<login>` from a terminal."""
        if isinstance(actor, User):
            check_moderator(actor)
        chosen = parse_enum(SanctionKind, kind, "kind")
        sanction = await self._sanction(
            actor,
            user_id,
            chosen,
            conversation_id=conversation_id,
            scope="conversation" if conversation_id is not None else "global",
            duration_seconds=duration_seconds,
            reason=reason.strip(),
        )
        metrics.MODERATION_ACTIONS.labels(chosen.value).inc()
        await self.audit.record(
            actor,
            f"moderation.{chosen.value}",
            Target.of("user", user_id),
            after=sanction_json(sanction),
            reason=sanction.reason,
        )
        return sanction

    async def _check_sanction(
        self,
        actor: User | str,
        user_id: int,
        kind: SanctionKind,
        conversation_id: int | None,
        scope: str,
        duration_seconds: int | None,
    ) -> None:
        if scope not in ("conversation", "global"):
            raise InvalidValue("scope is conversation or global")
        if duration_seconds is not None and not 0 < duration_seconds <= MAX_SANCTION_SECONDS:
            raise BadInput(f"duration_seconds is 1 to {MAX_SANCTION_SECONDS} (or null: no end)")
        target = await self.users.get_user(user_id)
        if target is None:
            raise NotFound(f"no user {user_id}")
        if target.role in (Role.ADMIN, Role.MODERATOR) and kind is not SanctionKind.WARN:
            raise Forbidden("staff cannot be muted or banned; change their role first")
        if isinstance(actor, User) and target.id == actor.id:
            raise InvalidValue("you cannot sanction yourself")
        if conversation_id is not None and not await self.store.conversation_exists(
            conversation_id
        ):
            raise NotFound(f"no conversation {conversation_id}")

    async def _sanction(
        self,
        actor: User | str,
        user_id: int,
        kind: SanctionKind,
        *,
        conversation_id: int | None,
        scope: str,
        duration_seconds: int | None,
        reason: str,
        item_id: int | None = None,
    ) -> Sanction:
        await self._check_sanction(actor, user_id, kind, conversation_id, scope, duration_seconds)
        expires_at = (
            self.guard.clock() + timedelta(seconds=duration_seconds) if duration_seconds else None
        )
        sanction = await self.store.add_sanction(
            user_id=user_id,
            kind=kind,
            conversation_id=conversation_id,
            reason=reason,
            by=_name(actor),
            expires_at=expires_at,
            item_id=item_id,
        )
        await self.guard.refresh(force=True)
        await self._notify(
            user_id,
            ModerationNoticeEvent(
                action=kind.value,
                conversation_id=conversation_id,
                reason=reason,
                expires_at=iso(expires_at),
            ),
        )
        if kind is SanctionKind.BAN:
            await self._enforce_ban(user_id, conversation_id)
        return sanction

    async def _enforce_ban(self, user_id: int, conversation_id: int | None) -> None:
        """A conversation ban removes the member now; a global one closes their streams."""
        if conversation_id is None:
            await self.publish(ControlEvent(op="reconnect", reason="banned", user_ids=[user_id]))
            return
        if await self.timeline.conversations.remove_member(conversation_id, user_id):
            members = await self.timeline.conversations.list_members(conversation_id)
            await self.publish(
                ConversationUpdatedEvent(
                    conversation_id=conversation_id,
                    member_ids=[m.user_id for m in members],
                    removed_ids=[user_id],
                )
            )

    async def do_lift(self, actor: User | str, sanction_id: int, reason: str) -> Sanction:
        if isinstance(actor, User):
            check_moderator(actor)
        before = await self.store.get_sanction(sanction_id)
        if before is None:
            raise NotFound("no such sanction")
        lifted = await self.store.lift_sanction(sanction_id, by=_name(actor))
        if lifted is None:
            raise Conflict("this sanction was already lifted")
        await self.guard.refresh(force=True)
        await self.audit.record(
            actor,
            "moderation.lift",
            Target.of("user", lifted.user_id),
            before=sanction_json(before),
            after=sanction_json(lifted),
            reason=reason.strip(),
        )
        await self._notify(
            lifted.user_id,
            ModerationNoticeEvent(action="lifted", conversation_id=lifted.conversation_id),
        )
        return lifted

    async def list_sanctions(
        self, actor: User, *, user_id: int | None, active: bool, limit: int
    ) -> list[dict[str, Any]]:
        check_moderator(actor)
        found = await self.store.list_sanctions(
            user_id=user_id, active_at=self.guard.clock() if active else None, limit=limit
        )
        users = {u.id: u for u in await self.users.find_users_by_id([s.user_id for s in found])}
        return [sanction_json(s, users.get(s.user_id)) for s in found]

    async def list_my_sanctions(self, actor: User) -> list[dict[str, Any]]:
        """What a user may know about themselves: their warnings, mutes and bans."""
        found = await self.store.list_sanctions(user_id=actor.id, active_at=None, limit=100)
        return [sanction_json(s, actor) for s in found]

    # -- rules -----------------------------------------------------------------------------------

    async def list_rules(self, actor: User) -> list[Rule]:
        check_moderator(actor)
        return await self.store.list_rules()

    def check_rule(
        self, *, kind: str, verdict: str, scope: str, scope_value: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        """A rule's stored values from the request's, validated; BadInput says what is wrong."""
        rule_kind = parse_enum(RuleKind, kind, "kind")
        rule_verdict = Verdict.parse(verdict)
        if rule_verdict is Verdict.ALLOW:
            raise InvalidValue("a rule's verdict is hold_for_review or reject")
        rule_scope = parse_enum(ScopeKind, scope, "scope")
        if rule_scope is ScopeKind.ALL:
            scope_value = ""
        elif rule_scope is ScopeKind.CONVERSATION_KIND:
            parse_enum(ConversationKind, scope_value, "scope_value")
        elif not scope_value.isdigit():
            raise InvalidValue("an inbox rule's scope_value is the inbox id")
        if rule_kind is RuleKind.CLASSIFIER and not self.classifier_configured:
            raise BadInput(
                "no classifier is configured: set PARLEY_MODERATION_CLASSIFIER_URL first",
                ErrorCode.INVALID_VALUE,
            )
        return {
            "kind": rule_kind.value,
            "verdict": rule_verdict.label,
            "scope": rule_scope.value,
            "scope_value": scope_value,
            "config": check_rule_config(rule_kind, config),
        }

    async def do_add_rule(
        self, actor: User | str, *, name: str, enabled: bool = True, **fields: Any
    ) -> Rule:
        if isinstance(actor, User):
            check_moderator(actor)
        values = {"name": name.strip(), "enabled": enabled, **self.check_rule(**fields)}
        if not values["name"]:
            raise BadInput("a rule needs a name")
        rule = await self.store.add_rule(values, by=_name(actor))
        if rule is None:
            raise Conflict(f"a rule named {name!r} exists", ErrorCode.NAME_TAKEN)
        await self.guard.refresh(force=True)
        await self.audit.record(
            actor,
            "moderation.rule_create",
            Target.of("moderation_rule", rule.id),
            after=rule_json(rule),
        )
        return rule

    async def do_update_rule(
        self, actor: User | str, rule_id: int, changes: dict[str, Any]
    ) -> Rule:
        if isinstance(actor, User):
            check_moderator(actor)
        before = await self.store.get_rule(rule_id)
        if before is None:
            raise NotFound("no such rule")
        values: dict[str, Any] = {}
        if "enabled" in changes:
            values["enabled"] = bool(changes.pop("enabled"))
        if "name" in changes:
            values["name"] = str(changes.pop("name")).strip()
        if changes:
            merged = {
                "kind": before.kind.value,
                "verdict": before.verdict.label,
                "scope": before.scope.value,
                "scope_value": before.scope_value,
                "config": before.config,
                **changes,
            }
            values.update(self.check_rule(**merged))
        rule = await self.store.update_rule(rule_id, values, by=_name(actor))
        if rule is None:
            raise NotFound("no such rule")
        await self.guard.refresh(force=True)
        await self.audit.record(
            actor,
            "moderation.rule_update",
            Target.of("moderation_rule", rule.id),
            before=rule_json(before),
            after=rule_json(rule),
        )
        return rule

    async def do_delete_rule(self, actor: User | str, rule_id: int) -> None:
        if isinstance(actor, User):
            check_moderator(actor)
        before = await self.store.get_rule(rule_id)
        if before is None or not await self.store.delete_rule(rule_id):
            raise NotFound("no such rule")
        await self.guard.refresh(force=True)
        await self.audit.record(
            actor,
            "moderation.rule_delete",
            Target.of("moderation_rule", rule_id),
            before=rule_json(before),
        )

    # -- the backlog -----------------------------------------------------------------------------

    async def backlog(self) -> int:
        """Open queue items (exported as metrics; a P1 release gate input)."""
        counts = await self.store.count_open()
        for kind in ItemKind:
            for tier in Tier:
                metrics.MODERATION_QUEUE_OPEN.labels(kind.value, str(int(tier))).set(
                    counts.get((kind.value, int(tier)), 0)
                )
        return sum(counts.values())

    # -- views and events ------------------------------------------------------------------------

    async def _items_json(self, items: list[QueueItem]) -> list[dict[str, Any]]:
        senders = {
            u.id: u for u in await self.users.find_users_by_id(list({i.sender_id for i in items}))
        }
        reports: dict[int, list[Report]] = {}
        for report in await self.store.list_reports([i.id for i in items if i.reports]):
            reports.setdefault(report.item_id, []).append(report)
        return [item_json(i, senders.get(i.sender_id), reports.get(i.id)) for i in items]

    async def _announce(self, item: QueueItem) -> None:
        try:
            staff = await self.users.list_user_ids_with_roles([Role.MODERATOR, Role.ADMIN])
            (found,) = await self._items_json([item])
            await self.publish(ModerationItemEvent(item=found, staff_ids=staff))
        except Exception:  # live updates are best effort; the page reloads the queue
            log.exception("announcing moderation item %d failed", item.id)

    async def _announce_item_id(self, item_id: int) -> None:
        item = await self.store.get_item(item_id)
        if item is not None:
            await self._announce(item)

    async def _notify(self, user_id: int, event: ModerationNoticeEvent) -> None:
        event.user_ids = [user_id]
        await self.publish(event)

    async def publish(self, event: Event) -> None:
        """Events go out after their change is stored; from the CLI there is no one to tell."""
        if self.live():
            await self._publish(event)


def _name(actor: User | str) -> str:
    return actor.name if isinstance(actor, User) else actor


def _is_tombstone(message: Message) -> bool:
    return getattr(message, "deleted_at", None) is not None
