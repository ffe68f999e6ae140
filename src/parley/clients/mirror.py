"""What a client knows of the conversations it follows: timelines, receipts, read marks.

Every message and receipt — from the stream, an ack or REST — is merged here, and the P0
counts are taken where the merge shows them: a seq the stream delivers twice
(`timeline_duplicate_detected`), a stream receipt lower than one the stream gave before
(`read_rollback_detected`), and the ack → stream clock (`write_receipt_ms`).
"""

from __future__ import annotations

from typing import Any

from parley.clients.invariants import Invariants
from parley.clients.models import Ack, Message, Receipt, TransportName
from parley.clients.timeline import Arrival, Timeline


class Mirror:
    """The client-side copy of the state it follows, and the counting of what breaks it."""

    def __init__(self, invariants: Invariants) -> None:
        self.invariants = invariants
        self.user_id: int | None = None
        self.conversations: dict[int, dict[str, Any]] = {}
        self._timelines: dict[int, Timeline] = {}
        self._receipts: dict[tuple[int, int], Receipt] = {}
        self._read_sent: dict[int, int] = {}

    def timeline(self, conversation_id: int) -> Timeline:
        found = self._timelines.get(conversation_id)
        if found is None:
            floor = self.conversations.get(conversation_id, {}).get("last_seq")
            found = self._timelines[conversation_id] = Timeline(conversation_id, floor)
        return found

    def timelines(self) -> list[Timeline]:
        return list(self._timelines.values())

    def held(self, conversation_id: int) -> list[Message]:
        found = self._timelines.get(conversation_id)
        return found.messages() if found else []

    def take_streamed(self, message: Message, transport: TransportName) -> bool:
        """A message the stream delivered; True when it is new here (to be handed out).

        False for a duplicate (counted) and for the stream's copy of a message held from an
        ack or REST (that copy is its write receipt, and replaces an ack's provisional one).
        """
        arrival = self.timeline(message.conversation_id).add_streamed(message)
        if arrival is Arrival.DUPLICATE:
            self.invariants.count(transport, "timeline_duplicate_detected")
            return False
        self.invariants.received(transport, message.conversation_id, message.seq)
        return arrival is Arrival.NEW

    def take_update(self, message: Message) -> bool:
        """A message's new state (a change on the stream, or this client's own edit, delete or
        reaction answered over REST). True when it is news: it changed what is held, or the
        message is not held at all (the app may show it elsewhere, e.g. in a thread)."""
        timeline = self.timeline(message.conversation_id)
        if message.seq not in timeline:
            return True
        return timeline.update(message)

    def take_ack(self, ack: Ack, message: Message) -> bool:
        """A send the server stored: hold it, start its write-receipt clock; True if new."""
        timeline = self.timeline(ack.conversation_id)
        on_stream = timeline.was_streamed(ack.seq)
        if not (ack.duplicate and on_stream):  # a retry whose original was timed already
            self.invariants.acked(ack.transport, ack.conversation_id, ack.seq, on_stream=on_stream)
        return timeline.add_known(message)

    def take_receipt(self, data: dict[str, Any], transport: TransportName | None) -> Receipt | None:
        """Merge a receipt as the maximum seen; returns it when it moved, else None.

        One from the stream (`transport` set) lower than what was known is a rollback; a REST
        snapshot (`transport` None) may just be older, so it is not.
        """
        key = (int(data["conversation_id"]), int(data["user_id"]))
        delivered, read = int(data.get("delivered_seq") or 0), int(data.get("read_seq") or 0)
        known = self._receipts.get(key) or Receipt(key[1], 0, 0)
        if transport is not None and read < known.read_seq:
            self.invariants.count(transport, "read_rollback_detected")
        merged = Receipt(key[1], max(delivered, known.delivered_seq), max(read, known.read_seq))
        if merged == known:
            return None
        self._receipts[key] = merged
        return merged

    def take_conversations(self, summaries: list[dict[str, Any]]) -> None:
        """The conversation list: where each timeline starts, and this user's own receipts."""
        self.conversations = {int(c["id"]): c for c in summaries}
        for conversation_id, summary in self.conversations.items():
            found = self._timelines.get(conversation_id)
            if found is not None and found.complete_through is None:
                found.mark_complete_through(int(summary["last_seq"]))
            if self.user_id is not None:
                own = {**summary, "conversation_id": conversation_id, "user_id": self.user_id}
                self.take_receipt(own, None)

    def receipts(self, conversation_id: int) -> dict[int, Receipt]:
        return {uid: r for (cid, uid), r in self._receipts.items() if cid == conversation_id}

    def own_receipt(self, conversation_id: int) -> Receipt | None:
        if self.user_id is None:
            return None
        return self._receipts.get((conversation_id, self.user_id))

    def read_mark(self, conversation_id: int) -> int:
        """This user's read mark: the highest this client sent or the server reported."""
        own = self.own_receipt(conversation_id)
        return max(self._read_sent.get(conversation_id, 0), own.read_seq if own else 0)

    def claim_read(self, conversation_id: int, seq: int) -> dict[str, int] | None:
        """The receipt to send for reading up to `seq`, or None if the mark is there already.

        A lower or equal seq is no receipt at all (an app may mark whatever is on screen), so
        the mark never moves back and the server never sees a stale one.
        """
        if seq <= self.read_mark(conversation_id):
            return None
        self._read_sent[conversation_id] = seq
        own = self.own_receipt(conversation_id)
        return {"delivered_seq": max(seq, own.delivered_seq if own else 0), "read_seq": seq}

    def still_latest_read(self, conversation_id: int, seq: int) -> bool:
        return self._read_sent.get(conversation_id) == seq
