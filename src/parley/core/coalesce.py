"""Coalesced lookups: point reads that arrive together are answered by one query.

The read-side twin of group commit (`core.writer`). Every send checks its sender's membership;
at a thousand sends a second, one query per check costs more than everything else a send does
(on SQLite each query is several hops to a driver thread). A `CoalescedLookup` lets one query
run at a time; keys asked for while it runs wait for the next one, which asks for all of them.
Idle, a lookup adds no delay. A key asked for after a write committed always gets a query that
started after that commit, so callers still read their own writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CoalescedLookup(Generic[K, V]):
    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], *, max_batch: int = 500
    ) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """The value for `key`, or None when the store has none."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="coalesced-lookup")
        return await future

    async def _run(self) -> None:
        while self._waiting:
            keys = list(self._waiting)[: self._max_batch]
            batch = {key: self._waiting.pop(key) for key in keys}
            try:
                found = await self._fetch(keys)
            except Exception as exc:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for key, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(key))
