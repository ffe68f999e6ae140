"""The WebSocket writer sends a frame at once when the socket takes it without waiting, and
hands a send that has to wait to a task without sending anything twice (`transports.ws`)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from parley.transports.ws import _send_without_waiting


class Socket:
    """Sends like uvicorn's WebSocket protocol: wait until writable, then write."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        await self.writable.wait()
        self.sent.append(text)


async def test_a_writable_socket_takes_the_frame_there_and_then() -> None:
    socket = Socket()
    assert _send_without_waiting(cast(Any, socket), "a") is None
    assert socket.sent == ["a"]


async def test_a_send_that_has_to_wait_finishes_in_a_task_once() -> None:
    socket = Socket()
    socket.writable.clear()
    rest = _send_without_waiting(cast(Any, socket), "b")
    assert rest is not None and socket.sent == []
    task = asyncio.create_task(_finish(rest))
    await asyncio.sleep(0)
    assert socket.sent == [] and not task.done()
    socket.writable.set()
    await task
    assert socket.sent == ["b"]


async def test_a_waiting_send_given_up_sends_nothing_and_leaves_no_waiter() -> None:
    socket = Socket()
    socket.writable.clear()
    rest = _send_without_waiting(cast(Any, socket), "c")
    assert rest is not None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await rest
    socket.writable.set()
    await asyncio.sleep(0)
    assert socket.sent == []
    assert not socket.writable._waiters  # type: ignore[attr-defined]


async def _finish(rest: Any) -> None:
    await rest
