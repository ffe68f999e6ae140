"""LocalBlobStore: attachment bytes as files in one directory, named by server-made keys.

A file is written as `<key>.part`, fsynced, then renamed: a key names either a whole file or
nothing. A full volume (ENOSPC, EDQUOT) removes the partial file and raises `StorageFull`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from parley.core.errors import PayloadTooLarge, StorageFull

_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_CHUNK = 64 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):  # keys are ours, but a path never comes from outside
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key

    def free_bytes(self) -> int:
        """Free space on the store's volume, for an unprivileged writer."""
        return shutil.disk_usage(self.root).free

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        path = self._path(key)
        partial = path.with_suffix(".part")
        size = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = await asyncio.to_thread(open, partial, "wb")
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(f"the file is larger than {max_bytes} bytes")
                    await asyncio.to_thread(handle.write, chunk)
                await asyncio.to_thread(_flush, handle)
            finally:
                handle.close()
            partial.replace(path)
        except BaseException as exc:
            partial.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in _FULL:
                raise StorageFull(
                    "the attachment store is full; text messages still work, try the file later"
                ) from exc
            raise
        return size

    async def open(self, key: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path(key), "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _flush(handle: object) -> None:
    handle.flush()  # type: ignore[attr-defined]
    os.fsync(handle.fileno())  # type: ignore[attr-defined]
