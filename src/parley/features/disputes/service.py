"""Disputes: open one on a conversation, move it through its statuses, pin evidence, settle it.

Only role `dispute_ops` acts on disputes, and only while the flag `dispute_tools_v2` is on for
them (seed 000's rollout step 3); anyone else gets 403. The parties (buyer and seller, members
of the conversation) may read their dispute and pin their conversation's messages and files as
evidence while it is open or collecting evidence.

Each change is one compare-and-set with its history line and webhook outbox row, then an audit
entry and a live `dispute.updated` event to dispute_ops and the parties.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from parley import metrics
from parley.core.audit import Target
from parley.core.disputes import (
    ACTIVE_STATUSES,
    Dispute,
    DisputeEvent,
    DisputeStatus,
    Evidence,
    OutcomeKind,
    SlaPolicy,
    check_amount,
    check_transition,
    parse_status,
    settle,
)
from parley.core.errors import BadInput, Conflict, ErrorCode, Forbidden, InvalidValue, NotFound
from parley.core.events import DisputeUpdatedEvent, Event
from parley.core.models import Role, User
from parley.services.audit import AuditLog
from parley.services.timeline import Timeline
from parley.settings import Settings
from parley.storage.attachments import AttachmentStore
from parley.storage.disputes import DisputeStore, HistoryLine
from parley.storage.moderation import ModerationStore
from parley.storage.users import UserStore

log = logging.getLogger(__name__)

FLAG = "dispute_tools_v2"
Publish = Callable[[Event], Awaitable[None]]
FlagCheck = Callable[[User], Awaitable[bool]]
Clock = Callable[[], datetime]
# Statuses in which the parties may still add evidence (dispute_ops may until it is final).
PARTY_EVIDENCE_STATUSES = (DisputeStatus.OPEN, DisputeStatus.EVIDENCE)


async def _publish_nowhere(_event: Event) -> None:
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def sla_policy(settings: Settings) -> SlaPolicy:
    return SlaPolicy(
        open=timedelta(seconds=settings.dispute_sla_open_seconds),
        evidence=timedelta(seconds=settings.dispute_sla_evidence_seconds),
        review=timedelta(seconds=settings.dispute_sla_review_seconds),
    )


def dispute_json(
    dispute: Dispute, users: dict[int, User] | None = None, *, at: datetime | None = None
) -> dict[str, Any]:
    """A dispute as REST, events and webhooks show it; amounts in integer minor units."""
    names = users or {}

    def person(user_id: int | None) -> dict[str, Any] | None:
        if user_id is None:
            return None
        user = names.get(user_id)
        return {"id": user_id, "name": user.name if user else ""}

    return {
        "id": dispute.id,
        "conversation_id": dispute.conversation_id,
        "buyer": person(dispute.buyer_id),
        "seller": person(dispute.seller_id),
        "amount": dispute.amount,
        "currency": dispute.currency,
        "reference": dispute.reference,
        "reason": dispute.reason,
        "status": dispute.status.value,
        "opened_by": dispute.opened_by,
        "assignee": person(dispute.assignee_id),
        "created_at": iso(dispute.created_at),
        "updated_at": iso(dispute.updated_at),
        "status_since": iso(dispute.status_since),
        "deadline_at": iso(dispute.deadline_at),
        "overdue": dispute.overdue(at or utc_now()),
        "sla_breached_at": iso(dispute.sla_breached_at),
        "outcome": dispute.outcome.to_json() if dispute.outcome else None,
        "resolved_at": iso(dispute.resolved_at),
        "version": dispute.version,
    }


def event_json(event: DisputeEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": iso(event.at),
        "actor": event.actor,
        "kind": event.kind,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "reason": event.reason,
        "detail": event.detail,
    }


def evidence_json(evidence: Evidence) -> dict[str, Any]:
    return {
        "id": evidence.id,
        "message_id": evidence.message_id,
        "attachment_id": evidence.attachment_id,
        "sender_id": evidence.sender_id,
        "body": evidence.body,
        "attachments": evidence.attachments,
        "note": evidence.note,
        "pinned_by": evidence.pinned_by,
        "pinned_at": iso(evidence.pinned_at),
    }


class Disputes:
    def __init__(
        self,
        *,
        settings: Settings,
        store: DisputeStore,
        users: UserStore,
        timeline: Timeline,
        attachments: AttachmentStore,
        messages: ModerationStore,
        audit: AuditLog,
        flag_on: FlagCheck,
        publish: Publish = _publish_nowhere,
        live: Callable[[], bool] = lambda: True,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.users = users
        self.timeline = timeline
        self.attachments = attachments
        self.messages = messages
        self.audit = audit
        self.flag_on = flag_on
        self.publish = publish
        self.live = live  # False off-server (the CLI)
        self.clock = clock
        self.sla = sla_policy(settings)
        # Set by the scheduler: a change here may move the next deadline or queue a webhook.
        self.on_change: Callable[[], None] = lambda: None

    # -- who may act -----------------------------------------------------------------------------

    async def check_tools(self, actor: User) -> None:
        """dispute_ops with the dispute_tools_v2 flag on for them; 403 for anyone else."""
        if actor.role is not Role.DISPUTE_OPS:
            raise Forbidden("only the dispute_ops team works on disputes")
        if not await self.flag_on(actor):
            raise Forbidden(
                f"dispute tools are switched off for you (flag {FLAG})", ErrorCode.FEATURE_DISABLED
            )

    async def access_dispute(self, actor: User, dispute_id: int) -> tuple[Dispute, bool]:
        """The dispute and whether `actor` reads it as staff; a party sees only their own."""
        dispute = await self.store.get_dispute(dispute_id)
        if dispute is not None and actor.id in (dispute.buyer_id, dispute.seller_id):
            return dispute, False
        if actor.role is Role.DISPUTE_OPS:
            await self.check_tools(actor)
            if dispute is not None:
                return dispute, True
        raise NotFound("no such dispute")

    async def access_staff_dispute(self, actor: User, dispute_id: int) -> Dispute:
        await self.check_tools(actor)
        dispute = await self.store.get_dispute(dispute_id)
        if dispute is None:
            raise NotFound("no such dispute")
        return dispute

    # -- opening ---------------------------------------------------------------------------------

    async def do_open(
        self,
        actor: User,
        *,
        conversation_id: int,
        buyer: str,
        seller: str,
        amount: int,
        currency: str,
        reference: str,
        reason: str,
    ) -> Dispute:
        """Open a dispute between two members of a conversation over an escrowed amount."""
        await self.check_tools(actor)
        check_amount(amount, currency)
        reference = reference.strip()
        if not reference:
            raise BadInput("reference names the order or contract in dispute")
        if buyer == seller:
            raise InvalidValue("the buyer and the seller are two different users")
        parties = {u.name: u for u in await self.users.find_users_by_name([buyer, seller])}
        missing = [name for name in (buyer, seller) if name not in parties]
        if missing:
            raise BadInput(f"unknown users: {', '.join(missing)}")
        members = {
            m.user_id for m in await self.timeline.conversations.list_members(conversation_id)
        }
        if not members:
            raise NotFound(f"no conversation {conversation_id}")
        outside = [name for name in (buyer, seller) if parties[name].id not in members]
        if outside:
            raise InvalidValue(
                f"not members of conversation {conversation_id}: {', '.join(outside)}"
            )
        existing = await self.store.find_active_by_reference(conversation_id, reference)
        if existing is not None:
            raise Conflict(
                f"dispute {existing} over {reference!r} is still active",
                details={"dispute_id": existing},
            )
        at = self.clock()
        dispute = await self.store.open_dispute(
            {
                "conversation_id": conversation_id,
                "buyer_id": parties[buyer].id,
                "seller_id": parties[seller].id,
                "amount": amount,
                "currency": currency,
                "reference": reference,
                "reason": reason.strip(),
                "status": DisputeStatus.OPEN.value,
                "opened_by": actor.name,
                "assignee_id": None,
                "created_at": at,
                "updated_at": at,
                "status_since": at,
                "deadline_at": self.sla.deadline(DisputeStatus.OPEN, at),
            },
            HistoryLine(actor=actor.name, kind="opened", reason=reason, webhook="dispute.opened"),
            self.webhook_payload,
        )
        metrics.DISPUTE_TRANSITIONS.labels(DisputeStatus.OPEN.value).inc()
        await self.audit.record(
            actor,
            "dispute.open",
            Target.of("dispute", dispute.id),
            after=dispute_json(dispute, parties_by_id(parties), at=at),
            reason=reason,
        )
        await self.publish_change(dispute, "opened")
        return dispute

    # -- moving ----------------------------------------------------------------------------------

    async def do_transition(
        self, actor: User, dispute: Dispute, to: str, *, reason: str
    ) -> Dispute:
        """evidence | review | cancelled (resolving takes an outcome: `do_resolve`)."""
        await self.check_tools(actor)
        target = parse_status(to)
        if target is DisputeStatus.RESOLVED:
            raise InvalidValue("resolve with an outcome: POST /v1/disputes/{id}/resolve")
        check_transition(dispute.status, target)
        at = self.clock()
        values: dict[str, Any] = {
            "status": target.value,
            "status_since": at,
            "deadline_at": self.sla.deadline(target, at),
            "sla_breached_at": None,
        }
        if target is DisputeStatus.CANCELLED:
            values["resolved_at"] = at
        event = (
            "dispute.cancelled" if target is DisputeStatus.CANCELLED else "dispute.status_changed"
        )
        return await self._change(
            actor, dispute, values, kind="status", reason=reason, webhook=event, at=at
        )

    async def do_resolve(
        self,
        actor: User,
        dispute: Dispute,
        *,
        outcome: str,
        seller_amount: int | None,
        buyer_amount: int | None,
        reason: str,
    ) -> Dispute:
        """Settle it: release to the seller, refund the buyer, or a partial release."""
        await self.check_tools(actor)
        try:
            kind = OutcomeKind(outcome)
        except ValueError:
            allowed = ", ".join(k.value for k in OutcomeKind)
            raise InvalidValue(f"outcome {outcome!r} is not one of {allowed}") from None
        check_transition(dispute.status, DisputeStatus.RESOLVED)
        settled = settle(
            kind, dispute.amount, seller_amount=seller_amount, buyer_amount=buyer_amount
        )
        at = self.clock()
        values = {
            "status": DisputeStatus.RESOLVED.value,
            "status_since": at,
            "deadline_at": None,
            "sla_breached_at": None,
            "outcome": settled.kind.value,
            "seller_amount": settled.seller_amount,
            "buyer_amount": settled.buyer_amount,
            "resolved_at": at,
        }
        return await self._change(
            actor,
            dispute,
            values,
            kind="resolved",
            reason=reason,
            webhook="dispute.resolved",
            at=at,
            detail=settled.to_json(),
        )

    async def do_assign(self, actor: User, dispute: Dispute, assignee_id: int | None) -> Dispute:
        await self.check_tools(actor)
        if assignee_id is not None:
            assignee = await self.users.get_user(assignee_id)
            if assignee is None or assignee.role is not Role.DISPUTE_OPS:
                raise InvalidValue("disputes are assigned to members of dispute_ops")
        if dispute.status.final:
            raise Conflict(
                f"dispute {dispute.id} is {dispute.status}", ErrorCode.ILLEGAL_TRANSITION
            )
        return await self._change(
            actor,
            dispute,
            {"assignee_id": assignee_id},
            kind="assigned",
            reason="",
            webhook=None,
            at=self.clock(),
            detail={"assignee_id": assignee_id},
        )

    async def _change(
        self,
        actor: User,
        dispute: Dispute,
        values: dict[str, Any],
        *,
        kind: str,
        reason: str,
        webhook: str | None,
        at: datetime,
        detail: dict[str, Any] | None = None,
    ) -> Dispute:
        line = HistoryLine(
            actor=actor.name, kind=kind, reason=reason.strip(), detail=detail, webhook=webhook
        )
        after = await self.store.change(
            dispute, {**values, "updated_at": at}, line, self.webhook_payload
        )
        if after is None:
            raise Conflict(
                f"dispute {dispute.id} changed meanwhile; reload it and decide again",
                ErrorCode.CONFLICT,
            )
        if after.status is not dispute.status:
            metrics.DISPUTE_TRANSITIONS.labels(after.status.value).inc()
            if after.status.final:
                metrics.DISPUTE_TIME_TO_RESOLUTION.labels(
                    after.outcome.kind.value if after.outcome else after.status.value
                ).observe((at - after.created_at).total_seconds())
        users = await self._users([dispute, after])
        action = {
            "status": f"dispute.{after.status.value}"
            if after.status is DisputeStatus.CANCELLED
            else "dispute.transition",
            "resolved": "dispute.resolve",
            "assigned": "dispute.assign",
        }[kind]
        await self.audit.record(
            actor,
            action,
            Target.of("dispute", dispute.id),
            before=_audited(dispute_json(dispute, users, at=at)),
            after=_audited(dispute_json(after, users, at=at)),
            reason=reason.strip(),
        )
        await self.publish_change(after, kind)
        return after

    # -- evidence --------------------------------------------------------------------------------

    async def do_pin(
        self,
        actor: User,
        dispute: Dispute,
        *,
        staff: bool,
        message_id: int | None,
        attachment_id: str | None,
        note: str,
    ) -> Evidence:
        """Pin a message (with its files) or a file of the dispute's conversation as evidence."""
        if (message_id is None) == (attachment_id is None):
            raise BadInput("pin either a message_id or an attachment_id")
        allowed = PARTY_EVIDENCE_STATUSES if not staff else ACTIVE_STATUSES
        if dispute.status not in allowed:
            raise Conflict(
                f"evidence is closed: the dispute is {dispute.status}", ErrorCode.ILLEGAL_TRANSITION
            )
        values: dict[str, Any]
        if message_id is not None:
            message = await self.messages.get_message(dispute.conversation_id, message_id)
            if message is None:
                raise NotFound("no such message in the dispute's conversation")
            values = {
                "message_id": message.id,
                "attachment_id": None,
                "sender_id": message.sender_id,
                "body": message.body,
                "attachments": [asdict(ref) for ref in message.attachments],
            }
            detail: dict[str, Any] = {"message_id": message.id}
        else:
            attachment = await self.attachments.get_attachment(attachment_id or "")
            if attachment is None or attachment.conversation_id != dispute.conversation_id:
                raise NotFound("no such file in the dispute's conversation")
            values = {
                "message_id": None,
                "attachment_id": attachment.id,
                "sender_id": attachment.uploader_id,
                "body": "",
                "attachments": [asdict(attachment.ref())],
            }
            detail = {"attachment_id": attachment.id}
        at = self.clock()
        evidence = await self.store.add_evidence(
            dispute,
            {**values, "note": note.strip(), "pinned_by": actor.name, "pinned_at": at},
            HistoryLine(actor=actor.name, kind="evidence", reason=note.strip(), detail=detail),
        )
        if evidence is None:
            raise Conflict("already pinned to this dispute")
        if staff:
            await self.audit.record(
                actor,
                "dispute.pin_evidence",
                Target.of("dispute", dispute.id),
                after=evidence_json(evidence),
                reason=note.strip(),
            )
        await self.publish_change(dispute, "evidence")
        return evidence

    def evidence_file(self, evidences: list[Evidence], attachment_id: str) -> bool:
        return any(any(ref.get("id") == attachment_id for ref in e.attachments) for e in evidences)

    # -- reading ---------------------------------------------------------------------------------

    async def list_disputes(
        self,
        actor: User,
        *,
        status: str | None,
        overdue: bool,
        assignee: str | None,
        before_id: int | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Staff: every dispute (filters); anyone else: the disputes they are a party to."""
        statuses = None
        if status == "active":
            statuses = list(ACTIVE_STATUSES)
        elif status:
            statuses = [parse_status(status)]
        assignee_id = None
        if assignee == "me":
            assignee_id = actor.id
        elif assignee:
            if not assignee.isdigit():
                raise InvalidValue("assignee is me or a user id")
            assignee_id = int(assignee)
        party_id = None
        if actor.role is Role.DISPUTE_OPS:
            await self.check_tools(actor)
        else:
            party_id = actor.id
        at = self.clock()
        found = await self.store.list_disputes(
            statuses=statuses,
            overdue_at=at if overdue else None,
            assignee_id=assignee_id,
            party_id=party_id,
            before_id=before_id,
            limit=limit,
        )
        users = await self._users(found)
        return [dispute_json(d, users, at=at) for d in found]

    async def detail(self, dispute: Dispute, *, staff: bool) -> dict[str, Any]:
        users = await self._users([dispute])
        found = dispute_json(dispute, users, at=self.clock())
        found["events"] = [event_json(e) for e in await self.store.list_events(dispute.id)]
        found["evidence"] = [evidence_json(e) for e in await self.store.list_evidence(dispute.id)]
        if staff:
            found["webhooks"] = [
                {**w, "delivered_at": iso(w["delivered_at"]), "failed_at": iso(w["failed_at"])}
                for w in await self.store.list_webhooks(dispute.id)
            ]
        return found

    async def counts(self) -> tuple[dict[str, int], int]:
        """Active disputes by status and the overdue ones, exported as gauges."""
        by_status, overdue = await self.store.count_active(self.clock())
        for status in ACTIVE_STATUSES:
            metrics.DISPUTES_OPEN.labels(status.value).set(by_status.get(status.value, 0))
        metrics.DISPUTES_OVERDUE.set(overdue)
        return by_status, overdue

    # -- helpers ---------------------------------------------------------------------------------

    def webhook_payload(self, dispute: Dispute) -> dict[str, Any]:
        """The dispute as the webhook reports it (ids, not names: names can change)."""
        return dispute_json(dispute, at=self.clock())

    async def _users(self, found: list[Dispute]) -> dict[int, User]:
        ids = {uid for d in found for uid in (d.buyer_id, d.seller_id, d.assignee_id) if uid}
        return {u.id: u for u in await self.users.find_users_by_id(sorted(ids))}

    async def publish_change(self, dispute: Dispute, change: str) -> None:
        self.on_change()
        if not self.live():
            return
        try:
            staff = await self.users.list_user_ids_with_roles([Role.DISPUTE_OPS])
            users = await self._users([dispute])
            await self.publish(
                DisputeUpdatedEvent(
                    change=change,
                    dispute=dispute_json(dispute, users, at=self.clock()),
                    user_ids=sorted({*staff, dispute.buyer_id, dispute.seller_id}),
                )
            )
        except Exception:  # live updates are best effort; pages reload on reconnect
            log.exception("announcing dispute %d failed", dispute.id)


def parties_by_id(parties: dict[str, User]) -> dict[int, User]:
    return {u.id: u for u in parties.values()}


def _audited(found: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a dispute: its state, not the moving `overdue` flag."""
    return {k: v for k, v in found.items() if k not in ("overdue", "updated_at", "version")}
