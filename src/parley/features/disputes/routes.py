"""Disputes REST (`/v1/disputes`): dispute_ops (with the dispute_tools_v2 flag) open, move and
settle disputes; the parties read theirs and pin evidence. Everyone else gets 403 or 404."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.routes.attachments import content_disposition
from parley.api.schemas import ATTACHMENT_ID_PATTERN, Input, Text, UserName
from parley.core.disputes import AMOUNT_MAX, Dispute
from parley.core.errors import Conflict, NotFound
from parley.core.limits import SEQ_MAX
from parley.features.disputes.service import dispute_json, evidence_json

router = APIRouter(prefix="/v1/disputes", tags=["disputes"])

Id = Annotated[int, Path(ge=1, le=SEQ_MAX)]
Amount = Annotated[int, Field(ge=1, le=AMOUNT_MAX, description="Integer minor units (cents).")]
Reason = Text(2000)  # type: ignore[valid-type]
Version = Annotated[int, Field(ge=1, le=SEQ_MAX)]


class DisputeIn(Input):
    conversation_id: Annotated[int, Field(ge=1, le=SEQ_MAX)]
    buyer: UserName
    seller: UserName
    amount: Amount
    currency: Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]
    reference: Text(200, min_length=1)  # type: ignore[valid-type]
    reason: Reason = ""


class TransitionIn(Input):
    to: Annotated[str, Field(max_length=20)]
    reason: Reason = ""
    # The version you decided on: a dispute that moved meanwhile answers 409 instead.
    version: Version | None = None


class ResolveIn(Input):
    outcome: Annotated[str, Field(max_length=30)]
    seller_amount: Amount | None = None
    buyer_amount: Amount | None = None
    reason: Reason = ""
    version: Version | None = None


class AssignIn(Input):
    assignee_id: Annotated[int, Field(ge=1, le=SEQ_MAX)] | None


class EvidenceIn(Input):
    message_id: Annotated[int, Field(ge=1, le=SEQ_MAX)] | None = None
    attachment_id: Annotated[str, Field(max_length=40, pattern=ATTACHMENT_ID_PATTERN)] | None = None
    note: Reason = ""


class DisputesOut(BaseModel):
    disputes: list[dict[str, Any]]


def _check_version(dispute: Dispute, version: int | None) -> None:
    if version is not None and version != dispute.version:
        raise Conflict(
            f"dispute {dispute.id} is at version {dispute.version}, not {version}: reload it"
        )


@router.post("", status_code=201)
async def open_dispute(body: DisputeIn, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """Open a dispute over an escrowed amount between two members of a conversation."""
    dispute = await services.disputes.do_open(
        user,
        conversation_id=body.conversation_id,
        buyer=body.buyer,
        seller=body.seller,
        amount=body.amount,
        currency=body.currency,
        reference=body.reference,
        reason=body.reason,
    )
    return await services.disputes.detail(dispute, staff=True)


@router.get("", response_model=DisputesOut)
async def list_disputes(
    user: CurrentUser,
    services: ServicesDep,
    status: Annotated[str | None, Query(max_length=20, description="a status, or active")] = None,
    overdue: bool = False,
    assignee: Annotated[str | None, Query(max_length=20, description="me or a user id")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=SEQ_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DisputesOut:
    """dispute_ops: every dispute; anyone else: the disputes they are a party to."""
    found = await services.disputes.list_disputes(
        user, status=status, overdue=overdue, assignee=assignee, before_id=before_id, limit=limit
    )
    return DisputesOut(disputes=found)


@router.get("/{dispute_id}")
async def get_dispute(dispute_id: Id, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """The dispute with its history and evidence (and, for dispute_ops, its webhooks)."""
    dispute, staff = await services.disputes.access_dispute(user, dispute_id)
    return await services.disputes.detail(dispute, staff=staff)


@router.post("/{dispute_id}/transition")
async def transition(
    dispute_id: Id, body: TransitionIn, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Move to `evidence`, `review` or `cancelled` (illegal moves: 409 ERR_ILLEGAL_TRANSITION)."""
    dispute = await services.disputes.access_staff_dispute(user, dispute_id)
    _check_version(dispute, body.version)
    moved = await services.disputes.do_transition(user, dispute, body.to, reason=body.reason)
    return await services.disputes.detail(moved, staff=True)


@router.post("/{dispute_id}/resolve")
async def resolve(
    dispute_id: Id, body: ResolveIn, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Settle from `review`: `release_to_seller`, `refund_to_buyer`, or `partial_release` with
    `seller_amount + buyer_amount` equal to the amount (else 422 ERR_AMOUNTS_MISMATCH)."""
    dispute = await services.disputes.access_staff_dispute(user, dispute_id)
    _check_version(dispute, body.version)
    settled = await services.disputes.do_resolve(
        user,
        dispute,
        outcome=body.outcome,
        seller_amount=body.seller_amount,
        buyer_amount=body.buyer_amount,
        reason=body.reason,
    )
    return await services.disputes.detail(settled, staff=True)


@router.post("/{dispute_id}/assign")
async def assign(
    dispute_id: Id, body: AssignIn, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    dispute = await services.disputes.access_staff_dispute(user, dispute_id)
    assigned = await services.disputes.do_assign(user, dispute, body.assignee_id)
    return dispute_json(assigned, at=services.disputes.clock())


@router.post("/{dispute_id}/evidence", status_code=201)
async def pin_evidence(
    dispute_id: Id, body: EvidenceIn, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Pin a message (with its files) or a file of the conversation; copied as it is now."""
    dispute, staff = await services.disputes.access_dispute(user, dispute_id)
    evidence = await services.disputes.do_pin(
        user,
        dispute,
        staff=staff,
        message_id=body.message_id,
        attachment_id=body.attachment_id,
        note=body.note,
    )
    return evidence_json(evidence)


@router.get(
    "/{dispute_id}/files/{attachment_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def evidence_file(
    dispute_id: Id,
    attachment_id: Annotated[str, Path(max_length=40, pattern=ATTACHMENT_ID_PATTERN)],
    user: CurrentUser,
    services: ServicesDep,
) -> StreamingResponse:
    """A file pinned as evidence (dispute_ops are not members of the conversation)."""
    dispute, _ = await services.disputes.access_dispute(user, dispute_id)
    pinned = await services.disputes.store.list_evidence(dispute.id)
    if not services.disputes.evidence_file(pinned, attachment_id):
        raise NotFound("no such file in this dispute's evidence")
    found = await services.attachments.open_download(attachment_id)
    return StreamingResponse(
        found.chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": content_disposition(found.attachment, inline=False),
            "Content-Length": str(found.attachment.size),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
