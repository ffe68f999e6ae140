"""Sends in flight: each retried with its `client_msg_id` until acked, and found by `ref`.

A caller may send the same `client_msg_id` again while the first is in flight (a retry), so
one id can have several sends; the server answers each, and each answer settles the oldest
send still waiting on the connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from parley.clients.models import Ack, Message


@dataclass(slots=True)
class PendingSend:
    """A send not yet acknowledged. `waiter` is set while a WebSocket frame awaits its ack."""

    conversation_id: int
    client_msg_id: str
    body: str
    attachments: list[str]
    metadata: dict[str, Any]
    waiter: asyncio.Future[Ack] | None = None
    reply_to_id: int | None = None
    thread_root_id: int | None = None

    def fields(self) -> dict[str, Any]:
        """The send's fields, as the WebSocket frame and the REST body both carry them."""
        fields = {
            "client_msg_id": self.client_msg_id,
            "body": self.body,
            "attachments": self.attachments,
            "metadata": self.metadata,
        }
        if self.reply_to_id is not None:
            fields["reply_to_id"] = self.reply_to_id
        if self.thread_root_id is not None:
            fields["thread_root_id"] = self.thread_root_id
        return fields

    def frame(self) -> dict[str, Any]:
        return {"type": "send", "conversation_id": self.conversation_id, **self.fields()}

    def provisional(self, ack: Ack, sender_id: int | None) -> Message:
        """The message as known from its ack, until the stream brings the stored copy."""
        return Message(
            id=ack.id,
            conversation_id=ack.conversation_id,
            seq=ack.seq,
            client_msg_id=self.client_msg_id,
            body=self.body,
            sender_id=sender_id,
            attachments=[{"id": ref} for ref in self.attachments],
            metadata=self.metadata,
            pos=ack.pos,
            local=True,
            reply_to_id=self.reply_to_id,
            thread_root_id=self.thread_root_id,
        )


class Outbox:
    """The sends in flight, by `client_msg_id`."""

    def __init__(self) -> None:
        self._by_id: dict[str, list[PendingSend]] = {}

    def __len__(self) -> int:
        return sum(len(sends) for sends in self._by_id.values())

    def add(self, pending: PendingSend) -> None:
        self._by_id.setdefault(pending.client_msg_id, []).append(pending)

    def remove(self, pending: PendingSend) -> None:
        same_id = self._by_id.get(pending.client_msg_id, [])
        if pending in same_id:
            same_id.remove(pending)
        if not same_id:
            self._by_id.pop(pending.client_msg_id, None)

    def waiting_for(self, ref: object) -> PendingSend | None:
        """The oldest send with this `ref` still waiting for an answer on the connection."""
        for pending in self._by_id.get(str(ref), ()):
            if pending.waiter is not None and not pending.waiter.done():
                return pending
        return None

    def fail_waiting(self, error: Exception) -> None:
        """Wake every send waiting for an answer (the connection is gone, or the client)."""
        for same_id in self._by_id.values():
            for pending in same_id:
                if pending.waiter is not None and not pending.waiter.done():
                    pending.waiter.set_exception(error)
