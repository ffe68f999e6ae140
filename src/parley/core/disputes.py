"""Disputes as the domain sees them (pure): the status machine, SLA deadlines, and outcomes
with their arithmetic in integer minor units (cents, kopecks) — never floats.

    open ──► evidence ──► review ──► resolved
      │         │  ▲         │
      │         │  └─────────┤  (review may ask for more evidence)
      └─────────┴────────────┴──► cancelled

`resolved` is reached only with an outcome (`settle`); `resolved` and `cancelled` are final.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from parley.core.errors import BadInput, Conflict, ErrorCode, InvalidValue

# Amounts are integer minor units and fit JavaScript's safe integers.
AMOUNT_MAX = 2**53 - 1


class DisputeStatus(StrEnum):
    OPEN = "open"
    EVIDENCE = "evidence"
    REVIEW = "review"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (DisputeStatus.RESOLVED, DisputeStatus.CANCELLED)


ACTIVE_STATUSES = (DisputeStatus.OPEN, DisputeStatus.EVIDENCE, DisputeStatus.REVIEW)

TRANSITIONS: dict[DisputeStatus, frozenset[DisputeStatus]] = {
    DisputeStatus.OPEN: frozenset({DisputeStatus.EVIDENCE, DisputeStatus.CANCELLED}),
    DisputeStatus.EVIDENCE: frozenset({DisputeStatus.REVIEW, DisputeStatus.CANCELLED}),
    DisputeStatus.REVIEW: frozenset(
        {DisputeStatus.EVIDENCE, DisputeStatus.RESOLVED, DisputeStatus.CANCELLED}
    ),
    DisputeStatus.RESOLVED: frozenset(),
    DisputeStatus.CANCELLED: frozenset(),
}


def check_transition(current: DisputeStatus, target: DisputeStatus) -> None:
    """Raise `Conflict(ERR_ILLEGAL_TRANSITION)` unless `current → target` is allowed."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none (final)"
        raise Conflict(
            f"a dispute cannot go from {current} to {target}; from {current}: {allowed}",
            ErrorCode.ILLEGAL_TRANSITION,
        )


def parse_status(value: str) -> DisputeStatus:
    try:
        return DisputeStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in DisputeStatus)
        raise InvalidValue(f"status {value!r} is not one of {allowed}") from None


class OutcomeKind(StrEnum):
    RELEASE_TO_SELLER = "release_to_seller"
    REFUND_TO_BUYER = "refund_to_buyer"
    PARTIAL_RELEASE = "partial_release"


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where the escrowed amount goes: `seller_amount + buyer_amount == amount`, always."""

    kind: OutcomeKind
    seller_amount: int
    buyer_amount: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "seller_amount": self.seller_amount,
            "buyer_amount": self.buyer_amount,
        }


def settle(
    kind: OutcomeKind,
    amount: int,
    *,
    seller_amount: int | None = None,
    buyer_amount: int | None = None,
) -> Outcome:
    """The outcome of a dispute over `amount` minor units; amounts that do not add up are 422.

    A partial release names both shares, each above zero, adding up to `amount` exactly: a
    share of 0 is a full release or refund, and a sum off by one unit is money lost or made.
    """
    if kind is OutcomeKind.RELEASE_TO_SELLER:
        _no_shares(kind, seller_amount, buyer_amount)
        return Outcome(kind, amount, 0)
    if kind is OutcomeKind.REFUND_TO_BUYER:
        _no_shares(kind, seller_amount, buyer_amount)
        return Outcome(kind, 0, amount)
    if seller_amount is None or buyer_amount is None:
        raise BadInput(
            "a partial release names seller_amount and buyer_amount", ErrorCode.AMOUNTS_MISMATCH
        )
    for name, share in (("seller_amount", seller_amount), ("buyer_amount", buyer_amount)):
        if isinstance(share, bool) or not isinstance(share, int) or not 0 < share <= AMOUNT_MAX:
            raise BadInput(
                f"{name} is a whole number of minor units above 0 (use release_to_seller or "
                "refund_to_buyer for everything to one side)",
                ErrorCode.AMOUNTS_MISMATCH,
            )
    if seller_amount + buyer_amount != amount:
        raise BadInput(
            f"seller_amount {seller_amount} + buyer_amount {buyer_amount} = "
            f"{seller_amount + buyer_amount}, not the {amount} in escrow",
            ErrorCode.AMOUNTS_MISMATCH,
        )
    return Outcome(kind, seller_amount, buyer_amount)


def _no_shares(kind: OutcomeKind, seller: int | None, buyer: int | None) -> None:
    if seller is not None or buyer is not None:
        raise BadInput(
            f"{kind} moves the whole amount; amounts are only for partial_release",
            ErrorCode.AMOUNTS_MISMATCH,
        )


def check_amount(amount: int, currency: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= AMOUNT_MAX:
        raise BadInput("amount is a whole number of minor units above 0 (e.g. cents)")
    if len(currency) != 3 or not currency.isascii() or not currency.isupper():
        raise BadInput("currency is an ISO 4217 code such as EUR or RUB")


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """How long a dispute may stay in each active status (PARLEY_DISPUTE_SLA_*_SECONDS)."""

    open: timedelta
    evidence: timedelta
    review: timedelta

    def deadline(self, status: DisputeStatus, since: datetime) -> datetime | None:
        """When the current status's SLA runs out; None for a final status."""
        limit = {
            DisputeStatus.OPEN: self.open,
            DisputeStatus.EVIDENCE: self.evidence,
            DisputeStatus.REVIEW: self.review,
        }.get(status)
        return since + limit if limit is not None else None


@dataclass(frozen=True, slots=True)
class Dispute:
    id: int
    conversation_id: int
    buyer_id: int
    seller_id: int
    amount: int  # minor units, held in escrow by the marketplace's payment system
    currency: str
    reference: str  # the marketplace's order or contract id
    reason: str
    status: DisputeStatus
    opened_by: str
    assignee_id: int | None
    created_at: datetime
    updated_at: datetime
    status_since: datetime
    deadline_at: datetime | None
    sla_breached_at: datetime | None
    outcome: Outcome | None
    resolved_at: datetime | None
    version: int

    def overdue(self, now: datetime) -> bool:
        return self.deadline_at is not None and self.deadline_at <= now


@dataclass(frozen=True, slots=True)
class DisputeEvent:
    """One line of a dispute's history (opened, status, evidence, assigned, sla_breached...)."""

    id: int
    dispute_id: int
    at: datetime
    actor: str
    kind: str
    from_status: str | None
    to_status: str | None
    reason: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Evidence:
    """A message or file pinned to a dispute, copied as it was when pinned."""

    id: int
    dispute_id: int
    message_id: int | None
    attachment_id: str | None
    sender_id: int | None
    body: str
    attachments: list[dict[str, Any]]
    note: str
    pinned_by: str
    pinned_at: datetime
