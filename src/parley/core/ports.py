"""Protocols the domain needs from the outside world, implemented in storage/ and bus/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


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
