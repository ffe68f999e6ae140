"""Group commit: many concurrent sends, one transaction, then an ack for each.

A send waits in its shard's queue. A shard's loop takes everything waiting (up to a batch
limit), stores it with one `append_batch` call — one transaction, one fsync, one round trip on
PostgreSQL — and only then resolves each send's future. Sends that arrive while a batch is being
committed form the next batch, so batches grow with load and add no delay when idle.

Conversations map to shards by id, so one conversation's sends keep their arrival order, and
on PostgreSQL several shards commit in parallel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from parley.core.errors import ParleyError, Unavailable
from parley.core.models import Appended, NewMessage

log = logging.getLogger(__name__)


class MessageAppender(Protocol):
    async def append_batch(self, batch: list[NewMessage]) -> list[Appended]: ...


OnCommit = Callable[[list[Appended]], Awaitable[None]]
Pending = tuple[NewMessage, asyncio.Future[Appended]]


class MessageWriter:
    def __init__(
        self,
        store: MessageAppender,
        *,
        shards: int = 1,
        max_batch: int = 512,
        on_commit: OnCommit | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_failure: Callable[[Exception, str], None] | None = None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self.on_commit = on_commit
        self._on_batch = on_batch
        self._on_failure = on_failure
        self._queues: list[asyncio.Queue[Pending]] = [asyncio.Queue() for _ in range(shards)]
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(queue), name=f"message-writer-{i}")
            for i, queue in enumerate(self._queues)
        ]

    async def stop(self) -> None:
        """Refuse new sends, finish the ones already queued, then stop the loops."""
        self._closed = True
        for queue in self._queues:
            await queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def append(self, send: NewMessage) -> Appended:
        """Store one send; returns once it is durable (or was already stored)."""
        if self._closed:
            raise Unavailable("the server is shutting down; retry on another node")
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._queues[send.conversation_id % len(self._queues)].put_nowait((send, future))
        return await future

    async def _run(self, queue: asyncio.Queue[Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as exc:  # a shard's loop must outlive any one batch
                self._report_failure(exc, "group commit")
                _fail(batch, exc)
            finally:
                for _ in batch:
                    queue.task_done()

    def _report_failure(self, exc: Exception, what: str) -> None:
        if self._on_failure is not None:
            self._on_failure(exc, what)
        else:
            log.error("%s failed", what, exc_info=exc)

    async def _commit(self, batch: list[Pending]) -> None:
        try:
            results = await self._store.append_batch([send for send, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, Unavailable):
                # One bad send must not fail its neighbours: store them one by one.
                for pending in batch:
                    await self._commit([pending])
                return
            _fail(batch, exc)
            return
        if self._on_batch:
            self._on_batch(len(batch))
        if self.on_commit:
            # Before the acks: a sender's stream has its message no later than its ack.
            try:
                await self.on_commit(results)
            except Exception as exc:  # delivery is best-effort after commit; resume fills gaps
                self._report_failure(exc, "publishing committed messages")
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail(batch: list[Pending], exc: Exception) -> None:
    if not isinstance(exc, ParleyError):
        log.error("storing a message failed", exc_info=exc)
        exc = Unavailable("the message could not be stored; retry with the same client_msg_id")
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
