"""Properties of `advance_receipt`: monotonic cursors, bounded by last_seq, rollbacks counted."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.errors import BadInput, ErrorCode
from parley.core.receipts import ReceiptUpdate, advance_receipt

SEQ_MAX = 2**53 - 1


@dataclass(frozen=True)
class Receipt:
    """A member's cursors (read <= delivered <= last_seq) and a receipt's new values."""

    delivered_seq: int
    read_seq: int
    last_seq: int
    new_delivered: int | None
    new_read: int | None

    def apply(self) -> ReceiptUpdate:
        return advance_receipt(**asdict(self))

    @property
    def stale_values(self) -> int:
        return sum(
            new is not None and new < current
            for new, current in (
                (self.new_delivered, self.delivered_seq),
                (self.new_read, self.read_seq),
            )
        )


@st.composite
def receipts(draw: st.DrawFn, *, beyond: bool = False) -> Receipt:
    """Receipts within last_seq, or (`beyond`) with at least one value past it."""
    last_seq = draw(st.integers(min_value=0, max_value=SEQ_MAX - 10))
    delivered = draw(st.integers(min_value=0, max_value=last_seq))
    read = draw(st.integers(min_value=0, max_value=delivered))
    within = st.none() | st.integers(min_value=0, max_value=last_seq)
    past = st.integers(min_value=last_seq + 1, max_value=SEQ_MAX)
    new_delivered, new_read = draw(within), draw(within)
    if beyond:
        if draw(st.booleans()):
            new_delivered = draw(past)
        else:
            new_read = draw(past)
    return Receipt(delivered, read, last_seq, new_delivered, new_read)


@given(receipts())
def test_cursors_never_move_backwards(receipt: Receipt) -> None:
    update = receipt.apply()

    assert update.delivered_seq >= receipt.delivered_seq
    assert update.read_seq >= receipt.read_seq


@given(receipts())
def test_cursors_never_pass_last_seq_and_read_never_passes_delivered(receipt: Receipt) -> None:
    update = receipt.apply()

    assert update.read_seq <= update.delivered_seq <= receipt.last_seq


@given(receipts(beyond=True))
def test_a_value_past_last_seq_is_refused(receipt: Receipt) -> None:
    with pytest.raises(BadInput) as refused:
        receipt.apply()

    assert refused.value.code is ErrorCode.RECEIPT_BEYOND_LAST_SEQ


@given(receipts())
def test_rollback_is_counted_exactly_when_a_value_is_below_its_cursor(receipt: Receipt) -> None:
    update = receipt.apply()

    assert update.rollbacks_ignored == receipt.stale_values


@given(receipts())
def test_a_value_at_or_above_its_cursor_is_applied(receipt: Receipt) -> None:
    update = receipt.apply()

    if receipt.new_read is not None and receipt.new_read >= receipt.read_seq:
        assert update.read_seq == receipt.new_read
        assert update.delivered_seq >= receipt.new_read  # reading implies delivery
    if receipt.new_delivered is not None and receipt.new_delivered >= receipt.delivered_seq:
        assert update.delivered_seq >= receipt.new_delivered


@given(receipts())
def test_a_receipt_of_only_stale_values_changes_nothing(receipt: Receipt) -> None:
    stale = Receipt(
        receipt.delivered_seq,
        receipt.read_seq,
        receipt.last_seq,
        None
        if receipt.new_delivered is None
        else min(receipt.new_delivered, receipt.delivered_seq),
        None if receipt.new_read is None else min(receipt.new_read, receipt.read_seq),
    )

    update = stale.apply()

    assert (update.delivered_seq, update.read_seq) == (receipt.delivered_seq, receipt.read_seq)
    assert update.rollbacks_ignored == stale.stale_values
