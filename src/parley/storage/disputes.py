"""DisputeStore: disputes, their history and evidence, the SLA scheduler's claims, and the
webhook outbox.

Every change is a compare-and-set on the dispute's `version`, written in one transaction with
its history line and (for status changes) its webhook outbox row, so a change is never announced
without being stored, nor stored without being announced. The SLA scheduler fires a deadline
with a conditional UPDATE (`sla_breached_at IS NULL`): on any number of nodes, across restarts,
one claim wins.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.core.disputes import (
    ACTIVE_STATUSES,
    Dispute,
    DisputeEvent,
    DisputeStatus,
    Evidence,
    Outcome,
    OutcomeKind,
)
from parley.storage.database import Database
from parley.storage.rows import _json, now, utc
from parley.storage.schema import dispute_events, dispute_evidence, dispute_webhooks, disputes

Payload = Callable[[Dispute], dict[str, Any]]
_ACTIVE = [s.value for s in ACTIVE_STATUSES]


def _dt(value: Any) -> datetime | None:
    return utc(value) if value is not None else None


def dispute_from_row(row: Any) -> Dispute:
    outcome = None
    if row.outcome:
        outcome = Outcome(OutcomeKind(row.outcome), int(row.seller_amount), int(row.buyer_amount))
    return Dispute(
        id=int(row.id),
        conversation_id=int(row.conversation_id),
        buyer_id=int(row.buyer_id),
        seller_id=int(row.seller_id),
        amount=int(row.amount),
        currency=row.currency,
        reference=row.reference,
        reason=row.reason,
        status=DisputeStatus(row.status),
        opened_by=row.opened_by,
        assignee_id=row.assignee_id,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        status_since=utc(row.status_since),
        deadline_at=_dt(row.deadline_at),
        sla_breached_at=_dt(row.sla_breached_at),
        outcome=outcome,
        resolved_at=_dt(row.resolved_at),
        version=int(row.version),
    )


def _event_from_row(row: Any) -> DisputeEvent:
    return DisputeEvent(
        id=int(row.id),
        dispute_id=int(row.dispute_id),
        at=utc(row.at),
        actor=row.actor,
        kind=row.kind,
        from_status=row.from_status,
        to_status=row.to_status,
        reason=row.reason,
        detail=dict(_json(row.detail) or {}),
    )


def _evidence_from_row(row: Any) -> Evidence:
    return Evidence(
        id=int(row.id),
        dispute_id=int(row.dispute_id),
        message_id=row.message_id,
        attachment_id=row.attachment_id,
        sender_id=row.sender_id,
        body=row.body,
        attachments=list(_json(row.attachments) or []),
        note=row.note,
        pinned_by=row.pinned_by,
        pinned_at=utc(row.pinned_at),
    )


class HistoryLine:
    """What one change adds to a dispute's history (and, with `webhook`, to the outbox)."""

    def __init__(
        self,
        *,
        actor: str,
        kind: str,
        reason: str = "",
        detail: dict[str, Any] | None = None,
        webhook: str | None = None,
    ) -> None:
        self.actor = actor
        self.kind = kind
        self.reason = reason
        self.detail = detail or {}
        self.webhook = webhook


async def _record(
    conn: AsyncConnection,
    before: Dispute | None,
    after: Dispute,
    line: HistoryLine,
    payload: Payload,
    at: datetime,
) -> None:
    from_status = before.status.value if before else None
    await conn.execute(
        insert(dispute_events).values(
            dispute_id=after.id,
            at=at,
            actor=line.actor,
            kind=line.kind,
            from_status=from_status,
            to_status=after.status.value if from_status != after.status.value else None,
            reason=line.reason,
            detail=line.detail,
        )
    )
    if line.webhook is not None:
        body = {
            "event": line.webhook,
            "created_at": at.isoformat().replace("+00:00", "Z"),
            "transition": {
                "from": from_status,
                "to": after.status.value,
                "actor": line.actor,
                "reason": line.reason,
            },
            "dispute": payload(after),
        }
        await conn.execute(
            insert(dispute_webhooks).values(
                dispute_id=after.id,
                event=line.webhook,
                payload=body,
                created_at=at,
                attempts=0,
                next_attempt_at=at,
                last_error="",
            )
        )


class DisputeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- disputes ---------------------------------------------------------------------------------

    async def open_dispute(
        self, values: dict[str, Any], line: HistoryLine, payload: Payload
    ) -> Dispute:
        at = values["created_at"]
        async with self.db.write() as conn:
            row = (
                await conn.execute(insert(disputes).values(**values, version=1).returning(disputes))
            ).one()
            dispute = dispute_from_row(row)
            await _record(conn, None, dispute, line, payload, at)
        return dispute

    async def change(
        self,
        before: Dispute,
        values: dict[str, Any],
        line: HistoryLine,
        payload: Payload,
    ) -> Dispute | None:
        """Apply `values` if the dispute is still at `before.version`; None if it moved."""
        at = values.get("updated_at") or now()
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    update(disputes)
                    .where(disputes.c.id == before.id, disputes.c.version == before.version)
                    .values({**values, "updated_at": at, "version": disputes.c.version + 1})
                    .returning(disputes)
                )
            ).first()
            if row is None:
                return None
            after = dispute_from_row(row)
            await _record(conn, before, after, line, payload, at)
        return after

    async def get_dispute(self, dispute_id: int) -> Dispute | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(disputes).where(disputes.c.id == dispute_id))).first()
        return dispute_from_row(row) if row else None

    async def find_active_by_reference(self, conversation_id: int, reference: str) -> int | None:
        async with self.db.read() as conn:
            return (
                await conn.execute(
                    select(disputes.c.id).where(
                        disputes.c.conversation_id == conversation_id,
                        disputes.c.reference == reference,
                        disputes.c.status.in_(_ACTIVE),
                    )
                )
            ).scalar_one_or_none()

    async def list_disputes(
        self,
        *,
        statuses: list[DisputeStatus] | None,
        overdue_at: datetime | None,
        assignee_id: int | None,
        party_id: int | None,
        before_id: int | None,
        limit: int,
    ) -> list[Dispute]:
        """Newest first. `overdue_at`: only active ones past their deadline then."""
        c = disputes.c
        query = select(disputes)
        if statuses:
            query = query.where(c.status.in_([s.value for s in statuses]))
        if overdue_at is not None:
            query = query.where(c.status.in_(_ACTIVE), c.deadline_at <= overdue_at)
        if assignee_id is not None:
            query = query.where(c.assignee_id == assignee_id)
        if party_id is not None:
            query = query.where(or_(c.buyer_id == party_id, c.seller_id == party_id))
        if before_id is not None:
            query = query.where(c.id < before_id)
        async with self.db.read() as conn:
            rows = await conn.execute(query.order_by(c.id.desc()).limit(limit))
            return [dispute_from_row(r) for r in rows]

    async def list_events(self, dispute_id: int) -> list[DisputeEvent]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(dispute_events)
                .where(dispute_events.c.dispute_id == dispute_id)
                .order_by(dispute_events.c.id)
            )
            return [_event_from_row(r) for r in rows]

    # -- evidence ---------------------------------------------------------------------------------

    async def add_evidence(
        self, dispute: Dispute, values: dict[str, Any], line: HistoryLine
    ) -> Evidence | None:
        """Pin a message or file; None when it is already pinned to this dispute."""
        try:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        insert(dispute_evidence)
                        .values(dispute_id=dispute.id, **values)
                        .returning(dispute_evidence)
                    )
                ).one()
                await conn.execute(
                    insert(dispute_events).values(
                        dispute_id=dispute.id,
                        at=values["pinned_at"],
                        actor=line.actor,
                        kind=line.kind,
                        reason=line.reason,
                        detail=line.detail,
                    )
                )
        except IntegrityError:
            return None
        return _evidence_from_row(row)

    async def list_evidence(self, dispute_id: int) -> list[Evidence]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(dispute_evidence)
                .where(dispute_evidence.c.dispute_id == dispute_id)
                .order_by(dispute_evidence.c.id)
            )
            return [_evidence_from_row(r) for r in rows]

    # -- the SLA scheduler ------------------------------------------------------------------------

    async def next_deadline(self) -> datetime | None:
        """The earliest deadline not fired yet (the scheduler sleeps until it)."""
        c = disputes.c
        async with self.db.read() as conn:
            value = (
                await conn.execute(
                    select(func.min(c.deadline_at)).where(
                        c.status.in_(_ACTIVE), c.sla_breached_at.is_(None)
                    )
                )
            ).scalar_one_or_none()
        return _dt(value)

    async def claim_breaches(
        self, at: datetime, *, actor: str, payload: Payload, limit: int = 100
    ) -> list[tuple[Dispute, Dispute]]:
        """Fire every deadline passed by `at` that no one fired yet: (before, after) of each.

        Each claim is a conditional UPDATE in its own transaction with its history line and
        webhook: a node that crashes mid-way leaves the rest for the next tick (or node).
        """
        c = disputes.c
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(disputes)
                .where(
                    c.status.in_(_ACTIVE),
                    c.sla_breached_at.is_(None),
                    c.deadline_at <= at,
                )
                .order_by(c.deadline_at)
                .limit(limit)
            )
            due = [dispute_from_row(r) for r in rows]
        fired = []
        for before in due:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        update(disputes)
                        .where(
                            c.id == before.id,
                            c.status == before.status.value,
                            c.deadline_at == before.deadline_at,
                            c.sla_breached_at.is_(None),
                        )
                        .values(sla_breached_at=at, version=c.version + 1)
                        .returning(disputes)
                    )
                ).first()
                if row is None:
                    continue  # another node fired it, or it moved on meanwhile
                after = dispute_from_row(row)
                line = HistoryLine(
                    actor=actor,
                    kind="sla_breached",
                    reason=f"SLA of status {before.status} passed at {before.deadline_at}",
                    detail={"status": before.status.value, "deadline_at": str(before.deadline_at)},
                    webhook="dispute.sla_breached",
                )
                await _record(conn, before, after, line, payload, at)
            fired.append((before, after))
        return fired

    async def count_active(self, at: datetime) -> tuple[dict[str, int], int]:
        """Active disputes by status, and how many of them are past their deadline at `at`."""
        c = disputes.c
        async with self.db.read() as conn:
            by_status = {
                status: int(n)
                for status, n in await conn.execute(
                    select(c.status, func.count()).where(c.status.in_(_ACTIVE)).group_by(c.status)
                )
            }
            overdue = (
                await conn.execute(
                    select(func.count()).where(c.status.in_(_ACTIVE), c.deadline_at <= at)
                )
            ).scalar_one()
        return by_status, int(overdue)

    # -- the webhook outbox -----------------------------------------------------------------------

    async def claim_webhooks(
        self, at: datetime, lease_until: datetime, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Due deliveries this node may send now, leased until `lease_until`.

        One dispute's deliveries go out in order: a row waits while an earlier one of the same
        dispute is still undelivered (and not given up on).
        """
        w = dispute_webhooks.c
        earlier = dispute_webhooks.alias("earlier")
        pending_before = exists().where(
            earlier.c.dispute_id == w.dispute_id,
            earlier.c.id < w.id,
            earlier.c.delivered_at.is_(None),
            earlier.c.failed_at.is_(None),
        )
        async with self.db.read() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(w.id)
                        .where(
                            w.delivered_at.is_(None),
                            w.failed_at.is_(None),
                            w.next_attempt_at <= at,
                            or_(w.claimed_until.is_(None), w.claimed_until < at),
                            ~pending_before,
                        )
                        .order_by(w.id)
                        .limit(limit)
                    )
                ).scalars()
            )
        claimed = []
        for webhook_id in ids:
            async with self.db.write() as conn:
                row = (
                    await conn.execute(
                        update(dispute_webhooks)
                        .where(
                            and_(
                                w.id == webhook_id,
                                w.delivered_at.is_(None),
                                or_(w.claimed_until.is_(None), w.claimed_until < at),
                            )
                        )
                        .values(claimed_until=lease_until)
                        .returning(dispute_webhooks)
                    )
                ).first()
            if row is not None:
                claimed.append(
                    {
                        "id": int(row.id),
                        "event": row.event,
                        "payload": dict(_json(row.payload)),
                        "attempts": int(row.attempts),
                    }
                )
        return claimed

    async def next_webhook_at(self) -> datetime | None:
        w = dispute_webhooks.c
        async with self.db.read() as conn:
            value = (
                await conn.execute(
                    select(func.min(w.next_attempt_at)).where(
                        w.delivered_at.is_(None), w.failed_at.is_(None)
                    )
                )
            ).scalar_one_or_none()
        return _dt(value)

    async def finish_webhook(
        self,
        webhook_id: int,
        *,
        delivered: bool,
        attempts: int,
        next_attempt_at: datetime | None,
        error: str,
    ) -> None:
        """Delivered, or failed with a retry at `next_attempt_at` (None: given up)."""
        moment = now()
        values: dict[str, Any] = {"attempts": attempts, "claimed_until": None, "last_error": error}
        if delivered:
            values["delivered_at"] = moment
        elif next_attempt_at is None:
            values["failed_at"] = moment
        else:
            values["next_attempt_at"] = next_attempt_at
        async with self.db.write() as conn:
            await conn.execute(
                update(dispute_webhooks).where(dispute_webhooks.c.id == webhook_id).values(values)
            )

    async def list_webhooks(self, dispute_id: int) -> list[dict[str, Any]]:
        w = dispute_webhooks.c
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(dispute_webhooks).where(w.dispute_id == dispute_id).order_by(w.id)
            )
            return [
                {
                    "id": int(r.id),
                    "event": r.event,
                    "attempts": int(r.attempts),
                    "delivered_at": _dt(r.delivered_at),
                    "failed_at": _dt(r.failed_at),
                    "last_error": r.last_error,
                }
                for r in rows
            ]
