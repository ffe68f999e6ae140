"""Receipt cursors: `delivered_seq` and `read_seq` only move forward and never pass `last_seq`."""

from __future__ import annotations

from dataclasses import dataclass

from parley.core.errors import BadInput, ErrorCode


@dataclass(frozen=True, slots=True)
class ReceiptUpdate:
    """The outcome of applying a receipt: new cursors, and how many values were stale."""

    delivered_seq: int
    read_seq: int
    rollbacks_ignored: int


def advance_receipt(
    *,
    delivered_seq: int,
    read_seq: int,
    last_seq: int,
    new_delivered: int | None,
    new_read: int | None,
) -> ReceiptUpdate:
    """Apply a receipt to a member's cursors.

    A value past `last_seq` is refused (the client claims to have seen what does not exist).
    A value below the current cursor is a replayed or reordered receipt: it is ignored and
    counted (the P0 `read_rollback_detected`), never applied. Reading implies delivery.
    """
    for name, value in (("delivered_seq", new_delivered), ("read_seq", new_read)):
        if value is not None and value > last_seq:
            raise BadInput(
                f"{name}={value} is past the conversation's last_seq={last_seq}",
                ErrorCode.RECEIPT_BEYOND_LAST_SEQ,
            )
    rollbacks = 0
    if new_delivered is not None and new_delivered < delivered_seq:
        rollbacks += 1
    if new_read is not None and new_read < read_seq:
        rollbacks += 1
    read = max(read_seq, new_read or 0)
    delivered = max(delivered_seq, new_delivered or 0, read)
    return ReceiptUpdate(delivered_seq=delivered, read_seq=read, rollbacks_ignored=rollbacks)
