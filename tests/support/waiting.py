"""Waiting for state that changes asynchronously, without sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T | Awaitable[T]], *, timeout: float = 15, what: str = "a condition"
) -> T:
    """Call `probe` until it returns something truthy, and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def settled(read: Callable[[], T], *, timeout: float = 10, interval: float = 0.1) -> T:
    """What `read` returns once it stops changing (state applied asynchronously elsewhere)."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = read()
        if now == last:
            return now
        last = now
    return last
