"""Protocols the domain needs from the outside world, implemented in storage/ and bus/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from parley.core.models import Conversation, Message, NewMessage, User


class BlobStore(Protocol):
    """Where attachment bytes live: local disk now, an object store later.

    Keys are server-made ids, never client file names.
    """

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        """Store the stream under `key`; return its size. Raise PayloadTooLarge past max,
        StorageFull when the volume fills up (nothing is kept under `key` either way)."""
        ...

    def free_bytes(self) -> int:
        """Room left for new blobs."""
        ...

    def open(self, key: str) -> AsyncIterator[bytes]:
        """The stored bytes, in chunks."""
        ...

    async def delete(self, key: str) -> None: ...


class SendGuard(Protocol):
    """Moderation's say on the write path (features/moderation/filters.py implements it)."""

    async def screen_send(
        self, actor: User, conversation: Conversation, send: NewMessage
    ) -> Message | None:
        """None: store it. Raises when refused or held; returns the stored message of a retry."""
        ...

    def check_may_join(self, conversation_id: int, user_ids: list[int]) -> None:
        """Raise when one of the users is banned from the conversation."""
        ...

    def check_may_connect(self, user: User) -> None:
        """Raise when the user may not open an event stream (a deployment-wide ban)."""
        ...
