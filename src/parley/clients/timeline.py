"""One conversation's timeline as a client sees it: seq-ordered, duplicate-free, gaps found.

Messages reach a client three ways: the stream, the ack of its own send, and REST (gap fills
and full-state loads). The timeline keeps one copy per `seq` and remembers which ones the
stream itself delivered, because only a second *stream* delivery of a seq is a duplicate: the
stream delivering a message first learnt from an ack or a REST page is the expected receipt.
"""

from __future__ import annotations

import bisect
from enum import Enum

from parley.clients.models import Message


class Arrival(Enum):
    """What a message delivered by the stream turned out to be."""

    NEW = "new"  # not known before
    RECEIPT = "receipt"  # known from an ack or REST; this is the stream's copy
    DUPLICATE = "duplicate"  # the stream had delivered this seq already: a P0 breach


class Timeline:
    """The messages of one conversation by `seq`, with the highest seq known to be gapless.

    `complete_through` is None until the first stream message or REST page: a client that
    joins late does not backfill history it never asked for, it only fills holes that open
    after it started following the conversation.
    """

    def __init__(self, conversation_id: int, floor: int | None = None) -> None:
        self.conversation_id = conversation_id
        # `floor`: the conversation's last_seq when the client listed it; what comes after is
        # followed, so a hole above it is a gap.
        self.complete_through: int | None = floor
        self._by_seq: dict[int, Message] = {}
        self._order: list[int] = []
        self._streamed: set[int] = set()

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, seq: object) -> bool:
        return seq in self._by_seq

    @property
    def last_seq(self) -> int:
        """The highest seq held (0 when empty)."""
        return self._order[-1] if self._order else 0

    def messages(self) -> list[Message]:
        """The held messages, oldest first."""
        by_seq = self._by_seq
        return [by_seq[seq] for seq in self._order]

    def get(self, seq: int) -> Message | None:
        return self._by_seq.get(seq)

    def was_streamed(self, seq: int) -> bool:
        """True once the stream itself delivered this seq."""
        return seq in self._streamed

    def gap_before(self, seq: int) -> tuple[int, int] | None:
        """The missing seqs (first, last) a stream message at `seq` reveals, if any."""
        through = self.complete_through
        if through is None or seq <= through + 1:
            return None
        return through + 1, seq - 1

    def add_streamed(self, message: Message) -> Arrival:
        """Take a message the stream delivered; a second stream copy changes nothing."""
        seq = message.seq
        if seq in self._streamed:
            return Arrival.DUPLICATE
        self._streamed.add(seq)
        known = seq in self._by_seq
        self._by_seq[seq] = message  # the stored copy wins over an ack's provisional one
        if not known:
            self._insert_seq(seq)
        if self.complete_through is None:
            self.complete_through = seq
        self._advance()
        return Arrival.RECEIPT if known else Arrival.NEW

    def add_known(self, message: Message) -> bool:
        """Take a message from an ack or REST; True when it was not held yet."""
        seq = message.seq
        held = self._by_seq.get(seq)
        if held is not None:
            if held.local and not message.local and seq not in self._streamed:
                self._by_seq[seq] = message  # the stored copy over an ack's provisional one
            return False
        self._by_seq[seq] = message
        self._insert_seq(seq)
        self._advance()
        return True

    def update(self, message: Message) -> bool:
        """Take the new state of a held message (edited, deleted, reacted to); True if it
        differs from what was held. A message not held is left for history to load."""
        held = self._by_seq.get(message.seq)
        if held is None or held.id != message.id or held.deleted:
            return False  # nothing comes back from a tombstone
        # The same state; or an older one than held: a change that was committed before this
        # client's own edit, whose answer it applied already (the edit's own event follows).
        if held == message or (held.edited_at and not message.edited_at and not message.deleted):
            return False
        self._by_seq[message.seq] = message
        return True

    def mark_complete_through(self, seq: int) -> None:
        """Declare every seq up to `seq` accounted for (after a gap fill answered)."""
        if self.complete_through is None or seq > self.complete_through:
            self.complete_through = seq
        self._advance()

    def load_page(self, messages: list[Message], last_seq: int) -> list[Message]:
        """Merge the newest page; the conversation ends at `last_seq`. Returns what was new.

        If the page does not reach back to what was held, the hole below it stays (fill it
        first to close it): it is history, not a gap in the live stream.
        """
        added = [message for message in messages if self.add_known(message)]
        first = messages[0].seq if messages else last_seq + 1
        through = self.complete_through
        if through is None or through < first - 1:
            self.complete_through = last_seq
        else:
            self.complete_through = max(through, last_seq)
        self._advance()
        return added

    def _insert_seq(self, seq: int) -> None:
        order = self._order
        if not order or seq > order[-1]:
            order.append(seq)
        else:
            bisect.insort(order, seq)

    def _advance(self) -> None:
        through = self.complete_through
        if through is None:
            return
        by_seq = self._by_seq
        while through + 1 in by_seq:
            through += 1
        self.complete_through = through
