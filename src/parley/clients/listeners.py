"""Handing events to the caller: `async for` streams and callbacks.

An `EventStream` sees the events from the moment it was made; nothing is queued for nobody,
so a client no one listens to (a bench sender) keeps no backlog.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable

from parley.clients.models import Event

log = logging.getLogger("parley.client")

EventCallback = Callable[[Event], Awaitable[None] | None]


class EventStream:
    """An async iterator over the client's events; ends when the client closes."""

    def __init__(self, listeners: Listeners) -> None:
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        # Stops feeding the queue once this stream is closed or garbage (a `break` out of
        # `async for` leaves the stream unreferenced).
        self._detach = weakref.finalize(self, listeners.queues.discard, self._queue)
        if listeners.ended:
            self._queue.put_nowait(None)
        else:
            listeners.queues.add(self._queue)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            self._detach()
            raise StopAsyncIteration
        return event

    async def next(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most `timeout` seconds (TimeoutError after that)."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    def close(self) -> None:
        """Stop receiving events."""
        self._detach()


class Listeners:
    """The open event streams and the registered callbacks of one client."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[Event | None]] = set()
        self._callbacks: list[tuple[EventCallback, frozenset[str]]] = []
        self.ended = False

    def add_callback(self, callback: EventCallback, types: frozenset[str]) -> Callable[[], None]:
        entry = (callback, types)
        self._callbacks.append(entry)

        def remove() -> None:
            if entry in self._callbacks:
                self._callbacks.remove(entry)

        return remove

    async def emit(self, event: Event) -> None:
        """Queue for every stream, then run the callbacks (a failing one is logged)."""
        for queue in self.queues:
            queue.put_nowait(event)
        for callback, types in self._callbacks:
            if types and event.type not in types:
                continue
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event callback %r failed on a %s event", callback, event.type)

    def end(self) -> None:
        """Tell every stream the client is closed."""
        self.ended = True
        for queue in self.queues:
            queue.put_nowait(None)
        self.queues.clear()
