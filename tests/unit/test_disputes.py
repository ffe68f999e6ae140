"""The dispute status machine and outcome arithmetic, for all inputs (Hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.disputes import (
    AMOUNT_MAX,
    DisputeStatus,
    OutcomeKind,
    SlaPolicy,
    check_transition,
    settle,
)
from parley.core.errors import BadInput, Conflict, ErrorCode

S = DisputeStatus
# The machine, written out independently of the code's table: open → evidence →
# review → resolved | cancelled; cancel from any active status; review may ask for evidence.
LEGAL = {
    (S.OPEN, S.EVIDENCE),
    (S.OPEN, S.CANCELLED),
    (S.EVIDENCE, S.REVIEW),
    (S.EVIDENCE, S.CANCELLED),
    (S.REVIEW, S.EVIDENCE),
    (S.REVIEW, S.RESOLVED),
    (S.REVIEW, S.CANCELLED),
}


def _accepted(current: DisputeStatus, target: DisputeStatus) -> bool:
    try:
        check_transition(current, target)
    except Conflict as refused:
        assert refused.code is ErrorCode.ILLEGAL_TRANSITION
        return False
    return True


@given(st.lists(st.sampled_from(list(DisputeStatus)), max_size=30))
def test_no_illegal_transition_is_ever_accepted(targets: list[DisputeStatus]) -> None:
    status = S.OPEN
    for target in targets:
        accepted = _accepted(status, target)
        assert accepted == ((status, target) in LEGAL), (status, target)
        if accepted:
            status = target
    # Final statuses stay final.
    if status in (S.RESOLVED, S.CANCELLED):
        assert not any(_accepted(status, t) for t in DisputeStatus)


def test_every_legal_transition_is_accepted() -> None:
    for current, target in LEGAL:
        assert _accepted(current, target)


amounts = st.integers(min_value=1, max_value=AMOUNT_MAX)
shares = st.one_of(st.none(), st.integers(min_value=-10, max_value=AMOUNT_MAX + 10))


@given(amounts, shares, shares)
def test_a_partial_release_is_accepted_only_when_the_shares_add_up(
    amount: int, seller: int | None, buyer: int | None
) -> None:
    adds_up = (
        seller is not None
        and buyer is not None
        and 0 < seller <= AMOUNT_MAX
        and 0 < buyer <= AMOUNT_MAX
        and seller + buyer == amount
    )
    try:
        outcome = settle(
            OutcomeKind.PARTIAL_RELEASE, amount, seller_amount=seller, buyer_amount=buyer
        )
    except BadInput as refused:
        assert refused.code is ErrorCode.AMOUNTS_MISMATCH
        assert not adds_up
        return
    assert adds_up
    assert (outcome.seller_amount, outcome.buyer_amount) == (seller, buyer)


@given(amounts, st.integers(min_value=1, max_value=AMOUNT_MAX))
def test_any_split_of_the_amount_settles_to_exactly_the_amount(amount: int, cut: int) -> None:
    if amount < 2:
        return
    seller = 1 + cut % (amount - 1)
    outcome = settle(
        OutcomeKind.PARTIAL_RELEASE, amount, seller_amount=seller, buyer_amount=amount - seller
    )
    assert outcome.seller_amount + outcome.buyer_amount == amount


@given(amounts)
def test_full_outcomes_move_the_whole_amount_to_one_side(amount: int) -> None:
    released = settle(OutcomeKind.RELEASE_TO_SELLER, amount)
    refunded = settle(OutcomeKind.REFUND_TO_BUYER, amount)
    assert (released.seller_amount, released.buyer_amount) == (amount, 0)
    assert (refunded.seller_amount, refunded.buyer_amount) == (0, amount)


def test_full_outcomes_take_no_shares_and_partial_needs_both() -> None:
    with pytest.raises(BadInput, match="only for partial_release"):
        settle(OutcomeKind.REFUND_TO_BUYER, 100, buyer_amount=100)
    with pytest.raises(BadInput, match="names seller_amount and buyer_amount"):
        settle(OutcomeKind.PARTIAL_RELEASE, 100, seller_amount=60)
    with pytest.raises(BadInput, match="60 \\+ buyer_amount 41 = 101, not the 100"):
        settle(OutcomeKind.PARTIAL_RELEASE, 100, seller_amount=60, buyer_amount=41)


def test_each_active_status_has_its_own_deadline_and_final_ones_none() -> None:
    policy = SlaPolicy(
        open=timedelta(hours=1), evidence=timedelta(hours=2), review=timedelta(hours=3)
    )
    since = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert policy.deadline(S.OPEN, since) == since + timedelta(hours=1)
    assert policy.deadline(S.EVIDENCE, since) == since + timedelta(hours=2)
    assert policy.deadline(S.REVIEW, since) == since + timedelta(hours=3)
    assert policy.deadline(S.RESOLVED, since) is None
    assert policy.deadline(S.CANCELLED, since) is None
